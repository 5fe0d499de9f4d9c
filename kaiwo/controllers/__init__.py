"""One module per custom resource: wiring (watches, keys), reading caches, calling translate, applying
children and computing status. The generic machinery lives in kaiwo.runtime."""

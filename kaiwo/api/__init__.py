"""Kaiwo's API: pydantic models of the custom resources, and the CRDs and reference docs generated from them.

Kinds (one module each): KaiwoJob and KaiwoService (`kaiwojob`, `kaiwoservice`, sharing `common` and
`storage`), KaiwoQueueConfig (`queueconfig`), KaiwoConfig (`config`) and GpuWorkload (`gpuworkload`).
Shared pieces: `base` (model base, wire format, CEL rules), `types` (quantities, durations, names), `core`
(the few core Kubernetes types embedded), `labels` (label and annotation keys). Generators: `schema`
(model -> structural OpenAPI), `crds` (`python -m kaiwo.api.crds`), `docs` (`python -m kaiwo.api.docs`).
`examples` holds example manifests used by the docs and the tests.

The models parse objects from the cluster (``KaiwoJob.model_validate(obj)``) and produce objects to send
(``wire(model)``). Validation lives in the CRDs, which the apiserver enforces; the models check the same
per-field limits and patterns, but not the cross-field CEL rules.
"""

from kaiwo.api.base import wire
from kaiwo.api.config import KaiwoConfig
from kaiwo.api.gpuworkload import GpuWorkload
from kaiwo.api.kaiwojob import KaiwoJob
from kaiwo.api.kaiwoservice import KaiwoService
from kaiwo.api.queueconfig import KaiwoQueueConfig

__all__ = ["GpuWorkload", "KaiwoConfig", "KaiwoJob", "KaiwoQueueConfig", "KaiwoService", "wire"]

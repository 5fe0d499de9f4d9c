"""Third-party controllers of the local cluster and their CRDs, taken from the pinned Go modules.

The CRD YAML is read from the module cache (``go mod download -json`` gives the folder), exactly as the
projects' own test setups do, so the CRDs always match the controller versions we run.
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kaiwo.devcluster import versions


@dataclass(frozen=True)
class Addon:
    name: str
    module: str
    version: str
    crd_globs: tuple[str, ...]


ADDONS: dict[str, Addon] = {
    a.name: a
    for a in [
        Addon("kueue", "sigs.k8s.io/kueue", versions.KUEUE, ("config/components/crd/bases/*.yaml",)),
        Addon("kuberay", "github.com/ray-project/kuberay/ray-operator", versions.KUBERAY,
              ("config/crd/bases/ray.io_*.yaml",)),
        Addon("appwrapper", "github.com/project-codeflare/appwrapper", versions.APPWRAPPER,
              ("config/crd/bases/*.yaml",)),
    ]
}


class ModuleError(RuntimeError):
    pass


@functools.cache
def module_dir(module: str, version: str) -> Path:
    """The module's source folder in the Go module cache, downloading it if needed."""
    proc = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                          capture_output=True, text=True)
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ModuleError(f"go mod download {module}@{version} failed: {proc.stderr.strip()}") from None
    if "Error" in info or proc.returncode != 0:
        raise ModuleError(f"go mod download {module}@{version}: {info.get('Error', proc.stderr.strip())}")
    return Path(info["Dir"])


def crds(addon: Addon) -> list[dict[str, Any]]:
    root = module_dir(addon.module, addon.version)
    docs: list[dict[str, Any]] = []
    for pattern in addon.crd_globs:
        files = sorted(root.glob(pattern))
        if not files:
            raise ModuleError(f"{addon.name}: no CRD files match {pattern} in {root}")
        for f in files:
            docs += [d for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") == "CustomResourceDefinition"]
    return docs

"""Container requests and limits (docs/design/upstream.md#gpu-maths).

- The GPU key of the vendor gets ``gpus`` as request and limit, always (overwriting the container's value).
- CPU and memory are filled only where the container has none: from ``spec.resources`` first, then the
  defaults, 4 CPU and 32Gi per GPU, or 2 CPU and 16Gi without GPUs. Explicit values win.
- Other keys of ``spec.resources`` (e.g. ephemeral-storage) fill in the same way; GPU keys there are ignored.

Choice where upstream is silent or unsafe: when only one of request/limit is known for a key, the other takes
the same value (upstream put the default in the missing one, which can give a limit below the request and a rejected
pod; docs/design/decisions.md D22).
"""

from __future__ import annotations

import copy
from typing import Any

from kaiwo.runtime.objects import Obj

GPU_KEYS = ("amd.com/gpu", "nvidia.com/gpu")
CPU_PER_GPU = 4
MEMORY_PER_GPU_GI = 32
CPU_NO_GPU = 2
MEMORY_NO_GPU_GI = 16


def default_cpu_memory(gpus: int) -> dict[str, str]:
    if gpus > 0:
        return {"cpu": str(CPU_PER_GPU * gpus), "memory": f"{MEMORY_PER_GPU_GI * gpus}Gi"}
    return {"cpu": str(CPU_NO_GPU), "memory": f"{MEMORY_NO_GPU_GI}Gi"}


def _norm(value: Any) -> Any:
    """Integer quantities as strings, so that output does not depend on how the user spelled them."""
    if isinstance(value, int):
        return str(value)
    return value


def fill_resources(
    container: Obj,
    *,
    gpus: int,
    resource_key: str,
    spec_resources: Obj | None,
    defaults: dict[str, str] | None,
) -> Obj:
    """A copy of ``container`` with filled resources. ``defaults`` None means: only ``spec.resources``."""
    out = copy.deepcopy(container)
    res = out["resources"] = dict(out.get("resources") or {})
    requests: Obj = dict(res.get("requests") or {})
    limits: Obj = dict(res.get("limits") or {})
    spec_req = {k: v for k, v in ((spec_resources or {}).get("requests") or {}).items() if k not in GPU_KEYS}
    spec_lim = {k: v for k, v in ((spec_resources or {}).get("limits") or {}).items() if k not in GPU_KEYS}
    keys = sorted(set(spec_req) | set(spec_lim) | set(defaults or {}))
    for key in keys:
        req = requests.get(key, spec_req.get(key))
        lim = limits.get(key, spec_lim.get(key))
        if req is None and lim is None:
            if not defaults or key not in defaults:
                continue
            req = lim = defaults[key]
        requests[key] = _norm(req if req is not None else lim)
        limits[key] = _norm(lim if lim is not None else req)
    if gpus > 0:
        requests[resource_key] = limits[resource_key] = str(gpus)
    res["requests"] = dict(sorted(requests.items()))
    res["limits"] = dict(sorted(limits.items()))
    if not res["requests"]:
        del res["requests"]
    if not res["limits"]:
        del res["limits"]
    if not res:
        del out["resources"]
    return out

"""KaiwoJob / KaiwoService -> the desired children, in apply order (storage first).

``desired_children(cr, facts)`` is the one entry point per kind: ``cr`` is the wire dict as the apiserver
stores it (defaults filled), ``facts`` what the controller read from the cluster. The result is ``Children``
(storage objects, then workload objects) or a ``TranslateError`` for status ERROR / ``Schedulable=False``.
Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from kaiwo.api.common import WorkloadSpec, gpu_resource_key
from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.api.kaiwojob import KaiwoJobSpec
from kaiwo.api.kaiwoservice import KaiwoServiceSpec
from kaiwo.runtime.objects import Obj
from kaiwo.translate import batchjob, deployment, gpus, rayjob, rayservice, shape, storage
from kaiwo.translate.meta import INVALID_SPEC, TranslateError
from kaiwo.translate.podtemplate import Workload


@dataclass(frozen=True)
class Facts:
    config: KaiwoConfigSpec = field(default_factory=KaiwoConfigSpec)
    gpu_pools: tuple[gpus.GpuPool, ...] = ()
    downloader_image: str = storage.DOWNLOADER_IMAGE


@dataclass(frozen=True)
class Children:
    storage: tuple[Obj, ...]  # PVCs, download ConfigMap and Job: applied first
    workload: tuple[Obj, ...]  # applied once downloads are done
    plan: gpus.Plan
    warnings: tuple[str, ...] = ()

    @property
    def objects(self) -> tuple[Obj, ...]:
        return self.storage + self.workload


def _error(exc: ValidationError) -> TranslateError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return TranslateError(INVALID_SPEC, f"spec.{loc}: {first['msg']}")


Built = tuple[list[Obj], list[str]] | TranslateError
# What a builder can raise on an input of a shape ``kaiwo.translate.shape`` does not check (a gap there):
# turned into InvalidSpec naming the embedded object, never an exception for the controller.
SHAPE_ERRORS = (AttributeError, TypeError, KeyError, ValueError, IndexError)


def _guarded(where: str, build: Callable[[], Built]) -> Built:
    try:
        return build()
    except SHAPE_ERRORS as exc:
        return TranslateError(INVALID_SPEC, f"{where}: cannot be translated ({type(exc).__name__}: {exc})")


def _validated(
    cr: Obj, model: type[KaiwoJobSpec] | type[KaiwoServiceSpec]
) -> KaiwoJobSpec | KaiwoServiceSpec | TranslateError:
    raw = cr.get("spec") or {}
    try:
        spec = model.model_validate(raw)
    except ValidationError as exc:
        return _error(exc)
    return shape.embedded_error(raw) or spec


def _workload(cr: Obj, spec: WorkloadSpec, facts: Facts, workload_type: str) -> Workload | TranslateError:
    config = facts.config
    key = gpu_resource_key(spec.gpu_vendor, config.nodes.default_gpu_resource_key)
    plan = gpus.plan(
        gpus=spec.gpus,
        replicas=spec.replicas,
        gpus_per_replica=spec.gpus_per_replica,
        vendor=spec.gpu_vendor,
        resource_key=key,
        pools=facts.gpu_pools,
    )
    if isinstance(plan, TranslateError):
        return plan
    queue = spec.cluster_queue or config.default_cluster_queue_name
    return Workload(cr=cr, spec=spec, config=config, workload_type=workload_type, plan=plan, queue=queue)


def _children(w: Workload, built: tuple[list[Obj], list[str]], facts: Facts) -> Children | TranslateError:
    stored = storage.build(w, facts.downloader_image)
    if isinstance(stored, TranslateError):
        return stored
    objs, warnings = built
    return Children(tuple(stored), tuple(objs), w.plan, tuple(warnings))


def kaiwojob_children(cr: Obj, facts: Facts) -> Children | TranslateError:
    spec = _validated(cr, KaiwoJobSpec)
    if isinstance(spec, TranslateError):
        return spec
    assert isinstance(spec, KaiwoJobSpec)
    w = _workload(cr, spec, facts, "job")
    if isinstance(w, TranslateError):
        return w
    if spec.uses_ray:
        built = _guarded("spec.rayJob", lambda: rayjob.build(w, spec.ray_job, spec.entrypoint))
    else:
        built = _guarded("spec.job", lambda: batchjob.build(w, spec.job, spec.entrypoint))
    if isinstance(built, TranslateError):
        return built
    return _children(w, built, facts)


def kaiwoservice_children(cr: Obj, facts: Facts) -> Children | TranslateError:
    spec = _validated(cr, KaiwoServiceSpec)
    if isinstance(spec, TranslateError):
        return spec
    assert isinstance(spec, KaiwoServiceSpec)
    w = _workload(cr, spec, facts, "service")
    if isinstance(w, TranslateError):
        return w
    if spec.uses_ray:
        built = _guarded("spec.rayService", lambda: rayservice.build(w, spec.ray_service, spec.serve_config_v2))
    else:
        built = _guarded("spec.deployment", lambda: deployment.build(w, spec.deployment, spec.entrypoint))
    if isinstance(built, TranslateError):
        return built
    return _children(w, built, facts)


def desired_children(cr: Obj, facts: Facts) -> Children | TranslateError:
    """Dispatch on ``cr["kind"]``."""
    if cr.get("kind") == "KaiwoService":
        return kaiwoservice_children(cr, facts)
    return kaiwojob_children(cr, facts)

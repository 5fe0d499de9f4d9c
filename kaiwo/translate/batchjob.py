"""KaiwoJob (not Ray) -> batch/v1 Job, and for multi-pod work a headless Service (upstream-kaiwo.md §2.5,
DECISIONS 5).

The Job: base ``spec.job.spec`` or a generated template; ``suspend: true`` (Kueue admits it by un-suspending);
``backoffLimit: 0`` (forced, with a warning); ``ttlSecondsAfterFinished`` 3600 unless given; the entrypoint as
container[0]'s command; the Kaiwo object's labels (but its queue label) and the system labels on the Job,
the Service and the template (``meta.child_labels``, so ``kubectl get jobs -l team=x`` finds the Job); queue and
priority labels on the Job only (Kueue reads them there; on the pods they would invite Kueue's pod
integration).

More than one replica (more GPUs than one node has, or explicit ``replicas``): an Indexed Job with
``parallelism = completions = replicas``, ``gpusPerReplica`` GPUs per pod, pods in the subdomain of a headless
Service named like the Job (``publishNotReadyAddresses`` so that rendezvous works before pods are ready), and
``WORLD_SIZE``, ``RANK`` (the completion index), ``MASTER_ADDR`` (pod 0: ``<name>-0.<name>``) and
``MASTER_PORT`` (29500, the PyTorch default). Choice: a batch job without GPUs but with ``replicas > 1`` is
also an Indexed Job (upstream ignored replicas for batch jobs).
"""

from __future__ import annotations

import copy

from kaiwo.translate.entrypoint import shell_command
from kaiwo.translate.meta import Obj, TranslateError, child_labels, child_meta, queue_labels
from kaiwo.translate.podtemplate import Role, Workload, mutate

DEFAULT_TTL_SECONDS = 3600
MASTER_PORT = 29500
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def headless_service(w: Workload) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_meta(w.cr, w.name, child_labels(w.cr, w.workload_type)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: w.name},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "protocol": "TCP", "targetPort": MASTER_PORT}],
        },
    }


def rendezvous_env(w: Workload) -> tuple[Obj, ...]:
    return (
        {"name": "WORLD_SIZE", "value": str(w.plan.replicas)},
        {
            "name": "RANK",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}},
        },
        {"name": "MASTER_ADDR", "value": f"{w.name}-0.{w.name}"},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
    )


def build(w: Workload, base_job: Obj | None, entrypoint: str | None) -> tuple[list[Obj], list[str]] | TranslateError:
    """([Service?, Job], warnings)."""
    warnings: list[str] = []
    spec: Obj = copy.deepcopy((base_job or {}).get("spec") or {})
    indexed = w.plan.indexed
    role = Role(
        where="spec.job.spec.template" if spec.get("template") else "the generated pod template",
        gpus=w.plan.gpus_per_replica,
        command=shell_command(entrypoint) if entrypoint else None,
        env=rendezvous_env(w) if indexed else (),
    )
    template = mutate(spec.get("template"), w, role)
    if isinstance(template, TranslateError):
        return template
    if spec.get("backoffLimit") not in (None, 0):
        warnings.append(
            f"spec.job.spec.backoffLimit: {spec['backoffLimit']} replaced by 0 (Kaiwo jobs are not "
            f"retried by the Job controller)"
        )
    spec["backoffLimit"] = 0
    spec.setdefault("ttlSecondsAfterFinished", DEFAULT_TTL_SECONDS)
    spec["suspend"] = True
    if indexed:
        spec["completionMode"] = "Indexed"
        spec["completions"] = spec["parallelism"] = w.plan.replicas
        template["spec"]["subdomain"] = w.name
    labels = {**child_labels(w.cr, w.workload_type), **queue_labels(w.queue, w.spec.priority_class)}
    spec["template"] = template
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": child_meta(w.cr, w.name, labels), "spec": spec}
    return ([headless_service(w), job] if indexed else [job]), warnings

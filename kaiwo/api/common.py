"""What KaiwoJob and KaiwoService share: the common spec fields, the status, and the status values.

Field names, defaults and status strings are upstream Kaiwo's (docs/design/upstream.md#common-spec, #status-machine).
Validation added on top (docs/design/decisions.md D1: a manifest that worked upstream keeps working; these reject input
upstream silently mis-handled):

- `gpuVendor` must be `amd` or `nvidia` in any letter case (upstream treated them case-insensitively and fell
  back to the KaiwoConfig GPU resource for anything else); the pattern rejects every other value.
- `gpus`, `gpusPerReplica` and `replicas` are never negative. When both `gpus` and `gpusPerReplica` are set,
  `gpus` must equal `replicas * gpusPerReplica` (upstream silently used the larger of the two; docs/design/decisions.md
  D17), and `gpusPerReplica` needs at least one replica.
- quantities, durations, label keys and values, queue names and volume names must be well formed.
- `duration` is a Go duration string (metav1.Duration).
- names (docs/design/decisions.md D2, ``workload_rules``): at most 63 characters; 54 when storage downloads are
  configured (the download Job `<name>-download` must fit a 63-character label); 47 when Ray is used (KubeRay appends
  suffixes); with Ray also a DNS-1035 label (KubeRay makes Services from it).

Condition types are upstream's plus `SpecApplied` (docs/design/decisions.md D3) and the ones explaining a child's
state: `Progressing` (a Deployment's rollout), `ServeReady` (Ray Serve) and `RayJobFinished` (KubeRay's outcome).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import ConfigDict, Field

from kaiwo.api.base import KaiwoModel, Rule, k8s
from kaiwo.api.core import Condition, EnvVar, LocalObjectReference, ResourceRequirements, conditions_field
from kaiwo.api.storage import StorageSpec
from kaiwo.api.types import DnsLabel, DnsSubdomain, Duration, LabelValue, QualifiedName, QueueName, Time

GPU_VENDOR_PATTERN = r"^([aA][mM][dD]|[nN][vV][iI][dD][iI][aA])$"


class WorkloadStatus(StrEnum):
    """The lifecycle phase of a KaiwoJob or KaiwoService (`status.status`)."""

    NEW = ""
    DOWNLOADING = "DOWNLOADING"
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    FAILED = "FAILED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"

    @property
    def terminal(self) -> bool:
        """Reconciling a terminal workload changes nothing."""
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """Children are created and kept up to date in these phases."""
        return self in (
            WorkloadStatus.NEW,
            WorkloadStatus.DOWNLOADING,
            WorkloadStatus.PENDING,
            WorkloadStatus.STARTING,
            WorkloadStatus.RUNNING,
        )


TERMINAL: Final = frozenset({WorkloadStatus.COMPLETE, WorkloadStatus.FAILED, WorkloadStatus.TERMINATED})
"""The phases a workload never leaves: its children are gone or finished, nothing is reconciled any more."""


class WorkloadCondition(StrEnum):
    """Condition types on KaiwoJob and KaiwoService."""

    SCHEDULABLE = "Schedulable"
    ADMITTED = "Admitted"
    DOWNLOAD_JOB_SUCCEEDED = "DownloadJobSucceeded"
    PVC_READY = "PvcReady"
    PREEMPTABLE = "Preemptable"
    WORKLOAD_TERMINATED_EARLY = "WorkloadTerminatedEarly"
    RESOURCE_UNDERUTILIZATION = "ResourceUnderutilization"
    SPEC_APPLIED = "SpecApplied"
    PROGRESSING = "Progressing"  # a Deployment's rollout (KaiwoService)
    SERVE_READY = "ServeReady"  # a Ray KaiwoService's Serve applications
    RAY_JOB_FINISHED = "RayJobFinished"  # a Ray KaiwoJob's outcome as KubeRay reports it


class WorkloadEvent(StrEnum):
    """Reasons of the Events on KaiwoJob and KaiwoService: one per phase transition, and a few more."""

    PENDING = "WorkloadPending"
    STARTING = "WorkloadStarting"
    RUNNING = "WorkloadRunning"
    COMPLETE = "WorkloadComplete"
    FAILED = "WorkloadFailed"
    ERROR = "WorkloadError"
    DOWNLOADING = "WorkloadDownloading"
    TERMINATION = "WorkloadTermination"  # TERMINATING: duration preemption or GPU underutilisation
    TERMINATED = "WorkloadTerminated"
    SPEC_NOT_APPLIED = "SpecNotApplied"  # a child was rejected (once per generation and reason)
    PREEMPTABLE = "Preemptable"  # the duration has passed
    GPU_UNDERUTILIZED = "GpuUnderutilized"
    GPU_UTILIZATION_NORMAL = "GpuUtilizationNormal"


class SecretVolume(KaiwoModel):
    """A Secret mounted as files into every container of the workload."""

    name: DnsLabel = Field(description="Name of the pod volume; unique within the pod.")
    secret_name: DnsSubdomain = Field(description="Name of the Secret to mount.")
    key: str | None = Field(
        default=None,
        description="Key of the Secret this volume is about (informational: the whole Secret is mounted; use `subPath` "
        "to mount a single key as a file).",
    )
    sub_path: str | None = Field(
        default=None,
        description="Mount only this key of the Secret, as a file at `mountPath`.",
    )
    mount_path: str = Field(min_length=1, description="Path in the containers where the Secret (or the file) appears.")


def _gpu_rules() -> list[Rule]:
    replicas = "(has(self.replicas) ? self.replicas : 1)"
    both = "has(self.gpusPerReplica) && self.gpusPerReplica > 0 && has(self.gpus) && self.gpus > 0"
    return [
        Rule(
            rule=f"!({both}) || self.gpus == {replicas} * self.gpusPerReplica",
            message="spec.gpus: when both gpus and gpusPerReplica are set, gpus must equal replicas * gpusPerReplica",
            field_path=".gpus",
        ),
        Rule(
            rule="!has(self.gpusPerReplica) || self.gpusPerReplica == 0 || !has(self.replicas) || self.replicas >= 1",
            message="spec.replicas: must be at least 1 when gpusPerReplica is set",
            field_path=".replicas",
        ),
    ]


class WorkloadSpec(KaiwoModel):
    """The fields every Kaiwo workload has (upstream `CommonMetaSpec`)."""

    model_config = ConfigDict(json_schema_extra=k8s(rules=_gpu_rules()))

    user: str | None = Field(
        default=None,
        description="Who owns the workload, usually an e-mail address. Kaiwo puts it, made label-safe, into the "
        "`kaiwo.silogen.ai/user` label of everything it creates (`test@amd.com` becomes `test-amd.com`), "
        "which is how `kaiwo` CLI commands find your workloads.",
    )
    pod_template_spec_labels: dict[str, LabelValue] | None = Field(
        default=None, description="Extra labels for the pods. Kaiwo's own `kaiwo.silogen.ai/*` labels win on conflict."
    )
    gpus: int = Field(
        default=0,
        ge=0,
        description="Total number of GPUs the workload needs. Kaiwo splits them into replicas that fit the GPU nodes "
        "(see `replicas` and `gpusPerReplica`) and exports `NUM_GPUS`, `NUM_REPLICAS` and "
        "`NUM_GPUS_PER_REPLICA` to the containers.",
    )
    gpu_vendor: str = Field(
        default="amd",
        pattern=GPU_VENDOR_PATTERN,
        description="GPU vendor: `amd` (GPU resource `amd.com/gpu`) or "
        "`nvidia` (`nvidia.com/gpu`), in any letter case. Also selects the node pools counted for `gpus`.",
    )
    gpu_models: list[str] | None = Field(
        default=None,
        description="Only run on nodes with one of these GPU models (node label `kaiwo/gpu-model`, "
        "see `kaiwo status amd` or `kaiwo status nvidia`). Takes effect when GPUs are requested.",
    )
    version: str | None = Field(
        default=None,
        description="Free-form version of the workload, for your own bookkeeping.",
    )
    replicas: int = Field(
        default=1,
        ge=0,
        description="Number of replicas (pods, or Ray workers). With `gpus` set and no `gpusPerReplica`, Kaiwo "
        "computes the replicas from the GPU nodes instead.",
    )
    gpus_per_replica: int | None = Field(
        default=None,
        ge=0,
        description="GPUs per replica. Set it together with `replicas` to choose the split yourself; if `gpus` is also "
        "set it must equal `replicas * gpusPerReplica`.",
    )
    duration: Duration | None = Field(
        default=None,
        description="Expected run time as a Go duration (`30m`, `4h`, `1h30m`). A running workload past it becomes "
        "preemptable and is stopped when other GPU work of the same vendor and queue is waiting.",
    )
    preferred_topology_label: QualifiedName | None = Field(
        default=None,
        description="Try to place all pods within one topology domain of this level, e.g. "
        "`kaiwo/topology-rack` (Kueue topology-aware scheduling; falls back to larger domains).",
    )
    required_topology_label: QualifiedName | None = Field(
        default=None,
        description="Place all pods within one topology domain of this level or do not admit the workload; takes "
        "precedence over `preferredTopologyLabel`.",
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description="Default requests and limits for every container. They only fill in values the "
        "container does not set. GPU resources here are ignored: GPUs come from `gpus`/`gpusPerReplica`. "
        "Without any, containers get 4 CPU and 32Gi memory per GPU (2 CPU and 16Gi without GPUs).",
    )
    image: str | None = Field(
        default=None,
        description="Container image for containers that name none. Ray workloads default to KaiwoConfig "
        "`spec.ray.defaultRayImage`; other workloads must set an image somewhere.",
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, description="Secrets used to pull the images, added to every pod."
    )
    env: list[EnvVar] | None = Field(
        default=None, description="Environment variables added to every container (and to the download job)."
    )
    secret_volumes: list[SecretVolume] | None = Field(
        default=None, description="Secrets mounted as files into every container."
    )
    ray: bool = Field(
        default=False,
        description="Run on Ray: a RayJob (KaiwoJob) or a RayService (KaiwoService) instead of a batch Job or "
        "Deployment. Setting `rayJob` or `rayService` also means Ray.",
    )
    storage: StorageSpec | None = Field(
        default=None,
        description="Persistent volumes for data and the Hugging Face cache, and what to download into them before the "
        "workload starts.",
    )
    dangerous: bool = Field(
        default=False,
        description="When `false`, pods Kaiwo generates run as user, group and fsGroup 1000. Set `true` to run as the "
        "image's user (e.g. root). Pod templates you supply are never changed.",
    )
    cluster_queue: QueueName | None = Field(
        default=None,
        description="Kueue ClusterQueue to queue in (default: KaiwoConfig `spec.defaultClusterQueueName`, `kaiwo`). "
        "Kaiwo uses a LocalQueue of the same name in the workload's namespace.",
    )
    priority_class: QueueName | None = Field(
        default=None,
        description="Kueue WorkloadPriorityClass of the workload (see KaiwoQueueConfig "
        "`spec.workloadPriorityClasses`).",
    )


class WorkloadStatusFields(KaiwoModel):
    """What Kaiwo reports about a workload (upstream `CommonStatusSpec`)."""

    start_time: Time | None = Field(default=None, description="When the workload started running.")
    completion_time: Time | None = Field(
        default=None,
        description="When the workload reached COMPLETE, FAILED or TERMINATED (docs/design/decisions.md D4).",
    )
    conditions: list[Condition] | None = conditions_field(
        "Details of the workload's state: Schedulable, Admitted, DownloadJobSucceeded, PvcReady, Preemptable, "
        "WorkloadTerminatedEarly, ResourceUnderutilization, SpecApplied."
    )
    status: WorkloadStatus | None = Field(
        default=None,
        description="Phase: empty (new), DOWNLOADING, PENDING, STARTING, RUNNING, COMPLETE, ERROR, FAILED, TERMINATING "
        "or TERMINATED.",
    )
    duration: int | None = Field(
        default=None,
        ge=0,
        description="Seconds the workload has been running since `startTime`.",
        json_schema_extra=k8s(int64=True),
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The `metadata.generation` this status was computed from.",
        json_schema_extra=k8s(int64=True),
    )


def workload_rules(ray_field: str, noun: str) -> tuple[Rule, ...]:
    """Name rules of a workload kind (docs/design/decisions.md D2): children and labels carry the name."""
    name = "self.metadata.name"
    ray = f"has(self.spec) && ((has(self.spec.ray) && self.spec.ray) || has(self.spec.{ray_field}))"
    s = "self.spec.storage"
    data = f"{s}.data"
    dl = f"{data}.download"
    object_downloads = (
        f"has({data}) && has({data}.storageSize) && has({dl}) && ("
        + " || ".join(f"(has({dl}.{k}) && size({dl}.{k}) > 0)" for k in ("s3", "gcs", "azureBlob", "git"))
        + ")"
    )
    hf_downloads = (
        f"has({s}.huggingFace) && has({s}.huggingFace.preCacheRepos) && size({s}.huggingFace.preCacheRepos) > 0"
    )
    downloads = (
        f"has(self.spec) && has({s}) && has({s}.storageEnabled) && {s}.storageEnabled "
        f"&& (({object_downloads}) || ({hf_downloads}))"
    )
    too_long = "metadata.name: must be at most {n} characters{when}: {why}"
    rules = [
        (63, "true", "", "Kaiwo copies the name into labels and child object names, which allow 63"),
        (
            54,
            downloads,
            " when storage downloads are configured",
            "the download Job is named <name>-download and Job names must fit in a 63-character label",
        ),
        (
            47,
            ray,
            f" when Ray is used (spec.ray or spec.{ray_field})",
            "KubeRay appends suffixes to the names of the objects it creates",
        ),
    ]
    out = []
    for n, when, when_text, why in rules:
        message = too_long.format(n=n, when=when_text, why=why)
        cond = f"size({name}) <= {n}" if when == "true" else f"!({when}) || size({name}) <= {n}"
        out.append(Rule(rule=cond, message=message, field_path=".metadata.name"))
    out.append(
        Rule(
            rule=f"!({ray}) || {name}.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            message=f"metadata.name: must start with a lowercase letter and contain only lowercase letters, digits and "
            f"'-' when Ray is used: KubeRay creates Services named after the {noun}",
            field_path=".metadata.name",
        )
    )
    return tuple(out)


def gpu_resource_key(vendor: str, fallback: str) -> str:
    """The GPU resource name of a vendor (`amd.com/gpu`, `nvidia.com/gpu`), else ``fallback``."""
    return {"amd": "amd.com/gpu", "nvidia": "nvidia.com/gpu"}.get(vendor.lower(), fallback)

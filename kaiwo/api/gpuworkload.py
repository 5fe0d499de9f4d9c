"""GpuWorkload (`kaiwo.silogen.ai/v1alpha1`, namespaced): Kaiwo's record of one GPU workload it watches for
idle-GPU preemption (created by the operator, not by users).

Shapes as upstream (docs/design/upstream.md#gpuworkload). Its name is `<lowercase owner kind>-<owner name>-<first 8
characters of the owner UID>`; it has no ownerReference, so it outlives the workload as an audit record.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field

from kaiwo.api.base import CrdInfo, KaiwoModel, PrinterColumn
from kaiwo.api.config import GpuAggregationPolicy, GpuPreemptionPolicy
from kaiwo.api.core import Condition, ObjectMeta, conditions_field
from kaiwo.api.groups import KAIWO_API, KAIWO_GROUP, VERSION, KaiwoApiVersion
from kaiwo.api.types import Duration, Time

API_VERSION: Final = KAIWO_API
KIND: Final = "GpuWorkload"

Percent = Annotated[float, Field(ge=0, le=100)]


class GpuWorkloadPhase(StrEnum):
    """The lifecycle phase of a tracked GPU workload."""

    NEW = ""
    PENDING_GPU = "PendingGpu"
    PENDING_OTHER = "PendingOther"
    ACTIVE = "Active"
    IDLE = "Idle"
    PREEMPTING = "Preempting"
    PREEMPTED = "Preempted"
    DELETED = "Deleted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


class GpuWorkloadCondition(StrEnum):
    """Condition types on a GpuWorkload."""

    PREEMPTION_FAILED = "PreemptionFailed"  # the root owner may not be deleted (RBAC); not picked until Active again


class GpuWorkloadEvent(StrEnum):
    """Reasons of the Events on a GpuWorkload."""

    IDLE = "WorkloadIdle"
    ACTIVE = "WorkloadActive"
    PENDING_GPU = "WorkloadPendingGpu"
    PENDING = "WorkloadPending"  # PendingOther
    DELETED = "WorkloadDeleted"  # the tracked workload is gone
    PREEMPTION_STARTED = "PreemptionStarted"
    PREEMPTION_FAILED = "PreemptionFailed"
    PREEMPTED = "WorkloadPreempted"
    INVALID_ANNOTATION = "InvalidAnnotation"


TERMINAL_PHASES: Final = frozenset({GpuWorkloadPhase.PREEMPTED, GpuWorkloadPhase.DELETED})
"""A record in these phases tracks nothing any more; it is deleted once its ``ttlAfterFinished`` has passed."""


class WorkloadReference(KaiwoModel):
    """The root owner of the GPU pods (the object that is deleted when the workload is preempted)."""

    api_version: str = Field(min_length=1, description="API version of the owner, e.g. batch/v1.")
    kind: str = Field(min_length=1, description="Kind of the owner, e.g. Job or KaiwoJob.")
    name: str = Field(min_length=1, description="Name of the owner.")
    uid: str = Field(min_length=1, description="UID of the owner (a re-created owner is a different workload).")


class GpuWorkloadSpec(KaiwoModel):
    """The tracked workload and its preemption settings (from the `kaiwo.silogen.ai/gpu-preemption.*`
    annotations of the owner or its namespace)."""

    workload_ref: WorkloadReference = Field(description="The tracked workload.")
    gpu_resources: dict[str, Annotated[int, Field(ge=0)]] = Field(
        description='GPUs requested by all its pods, by resource name, e.g. `{"amd.com/gpu": 4}`.'
    )
    utilization_threshold: Percent | None = Field(
        default=None,
        description="Utilisation (percent) below which the workload is idle (default: KaiwoConfig, then 5).",
    )
    grace_period: Duration | None = Field(
        default=None,
        description="How long it must be idle before it may be preempted (default: KaiwoConfig, then 10m).",
    )
    preemption_policy: GpuPreemptionPolicy | None = Field(
        default=None, description="OnPressure (only when other work waits for these GPUs) or Always."
    )
    aggregation_policy: GpuAggregationPolicy | None = Field(
        default=None, description="How the utilisations of its pods are combined: Min, Max (default) or Avg."
    )
    ttl_after_finished: Duration | None = Field(
        default=None,
        description="How long this record is kept after Preempted or Deleted (`0`: forever; default 24h).",
    )


class GpuMetric(KaiwoModel):
    """A utilisation sample of one GPU."""

    gpu_id: str | None = Field(default=None, description="GPU index or ID on the node.")
    utilization: Percent = Field(description="Utilisation in percent.")
    last_update: Time = Field(description="When the sample was taken.")


class TrackedPod(KaiwoModel):
    """A pod of the workload and its GPUs' utilisation."""

    pod_name: str = Field(min_length=1, description="Name of the pod.")
    gpu_metrics: list[GpuMetric] | None = Field(default=None, description="Latest sample per GPU.")


class GpuWorkloadStatus(KaiwoModel):
    """What Kaiwo observed about the workload."""

    phase: GpuWorkloadPhase | None = Field(
        default=None, description="PendingGpu, PendingOther, Active, Idle, Preempting, Preempted or Deleted."
    )
    tracked_pods: list[TrackedPod] | None = Field(
        default=None,
        description="The workload's pods and their GPU samples.",
    )
    aggregated_utilization: Percent | None = Field(default=None, description="Utilisation of the workload (percent).")
    last_metrics_update: Time | None = Field(default=None, description="When samples were last written.")
    idle_since: Time | None = Field(default=None, description="When the workload became idle.")
    finished_at: Time | None = Field(default=None, description="When it reached Preempted or Deleted.")
    owner_chain: str | None = Field(
        default=None, description='How a pod leads to the workload, e.g. "Pod/x -> Job/y -> KaiwoJob/z".'
    )
    preempted_at: Time | None = Field(default=None, description="When preemption started.")
    preempted_for: str | None = Field(default=None, description="The pending GpuWorkload this one made room for.")
    preemption_reason: str | None = Field(default=None, description="Why it was preempted.")
    conditions: list[Condition] | None = conditions_field("Details of the tracked workload's state.")


class GpuWorkload(KaiwoModel):
    """A GPU workload of any kind (Job, Deployment, KaiwoJob, ...) that Kaiwo watches for idle GPUs, and may
    preempt, because it opted in with `kaiwo.silogen.ai/gpu-preemption.*` annotations. Created and updated by
    Kaiwo; kept after the workload is gone, as a record."""

    api_version: KaiwoApiVersion = API_VERSION
    kind: Literal["GpuWorkload"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: GpuWorkloadSpec = Field(description="The tracked workload and its settings.")
    status: GpuWorkloadStatus | None = Field(default=None, description="Set by Kaiwo.")


CRD = CrdInfo(
    model=GpuWorkload,
    group=KAIWO_GROUP,
    version=VERSION,
    kind=KIND,
    plural="gpuworkloads",
    singular="gpuworkload",
    scope="Namespaced",
    short_names=("gpuw",),
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase"),
        PrinterColumn("Utilization", "number", ".status.aggregatedUtilization", format="float"),
        PrinterColumn("Idle Since", "date", ".status.idleSince"),
        PrinterColumn("Owner", "string", ".spec.workloadRef.kind"),
        PrinterColumn("OwnerName", "string", ".spec.workloadRef.name"),
    ),
)

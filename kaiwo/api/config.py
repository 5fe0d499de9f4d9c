"""KaiwoConfig (`config.kaiwo.silogen.ai/v1alpha1`, cluster-scoped singleton `kaiwo`, no status): the
operator settings that can change while it runs (read on every reconcile).

Every section defaults to `{}` and every setting has its upstream default (docs/design/upstream.md#kaiwoconfig), so an
empty `spec` means "all defaults". Added checks: the object must be named `kaiwo`; quantities, durations,
resource and label keys must be well formed; percentages are 0-100.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

from pydantic import Field

from kaiwo.api.base import CrdInfo, KaiwoModel, Rule, crd_default
from kaiwo.api.core import ObjectMeta
from kaiwo.api.groups import CONFIG_GROUP, KAIWO_CONFIG_API, VERSION, KaiwoConfigApiVersion
from kaiwo.api.types import DnsLabel, DnsSubdomain, Duration, QualifiedName, QuantityString, QueueName

API_VERSION: Final = KAIWO_CONFIG_API
KIND: Final = "KaiwoConfig"
SINGLETON_NAME = "kaiwo"


class KaiwoRayConfig(KaiwoModel):
    """Settings for Ray workloads."""

    default_ray_image: str = Field(
        default="ghcr.io/silogen/rocm-ray:6.4",
        min_length=1,
        description="Image of Ray containers that name none.",
    )
    head_pod_memory: QuantityString = Field(
        default="16Gi",
        description="Memory request and limit of the Ray head pod, unless the workload sets one.",
    )


class KaiwoStorageConfig(KaiwoModel):
    """Defaults for workload storage (`spec.storage` of KaiwoJob and KaiwoService)."""

    default_storage_class: str | None = Field(
        default=None,
        description="StorageClass of workload PVCs that name none (default: the cluster's default class).",
    )
    default_data_mount_path: str = Field(
        default="/workload",
        min_length=1,
        description="Mount path of the data volume when `storage.data.mountPath` is not set.",
    )
    default_hf_mount_path: str = Field(
        default="/hf_cache",
        min_length=1,
        description="Mount path (and `HF_HOME`) of the Hugging Face cache when `storage.huggingFace.mountPath` is not "
        "set.",
    )
    downloader_image: str | None = Field(
        default=None,
        min_length=1,
        description="Image of the download jobs (`python -m kaiwo.downloader`), e.g. a mirror for air-gapped "
        "clusters. Default: the operator's `--downloader-image` (the operator's own image). Applies to download "
        "jobs created after the change; existing ones are left as they are.",
    )


class KaiwoNodeConfig(KaiwoModel):
    """Settings for GPU nodes."""

    default_gpu_resource_key: QualifiedName = Field(
        default="amd.com/gpu",
        description="GPU resource name used when a workload's `gpuVendor` is neither amd nor nvidia.",
    )
    default_gpu_taint_key: QualifiedName = Field(
        default="kaiwo.silogen.ai/gpu",
        description="Key of the taint put on GPU nodes (and tolerated by GPU pods) when `addTaintsToGpuNodes` is set.",
    )
    exclude_master_nodes_from_node_pools: bool = Field(
        default=False,
        description="Leave control-plane nodes out of the discovered node pools.",
    )
    add_taints_to_gpu_nodes: bool = Field(
        default=False,
        description="Taint GPU nodes so that only GPU workloads run there.",
    )


class KaiwoSchedulingConfig(KaiwoModel):
    """Settings for scheduling workloads."""

    kube_scheduler_name: str = Field(
        default="kaiwo-scheduler",
        min_length=1,
        description="Scheduler of the pods Kaiwo generates (`kaiwo-scheduler` packs GPUs onto as few nodes as "
        "possible).",
    )
    pending_threshold_for_preemption: Duration = Field(
        default="5m",
        description="How long a GPU workload must wait before it counts as demand that stops workloads "
        "running past their `duration`.",
    )


class MonitoringProfile(StrEnum):
    """What resource monitoring watches."""

    GPU = "gpu"


class KaiwoResourceMonitoringConfig(KaiwoModel):
    """Settings for GPU utilisation monitoring of Kaiwo workloads. Monitoring itself is switched on, and its
    metrics endpoint and polling interval set, by operator environment variables
    (`RESOURCE_MONITORING_ENABLED`, `RESOURCE_MONITORING_METRICS_ENDPOINT`, `RESOURCE_MONITORING_POLLING_INTERVAL`)."""

    low_utilization_threshold: float = Field(
        default=1,
        ge=0,
        le=100,
        description="GPU utilisation (percent) below which a workload counts as underutilising.",
    )
    target_namespaces: list[DnsLabel] | None = Field(
        default=None,
        description="Only watch these namespaces (default: all).",
    )
    profile: MonitoringProfile = Field(default=MonitoringProfile.GPU, description="What to monitor (only `gpu`).")
    terminate_underutilized: bool = Field(
        default=False,
        description="Stop workloads that stay underutilised for `terminateUnderutilizedAfter`.",
    )
    terminate_underutilized_after: str = Field(
        default="24h",
        pattern=r"^([0-9]+(s|m|h))+$",
        description="How long a workload must stay underutilised before it is stopped, e.g. `30m` or `24h`.",
    )


class GpuPreemptionPolicy(StrEnum):
    """When an idle GPU workload may be preempted."""

    ON_PRESSURE = "OnPressure"
    ALWAYS = "Always"


class GpuAggregationPolicy(StrEnum):
    """How the utilisation of a workload's pods is combined."""

    MIN = "Min"
    MAX = "Max"
    AVG = "Avg"


class KaiwoGpuPreemptionConfig(KaiwoModel):
    """Cluster defaults for idle-GPU preemption (GpuWorkload). Unset values fall back to the operator's
    `GPU_PREEMPTION_DEFAULT_*` environment variables, then to 5 %, 10m, OnPressure, Max and 24h."""

    default_threshold: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="GPU utilisation (percent) below which a workload is idle.",
    )
    default_grace_period: Duration | None = Field(
        default=None,
        description="How long a workload must be idle before it may be preempted.",
    )
    default_policy: GpuPreemptionPolicy | None = Field(
        default=None,
        description="OnPressure (only when other work waits for GPUs) or Always.",
    )
    default_aggregation: GpuAggregationPolicy | None = Field(
        default=None,
        description="How pod utilisations are combined: Min, Max or Avg.",
    )
    default_ttl: Duration | None = Field(
        default=None,
        alias="defaultTTL",
        description="How long finished GpuWorkload records are kept (`0` keeps them forever).",
    )


class KaiwoConfigSpec(KaiwoModel):
    """Operator settings; every field has a default."""

    ray: KaiwoRayConfig = Field(
        default_factory=KaiwoRayConfig,
        description="Ray settings.",
        json_schema_extra=crd_default({}),
    )
    storage: KaiwoStorageConfig = Field(
        default_factory=KaiwoStorageConfig,
        description="Storage defaults.",
        json_schema_extra=crd_default({}),
    )
    nodes: KaiwoNodeConfig = Field(
        default_factory=KaiwoNodeConfig,
        description="GPU node settings.",
        json_schema_extra=crd_default({}),
    )
    scheduling: KaiwoSchedulingConfig = Field(
        default_factory=KaiwoSchedulingConfig,
        description="Scheduling settings.",
        json_schema_extra=crd_default({}),
    )
    resource_monitoring: KaiwoResourceMonitoringConfig = Field(
        default_factory=KaiwoResourceMonitoringConfig,
        description="GPU utilisation monitoring.",
        json_schema_extra=crd_default({}),
    )
    gpu_preemption: KaiwoGpuPreemptionConfig | None = Field(default=None, description="Idle-GPU preemption defaults.")
    default_cluster_queue_name: QueueName = Field(
        default="kaiwo", description="ClusterQueue of workloads that name none."
    )
    default_cluster_queue_cohort_name: DnsSubdomain = Field(
        default="kaiwo",
        description="Cohort of the ClusterQueue Kaiwo generates.",
    )
    dynamically_update_default_cluster_queue: bool = Field(
        default=False,
        description="Re-derive the default ClusterQueue and flavors from the nodes on every change "
        "(nodes added, removed, cordoned).",
    )
    default_topology_name: DnsSubdomain = Field(
        default="default-topology",
        description="Topology the generated flavors refer to.",
    )


class KaiwoConfig(KaiwoModel):
    """Kaiwo's runtime settings. There is one, named `kaiwo`; Kaiwo creates an empty one (all defaults) at
    start-up if it is missing, and picks up changes without a restart."""

    api_version: KaiwoConfigApiVersion = API_VERSION
    kind: Literal["KaiwoConfig"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: KaiwoConfigSpec = Field(
        default_factory=KaiwoConfigSpec,
        description="The settings.",
        json_schema_extra=crd_default({}),
    )


CRD = CrdInfo(
    model=KaiwoConfig,
    group=CONFIG_GROUP,
    version=VERSION,
    kind=KIND,
    plural="kaiwoconfigs",
    singular="kaiwoconfig",
    scope="Cluster",
    short_names=("kcfg",),
    status_subresource=False,
    rules=(
        Rule(
            rule=f"self.metadata.name == '{SINGLETON_NAME}'",
            message=f"metadata.name: must be '{SINGLETON_NAME}': KaiwoConfig is a cluster-wide singleton "
            f"and Kaiwo only reads the one named '{SINGLETON_NAME}'",
            field_path=".metadata.name",
        ),
    ),
)

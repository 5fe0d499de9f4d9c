"""KaiwoQueueConfig (`kaiwo.silogen.ai/v1alpha1`, cluster-scoped singleton `kaiwo`): the Kueue setup Kaiwo owns.

The ClusterQueue spec is the subset of Kueue's `ClusterQueueSpec` (v1beta1, as of Kueue 0.12) that upstream
Kaiwo exposes, with Kueue's own defaults, limits and rules; priority classes and topologies are Kueue objects
(`metadata.name` plus their fields). Added checks (docs/design/decisions.md D33): the object must be named `kaiwo`;
names are unique within each list; topology levels are unique, `kubernetes.io/hostname` may only be the last level
(Kueue's rules, surfaced here instead of when Kaiwo creates the Topology).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

from pydantic import ConfigDict, Field

from kaiwo.api.base import CrdInfo, KaiwoModel, PrinterColumn, Rule, crd_default, k8s
from kaiwo.api.core import Condition, LabelSelector, ObjectMeta, Taint, Toleration, conditions_field
from kaiwo.api.groups import KAIWO_API, KAIWO_GROUP, VERSION, KaiwoApiVersion
from kaiwo.api.types import DnsLabel, DnsSubdomain, LabelValue, QualifiedName, Quantity, QueueName

API_VERSION: Final = KAIWO_API
KIND: Final = "KaiwoQueueConfig"
SINGLETON_NAME = "kaiwo"
HOSTNAME_LABEL = "kubernetes.io/hostname"


class ResourceQuota(KaiwoModel):
    """The quota of one resource in one flavor."""

    name: QualifiedName = Field(description="Resource name, e.g. cpu, memory, amd.com/gpu.")
    nominal_quota: Quantity = Field(description="How much of the resource the ClusterQueue may use.")
    borrowing_limit: Quantity | None = Field(
        default=None,
        description="How much more it may borrow from other ClusterQueues of its cohort (default: no limit).",
    )
    lending_limit: Quantity | None = Field(
        default=None, description="How much of its unused quota it may lend to its cohort (default: all of it)."
    )


class FlavorQuotas(KaiwoModel):
    """The quotas a flavor provides, in the order of the group's `coveredResources`."""

    name: DnsSubdomain = Field(description="Name of the ResourceFlavor.")
    resources: list[ResourceQuota] = Field(
        min_length=1,
        max_length=16,
        description="One quota per covered resource.",
        json_schema_extra=k8s(list_type="map", list_map_keys=["name"]),
    )


class ResourceGroup(KaiwoModel):
    """Resources that are quota'd together, and the flavors that provide them."""

    model_config = ConfigDict(
        json_schema_extra=k8s(
            rules=[
                Rule(
                    rule="self.flavors.all(x, size(x.resources) == size(self.coveredResources))",
                    message="flavors must have the same number of resources as the coveredResources",
                )
            ]
        )
    )

    covered_resources: list[str] = Field(
        min_length=1, max_length=16, description="Resources of this group, e.g. [cpu, memory, amd.com/gpu]."
    )
    flavors: list[FlavorQuotas] = Field(
        min_length=1,
        max_length=16,
        description="Flavors providing the resources, in order of preference.",
        json_schema_extra=k8s(list_type="map", list_map_keys=["name"]),
    )


class QueueingStrategy(StrEnum):
    """How workloads are ordered in the queue."""

    STRICT_FIFO = "StrictFIFO"
    BEST_EFFORT_FIFO = "BestEffortFIFO"


class StopPolicy(StrEnum):
    """Whether the queue admits work."""

    NONE = "None"
    HOLD = "Hold"
    HOLD_AND_DRAIN = "HoldAndDrain"


class WhenCanBorrow(StrEnum):
    """Borrow in the current flavor, or try the next flavor first."""

    BORROW = "Borrow"
    TRY_NEXT_FLAVOR = "TryNextFlavor"


class WhenCanPreempt(StrEnum):
    """Preempt in the current flavor, or try the next flavor first."""

    PREEMPT = "Preempt"
    TRY_NEXT_FLAVOR = "TryNextFlavor"


class FlavorFungibility(KaiwoModel):
    """Whether a workload tries the next flavor before borrowing or preempting."""

    when_can_borrow: WhenCanBorrow = Field(default=WhenCanBorrow.BORROW, description="Borrow or TryNextFlavor.")
    when_can_preempt: WhenCanPreempt = Field(
        default=WhenCanPreempt.TRY_NEXT_FLAVOR,
        description="Preempt or TryNextFlavor.",
    )


class BorrowPolicy(StrEnum):
    """Preemption while borrowing."""

    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"


class ReclaimPolicy(StrEnum):
    """Preemption to reclaim nominal quota lent to the cohort."""

    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"
    ANY = "Any"


class WithinQueuePolicy(StrEnum):
    """Preemption inside the ClusterQueue."""

    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"
    LOWER_OR_NEWER_EQUAL_PRIORITY = "LowerOrNewerEqualPriority"


class BorrowWithinCohort(KaiwoModel):
    """Preemption in other ClusterQueues of the cohort while borrowing."""

    policy: BorrowPolicy = Field(default=BorrowPolicy.NEVER, description="Never or LowerPriority.")
    max_priority_threshold: int | None = Field(
        default=None,
        description="Only preempt workloads with at most this priority.",
        json_schema_extra=k8s(int32=True),
    )


class Preemption(KaiwoModel):
    """When workloads of this ClusterQueue may preempt others."""

    model_config = ConfigDict(
        json_schema_extra=k8s(
            rules=[
                Rule(
                    rule="!(self.reclaimWithinCohort == 'Never' && has(self.borrowWithinCohort) "
                    "&& self.borrowWithinCohort.policy != 'Never')",
                    message="reclaimWithinCohort=Never and borrowWithinCohort.Policy!=Never",
                )
            ]
        )
    )

    reclaim_within_cohort: ReclaimPolicy = Field(
        default=ReclaimPolicy.NEVER,
        description="Never, LowerPriority or Any.",
    )
    borrow_within_cohort: BorrowWithinCohort = Field(
        default_factory=BorrowWithinCohort, description="Preemption while borrowing.", json_schema_extra=crd_default({})
    )
    within_cluster_queue: WithinQueuePolicy = Field(
        default=WithinQueuePolicy.NEVER, description="Never, LowerPriority or LowerOrNewerEqualPriority."
    )


class AdmissionCheckStrategyRule(KaiwoModel):
    """An admission check and the flavors it applies to."""

    name: str = Field(min_length=1, description="Name of the AdmissionCheck.")
    on_flavors: list[DnsSubdomain] | None = Field(default=None, description="Flavors it runs for (default: all).")


class AdmissionChecksStrategy(KaiwoModel):
    """Admission checks per flavor."""

    admission_checks: list[AdmissionCheckStrategyRule] | None = Field(default=None, description="The checks.")


class FairSharing(KaiwoModel):
    """Fair-sharing weight of the ClusterQueue in its cohort."""

    weight: Quantity = Field(default=1, description="Larger weights get a larger share of unused cohort resources.")


class ClusterQueueSpec(KaiwoModel):
    """The Kueue ClusterQueue spec (the subset upstream Kaiwo exposes)."""

    resource_groups: list[ResourceGroup] | None = Field(
        default=None,
        max_length=16,
        description="Quotas: groups of resources and the flavors that provide them.",
        json_schema_extra=k8s(list_type="atomic"),
    )
    cohort: DnsSubdomain | None = Field(default=None, description="Cohort whose ClusterQueues lend and borrow quota.")
    queueing_strategy: QueueingStrategy = Field(
        default=QueueingStrategy.BEST_EFFORT_FIFO,
        description="StrictFIFO, or BestEffortFIFO (older workloads that do not fit do not block newer ones that do).",
    )
    namespace_selector: LabelSelector | None = Field(
        default=None, description="Namespaces allowed to submit to this queue; `{}` allows all."
    )
    flavor_fungibility: FlavorFungibility = Field(
        default_factory=FlavorFungibility,
        description="Try the next flavor before borrowing or preempting?",
        json_schema_extra=crd_default({}),
    )
    preemption: Preemption = Field(
        default_factory=Preemption,
        description="Preemption policies.",
        json_schema_extra=crd_default({}),
    )
    admission_checks: list[str] | None = Field(default=None, description="AdmissionChecks every workload must pass.")
    admission_checks_strategy: AdmissionChecksStrategy | None = Field(
        default=None, description="AdmissionChecks per flavor (instead of admissionChecks)."
    )
    stop_policy: StopPolicy = Field(
        default=StopPolicy.NONE,
        description="None, Hold (admit nothing new) or HoldAndDrain (also evict admitted workloads).",
    )
    fair_sharing: FairSharing | None = Field(default=None, description="Fair-sharing weight.")


class ClusterQueue(KaiwoModel):
    """A Kueue ClusterQueue Kaiwo creates and keeps in sync."""

    name: QueueName = Field(
        description="Name of the ClusterQueue (and of its LocalQueues); workloads name it in `spec.clusterQueue`.",
    )
    namespaces: list[DnsLabel] | None = Field(
        default=None,
        description="Namespaces where Kaiwo creates a LocalQueue for it. Without it, Kaiwo creates the "
        "LocalQueue in a workload's namespace when the first workload uses the queue.",
        json_schema_extra=k8s(list_type="set"),
    )
    spec: ClusterQueueSpec | None = Field(
        default=None,
        description="The Kueue ClusterQueue spec (quotas, cohort, preemption...).",
    )


class ResourceFlavor(KaiwoModel):
    """A Kueue ResourceFlavor: a kind of node (e.g. one GPU model) that quotas are given for."""

    name: DnsSubdomain = Field(description='Name of the flavor, e.g. "amd-mi300x-8gpu".')
    node_labels: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=10,
        description="Labels of the nodes of this flavor, e.g. `{kaiwo/nodepool: amd-mi300x}`. A flavor without "
        '`topologyName` also gets `kaiwo/worker: "true"`.',
    )
    taints: list[Taint] | None = Field(default=None, max_length=5, description="Taints of the flavor's nodes.")
    tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=5,
        description="Tolerations Kueue adds to pods admitted in this flavor.",
    )
    topology_name: DnsSubdomain | None = Field(
        default=None,
        description="Topology (see `topologies`) of these nodes, for topology-aware scheduling.",
    )


class EmbeddedMeta(KaiwoModel):
    """Metadata of an embedded Kueue object."""

    name: DnsSubdomain = Field(description="Name of the object.")
    labels: dict[str, LabelValue] | None = Field(default=None, description="Labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations.")


class WorkloadPriorityClass(KaiwoModel):
    """A Kueue WorkloadPriorityClass; workloads use it through `spec.priorityClass`."""

    api_version: str | None = Field(default=None, description="kueue.x-k8s.io/v1beta1 (optional).")
    kind: str | None = Field(default=None, description="WorkloadPriorityClass (optional).")
    metadata: EmbeddedMeta = Field(description="`name` is the name workloads use.")
    value: int = Field(
        description="Priority; higher values are admitted and kept first.",
        json_schema_extra=k8s(int32=True),
    )
    description: str | None = Field(default=None, description="When to use this class.")


class TopologyLevel(KaiwoModel):
    """One level of a topology."""

    node_label: QualifiedName = Field(description="Node label that identifies the domain at this level.")


def _level_rules() -> list[Rule]:
    return [
        Rule(
            rule="self.all(l, self.exists_one(m, m.nodeLabel == l.nodeLabel))",
            message="levels: each nodeLabel may appear only once",
        ),
        Rule(
            rule=f"self.all(l, l.nodeLabel != '{HOSTNAME_LABEL}') || self[size(self) - 1].nodeLabel == "
            f"'{HOSTNAME_LABEL}'",
            message=f"levels: {HOSTNAME_LABEL} may only be the last level",
        ),
    ]


class TopologySpec(KaiwoModel):
    """The levels of a topology, from the largest domain to the smallest."""

    levels: list[TopologyLevel] = Field(
        min_length=1,
        max_length=8,
        description="Levels, largest first, e.g. block, rack, `kubernetes.io/hostname`.",
        json_schema_extra=k8s(list_type="atomic", rules=_level_rules()),
    )


class Topology(KaiwoModel):
    """A Kueue Topology: how nodes are grouped (blocks, racks, hosts) for topology-aware scheduling."""

    api_version: str | None = Field(default=None, description="kueue.x-k8s.io/v1alpha1 (optional).")
    kind: str | None = Field(default=None, description="Topology (optional).")
    metadata: EmbeddedMeta = Field(description="`name` is the name flavors use in `topologyName`.")
    spec: TopologySpec = Field(description="The levels.")


def _unique_names(what: str) -> Rule:
    return Rule(
        rule="self.all(x, self.exists_one(y, y.metadata.name == x.metadata.name))",
        message=f"{what}: metadata.name must be unique",
    )


class KaiwoQueueConfigSpec(KaiwoModel):
    """The Kueue objects Kaiwo creates and keeps in sync: flavors, ClusterQueues (and their LocalQueues),
    priority classes and topologies."""

    cluster_queues: list[ClusterQueue] | None = Field(
        default=None,
        max_length=1000,
        description="ClusterQueues. Kaiwo creates one named after KaiwoConfig "
        "`spec.defaultClusterQueueName` from the discovered nodes when none is configured.",
        json_schema_extra=k8s(list_type="map", list_map_keys=["name"]),
    )
    resource_flavors: list[ResourceFlavor] | None = Field(
        default=None,
        max_length=20,
        description="ResourceFlavors. When empty, Kaiwo discovers node pools from the GPU "
        "node labels and makes one flavor per pool.",
        json_schema_extra=k8s(list_type="map", list_map_keys=["name"]),
    )
    workload_priority_classes: list[WorkloadPriorityClass] | None = Field(
        default=None,
        max_length=20,
        description="WorkloadPriorityClasses.",
        json_schema_extra=k8s(rules=[_unique_names("workloadPriorityClasses")]),
    )
    topologies: list[Topology] | None = Field(
        default=None,
        max_length=10,
        description="Topologies for topology-aware scheduling.",
        json_schema_extra=k8s(rules=[_unique_names("topologies")]),
    )


class QueueConfigStatus(StrEnum):
    """Whether the Kueue objects are in sync and usable."""

    READY = "READY"
    FAILED = "FAILED"


class KaiwoQueueConfigStatus(KaiwoModel):
    """What Kaiwo reports about the Kueue setup."""

    status: QueueConfigStatus | None = Field(
        default=None,
        description=(
            "READY when every Kueue object is in sync and usable (not terminating, reported Active by Kueue); "
            "FAILED otherwise, with the object and the reason in the Ready condition (retried every 30 seconds)."
        ),
    )
    conditions: list[Condition] | None = conditions_field("Details of the synchronisation.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The `metadata.generation` this status was computed from.",
        json_schema_extra=k8s(int64=True),
    )


class KaiwoQueueConfig(KaiwoModel):
    """The cluster's queueing setup, owned by Kaiwo: Kueue ResourceFlavors, ClusterQueues, LocalQueues,
    WorkloadPriorityClasses and Topologies. There is one, named `kaiwo`; Kaiwo creates it from the nodes it
    finds if it is missing."""

    api_version: KaiwoApiVersion = API_VERSION
    kind: Literal["KaiwoQueueConfig"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: KaiwoQueueConfigSpec = Field(
        default_factory=KaiwoQueueConfigSpec,
        description="The Kueue objects.",
        json_schema_extra=crd_default({}),
    )
    status: KaiwoQueueConfigStatus | None = Field(default=None, description="Set by Kaiwo.")


CRD = CrdInfo(
    model=KaiwoQueueConfig,
    group=KAIWO_GROUP,
    version=VERSION,
    kind=KIND,
    plural="kaiwoqueueconfigs",
    singular="kaiwoqueueconfig",
    scope="Cluster",
    short_names=("kqc",),
    printer_columns=(PrinterColumn("WorkloadStatus", "string", ".status.status"),),
    rules=(
        Rule(
            rule=f"self.metadata.name == '{SINGLETON_NAME}'",
            message=f"metadata.name: must be '{SINGLETON_NAME}': KaiwoQueueConfig is a cluster-wide singleton "
            f"and Kaiwo only reads the one named '{SINGLETON_NAME}'",
            field_path=".metadata.name",
        ),
    ),
)

"""Label, annotation and taint keys that are part of Kaiwo's API (docs/design/upstream.md#labels,
docs/design/decisions.md D8).

Users and other tools select on these, so their names are as upstream Kaiwo's.
"""

from __future__ import annotations

from typing import Final

# On every child object and pod of a KaiwoJob/KaiwoService.
USER: Final = "kaiwo.silogen.ai/user"  # spec.user, made label-safe
NAME: Final = "kaiwo.silogen.ai/name"  # the Kaiwo object's name
TYPE: Final = "kaiwo.silogen.ai/type"  # job | service | downloader
RUN_ID: Final = "kaiwo.silogen.ai/run-id"  # the Kaiwo object's UID; how pods are found
MANAGED: Final = "kaiwo.silogen.ai/managed"  # "true" on webhook-managed batch Jobs
FINALIZER: Final = "kaiwo.silogen.ai/finalizer"  # on webhook-managed batch Jobs
MANAGED_BY: Final = "kaiwo.silogen.ai/managed-by"  # on Kueue objects the KaiwoQueueConfig controller owns

# Kueue routing (on the Job / RayJob / AppWrapper, or on the Deployment's pod template).
KUEUE_QUEUE_NAME: Final = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_CLASS: Final = "kueue.x-k8s.io/priority-class"
# Kueue topology-aware scheduling (pod template annotations).
KUEUE_PREFERRED_TOPOLOGY: Final = "kueue.x-k8s.io/podset-preferred-topology"
KUEUE_REQUIRED_TOPOLOGY: Final = "kueue.x-k8s.io/podset-required-topology"

# Written by the operator on nodes.
NODEPOOL: Final = "kaiwo/nodepool"
WORKER: Final = "kaiwo/worker"
GPU_MODEL: Final = "kaiwo/gpu-model"
TOPOLOGY_BLOCK: Final = "kaiwo/topology-block"
TOPOLOGY_RACK: Final = "kaiwo/topology-rack"
GPU_TAINT: Final = "kaiwo.silogen.ai/gpu"  # value "true", effect NoSchedule, when nodes.addTaintsToGpuNodes

# Idle-GPU preemption opt-in and overrides, on the root owner or its Namespace (prefix + suffix).
GPU_PREEMPTION_PREFIX: Final = "kaiwo.silogen.ai/gpu-preemption."
GPU_PREEMPTION_KEYS: Final = ("enabled", "threshold", "grace-period", "policy", "aggregation", "ttl")

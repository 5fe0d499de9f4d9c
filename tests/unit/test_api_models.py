"""The API models: upstream defaults, json names, validation of single fields, the wire format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kaiwo.api import GpuWorkload, KaiwoConfig, KaiwoJob, KaiwoQueueConfig, KaiwoService, examples, wire
from kaiwo.api.common import WorkloadCondition, WorkloadStatus, gpu_resource_key
from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.api.gpuworkload import GpuWorkloadPhase
from kaiwo.api.kaiwojob import KaiwoJobSpec, KaiwoJobStatus
from kaiwo.api.kaiwoservice import KaiwoServiceSpec
from kaiwo.api.queueconfig import ClusterQueueSpec
from kaiwo.api.storage import AccessMode, StorageSpec, data_mount_path, hf_mount_path
from kaiwo.api.types import now

MODELS: dict[str, type[BaseModel]] = {
    "KaiwoJob": KaiwoJob,
    "KaiwoService": KaiwoService,
    "KaiwoQueueConfig": KaiwoQueueConfig,
    "KaiwoConfig": KaiwoConfig,
    "GpuWorkload": GpuWorkload,
}


def test_workload_defaults_are_upstreams() -> None:
    for spec in (KaiwoJobSpec(), KaiwoServiceSpec()):
        assert (spec.gpus, spec.gpu_vendor, spec.replicas, spec.ray, spec.dangerous) == (0, "amd", 1, False, False)
        assert spec.gpus_per_replica is None and spec.cluster_queue is None and spec.storage is None
    storage = StorageSpec()
    assert storage.access_mode == AccessMode.READ_WRITE_MANY


def test_kaiwoconfig_defaults_are_upstreams() -> None:
    spec = KaiwoConfigSpec()
    assert spec.ray.default_ray_image == "ghcr.io/silogen/rocm-ray:6.4" and spec.ray.head_pod_memory == "16Gi"
    assert spec.storage.default_data_mount_path == "/workload" and spec.storage.default_hf_mount_path == "/hf_cache"
    assert spec.nodes.default_gpu_resource_key == "amd.com/gpu"
    assert spec.nodes.default_gpu_taint_key == "kaiwo.silogen.ai/gpu"
    assert spec.scheduling.kube_scheduler_name == "kaiwo-scheduler"
    assert spec.scheduling.pending_threshold_for_preemption == "5m"
    assert spec.resource_monitoring.low_utilization_threshold == 1
    assert spec.resource_monitoring.terminate_underutilized is False
    assert spec.resource_monitoring.terminate_underutilized_after == "24h"
    assert spec.gpu_preemption is None
    assert (spec.default_cluster_queue_name, spec.default_cluster_queue_cohort_name) == ("kaiwo", "kaiwo")
    assert spec.dynamically_update_default_cluster_queue is False
    assert spec.default_topology_name == "default-topology"


def test_cluster_queue_defaults_are_kueues() -> None:
    spec = ClusterQueueSpec()
    assert spec.queueing_strategy == "BestEffortFIFO" and spec.stop_policy == "None"
    assert spec.flavor_fungibility.when_can_borrow == "Borrow"
    assert spec.flavor_fungibility.when_can_preempt == "TryNextFlavor"
    assert spec.preemption.reclaim_within_cohort == "Never"
    assert spec.preemption.borrow_within_cohort.policy == "Never"


@pytest.mark.parametrize(
    ("kind", "manifest"),
    [
        pytest.param(kind, m, id=f"{kind}-{m['metadata']['name']}")
        for kind, items in examples.EXAMPLES.items()
        for _, m in items
    ],
)
def test_examples_parse_and_round_trip(kind: str, manifest: dict[str, Any]) -> None:
    model = MODELS[kind].model_validate(manifest)
    assert wire(model) == manifest


def test_json_names_and_python_names_are_both_accepted() -> None:
    by_json = KaiwoJobSpec.model_validate({"gpusPerReplica": 2, "replicas": 2, "gpuVendor": "nvidia"})
    by_name = KaiwoJobSpec(gpus_per_replica=2, replicas=2, gpu_vendor="nvidia")
    assert by_json == by_name
    assert wire(by_name) == {"gpusPerReplica": 2, "replicas": 2, "gpuVendor": "nvidia"}
    assert KaiwoConfigSpec.model_validate({"gpuPreemption": {"defaultTTL": "1h"}}).gpu_preemption is not None


def test_wire_leaves_out_unset_and_none_but_keeps_type() -> None:
    job = KaiwoJob.model_validate({"metadata": {"name": "x"}, "spec": {"image": "busybox"}})
    assert wire(job) == {
        "apiVersion": "kaiwo.silogen.ai/v1alpha1",
        "kind": "KaiwoJob",
        "metadata": {"name": "x"},
        "spec": {"image": "busybox"},
    }
    full = wire(job, include_defaults=True)
    assert full["spec"]["gpuVendor"] == "amd" and full["spec"]["replicas"] == 1 and "storage" not in full["spec"]


def test_unknown_fields_are_ignored_like_the_apiserver_prunes_them() -> None:
    spec = KaiwoJobSpec.model_validate({"image": "x", "notAField": 1})
    assert wire(spec) == {"image": "x"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"gpus": -1}, "gpus"),
        ({"gpus": "four"}, "gpus"),
        ({"gpuVendor": "intel"}, "gpuVendor"),
        ({"replicas": -1}, "replicas"),
        ({"duration": "2 hours"}, "duration"),
        ({"resources": {"requests": {"memory": "64 GiB"}}}, "memory"),
        ({"resources": {"limits": {"cpu": -1}}}, "cpu"),
        ({"clusterQueue": "My_Queue"}, "clusterQueue"),
        ({"preferredTopologyLabel": "rack please"}, "preferredTopologyLabel"),
        ({"env": [{"value": "1"}]}, "name"),
        ({"secretVolumes": [{"name": "Bad", "secretName": "s", "mountPath": "/s"}]}, "name"),
        ({"storage": {"accessMode": "ReadWriteSometimes"}}, "accessMode"),
        ({"storage": {"data": {"storageSize": "lots"}}}, "storageSize"),
        ({"podTemplateSpecLabels": {"team": "x" * 64}}, "team"),
    ],
)
def test_field_validation_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        KaiwoJobSpec.model_validate(data)
    assert field in str(err.value)


@pytest.mark.parametrize("vendor", ["amd", "AMD", "Amd", "nvidia", "NVIDIA", "nVidia"])
def test_gpu_vendor_is_case_insensitive(vendor: str) -> None:
    spec = KaiwoJobSpec(gpu_vendor=vendor)
    assert gpu_resource_key(spec.gpu_vendor, "x") == f"{vendor.lower()}.com/gpu"
    assert gpu_resource_key("other", "amd.com/gpu") == "amd.com/gpu"


@pytest.mark.parametrize("value", [0, 4, "4", "500m", "16Gi", "1.5", ".5", "1e3", "+2"])
def test_quantities_accepted(value: int | str) -> None:
    assert KaiwoJobSpec.model_validate({"resources": {"requests": {"cpu": value}}}).resources is not None


@pytest.mark.parametrize("value", ["0", "90s", "1h30m", "1.5h", "300ms", "10us", "10µs"])
def test_durations_accepted(value: str) -> None:
    assert KaiwoJobSpec(duration=value).duration == value


def test_uses_ray_follows_the_flag_or_the_embedded_spec() -> None:
    assert not KaiwoJobSpec().uses_ray
    assert KaiwoJobSpec(ray=True).uses_ray
    assert KaiwoJobSpec.model_validate({"rayJob": {"spec": {}}}).uses_ray
    assert KaiwoServiceSpec.model_validate({"rayService": {}}).uses_ray
    assert not KaiwoServiceSpec.model_validate({"deployment": {"spec": {}}}).uses_ray


def test_storage_predicates_follow_upstream() -> None:
    job = KaiwoJob.model_validate(examples.STORAGE_JOB)
    storage = job.spec.storage
    assert storage is not None
    assert storage.has_data() and storage.has_object_downloads() and storage.has_hf_downloads()
    no_size = StorageSpec.model_validate(
        {"storageEnabled": True, "data": {"download": {"git": [{"repository": "r", "targetPath": "t"}]}}}
    )
    assert not no_size.has_data() and not no_size.has_downloads()
    disabled = StorageSpec.model_validate({"huggingFace": {"storageSize": "1Gi", "preCacheRepos": [{"repoId": "a"}]}})
    assert not disabled.has_downloads()


def test_mount_paths_fall_back_to_kaiwoconfig_then_upstream_defaults() -> None:
    empty = StorageSpec()
    assert (data_mount_path(empty), hf_mount_path(empty)) == ("/workload", "/hf_cache")
    assert data_mount_path(empty, "/data") == "/data" and hf_mount_path(empty, "/hf") == "/hf"
    own = StorageSpec.model_validate({"data": {"mountPath": "/mine"}, "huggingFace": {"mountPath": "/cache"}})
    assert (data_mount_path(own, "/data"), hf_mount_path(own, "/hf")) == ("/mine", "/cache")


def test_status_values_are_upstreams() -> None:
    assert [s.value for s in WorkloadStatus] == [
        "",
        "DOWNLOADING",
        "PENDING",
        "STARTING",
        "RUNNING",
        "COMPLETE",
        "ERROR",
        "FAILED",
        "TERMINATING",
        "TERMINATED",
    ]
    assert {s for s in WorkloadStatus if s.terminal} == {"COMPLETE", "FAILED", "TERMINATED"}
    assert {s for s in WorkloadStatus if s.active} == {"", "DOWNLOADING", "PENDING", "STARTING", "RUNNING"}
    assert not WorkloadStatus.ERROR.active and not WorkloadStatus.ERROR.terminal
    assert {p for p in GpuWorkloadPhase if p.terminal} == {"Preempted", "Deleted"}
    assert {c.value for c in WorkloadCondition} == {
        "Schedulable",
        "Admitted",
        "DownloadJobSucceeded",
        "PvcReady",
        "Preemptable",
        "WorkloadTerminatedEarly",
        "ResourceUnderutilization",
        "SpecApplied",
        "Progressing",
        "ServeReady",
        "RayJobFinished",
    }


def test_timestamps_are_rfc3339_utc_seconds() -> None:
    cet = timezone(timedelta(hours=1))
    status = KaiwoJobStatus(
        start_time=datetime(2025, 1, 31, 13, 0, 0, 123456, tzinfo=cet), completion_time=datetime(2025, 1, 31, 12, 30)
    )
    assert wire(status) == {"startTime": "2025-01-31T12:00:00Z", "completionTime": "2025-01-31T12:30:00Z"}
    parsed = KaiwoJobStatus.model_validate({"startTime": "2025-01-31T12:00:00Z"})
    assert parsed.start_time == datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert now().microsecond == 0 and now().tzinfo is UTC


def test_status_with_conditions_round_trips() -> None:
    raw = {
        "status": "RUNNING",
        "observedGeneration": 2,
        "duration": 60,
        "startTime": "2025-01-31T12:00:00Z",
        "conditions": [
            {
                "type": "Admitted",
                "status": "True",
                "reason": "Admitted",
                "message": "",
                "lastTransitionTime": "2025-01-31T12:00:00Z",
            }
        ],
    }
    status = KaiwoJobStatus.model_validate(raw)
    assert status.status == WorkloadStatus.RUNNING and wire(status) == raw
    with pytest.raises(ValidationError):
        KaiwoJobStatus.model_validate({"status": "READY"})  # upstream has no READY

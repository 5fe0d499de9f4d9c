"""Kaiwo's CRDs against a real apiserver: they install, the upstream example shapes are accepted with the
defaults filled in, and bad input is rejected with a message that names the field.

Everything here is a dry run (nothing is stored), except one KaiwoJob in the test's own namespace, so the
tests do not collide with a running operator or with each other. The CRDs are cluster-wide; installing them
is an idempotent server-side apply that other tests may also do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kaiwo.api import crds, examples
from kaiwo.api.base import CrdInfo
from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.api.kaiwojob import KaiwoJob
from kaiwo.api.schema import apply_defaults
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import Obj

FIELD_MANAGER = "kaiwo-e2e-crds"
BY_KIND = {info.kind: info for info in crds.ALL}


@pytest.fixture(scope="module")
async def installed(client: Client, kaiwo_crds: None) -> Client:
    return client


def _place(manifest: Obj, namespace: str) -> Obj:
    obj = copy.deepcopy(manifest)
    if BY_KIND[obj["kind"]].namespaced:
        obj["metadata"]["namespace"] = namespace
    return obj


async def _dry_run(client: Client, obj: Obj) -> Obj:
    """The object as the apiserver would store it if it were created from ``obj`` alone (dry run).

    A dry-run create when the object is absent; when it exists (the cluster singletons, which a running
    operator creates), a dry-run replace, so the answer never mixes in fields of the existing object."""
    meta = obj["metadata"]
    live = await client.get_or_none(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    if live is None:
        return await client.create(obj, dryRun="All")
    res = await client.resource(obj["apiVersion"], obj["kind"])
    body = {**obj, "metadata": {**meta, "resourceVersion": live["metadata"]["resourceVersion"]}}
    result: Obj = await client.request(
        "PUT", res.path(meta.get("namespace"), meta["name"]), body=body, params={"dryRun": "All"}
    )
    return result


def _schema(info: CrdInfo) -> Obj:
    return crds.root_schema(info)


async def test_crds_are_served_with_upstream_names_and_columns(installed: Client) -> None:
    for info in crds.ALL:
        live = await installed.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", info.name)
        spec = live["spec"]
        assert spec["group"] == info.group and spec["scope"] == info.scope
        assert spec["names"]["plural"] == info.plural and spec["names"]["kind"] == info.kind
        assert spec["names"]["shortNames"] == list(info.short_names)
        (version,) = spec["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert ("status" in version.get("subresources", {})) == info.status_subresource
        assert [c["name"] for c in version.get("additionalPrinterColumns", [])] == [
            c.name for c in info.printer_columns
        ]
        res = await installed.resource(info.api_version, info.kind)
        assert res.plural == info.plural and res.namespaced == info.namespaced


EXAMPLE_CASES = [
    pytest.param(manifest, id=f"{kind}-{manifest['metadata']['name']}")
    for kind, items in examples.EXAMPLES.items()
    for _, manifest in items
]


@pytest.mark.parametrize("manifest", EXAMPLE_CASES)
async def test_examples_are_accepted_with_defaults(installed: Client, namespace: str, manifest: Obj) -> None:
    info = BY_KIND[manifest["kind"]]
    stored = await _dry_run(installed, _place(manifest, namespace))
    expected = apply_defaults(_schema(info)["properties"]["spec"], manifest["spec"])
    assert stored["spec"] == expected
    parsed = info.model.model_validate(stored)  # the models read what the apiserver stores
    assert parsed.model_dump(by_alias=True, mode="json", exclude_none=True)["spec"] == expected


async def test_workload_defaults_are_upstreams(installed: Client, namespace: str) -> None:
    job = {
        "apiVersion": "kaiwo.silogen.ai/v1alpha1",
        "kind": "KaiwoJob",
        "metadata": {"name": "defaults", "namespace": namespace},
        "spec": {
            "image": "busybox",
            "storage": {"storageEnabled": True, "data": {"storageSize": "1Gi"}, "huggingFace": {"storageSize": "1Gi"}},
        },
    }
    spec = (await _dry_run(installed, job))["spec"]
    assert {k: spec[k] for k in ("gpus", "gpuVendor", "replicas", "ray", "dangerous")} == {
        "gpus": 0,
        "gpuVendor": "amd",
        "replicas": 1,
        "ray": False,
        "dangerous": False,
    }
    assert spec["storage"]["accessMode"] == "ReadWriteMany"
    # mountPath stays unset so that KaiwoConfig's storage defaults apply (docs/design/decisions.md D10)
    assert "mountPath" not in spec["storage"]["data"] and "mountPath" not in spec["storage"]["huggingFace"]
    bare = {
        "apiVersion": "kaiwo.silogen.ai/v1alpha1",
        "kind": "KaiwoService",
        "metadata": {"name": "bare", "namespace": namespace},
    }
    assert (await _dry_run(installed, bare))["spec"] == {
        "gpus": 0,
        "gpuVendor": "amd",
        "replicas": 1,
        "ray": False,
        "dangerous": False,
    }


async def test_empty_kaiwoconfig_gets_every_default(installed: Client) -> None:
    stored = await _dry_run(
        installed,
        {"apiVersion": "config.kaiwo.silogen.ai/v1alpha1", "kind": "KaiwoConfig", "metadata": {"name": "kaiwo"}},
    )
    want = KaiwoConfigSpec().model_dump(by_alias=True, mode="json", exclude_none=True)
    assert {k: v for k, v in stored["spec"].items() if k in want} == want
    assert stored["spec"]["ray"]["defaultRayImage"] == "ghcr.io/silogen/rocm-ray:6.4"
    assert stored["spec"]["scheduling"]["pendingThresholdForPreemption"] == "5m"
    assert stored["spec"]["resourceMonitoring"]["terminateUnderutilizedAfter"] == "24h"


async def test_kaiwojob_round_trip_with_status(installed: Client, namespace: str) -> None:
    obj = _place(examples.STORAGE_JOB, namespace)
    created = await installed.create(obj)
    assert created["spec"]["storage"]["accessMode"] == "ReadWriteMany"
    status = {
        "status": "RUNNING",
        "startTime": "2025-01-31T12:00:00Z",
        "duration": 30,
        "observedGeneration": 1,
        "completionTime": "2025-01-31T13:00:00Z",
        "conditions": [
            {
                "type": "Schedulable",
                "status": "True",
                "reason": "Schedulable",
                "message": "",
                "lastTransitionTime": "2025-01-31T12:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    await installed.patch(
        "kaiwo.silogen.ai/v1alpha1",
        "KaiwoJob",
        obj["metadata"]["name"],
        {"status": status},
        namespace,
        subresource="status",
    )
    live = await installed.get("kaiwo.silogen.ai/v1alpha1", "KaiwoJob", obj["metadata"]["name"], namespace)
    job = KaiwoJob.model_validate(live)
    assert job.status is not None and job.status.status == "RUNNING" and job.status.observed_generation == 1
    assert job.spec.uses_ray is False and job.spec.storage is not None and job.spec.storage.has_downloads()
    with pytest.raises(ApiError) as err:  # status values are the upstream strings
        await installed.patch(
            "kaiwo.silogen.ai/v1alpha1",
            "KaiwoJob",
            obj["metadata"]["name"],
            {"status": {"status": "READY"}},
            namespace,
            subresource="status",
        )
    assert err.value.status == 422 and "status.status" in err.value.message


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    """A change to a manifest: set the dotted ``path`` (list indexes as numbers)."""

    def change(obj: Obj) -> None:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        node: Any = obj
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def _delete(path: str) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        node: Any = obj
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return change


def _both(*changes: Callable[[Obj], None]) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        for c in changes:
            c(obj)

    return change


JOB, SVC, QC, CFG, GW = (
    examples.BATCH_JOB,
    examples.SERVICE,
    examples.QUEUE_CONFIG,
    examples.KAIWO_CONFIG,
    examples.GPU_WORKLOAD,
)
STORAGE, RAYJOB, RAYSVC = examples.STORAGE_JOB, examples.RAY_JOB, examples.RAY_SERVICE
LEVELS = "spec.topologies.0.spec.levels"

# (id, base manifest, change, text the error must contain: the field path)
BAD_INPUTS: list[tuple[str, Obj, Callable[[Obj], None], str]] = [
    ("gpus-wrong-type", JOB, _set("spec.gpus", "four"), "spec.gpus"),
    ("gpus-negative", JOB, _set("spec.gpus", -1), "spec.gpus"),
    ("vendor-unknown", JOB, _set("spec.gpuVendor", "intel"), "spec.gpuVendor"),
    ("vendor-misspelt", JOB, _set("spec.gpuVendor", "Nvidia-GPU"), "spec.gpuVendor"),
    ("replicas-negative", JOB, _set("spec.replicas", -2), "spec.replicas"),
    ("gpus-inconsistent", STORAGE, _set("spec.gpus", 12), "spec.gpus"),
    (
        "gpus-per-replica-no-replicas",
        JOB,
        _both(_set("spec.replicas", 0), _set("spec.gpusPerReplica", 4)),
        "spec.replicas",
    ),
    ("ray-wrong-type", JOB, _set("spec.ray", "yes"), "spec.ray"),
    ("memory-bad-quantity", JOB, _set("spec.resources.requests.memory", "64 GiB"), "spec.resources.requests.memory"),
    ("cpu-negative", JOB, _set("spec.resources.limits.cpu", -1), "spec.resources.limits.cpu"),
    ("duration-words", JOB, _set("spec.duration", "2 hours"), "spec.duration"),
    ("duration-negative", JOB, _set("spec.duration", "-5m"), "spec.duration"),
    ("name-too-long", JOB, _set("metadata.name", "j" * 64), "metadata.name"),
    ("name-too-long-for-ray", RAYJOB, _set("metadata.name", "r" * 48), "metadata.name"),
    (
        "name-too-long-for-rayjob-spec",
        JOB,
        _both(_set("metadata.name", "r" * 48), _set("spec.rayJob", {"spec": {}})),
        "metadata.name",
    ),
    ("name-too-long-for-download", STORAGE, _set("metadata.name", "d" * 55), "metadata.name"),
    ("ray-name-starts-with-digit", RAYJOB, _set("metadata.name", "7b-finetune"), "metadata.name"),
    ("env-without-name", JOB, _set("spec.env", [{"value": "1"}]), "spec.env[0].name"),
    ("env-value-and-valuefrom", JOB, _set("spec.env.1.value", "x"), "spec.env[1]"),
    ("access-mode-unknown", STORAGE, _set("spec.storage.accessMode", "ReadWriteSometimes"), "spec.storage.accessMode"),
    ("storage-size-bad", STORAGE, _set("spec.storage.data.storageSize", "lots"), "spec.storage.data.storageSize"),
    (
        "s3-without-endpoint",
        STORAGE,
        _delete("spec.storage.data.download.s3.0.endpointUrl"),
        "spec.storage.data.download.s3[0].endpointUrl",
    ),
    (
        "git-without-target",
        STORAGE,
        _delete("spec.storage.data.download.git.0.targetPath"),
        "spec.storage.data.download.git[0].targetPath",
    ),
    (
        "hf-repo-without-id",
        STORAGE,
        _set("spec.storage.huggingFace.preCacheRepos", [{"files": ["a"]}]),
        "spec.storage.huggingFace.preCacheRepos[0].repoId",
    ),
    ("secret-volume-bad-name", RAYJOB, _set("spec.secretVolumes.0.name", "MinIO"), "spec.secretVolumes[0].name"),
    ("cluster-queue-bad-name", JOB, _set("spec.clusterQueue", "My_Queue"), "spec.clusterQueue"),
    ("topology-label-bad", JOB, _set("spec.preferredTopologyLabel", "rack please"), "spec.preferredTopologyLabel"),
    ("pull-secret-without-name", JOB, _set("spec.imagePullSecrets", [{}]), "spec.imagePullSecrets[0].name"),
    (
        "pod-label-value-too-long",
        JOB,
        _set("spec.podTemplateSpecLabels", {"team": "x" * 64}),
        "spec.podTemplateSpecLabels",
    ),
    ("service-replicas-wrong-type", SVC, _set("spec.replicas", 1.5), "spec.replicas"),
    ("service-name-too-long-for-ray", RAYSVC, _set("metadata.name", "s" * 48), "metadata.name"),
    ("serve-config-wrong-type", RAYSVC, _set("spec.serveConfigV2", {"applications": []}), "spec.serveConfigV2"),
    ("queue-config-wrong-name", QC, _set("metadata.name", "default"), "metadata.name"),
    (
        "topology-duplicate-levels",
        QC,
        _set(LEVELS, [{"nodeLabel": "kaiwo/topology-rack"}] * 2),
        LEVELS.replace(".0.", "[0]."),
    ),
    (
        "topology-hostname-not-last",
        QC,
        _set(LEVELS, [{"nodeLabel": "kubernetes.io/hostname"}, {"nodeLabel": "kaiwo/topology-rack"}]),
        "spec.topologies[0]",
    ),
    ("topology-no-levels", QC, _set(LEVELS, []), "spec.topologies[0].spec.levels"),
    (
        "topology-nine-levels",
        QC,
        _set(LEVELS, [{"nodeLabel": f"l{i}"} for i in range(9)]),
        "spec.topologies[0].spec.levels",
    ),
    (
        "topology-duplicate-names",
        QC,
        lambda o: o["spec"]["topologies"].append(o["spec"]["topologies"][0]),
        "spec.topologies",
    ),
    (
        "cluster-queue-duplicate",
        QC,
        lambda o: o["spec"]["clusterQueues"].append(o["spec"]["clusterQueues"][1]),
        "spec.clusterQueues",
    ),
    (
        "quota-bad-quantity",
        QC,
        _set("spec.clusterQueues.0.spec.resourceGroups.0.flavors.0.resources.2.nominalQuota", "8 GPUs"),
        "spec.clusterQueues[0].spec.resourceGroups[0].flavors[0].resources[2]",
    ),
    (
        "flavor-missing-resource",
        QC,
        _delete("spec.clusterQueues.0.spec.resourceGroups.0.flavors.0.resources.2"),
        "spec.clusterQueues[0].spec.resourceGroups[0]",
    ),
    (
        "queueing-strategy-unknown",
        QC,
        _set("spec.clusterQueues.0.spec.queueingStrategy", "FIFO"),
        "spec.clusterQueues[0].spec.queueingStrategy",
    ),
    (
        "flavor-too-many-labels",
        QC,
        _set("spec.resourceFlavors.0.nodeLabels", {f"k{i}": "v" for i in range(11)}),
        "spec.resourceFlavors[0].nodeLabels",
    ),
    (
        "taint-effect-unknown",
        QC,
        _set("spec.resourceFlavors.0.taints.0.effect", "Sometimes"),
        "spec.resourceFlavors[0].taints[0].effect",
    ),
    (
        "priority-class-name-not-in-metadata",
        QC,
        _set("spec.workloadPriorityClasses", [{"name": "high", "value": 1}]),
        "spec.workloadPriorityClasses[0].metadata",
    ),
    (
        "priority-value-wrong-type",
        QC,
        _set("spec.workloadPriorityClasses.0.value", "high"),
        "spec.workloadPriorityClasses[0].value",
    ),
    ("kaiwoconfig-wrong-name", CFG, _set("metadata.name", "config"), "metadata.name"),
    ("head-memory-bad-quantity", CFG, _set("spec.ray.headPodMemory", "sixteen gigs"), "spec.ray.headPodMemory"),
    (
        "pending-threshold-bad-duration",
        CFG,
        _set("spec.scheduling.pendingThresholdForPreemption", "5 min"),
        "spec.scheduling.pendingThresholdForPreemption",
    ),
    (
        "terminate-after-days",
        CFG,
        _set("spec.resourceMonitoring.terminateUnderutilizedAfter", "1d"),
        "spec.resourceMonitoring.terminateUnderutilizedAfter",
    ),
    (
        "monitoring-profile-unknown",
        CFG,
        _set("spec.resourceMonitoring.profile", "cpu"),
        "spec.resourceMonitoring.profile",
    ),
    (
        "preemption-threshold-over-100",
        CFG,
        _set("spec.gpuPreemption.defaultThreshold", 150),
        "spec.gpuPreemption.defaultThreshold",
    ),
    ("gpuworkload-without-ref", GW, _delete("spec.workloadRef"), "spec.workloadRef"),
    ("gpuworkload-negative-gpus", GW, _set("spec.gpuResources", {"amd.com/gpu": -4}), "spec.gpuResources"),
    ("gpuworkload-policy-unknown", GW, _set("spec.preemptionPolicy", "Never"), "spec.preemptionPolicy"),
    ("gpuworkload-ttl-bad-duration", GW, _set("spec.ttlAfterFinished", "forever"), "spec.ttlAfterFinished"),
]


@pytest.mark.parametrize(("base", "change", "field"), [pytest.param(b, c, f, id=i) for i, b, c, f in BAD_INPUTS])
async def test_bad_input_is_rejected_naming_the_field(
    installed: Client,
    namespace: str,
    base: Obj,
    change: Callable[[Obj], None],
    field: str,
) -> None:
    obj = _place(base, namespace)
    change(obj)
    with pytest.raises(ApiError) as err:
        await installed.create(obj, dryRun="All")
    assert err.value.status == 422, err.value
    assert field in err.value.message, err.value.message


def test_bad_input_table_is_large_enough() -> None:
    assert len(BAD_INPUTS) >= 25
    assert len({i for i, *_ in BAD_INPUTS}) == len(BAD_INPUTS)

"""Workload lifecycles end to end: Deployment errors and recovery, priorities, storage downloads, duration
preemption, and the API writes a workload costs.

Same in-process operator as test_workloads.py. The default ClusterQueue `kaiwo` offers 32 AMD GPUs (4 nodes x 8)
and 16 NVIDIA GPUs; tests that fill it ask for all 32 AMD GPUs. The KaiwoConfig and KaiwoQueueConfig singletons
are cluster state: a test that changes them restores them.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kaiwo.controllers.settings import KAIWO_CONFIG_API
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj, condition
from tests.builders import KaiwoServiceBuilder
from tests.e2e.helpers import API, event_reasons, eventually, job_succeeded_at, kaiwojob, phase_is

KUEUE = "kueue.x-k8s.io/v1beta1"
AMD_GPUS = 32
LONG = {"kwok.kaiwo.dev/duration": "600s"}  # the pods run until deleted, as far as a test is concerned


def kaiwoservice(name: str, ns: str, **spec: Any) -> Obj:
    service = KaiwoServiceBuilder(name, ns).image("nginx:1.27").unset("entrypoint")
    for key, value in spec.items():
        service.spec_field(key, value)
    return service.manifest()


async def settled(client: Client, kind: str, name: str, ns: str, phase: str, seconds: float) -> None:
    """Assert that ``name`` stays in ``phase`` for ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        obj = await client.get(API, kind, name, ns)
        assert obj["status"]["status"] == phase, obj["status"]
        await asyncio.sleep(0.5)


@pytest.fixture
async def preemption_threshold(client: Client, kaiwo_crds: None) -> AsyncIterator[str]:
    """KaiwoConfig ``scheduling.pendingThresholdForPreemption`` lowered to 2s for one test."""
    before = await client.get_or_none(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo")
    patch = {"spec": {"scheduling": {"pendingThresholdForPreemption": "2s"}}}
    if before is None:
        await client.create(
            {"apiVersion": KAIWO_CONFIG_API, "kind": "KaiwoConfig", "metadata": {"name": "kaiwo"}, **patch}
        )
    else:
        await client.patch(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo", patch)
    try:
        yield "2s"
    finally:
        if before is None:
            await client.delete(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo")
        else:
            old = ((before.get("spec") or {}).get("scheduling") or {}).get("pendingThresholdForPreemption")
            await client.patch(
                KAIWO_CONFIG_API,
                "KaiwoConfig",
                "kaiwo",
                {"spec": {"scheduling": {"pendingThresholdForPreemption": old}}},
            )


async def test_deployment_past_its_progress_deadline_is_an_error_and_recovers(
    client: Client, namespace: str, operator: Manager
) -> None:
    # Kueue admits the pod, but the scheduler cannot place it before its volume exists: no progress.
    stuck = {
        "spec": {
            "progressDeadlineSeconds": 3,
            "template": {
                "spec": {
                    "volumes": [{"name": "later", "persistentVolumeClaim": {"claimName": "later"}}],
                    "containers": [{"name": "workload", "image": "nginx:1.27"}],
                }
            },
        }
    }
    await client.create(kaiwoservice("web", namespace, deployment=stuck))
    err = await eventually(lambda: phase_is(client, "KaiwoService", "web", namespace, "ERROR"), "web ERROR", timeout=90)
    progressing = condition(err, "Progressing") or {}
    assert (progressing.get("status"), progressing.get("reason")) == ("False", "ProgressDeadlineExceeded")
    assert "timed out progressing" in progressing["message"]
    assert (condition(err, "Admitted") or {}).get("status") == "True"

    await client.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "later", "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }
    )
    ok = await eventually(
        lambda: phase_is(client, "KaiwoService", "web", namespace, "RUNNING"), "web recovered", timeout=90
    )
    assert (condition(ok, "Progressing") or {}).get("status") == "True"
    await event_reasons(client, "KaiwoService", "web", namespace, wait_for={"WorkloadError", "WorkloadRunning"})


async def test_deployment_is_pending_until_kueue_admits_its_pods(
    client: Client, namespace: str, operator: Manager
) -> None:
    await client.create(kaiwojob("filler", namespace, gpus=AMD_GPUS, annotations=LONG))
    await eventually(
        lambda: phase_is(client, "KaiwoJob", "filler", namespace, "RUNNING"), "filler RUNNING", timeout=120
    )
    await client.create(kaiwoservice("svc", namespace, gpus=8))
    pending = await eventually(
        lambda: phase_is(client, "KaiwoService", "svc", namespace, "PENDING"), "svc PENDING", timeout=60
    )
    assert (condition(pending, "Admitted") or {}).get("status") == "False"

    async def deployment_pods() -> list[Obj] | None:  # PENDING may be written before the Deployment's pods exist
        return await client.list("v1", "Pod", namespace, labelSelector="app=svc") or None

    pods = await eventually(deployment_pods, "the Deployment's pods", timeout=60)
    assert all({"name": "kueue.x-k8s.io/admission"} in p["spec"].get("schedulingGates", []) for p in pods), pods
    await settled(client, "KaiwoService", "svc", namespace, "PENDING", 3)

    await client.delete(API, "KaiwoJob", "filler", namespace)
    running = await eventually(
        lambda: phase_is(client, "KaiwoService", "svc", namespace, "RUNNING"), "svc admitted", timeout=120
    )
    assert (condition(running, "Admitted") or {}).get("status") == "True"


async def test_priority_classes_order_admission(client: Client, namespace: str, operator: Manager) -> None:
    qc = await client.get(API, "KaiwoQueueConfig", "kaiwo")
    before = qc["spec"].get("workloadPriorityClasses")
    suffix = secrets.token_hex(3)
    low, high = f"e2e-low-{suffix}", f"e2e-high-{suffix}"
    await client.patch(
        API,
        "KaiwoQueueConfig",
        "kaiwo",
        {
            "spec": {
                "workloadPriorityClasses": [
                    *(before or []),
                    {"metadata": {"name": low}, "value": 10},
                    {"metadata": {"name": high}, "value": 1000},
                ]
            }
        },
    )
    try:
        await eventually(lambda: client.get_or_none(KUEUE, "WorkloadPriorityClass", high), "the priority classes")
        await client.create(kaiwojob("filler", namespace, gpus=AMD_GPUS, annotations=LONG))
        await eventually(
            lambda: phase_is(client, "KaiwoJob", "filler", namespace, "RUNNING"), "filler RUNNING", timeout=120
        )
        # `first` is older, so without priorities Kueue would admit it first.
        await client.create(kaiwojob("first", namespace, gpus=AMD_GPUS, priorityClass=low, annotations=LONG))
        await eventually(lambda: phase_is(client, "KaiwoJob", "first", namespace, "PENDING"), "first PENDING")
        await client.create(kaiwojob("urgent", namespace, gpus=AMD_GPUS, priorityClass=high, annotations=LONG))
        await eventually(lambda: phase_is(client, "KaiwoJob", "urgent", namespace, "PENDING"), "urgent PENDING")
        job = await client.get("batch/v1", "Job", "urgent", namespace)
        assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == high

        await client.delete(API, "KaiwoJob", "filler", namespace)
        await eventually(
            lambda: phase_is(client, "KaiwoJob", "urgent", namespace, "STARTING", "RUNNING"),
            "the high-priority job admitted",
            timeout=120,
        )
        first = await client.get(API, "KaiwoJob", "first", namespace)
        assert first["status"]["status"] == "PENDING"
    finally:
        await client.patch(API, "KaiwoQueueConfig", "kaiwo", {"spec": {"workloadPriorityClasses": before}})


def with_download(**storage: Any) -> Obj:
    return {
        "storageEnabled": True,
        "data": {
            "storageSize": "1Gi",
            "download": {"git": [{"repository": "https://example.com/repo.git", "targetPath": "repo"}]},
        },
        **storage,
    }


async def test_storage_is_bound_and_downloaded_before_the_job_runs(
    client: Client, namespace: str, operator: Manager
) -> None:
    await client.create(kaiwojob("fetch", namespace, storage=with_download()))
    done = await eventually(
        lambda: phase_is(client, "KaiwoJob", "fetch", namespace, "COMPLETE", "FAILED", "ERROR"),
        "fetch finished",
        timeout=120,
    )
    assert done["status"]["status"] == "COMPLETE", done["status"]
    assert (condition(done, "DownloadJobSucceeded") or {}).get("reason") == "JobCompleted"
    pvc = await client.get("v1", "PersistentVolumeClaim", "fetch-data", namespace)
    assert pvc["status"]["phase"] == "Bound"
    download = await client.get("batch/v1", "Job", "fetch-download", namespace)
    succeeded = job_succeeded_at(download)
    assert succeeded, download["status"]
    job = await client.get("batch/v1", "Job", "fetch", namespace)
    assert job["metadata"]["creationTimestamp"] >= succeeded  # started after the download
    seen = await event_reasons(client, "KaiwoJob", "fetch", namespace, wait_for={"WorkloadComplete"})
    assert seen["WorkloadDownloading"] == 1 and seen["WorkloadComplete"] == 1


async def test_failed_download_fails_the_job(client: Client, namespace: str, operator: Manager) -> None:
    await client.create(
        kaiwojob("nofetch", namespace, storage=with_download(), annotations={"kwok.kaiwo.dev/fail": "true"})
    )
    done = await eventually(
        lambda: phase_is(client, "KaiwoJob", "nofetch", namespace, "FAILED", "COMPLETE"),
        "nofetch finished",
        timeout=120,
    )
    assert done["status"]["status"] == "FAILED"
    cond = condition(done, "DownloadJobSucceeded") or {}
    assert (cond.get("status"), cond.get("reason")) == ("False", "JobFailed")
    assert await client.get_or_none("batch/v1", "Job", "nofetch", namespace) is None  # the workload never started


async def test_expired_job_is_preempted_only_by_same_vendor_demand_in_its_queue(
    client: Client, namespace: str, operator: Manager, preemption_threshold: str
) -> None:
    await client.create(kaiwojob("old", namespace, gpus=AMD_GPUS, duration="3s", annotations=LONG))
    await eventually(lambda: phase_is(client, "KaiwoJob", "old", namespace, "RUNNING"), "old RUNNING", timeout=120)
    # NVIDIA demand: the second NVIDIA job waits for GPUs, but not for old's.
    await client.create(kaiwojob("nv1", namespace, gpus=16, gpuVendor="nvidia", annotations=LONG))
    await eventually(lambda: phase_is(client, "KaiwoJob", "nv1", namespace, "RUNNING"), "nv1 RUNNING", timeout=120)
    await client.create(kaiwojob("nv2", namespace, gpus=16, gpuVendor="nvidia", annotations=LONG))
    await eventually(lambda: phase_is(client, "KaiwoJob", "nv2", namespace, "PENDING"), "nv2 PENDING")

    async def expired() -> Obj | None:
        obj = await client.get(API, "KaiwoJob", "old", namespace)
        return obj if (condition(obj, "Preemptable") or {}).get("status") == "True" else None

    exp = await eventually(expired, "old past its duration", timeout=30)
    assert (condition(exp, "Preemptable") or {}).get("reason") == "DurationExceeded"
    await settled(client, "KaiwoJob", "old", namespace, "RUNNING", 5)  # nv2 has pended past 2s all along

    # AMD demand from the other kind: a KaiwoService in the same queue.
    await client.create(kaiwoservice("svc", namespace, gpus=8))
    gone = await eventually(
        lambda: phase_is(client, "KaiwoJob", "old", namespace, "TERMINATED"), "old TERMINATED", timeout=60
    )
    ended = condition(gone, "WorkloadTerminatedEarly") or {}
    assert (ended.get("status"), ended.get("reason")) == ("True", "DurationExceededWithActiveGpuDemand")
    seen = await event_reasons(client, "KaiwoJob", "old", namespace, wait_for={"WorkloadTerminated"})
    assert seen["Preemptable"] == 1 and seen["WorkloadTermination"] == 1 and seen["WorkloadTerminated"] == 1

    async def job_deleted() -> bool:
        return await client.get_or_none("batch/v1", "Job", "old", namespace) is None

    await eventually(job_deleted, "old's Job deleted", timeout=60)
    await eventually(lambda: phase_is(client, "KaiwoService", "svc", namespace, "RUNNING"), "svc RUNNING", timeout=120)
    assert (await client.get(API, "KaiwoJob", "nv1", namespace))["status"]["status"] == "RUNNING"


WRITES = ("POST", "PUT", "PATCH", "DELETE")


async def test_api_writes_per_workload(
    client: Client, namespace: str, operator: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []  # the operator's writes into this namespace (other tests' namespaces may be going away)
    send = operator.client.request

    async def recording(method: str, path: str, **kw: Any) -> Any:
        if method in WRITES and f"/namespaces/{namespace}/" in path:
            calls.append(f"{method} {path.split(namespace)[1]}")
        return await send(method, path, **kw)

    monkeypatch.setattr(operator.client, "request", recording)
    await client.create(kaiwojob("short", namespace))
    await client.create(kaiwojob("long", namespace, duration="1h", annotations=LONG))
    await eventually(lambda: phase_is(client, "KaiwoJob", "short", namespace, "COMPLETE"), "short COMPLETE", timeout=90)
    await eventually(lambda: phase_is(client, "KaiwoJob", "long", namespace, "RUNNING"), "long RUNNING", timeout=90)
    await asyncio.sleep(2)  # let trailing watch events drain
    seen = await event_reasons(client, "KaiwoJob", "short", namespace, wait_for={"WorkloadComplete"})
    seen += await event_reasons(client, "KaiwoJob", "long", namespace, wait_for={"WorkloadRunning"})
    transitions = sum(n for r, n in seen.items() if r.startswith("Workload"))
    # One LocalQueue; per job one Job apply, then one status write and one event per phase transition. (Both
    # jobs fit at once, so Kueue never reports a reason to wait that would be worth a condition-only write.)
    counts = Counter(c.split()[0] for c in calls)
    assert counts["POST"] == 1 + transitions, calls
    assert counts["PATCH"] == 2 + transitions, "; ".join(calls)
    assert counts["PUT"] == counts["DELETE"] == 0, calls

    calls.clear()
    assert sum(ctrl.resync() for ctrl in operator.controllers) >= 3  # the queue config and both jobs
    await asyncio.sleep(3)
    assert calls == [], "a resync of settled workloads must send no writes"


async def test_bad_spec_is_an_error_with_a_message(client: Client, namespace: str, operator: Manager) -> None:
    await client.create(kaiwojob("noimage", namespace, image=None))
    err = await eventually(lambda: phase_is(client, "KaiwoJob", "noimage", namespace, "ERROR"), "noimage ERROR")
    cond = condition(err, "Schedulable") or {}
    assert (cond.get("status"), cond.get("reason")) == ("False", "InvalidSpec") and "image" in cond["message"]
    assert await client.get_or_none("batch/v1", "Job", "noimage", namespace) is None

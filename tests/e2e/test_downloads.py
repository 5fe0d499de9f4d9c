"""Downloads on the local cluster: the download Job is queued through Kueue, gates the workload, turns a failure
into FAILED with the downloader's own message, and is shared through the download cache.

The local cluster's pods do not run containers (kwok plays their lifecycle), so these tests check the Kubernetes
side of the flow only; the downloads themselves are proven against real storage servers in tests/downloader/.
"""

from __future__ import annotations

from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj, condition
from tests.e2e.helpers import eventually, job_succeeded_at, kaiwojob, phase_is

KUEUE = "kueue.x-k8s.io/v1beta1"


def downloads(cache: bool = False) -> Obj:
    return {
        "storageEnabled": True,
        "data": {
            "storageSize": "1Gi",
            **({"cacheDownloads": True} if cache else {}),
            "download": {"git": [{"repository": "https://example.com/repo.git", "targetPath": "repo"}]},
        },
    }


async def _kueue_workload_of(client: Client, ns: str, job: str) -> Obj | None:
    for wl in await client.list(KUEUE, "Workload", ns):
        if any(o.get("kind") == "Job" and o.get("name") == job for o in wl["metadata"].get("ownerReferences") or []):
            return wl
    return None


async def test_download_is_queued_by_kueue_and_gates_the_workload(
    client: Client, namespace: str, operator: Manager
) -> None:
    # The download pod "runs" for 3 s, the workload's pod until the test ends.
    await client.create(
        kaiwojob("fetch", namespace, storage=downloads(), annotations={"kwok.kaiwo.dev/duration": "3s"})
    )
    dl = await eventually(lambda: client.get_or_none("batch/v1", "Job", "fetch-download", namespace), "download Job")
    assert dl["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kaiwo"
    wl = await eventually(lambda: _kueue_workload_of(client, namespace, "fetch-download"), "its Kueue Workload")
    assert wl["spec"]["queueName"] == "kaiwo"
    admitted = await eventually(
        lambda: _admitted(client, namespace, wl["metadata"]["name"]), "the download admitted", timeout=60
    )
    assert admitted
    # Gated: while the download runs, the Kaiwo object is DOWNLOADING and the workload's Job does not exist.
    kj = await client.get("kaiwo.silogen.ai/v1alpha1", "KaiwoJob", "fetch", namespace)
    dl = await client.get("batch/v1", "Job", "fetch-download", namespace)
    if job_succeeded_at(dl) is None:
        assert kj["status"]["status"] == "DOWNLOADING"
        assert await client.get_or_none("batch/v1", "Job", "fetch", namespace) is None
    done = await eventually(
        lambda: phase_is(client, "KaiwoJob", "fetch", namespace, "COMPLETE", "FAILED", "ERROR"), "fetch done", 120
    )
    assert done["status"]["status"] == "COMPLETE", done["status"]
    dl = await client.get("batch/v1", "Job", "fetch-download", namespace)
    job = await client.get("batch/v1", "Job", "fetch", namespace)
    assert job["metadata"]["creationTimestamp"] >= (job_succeeded_at(dl) or "~"), dl["status"]


async def _admitted(client: Client, ns: str, name: str) -> bool:
    wl = await client.get_or_none(KUEUE, "Workload", name, ns)
    return bool(wl and (condition(wl, "Admitted") or {}).get("status") == "True")


async def test_failed_download_fails_with_the_downloaders_message(
    client: Client, namespace: str, operator: Manager
) -> None:
    message = "download failed: s3 bucket 'models' file 'llama/config.json': not found"
    annotations = {"kwok.kaiwo.dev/fail": "true", "kwok.kaiwo.dev/termination-message": message}
    await client.create(kaiwojob("broken", namespace, storage=downloads(), annotations=annotations))
    done = await eventually(
        lambda: phase_is(client, "KaiwoJob", "broken", namespace, "FAILED", "COMPLETE"), "broken finished", 120
    )
    assert done["status"]["status"] == "FAILED"
    cond = condition(done, "DownloadJobSucceeded") or {}
    assert (cond.get("status"), cond.get("reason"), cond.get("message")) == ("False", "JobFailed", message)
    assert await client.get_or_none("batch/v1", "Job", "broken", namespace) is None  # never started


async def test_cached_download_is_shared_by_the_next_workload(
    client: Client, namespace: str, operator: Manager
) -> None:
    await client.create(kaiwojob("first", namespace, storage=downloads(cache=True)))
    await eventually(
        lambda: phase_is(client, "KaiwoJob", "first", namespace, "COMPLETE"), "first COMPLETE", timeout=120
    )
    shared = await client.list("batch/v1", "Job", namespace, labelSelector="kaiwo.silogen.ai/cache-key")
    assert len(shared) == 1 and not shared[0]["metadata"].get("ownerReferences")
    key = shared[0]["metadata"]["labels"]["kaiwo.silogen.ai/cache-key"]
    await client.create(kaiwojob("second", namespace, storage=downloads(cache=True)))
    second = await eventually(
        lambda: phase_is(client, "KaiwoJob", "second", namespace, "COMPLETE", "FAILED"), "second done", timeout=120
    )
    assert second["status"]["status"] == "COMPLETE"
    again = await client.list("batch/v1", "Job", namespace, labelSelector="kaiwo.silogen.ai/cache-key")
    assert [j["metadata"]["name"] for j in again] == [f"kaiwo-cache-{key}"]  # no second download
    assert await client.get_or_none("batch/v1", "Job", "second-download", namespace) is None
    job = await client.get("batch/v1", "Job", "second", namespace)
    pod = job["spec"]["template"]["spec"]
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == f"kaiwo-cache-{key}"
    assert all(m.get("readOnly") for m in pod["containers"][0]["volumeMounts"] if m["name"] == "data")
    # Deleting the workloads leaves the shared download (cleanup is the user's, by the cache-key label).
    await client.delete("kaiwo.silogen.ai/v1alpha1", "KaiwoJob", "first", namespace)
    assert await client.get_or_none("v1", "PersistentVolumeClaim", f"kaiwo-cache-{key}", namespace) is not None

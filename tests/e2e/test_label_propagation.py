"""The Kaiwo object's labels on its children's metadata, live: the Job carries them (so ``kubectl get jobs -l``
finds it), and a running Job that lacks them, as one created by an operator version that did not propagate
them, gets them by a metadata-only apply that leaves its running pod alone (a Job's labels are mutable, its
pod template is not)."""

from __future__ import annotations

from kaiwo.runtime.apply import DEFAULT_HASH_ANNOTATION
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from tests.e2e.helpers import eventually
from tests.e2e.test_workloads import API, kaiwojob, phase_is


async def test_labels_reach_the_job_and_a_running_job_gets_them_without_disturbance(
    client: Client, namespace: str, operator: Manager
) -> None:
    cr = kaiwojob("labelled", namespace, gpus=1, annotations={"kwok.kaiwo.dev/duration": "300s"})
    cr["metadata"]["labels"] = {"team": "vision", "kueue.x-k8s.io/queue-name": "ignored"}
    await client.create(cr)
    await eventually(lambda: phase_is(client, "KaiwoJob", "labelled", namespace, "RUNNING"), "RUNNING", timeout=90)
    job = await client.get("batch/v1", "Job", "labelled", namespace)
    assert job["metadata"]["labels"]["team"] == "vision"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kaiwo"  # the resolved queue, not the CR's
    found = await client.list("batch/v1", "Job", namespace, labelSelector="team=vision")
    assert [j["metadata"]["name"] for j in found] == ["labelled"]
    (pod,) = await client.list("v1", "Pod", namespace, labelSelector="batch.kubernetes.io/job-name=labelled")

    # as an older operator left it: without the Kaiwo object's labels on the Job's metadata, and with the hash of
    # that operator's (different) desired Job, so this one sees a change to apply
    stale = {"labels": {"team": None}, "annotations": {DEFAULT_HASH_ANNOTATION: "from-an-older-operator"}}
    await client.patch("batch/v1", "Job", "labelled", {"metadata": stale}, namespace)

    async def relabelled() -> bool:
        j = await client.get("batch/v1", "Job", "labelled", namespace)
        return bool(j["metadata"]["labels"].get("team") == "vision")

    await eventually(relabelled, "the Kaiwo object's label back on the Job", timeout=30)
    (after,) = await client.list("v1", "Pod", namespace, labelSelector="batch.kubernetes.io/job-name=labelled")
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]  # the running pod was not replaced
    obj = await client.get(API, "KaiwoJob", "labelled", namespace)
    assert obj["status"]["status"] == "RUNNING"
    applied = [c for c in obj["status"]["conditions"] if c["type"] == "SpecApplied"]
    assert applied and applied[0]["status"] == "True", applied  # no immutable-field rejection

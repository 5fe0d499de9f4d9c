"""The Kaiwo object's labels on its children's metadata, live: the Job carries them (so ``kubectl get jobs -l``
finds it), and a running Job that lacks them, as one created by an operator version that did not propagate
them, gets them by an apply that changes its metadata only, never its (immutable) pod template. That its pod
also survives the re-apply depends on the controller leaving ``spec.suspend`` to Kueue (issue 13)."""

from __future__ import annotations

from kaiwo.runtime.apply import DEFAULT_HASH_ANNOTATION
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj
from tests.e2e.helpers import API, eventually, kaiwojob, phase_is


async def relabel_running_job(client: Client, namespace: str) -> tuple[Obj, Obj, Obj]:
    """A running KaiwoJob whose Job lost the propagated label and carries another operator's hash, as an operator
    version without label propagation left it; returns (Job before, Job after the re-apply, pod before)."""
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
    stale = {"labels": {"team": None}, "annotations": {DEFAULT_HASH_ANNOTATION: "from-an-older-operator"}}
    await client.patch("batch/v1", "Job", "labelled", {"metadata": stale}, namespace)

    async def relabelled() -> Obj | None:
        j = await client.get("batch/v1", "Job", "labelled", namespace)
        return j if j["metadata"]["labels"].get("team") == "vision" else None

    after = await eventually(relabelled, "the Kaiwo object's label back on the Job", timeout=30)
    return job, after, pod


async def test_labels_reach_the_job_and_a_reapply_changes_only_its_metadata(
    client: Client, namespace: str, operator: Manager
) -> None:
    before, after, _ = await relabel_running_job(client, namespace)
    assert after["spec"]["template"] == before["spec"]["template"]  # labels are metadata: no pod-template change
    obj = await client.get(API, "KaiwoJob", "labelled", namespace)
    applied = [c for c in obj["status"]["conditions"] if c["type"] == "SpecApplied"]
    assert applied and applied[0]["status"] == "True", applied  # no immutable-field rejection


async def test_reapply_of_a_running_job_keeps_its_pod(client: Client, namespace: str, operator: Manager) -> None:
    _, _, pod = await relabel_running_job(client, namespace)
    (now,) = await client.list("v1", "Pod", namespace, labelSelector="batch.kubernetes.io/job-name=labelled")
    assert now["metadata"]["uid"] == pod["metadata"]["uid"]

"""The workload reconcile under change: who owns ``spec.suspend``, one SpecNotApplied event per generation,
status from existing children, and admission webhooks that are down (issue 13, item 1 and 3).

The shared recording client (tests/fakes.py) stands in for the apiserver; server-side apply ownership is
given by hand in ``managedFields`` as the apiserver would record it. The real behaviour is proven in
tests/e2e/test_workload_faults.py.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from kaiwo.controllers.workload import SUSPEND_MANAGER_SUFFIX, WEBHOOK_RETRY_MAX, Caches, WorkloadReconciler
from kaiwo.runtime.client import ApiError
from kaiwo.runtime.controller import Request
from kaiwo.runtime.informer import object_key
from kaiwo.runtime.objects import Obj
from tests.builders import WorkloadBuilder
from tests.fakes import Call, RecordingClient, workload_reconciler

REQ = Request("ns", "train")
SPEC_EVENT = "SpecNotApplied"
MANAGER = "kaiwo-kaiwojob"
WEBHOOK_DOWN = (
    'Internal error occurred: failed calling webhook "mjob.kb.io": failed to call webhook: Post '
    '"https://127.0.0.1:9443/mutate-batch-v1-job": dial tcp 127.0.0.1:9443: connect: connection refused'
)


class SsaClient(RecordingClient):
    """The suspend manager's apply (the hand-over of ``spec.suspend``) is only recorded, or refused with a
    conflict; ``reject`` refuses every other apply."""

    def __init__(self, recording: RecordingClient) -> None:
        super().__init__(recording.stores)
        self.reject: ApiError | None = None
        self.suspend_conflict = False

    async def apply(self, obj: Any, field_manager: str, *, force: bool = True, **params: Any) -> Obj:
        if field_manager.endswith(SUSPEND_MANAGER_SUFFIX):
            meta = obj["metadata"]
            call = Call("apply", obj["kind"], meta["name"], meta.get("namespace"), copy.deepcopy(obj))
            self.calls.append(dataclasses.replace(call, field_manager=field_manager, force=force))
            if self.suspend_conflict:
                raise ApiError(409, {"reason": "Conflict", "message": 'conflict with "kueue" using batch/v1'})
            return dict(obj)
        self.fail("apply", obj["kind"], self.reject)
        return await super().apply(obj, field_manager, force=force, **params)


def new() -> tuple[WorkloadReconciler, SsaClient, Caches]:
    reconciler, recording, caches = workload_reconciler()
    client = SsaClient(recording)
    reconciler.client = client  # type: ignore[assignment]
    reconciler.applier.client = client  # type: ignore[assignment]
    reconciler.events.client = client  # type: ignore[assignment]
    return reconciler, client, caches


def applies(client: RecordingClient) -> list[tuple[str | None, bool | None, Obj]]:
    """Every apply as (field manager, force, body)."""
    return [(c.field_manager, c.force, c.body) for c in client.applies()]


def job(caches: Caches) -> Obj:
    live = caches.children["Job"].get_by("train", "ns")
    assert live is not None
    return live


def admit(caches: Caches, *, kueue_owns_suspend: bool) -> None:
    """What Kueue does to the Job on admission: suspend false (and the field moves to its manager). The
    cache holds no managedFields, so the reconcile sees only the value."""
    live = copy.deepcopy(job(caches))
    live["spec"]["suspend"] = not kueue_owns_suspend
    caches.children["Job"].indexer.put(object_key(live), live)


def edit(caches: Caches, **spec: Any) -> None:
    cr = copy.deepcopy(caches.primary.get_by("train", "ns"))
    assert cr is not None
    cr["spec"].update(spec)
    cr["metadata"]["generation"] += 1
    caches.primary.indexer.put(object_key(cr), cr)


def status(caches: Caches) -> Obj:
    cr = caches.primary.get_by("train", "ns")
    assert cr is not None
    return dict(cr.get("status") or {})


def condition(caches: Caches, ctype: str) -> Obj:
    return next(c for c in status(caches).get("conditions") or [] if c["type"] == ctype)


async def test_created_suspended_then_applies_leave_suspend_to_kueue() -> None:
    reconciler, client, caches = new()
    await reconciler.reconcile(REQ)
    (manager, _force, created) = applies(client)[-1]
    assert manager == MANAGER and created["spec"]["suspend"] is True, "a new Job waits for Kueue's admission"

    admit(caches, kueue_owns_suspend=True)
    edit(caches, entrypoint="echo changed")
    client.clear()
    await reconciler.reconcile(REQ)
    assert [(m, f) for m, f, _ in applies(client)] == [(MANAGER, True)]
    assert "suspend" not in applies(client)[0][2]["spec"], "a re-apply must not suspend an admitted Job"


async def test_while_we_still_own_suspend_a_second_manager_keeps_its_value() -> None:
    reconciler, client, caches = new()
    await reconciler.reconcile(REQ)
    admit(caches, kueue_owns_suspend=False)  # still queued: suspend=true, possibly owned by our manager alone
    edit(caches, entrypoint="echo changed")
    client.clear()
    await reconciler.reconcile(REQ)
    (keep_manager, keep_force, keep), (manager, _, body) = applies(client)
    assert keep_manager == MANAGER + SUSPEND_MANAGER_SUFFIX and keep_force is False
    assert keep["spec"] == {"suspend": True}, "the queued Job stays suspended when our manager lets go"
    assert manager == MANAGER and "suspend" not in body["spec"]


async def test_a_conflict_on_the_hand_over_means_kueue_took_suspend() -> None:
    reconciler, client, caches = new()
    await reconciler.reconcile(REQ)
    admit(caches, kueue_owns_suspend=False)
    edit(caches, entrypoint="echo changed")
    client.suspend_conflict = True
    client.clear()
    await reconciler.reconcile(REQ)
    assert [m for m, _, _ in applies(client)] == [MANAGER + SUSPEND_MANAGER_SUFFIX, MANAGER]
    assert condition(caches, "SpecApplied")["status"] == "True"


async def test_immutable_field_one_event_per_generation() -> None:
    reconciler, client, caches = new()
    await reconciler.reconcile(REQ)
    admit(caches, kueue_owns_suspend=True)
    client.reject = ApiError(422, {"message": 'Job.batch "train" is invalid: spec.template: field is immutable'})
    edit(caches, entrypoint="echo changed")
    client.clear()
    for _ in range(3):
        await reconciler.reconcile(REQ)
    assert client.event_reasons.count(SPEC_EVENT) == 1, client.writes
    assert len(applies(client)) == 1, "a rejected apply is not resent while nothing changed"
    cond = condition(caches, "SpecApplied")
    assert (cond["status"], cond["reason"]) == ("False", "ImmutableField") and "spec.template" in cond["message"]

    fresh, _, _ = new()  # a restarted operator reads the status: still no second event for this generation
    fresh.client = fresh.applier.client = fresh.events.client = client  # type: ignore[assignment]
    fresh.caches = caches
    await fresh.reconcile(REQ)
    assert client.event_reasons.count(SPEC_EVENT) == 1, client.writes

    edit(caches, entrypoint="echo again")
    for _ in range(2):
        await reconciler.reconcile(REQ)
    assert client.event_reasons.count(SPEC_EVENT) == 2, "one more for the new generation"


async def test_existing_child_keeps_its_status_when_gpu_nodes_go_away() -> None:
    reconciler, client, caches = new()
    await reconciler.reconcile(REQ)
    admit(caches, kueue_owns_suspend=True)
    live = copy.deepcopy(job(caches))
    live["status"] = {"ready": 1, "active": 1}
    caches.children["Job"].indexer.put(object_key(live), live)
    wl = WorkloadBuilder("job-train", "ns").owned_by(live).admitted().obj()
    assert caches.workloads is not None
    caches.workloads.indexer.put(object_key(wl), wl)
    await reconciler.reconcile(REQ)
    before = status(caches)
    assert before["status"] == "RUNNING"

    for node in caches.nodes.objects():  # every GPU node cordoned: the cluster shows no GPU pool at all
        cordoned = copy.deepcopy(node)
        cordoned["spec"]["unschedulable"] = True
        caches.nodes.indexer.put(object_key(cordoned), cordoned)
    client.clear()
    await reconciler.reconcile(REQ)
    assert client.writes == [], "a running workload is not re-judged by today's capacity"
    assert status(caches) == before


async def test_invalid_edit_of_a_running_workload_keeps_the_child() -> None:
    reconciler, client, caches = new()
    await reconciler.reconcile(REQ)
    admit(caches, kueue_owns_suspend=True)
    edit(caches, job={"spec": {"template": 17}})
    client.clear()
    for _ in range(2):
        await reconciler.reconcile(REQ)
    cond = condition(caches, "SpecApplied")
    assert cond["reason"] == "InvalidSpec" and cond["message"].startswith("spec.job.spec.template")
    assert status(caches)["status"] == "STARTING", "the phase still comes from the Job (admitted, no pod ready)"
    assert client.event_reasons.count(SPEC_EVENT) == 1
    assert not any(w.startswith("apply") for w in client.writes)


async def test_a_webhook_that_is_down_is_a_condition_one_event_and_bounded_backoff() -> None:
    reconciler, client, caches = new()
    client.reject = ApiError(500, {"reason": "InternalError", "message": WEBHOOK_DOWN})
    waits = []
    for _ in range(8):
        result = await reconciler.reconcile(REQ)
        assert result is not None
        waits.append(result.requeue_after)
    assert waits[:3] == [1.0, 2.0, 4.0] and max(waits) == WEBHOOK_RETRY_MAX
    cond = condition(caches, "SpecApplied")
    assert cond["reason"] == "WebhookUnavailable" and '"mjob.kb.io"' in cond["message"]
    assert status(caches)["status"] == "PENDING", "Kueue being down is not the user's error"
    assert client.event_reasons.count(SPEC_EVENT) == 1, client.writes

    client.reject = None
    assert await reconciler.reconcile(REQ) is None  # creates the child; its appearance brings the status pass (D35)
    assert await reconciler.reconcile(REQ) is None
    assert condition(caches, "SpecApplied")["status"] == "True"


async def test_a_denying_webhook_is_an_error_naming_it() -> None:
    reconciler, client, caches = new()
    client.reject = ApiError(403, {"message": 'admission webhook "vjob.kb.io" denied the request: queue is stopped'})
    await reconciler.reconcile(REQ)
    cond = condition(caches, "SpecApplied")
    assert cond["reason"] == "WebhookDenied" and "vjob.kb.io" in cond["message"]
    assert status(caches)["status"] == "ERROR"


async def test_a_queued_rayjob_is_handed_over_the_same_way() -> None:
    reconciler, client, caches = new()
    edit(caches, ray=True)
    await reconciler.reconcile(REQ)
    created = applies(client)[-1][2]
    assert created["kind"] == "RayJob" and created["spec"]["suspend"] is True
    edit(caches, entrypoint="python changed.py")
    client.clear()
    await reconciler.reconcile(REQ)
    (keep_manager, keep_force, keep), (_, _, body) = applies(client)
    assert (keep["kind"], keep_manager, keep_force) == ("RayJob", MANAGER + SUSPEND_MANAGER_SUFFIX, False)
    assert "suspend" not in body["spec"] and body["spec"]["entrypoint"] == "python changed.py"

"""Workloads under change and faults (issue 13): a running Job is never disturbed by edits, labels or a
KaiwoConfig change (same pod, never re-suspended, one SpecNotApplied per generation); a queued Job stays
suspended through an edit until Kueue admits it; cordoned GPU nodes do not rewrite the status of running or
finished work; malformed embedded specs that the CRD schema lets through (drawn by hypothesis) end in ERROR
with a message naming the field while the operator keeps serving the others.

Same in-process operator (module-scoped) as test_workloads.py. Cluster state a test changes (KaiwoConfig, node
cordons) is restored in ``finally``.
"""

from __future__ import annotations

import asyncio
import functools

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kaiwo.controllers.settings import KAIWO_CONFIG_API
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj, condition
from kaiwo.translate.meta import TranslateError
from kaiwo.translate.workload import Facts, desired_children
from tests.builders import KaiwoJobBuilder, KaiwoServiceBuilder
from tests.e2e.helpers import API, event_reasons, eventually, kaiwojob, phase_is
from tests.strategies import KIND_OF, mutated

LONG = {"kwok.kaiwo.dev/duration": "600s"}  # the pod runs until deleted, as far as a test is concerned
NAME_LABEL = "kaiwo.silogen.ai/name"


async def pod_uids(client: Client, name: str, ns: str) -> set[str]:
    pods = await client.list("v1", "Pod", ns, labelSelector=f"{NAME_LABEL}={name}")
    return {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}


async def spec_applied(client: Client, name: str, ns: str, status: str, reason: str) -> Obj | None:
    obj = await client.get(API, "KaiwoJob", name, ns)
    c = condition(obj, "SpecApplied") or {}
    return obj if (c.get("status"), c.get("reason")) == (status, reason) else None


async def quiet(operator: Manager, seconds: float = 3.0) -> None:
    """Resync every controller (a pass over every object, as after a restart) and let the passes run."""
    for ctrl in operator.controllers:
        ctrl.resync()
    await asyncio.sleep(seconds)


async def test_running_job_is_never_disturbed_by_edits_labels_or_config(
    client: Client, namespace: str, operator: Manager
) -> None:
    await client.create(kaiwojob("train", namespace, annotations=LONG, job={"spec": {"activeDeadlineSeconds": 3600}}))
    await eventually(lambda: phase_is(client, "KaiwoJob", "train", namespace, "RUNNING"), "train RUNNING", timeout=90)
    uids = await pod_uids(client, "train", namespace)
    assert len(uids) == 1
    job = await client.get("batch/v1", "Job", "train", namespace)
    assert job["spec"]["suspend"] is False
    owners = suspend_owners(job)
    assert owners and not any(o.startswith("kaiwo-") for o in owners), f"Kueue owns suspend once admitted: {owners}"

    # 1. a mutable field: applied to the running Job, nothing else changes
    await client.patch(
        API, "KaiwoJob", "train", {"spec": {"job": {"spec": {"activeDeadlineSeconds": 7200}}}}, namespace
    )

    async def deadline_applied() -> Obj | None:
        j = await client.get("batch/v1", "Job", "train", namespace)
        return j if j["spec"].get("activeDeadlineSeconds") == 7200 else None

    await eventually(deadline_applied, "activeDeadlineSeconds 7200 on the Job", timeout=30)
    await quiet(operator, 2)
    assert (await client.get("batch/v1", "Job", "train", namespace))["spec"]["suspend"] is False

    # 2. a label reaches the (immutable) pod template: SpecApplied=False, one Warning event
    await client.patch(API, "KaiwoJob", "train", {"metadata": {"labels": {"team": "vision"}}}, namespace)
    await eventually(
        lambda: spec_applied(client, "train", namespace, "False", "ImmutableField"), "SpecApplied=False", timeout=30
    )
    await quiet(operator)
    assert (await event_reasons(client, "KaiwoJob", "train", namespace, wait_for={"SpecNotApplied"}))[
        "SpecNotApplied"
    ] == 1

    # 3. a KaiwoConfig change that renders the Job differently (the generated template's scheduler)
    before = await client.get_or_none(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo")
    patch = {"spec": {"scheduling": {"kubeSchedulerName": "default-scheduler"}}}
    try:
        if before is None:
            await client.create(
                {"apiVersion": KAIWO_CONFIG_API, "kind": "KaiwoConfig", "metadata": {"name": "kaiwo"}, **patch}
            )
        else:
            await client.patch(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo", patch)
        await quiet(operator)
    finally:
        if before is None:
            await client.delete(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo")
        else:
            old = ((before.get("spec") or {}).get("scheduling") or {}).get("kubeSchedulerName")
            await client.patch(
                KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo", {"spec": {"scheduling": {"kubeSchedulerName": old}}}
            )
    obj = await client.get(API, "KaiwoJob", "train", namespace)
    assert obj["status"]["status"] == "RUNNING"
    assert (await event_reasons(client, "KaiwoJob", "train", namespace))["SpecNotApplied"] == 1, "same generation"

    # 4. a new generation that cannot be applied either: exactly one more event
    await client.patch(API, "KaiwoJob", "train", {"spec": {"env": [{"name": "A", "value": "1"}]}}, namespace)
    generation = obj["metadata"]["generation"] + 1

    async def observed() -> Obj | None:
        o = await client.get(API, "KaiwoJob", "train", namespace)
        return o if o["status"].get("observedGeneration") == generation else None

    await eventually(observed, f"generation {generation} observed", timeout=30)
    await quiet(operator)
    assert (await event_reasons(client, "KaiwoJob", "train", namespace, wait_for={"SpecNotApplied": 2}))[
        "SpecNotApplied"
    ] == 2

    # never disturbed: the same pod, never suspended
    assert await pod_uids(client, "train", namespace) == uids
    job = await client.get("batch/v1", "Job", "train", namespace)
    assert job["spec"]["suspend"] is False and job["spec"]["activeDeadlineSeconds"] == 7200
    job_events = await event_reasons(client, "Job", "train", namespace)
    # created suspended, resumed once by Kueue's admission, never suspended again
    assert (job_events["Suspended"], job_events["Resumed"]) == (1, 1), job_events
    assert (await client.get(API, "KaiwoJob", "train", namespace))["status"]["status"] == "RUNNING"


async def test_cordoned_gpu_nodes_change_no_running_or_complete_status(
    client: Client, namespace: str, operator: Manager
) -> None:
    await client.create(kaiwojob("running", namespace, gpus=8, gpuVendor="amd", annotations=LONG))
    await client.create(kaiwojob("done", namespace, gpus=8, gpuVendor="amd"))
    await eventually(lambda: phase_is(client, "KaiwoJob", "running", namespace, "RUNNING"), "running", timeout=90)
    await eventually(lambda: phase_is(client, "KaiwoJob", "done", namespace, "COMPLETE"), "done", timeout=90)
    before = {n: (await client.get(API, "KaiwoJob", n, namespace))["status"] for n in ("running", "done")}
    amd = [
        n["metadata"]["name"]
        for n in await client.list("v1", "Node")
        if int((n.get("status") or {}).get("allocatable", {}).get("amd.com/gpu", "0")) > 0
        and not (n.get("spec") or {}).get("unschedulable")
    ]
    assert amd
    try:
        for node in amd:
            await client.patch("v1", "Node", node, {"spec": {"unschedulable": True}})
        await quiet(operator, 4)
        after = {n: (await client.get(API, "KaiwoJob", n, namespace))["status"] for n in ("running", "done")}
        assert after == before, "a drain must not re-judge work that already runs or ran"
    finally:
        for node in amd:
            await client.patch("v1", "Node", node, {"spec": {"unschedulable": None}})


def malformed_specs(count: int) -> list[tuple[str, Obj]]:
    """``count`` embedded specs that pass the CRD schema but not translate (hypothesis, as in the unit tests)."""
    found: list[tuple[str, Obj]] = [("job", {"spec": {"template": 17}})]

    @settings(
        max_examples=200, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck), deadline=None
    )
    @given(st.sampled_from(sorted(KIND_OF)), st.data())
    def collect(field: str, data: st.DataObject) -> None:
        embedded = data.draw(mutated(field))  # drawn every time: hypothesis replays draws deterministically
        if len(found) < count and isinstance(
            desired_children(wrap(field, embedded, "probe").obj(), Facts()), TranslateError
        ):
            found.append((field, embedded))

    collect()
    return found


def wrap(field: str, embedded: Obj, name: str, ns: str = "ns") -> KaiwoJobBuilder | KaiwoServiceBuilder:
    builder = KaiwoJobBuilder if KIND_OF[field] == "KaiwoJob" else KaiwoServiceBuilder
    return builder(name, ns).image("busybox:1.36").spec_field(field, embedded)


async def test_malformed_embedded_specs_are_errors_naming_the_field(
    client: Client, namespace: str, operator: Manager
) -> None:
    accepted = []
    for i, (field, embedded) in enumerate(malformed_specs(6)):
        try:
            created = await client.create(wrap(field, embedded, f"bad-{i}", namespace).manifest())
        except Exception:  # the CRD schema refused it: not this test's case
            continue
        accepted.append(created)
    assert len(accepted) >= 3, "the CRD schema keeps embedded specs unvalidated"
    await client.create(kaiwojob("healthy", namespace))

    for created in accepted:
        name, kind = created["metadata"]["name"], created["kind"]
        expected = desired_children(created, Facts())
        assert isinstance(expected, TranslateError)
        err = await eventually(functools.partial(phase_is, client, kind, name, namespace, "ERROR"), name, timeout=30)
        cond = condition(err, "Schedulable") or {}
        assert cond.get("message") == expected.message and expected.message.startswith("spec."), cond
    await eventually(lambda: phase_is(client, "KaiwoJob", "healthy", namespace, "COMPLETE"), "healthy", timeout=90)
    await quiet(operator, 2)
    for created in accepted:
        name, kind = created["metadata"]["name"], created["kind"]
        assert (await event_reasons(client, kind, name, namespace, wait_for={"WorkloadError"}))["WorkloadError"] == 1


def suspend_owners(job: Obj) -> set[str]:
    return {
        m["manager"]
        for m in job["metadata"].get("managedFields") or []
        if "f:suspend" in ((m.get("fieldsV1") or {}).get("f:spec") or {})
    }


async def test_queued_job_edit_keeps_it_suspended_until_kueue_admits_it(
    client: Client, namespace: str, operator: Manager
) -> None:
    nvidia = {"gpus": 16, "gpuVendor": "nvidia", "annotations": LONG}  # all of the queue's NVIDIA GPUs
    await client.create(kaiwojob("first", namespace, **nvidia))
    await eventually(lambda: phase_is(client, "KaiwoJob", "first", namespace, "RUNNING"), "first RUNNING", timeout=90)
    await client.create(kaiwojob("queued", namespace, job={"spec": {"activeDeadlineSeconds": 3600}}, **nvidia))
    await eventually(lambda: phase_is(client, "KaiwoJob", "queued", namespace, "PENDING"), "queued PENDING")
    job = await eventually(lambda: client.get_or_none("batch/v1", "Job", "queued", namespace), "the queued Job")
    assert job["spec"]["suspend"] is True and suspend_owners(job) == {"kaiwo-kaiwojob"}

    # The edit: our manager lets go of suspend; a second manager of ours keeps it true (no un-suspended moment).
    await client.patch(
        API, "KaiwoJob", "queued", {"spec": {"job": {"spec": {"activeDeadlineSeconds": 7200}}}}, namespace
    )

    async def edited() -> Obj | None:
        j = await client.get("batch/v1", "Job", "queued", namespace)
        return j if j["spec"].get("activeDeadlineSeconds") == 7200 else None

    job = await eventually(edited, "the edit applied to the queued Job", timeout=30)
    assert job["spec"]["suspend"] is True and suspend_owners(job) == {"kaiwo-kaiwojob-suspend"}, job["metadata"]
    await quiet(operator, 2)
    assert await pod_uids(client, "queued", namespace) == set()
    assert (await event_reasons(client, "Job", "queued", namespace))["Resumed"] == 0, "never un-suspended"
    assert (await client.get(API, "KaiwoJob", "queued", namespace))["status"]["status"] == "PENDING"

    # Room in the queue: Kueue admits it by un-suspending (taking the field), and it runs.
    await client.delete(API, "KaiwoJob", "first", namespace)
    await eventually(lambda: phase_is(client, "KaiwoJob", "queued", namespace, "RUNNING"), "queued RUNNING", timeout=90)
    job = await client.get("batch/v1", "Job", "queued", namespace)
    assert job["spec"]["suspend"] is False and not any(o.startswith("kaiwo-") for o in suspend_owners(job))

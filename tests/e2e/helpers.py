"""Helpers of the e2e tests: polling (every wait has a deadline and says what it waited for), the workloads they
submit, and what they read back from the cluster."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar

import aiohttp
from typer.testing import Result

from kaiwo.api.kaiwojob import API_VERSION
from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import Obj
from tests.builders import KaiwoJobBuilder

T = TypeVar("T")
API = API_VERSION  # the Kaiwo group/version
Cli = Callable[..., Awaitable[Result]]  # the `cli` fixture: runs one `kaiwo` command


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60.0, interval: float = 0.25
) -> T:
    """Call ``probe`` until it returns something truthy; fail with ``what`` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        await asyncio.sleep(interval)


async def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 now (False while nothing listens there yet)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


def assert_no_overlap(events: list[tuple[str, float]]) -> None:
    """Each replica's reconciles (who, time) form one time span; the spans of different replicas must not overlap."""
    spans: dict[str, tuple[float, float]] = {}
    for who, t in events:
        lo, hi = spans.get(who, (t, t))
        spans[who] = (min(lo, t), max(hi, t))
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    for (a, (_, a_end)), (b, (b_start, _)) in itertools.pairwise(ordered):
        assert a_end < b_start, f"{a} still reconciled at {a_end:.3f} after {b} started at {b_start:.3f}"


def kaiwojob(name: str, ns: str | None, **spec: Any) -> Obj:
    """A KaiwoJob manifest (busybox:1.36, ``echo hello``) with ``spec`` fields by their JSON names; a None value
    leaves the field out, ``annotations`` are metadata annotations (e.g. kwok's ``kwok.kaiwo.dev/duration``)."""
    job = KaiwoJobBuilder(name, ns).image("busybox:1.36").entrypoint("echo hello")
    for key, value in (spec.pop("annotations", None) or {}).items():
        job.annotation(key, value)
    for key, value in spec.items():
        if value is None:
            job.unset(key)
        else:
            job.spec_field(key, value)
    return job.manifest()


async def phase_is(client: Client, kind: str, name: str, ns: str, *phases: str) -> Obj | None:
    """The Kaiwo workload if its status is one of ``phases`` (for ``eventually``)."""
    obj = await client.get_or_none(API, kind, name, ns)
    return obj if obj and (obj.get("status") or {}).get("status") in phases else None


async def job_pods(client: Client, namespace: str, name: str, count: int) -> list[Obj]:
    """The pods of batch Job ``name`` once there are exactly ``count`` and every one is scheduled (RUNNING needs
    only one ready pod)."""

    async def scheduled() -> list[Obj] | None:
        pods = await client.list("v1", "Pod", namespace, labelSelector=f"batch.kubernetes.io/job-name={name}")
        placed = all((p.get("spec") or {}).get("nodeName") for p in pods)
        return pods if len(pods) == count and placed else None

    return await eventually(scheduled, f"{count} pods of {name} scheduled", timeout=90)


async def replace_spec(client: Client, api_version: str, kind: str, name: str, spec: Obj) -> Obj:
    """Replace a cluster-scoped object's ``spec`` whole, as a PUT would, but without a resourceVersion: a
    controller's status write since the object was read cannot make it a conflict."""
    return await client.patch(
        api_version, kind, name, [{"op": "replace", "path": "/spec", "value": spec}], patch_type="json"
    )


def job_succeeded_at(job: Obj) -> str | None:
    """When a batch Job was first known to have succeeded: SuccessCriteriaMet (Kubernetes >= 1.31 writes it first,
    and Kaiwo acts on it), else Complete; None while neither is True. RFC 3339 strings compare in time order."""
    times = [
        c.get("lastTransitionTime") or ""
        for c in (job.get("status") or {}).get("conditions") or []
        if c.get("type") in ("SuccessCriteriaMet", "Complete") and c.get("status") == "True"
    ]
    return min(times) if times else None


def times_reported(event: Obj) -> int:
    """How often an Event says it happened (aggregated repeats carry a count or a series)."""
    return max(event.get("count") or 1, (event.get("series") or {}).get("count") or 1)


async def event_reasons(
    client: Client,
    kind: str,
    name: str,
    ns: str,
    *,
    wait_for: Collection[str] | Mapping[str, int] = (),
    timeout: float = 30.0,
) -> Counter[str]:
    """How often each reason was reported about ``kind``/``name`` (an aggregated Event counts as often as it says it
    happened), once every reason in ``wait_for`` is there (as often as a mapping ``{reason: times}`` says).

    The workload controllers send events in the background, after the status write they report
    (docs/design/runtime.md#events): a test that has just seen a phase must wait for that phase's event.
    """

    need = dict(wait_for) if isinstance(wait_for, Mapping) else dict.fromkeys(wait_for, 1)

    async def counted() -> tuple[Counter[str]] | None:  # in a tuple: no events at all is an answer too
        events = await client.list("v1", "Event", ns, fieldSelector=f"involvedObject.name={name}")
        out: Counter[str] = Counter()
        for e in events:
            if e["involvedObject"]["kind"] == kind:
                out[e["reason"]] += times_reported(e)
        return (out,) if all(out[r] >= times for r, times in need.items()) else None

    (seen,) = await eventually(counted, f"events {need} about {kind} {ns}/{name}", timeout=timeout)
    return seen


def ok(result: Result, code: int = 0) -> Result:
    """``result`` of a CLI command, which must have exited with ``code``."""
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result

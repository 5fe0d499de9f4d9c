"""Kueue stopped, the operator restarted (issue 13, item 3 and 5): the operator becomes ready, a KaiwoJob shows
a condition naming the webhook that cannot be called (one event, bounded backoff), and converges once Kueue
is back.

How Kueue is stopped: SIGSTOP freezes the Kueue process (its controllers and its webhook server), and its
webhook configurations are pointed at a closed port, so the apiserver fails each call at once with
"connection refused", as it does when the process is gone (the local cluster's supervisor treats an exited
addon as a failed cluster, so the process cannot simply be killed). Kueue's CRD conversion webhook is frozen
too: only an operator that reads Kueue's storage version (v1beta2) can sync its caches now. Both are undone
in ``finally``, whatever happens. Its own module: the operator here is started while Kueue is down.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterator

import pytest

from kaiwo.devcluster.cluster import DevCluster
from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import Obj, condition
from tests.e2e.conftest import running_operator
from tests.e2e.helpers import API, event_reasons, eventually, kaiwojob, phase_is

HOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
ADMISSION = "admissionregistration.k8s.io/v1"
CLOSED = "https://127.0.0.1:1"  # nothing listens on port 1: connection refused


async def kueue_hooks(client: Client) -> list[Obj]:
    return [
        {**h, "kind": kind}  # list items carry no kind
        for kind in HOOK_KINDS
        for h in await client.list(ADMISSION, kind)
        if h["metadata"]["name"].startswith("kueue")
    ]


def _point(hooks: list[Obj], base: str | None) -> list[Obj]:
    out = []
    for h in hooks:
        h = dict(h)
        if base is not None:
            url = h["clientConfig"]["url"]
            h["clientConfig"] = {**h["clientConfig"], "url": re.sub(r"^https://[^/]+", base, url)}
        out.append(h)
    return out


class KueueOutage:
    """Stops Kueue (``stop``) and brings it back (``restore``, idempotent)."""

    def __init__(self, client: Client, pid: int) -> None:
        self.client = client
        self.pid = pid
        self.originals: list[Obj] = []
        self.stopped = False

    async def stop(self) -> None:
        self.originals = await kueue_hooks(self.client)
        assert self.originals, "the local cluster installs Kueue's webhooks"
        self.stopped = True
        os.kill(self.pid, signal.SIGSTOP)
        for cfg in self.originals:
            hooks = _point(cfg["webhooks"], CLOSED)
            await self.client.patch(ADMISSION, cfg["kind"], cfg["metadata"]["name"], {"webhooks": hooks})

    async def restore(self) -> None:
        if not self.stopped:
            return
        os.kill(self.pid, signal.SIGCONT)  # first: nothing below may leave the shared cluster's Kueue frozen
        self.stopped = False
        for cfg in self.originals:
            await self.client.patch(ADMISSION, cfg["kind"], cfg["metadata"]["name"], {"webhooks": cfg["webhooks"]})
        self.originals = []


@pytest.fixture
def kueue_pid(dev_cluster: DevCluster | None) -> Iterator[int]:
    if dev_cluster is None:
        pytest.skip("stops the local cluster's Kueue process")
    yield int(dev_cluster.status().data["components"]["kueue"]["pid"])


async def test_kueue_down_at_operator_start_is_a_condition_then_converges(
    client: Client, namespace: str, operator_kubeconfig: str, kaiwo_crds: None, kueue_pid: int
) -> None:
    outage = KueueOutage(client, kueue_pid)
    try:
        await outage.stop()
        async with running_operator(operator_kubeconfig, "KaiwoJob") as mgr:
            await eventually(lambda: _now(mgr.ready), "the operator ready while Kueue is down", timeout=30)
            await client.create(kaiwojob("waits", namespace))

            async def webhook_condition() -> Obj | None:
                obj = await client.get(API, "KaiwoJob", "waits", namespace)
                c = condition(obj, "SpecApplied") or {}
                return obj if c.get("reason") == "WebhookUnavailable" else None

            obj = await eventually(webhook_condition, "SpecApplied=False naming the webhook", timeout=30)
            cond = condition(obj, "SpecApplied") or {}
            assert cond["status"] == "False" and re.search(r'webhook "[a-z.-]+\.kb\.io"', cond["message"]), cond
            assert obj["status"]["status"] == "PENDING", "Kueue being down is not the user's error"
            await asyncio.sleep(8)  # several retries (1, 2, 4 s ...): still one event
            assert (await event_reasons(client, "KaiwoJob", "waits", namespace))["SpecNotApplied"] == 1

            await outage.restore()  # Kueue is back: the next retry (at most 20 s away) converges
            done = await eventually(
                lambda: phase_is(client, "KaiwoJob", "waits", namespace, "COMPLETE"), "waits COMPLETE", timeout=90
            )
            assert (condition(done, "SpecApplied") or {}).get("status") == "True"
    finally:
        await outage.restore()


async def _now(value: bool) -> bool:
    return value

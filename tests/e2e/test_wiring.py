"""Declarative wiring against a real apiserver's discovery (kaiwo.runtime.builder): the first served candidate
apiVersion is used, an optional API the cluster does not serve is skipped and holds nothing back, a required one
stops the set-up."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kaiwo.runtime.builder import ControllerSpec, For, Reads, Watches, build, resolve
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.controller import Request
from kaiwo.runtime.manager import Manager, ManagerOptions
from kaiwo.runtime.objects import Obj
from kaiwo.translate.queueconfig import KUEUE_API
from tests.e2e.helpers import eventually
from tests.fakes import RecordingReconciler

NOT_SERVED = "nothing.kaiwo.silogen.ai/v1"


def nothing(_: object, __: Obj) -> list[Request]:
    return []


async def test_optional_and_candidate_sources_follow_the_servers_discovery(
    kubeconfig: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = await Client.from_kubeconfig(kubeconfig)
    mgr = Manager(client, ManagerOptions(health_address="", metrics_address=""))
    spec = ControllerSpec(
        "probe",
        (
            For("v1", "ConfigMap"),
            Reads(("kueue.x-k8s.io/v9", KUEUE_API), "Workload"),
            Watches(NOT_SERVED, "Nothing", mapper=nothing, optional=True),
        ),
    )
    stop = asyncio.Event()
    run: asyncio.Task[int] | None = None
    try:
        with pytest.raises(ApiError) as e:
            await resolve(mgr, [Reads(NOT_SERVED, "Nothing")])
        assert e.value.not_found
        sources = await resolve(mgr, [Reads(("kueue.x-k8s.io/v9", KUEUE_API), "Workload")])
        assert sources.served("Workload") == KUEUE_API

        ctrl, recorder = await build(mgr, spec, lambda _: RecordingReconciler())
        assert "Nothing (nothing.kaiwo.silogen.ai/v1) is not served by this cluster" in caplog.text
        assert [i.name for i in ctrl.sources] == ["ConfigMap.v1"]
        run = asyncio.create_task(mgr.run(stop))
        await client.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": namespace}}
        )

        async def reconciled() -> bool:
            return Request(namespace, "cm") in recorder.seen

        await eventually(reconciled, "the ConfigMap reconciled", timeout=30)
    finally:
        stop.set()
        if run is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run, 30)
        await client.close()

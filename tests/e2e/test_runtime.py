"""The controller runtime against a real apiserver: informers, watch recovery, apply, metrics, traces."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kaiwo.runtime.apply import Applier
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.controller import Controller, Request, Result
from kaiwo.runtime.informer import ApiListerWatcher, FuncHandler, Informer
from kaiwo.runtime.manager import Manager, ManagerOptions
from tests.e2e.helpers import eventually


def configmap(name: str, ns: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


class Recorder:
    """Collects informer events as (type, name, data)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, str]]] = []

    def handler(self) -> FuncHandler:
        return FuncHandler(
            add=lambda o, initial: self.events.append(("add", o["metadata"]["name"], o.get("data") or {})),
            update=lambda old, new: self.events.append(("update", new["metadata"]["name"], new.get("data") or {})),
            delete=lambda o: self.events.append(("delete", o["metadata"]["name"], o.get("data") or {})),
        )

    def saw(self, kind: str, name: str, **data: str) -> bool:
        return any(
            e[0] == kind and e[1] == name and all(e[2].get(k) == v for k, v in data.items()) for e in self.events
        )


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.wait_synced(), 30)
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def cm_informer(client: Client, ns: str, **kw: Any) -> Informer:
    res = await client.resource("v1", "ConfigMap")
    return Informer(ApiListerWatcher(client, res, ns), name="configmaps", **kw)


async def test_informer_sees_create_update_delete(client: Client, namespace: str) -> None:
    await client.create(configmap("before", namespace, v="0"))
    rec = Recorder()
    inf = await cm_informer(client, namespace)
    inf.add_handler(rec.handler())
    async with running(inf):
        assert rec.saw("add", "before", v="0")
        assert "managedFields" not in inf.get_by("before", namespace)["metadata"]  # type: ignore[index]
        await client.create(configmap("a", namespace, v="1"))
        await eventually(lambda: _async(rec.saw("add", "a", v="1")), "add event of a", timeout=10)
        await client.patch("v1", "ConfigMap", "a", {"data": {"v": "2"}}, namespace)
        await eventually(lambda: _async(rec.saw("update", "a", v="2")), "update event of a", timeout=10)
        await client.delete("v1", "ConfigMap", "a", namespace)
        await eventually(lambda: _async(rec.saw("delete", "a")), "delete event of a", timeout=10)
        assert inf.get_by("a", namespace) is None
        assert {o["metadata"]["name"] for o in inf.by_index("namespace", namespace)} >= {"before"}


async def _async(value: bool) -> bool:
    return value


async def _etcd_compact(http: aiohttp.ClientSession, etcd_url: str) -> int:
    key = base64.b64encode(b"/registry").decode()
    async with http.post(f"{etcd_url}/v3/kv/range", json={"key": key, "limit": 1}) as r:
        revision = int((await r.json())["header"]["revision"])
    async with http.post(f"{etcd_url}/v3/kv/compaction", json={"revision": revision, "physical": True}) as r:
        assert r.status == 200, await r.text()
    return revision


def podtemplate(name: str, ns: str, v: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name, "namespace": ns},
        "template": {"metadata": {"labels": {"v": v}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    }


async def test_informer_relists_after_compaction_without_losing_changes(
    client: Client, namespace: str, etcd_url: str
) -> None:
    """The local apiserver serves PodTemplates without a watch cache, so compacting etcd expires old versions."""
    for name in ("keep", "change", "remove"):
        await client.create(podtemplate(name, namespace, "1"))
    seen: list[tuple[str, str, str]] = []

    def note(kind: str, o: dict[str, Any]) -> None:
        seen.append((kind, o["metadata"]["name"], o["template"]["metadata"]["labels"]["v"]))

    res = await client.resource("v1", "PodTemplate")
    inf = Informer(ApiListerWatcher(client, res, namespace), name="podtemplates")
    inf.add_handler(
        FuncHandler(
            add=lambda o, _: note("add", o), update=lambda _, o: note("update", o), delete=lambda o: note("delete", o)
        )
    )
    async with running(inf):
        pass  # synced at the version of the first list; now the informer is disconnected
    stale_rv = inf.resource_version
    await client.patch("v1", "PodTemplate", "change", {"template": {"metadata": {"labels": {"v": "2"}}}}, namespace)
    await client.delete("v1", "PodTemplate", "remove", namespace)
    async with aiohttp.ClientSession() as http:
        revision = await _etcd_compact(http, etcd_url)
    assert revision > int(stale_rv)
    async with running(inf):  # resumes the watch from stale_rv: 410 Gone, relist, diff
        await eventually(
            lambda: _async(("update", "change", "2") in seen and ("delete", "remove", "1") in seen),
            "the update and the delete made while disconnected",
            timeout=30,
        )
    assert inf.relists == 2, "expected a 410 Gone and a fresh relist"
    assert inf.get_by("keep", namespace) is not None and inf.get_by("remove", namespace) is None


class SilenceableProxy:
    """A TCP proxy on 127.0.0.1 whose open connections can be made to stop delivering (a hung stream)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.silent = False
        self.conns: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def silence_open_connections(self) -> None:
        self.silent = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.conns += [writer, up_writer]
        born_silent = self.silent  # connections opened after silencing work normally

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if self.silent and not born_silent:
                        continue  # swallow: the peer sees a live but mute connection
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        for w in self.conns:
            w.close()
        if self.server:
            self.server.close()


async def test_silent_watch_stream_is_replaced_within_the_client_timeout(
    client: Client, kubeconfig: str, namespace: str
) -> None:
    port = int(client.host.rsplit(":", 1)[1])
    proxy = SilenceableProxy(port)
    proxied = await Client.from_kubeconfig(kubeconfig)
    try:
        proxied.host = f"https://127.0.0.1:{await proxy.start()}"
        rec = Recorder()
        res = await proxied.resource("v1", "ConfigMap")
        inf = Informer(
            ApiListerWatcher(proxied, res, namespace), name="cm-proxied", watch_timeout_range=(4, 4), client_grace=2.0
        )
        inf.add_handler(rec.handler())
        async with running(inf):
            await eventually(lambda: _async(inf.watches == 1), "first watch", timeout=5)
            proxy.silence_open_connections()
            await client.create(configmap("during-silence", namespace, v="1"))
            loop = asyncio.get_running_loop()
            started = loop.time()
            await eventually(
                lambda: _async(rec.saw("add", "during-silence")), "event after the stream was replaced", timeout=20
            )
            took = loop.time() - started
        assert inf.watches >= 2
        assert took <= 4 + 2 + 3, f"replacing the hung stream took {took:.1f}s"
    finally:
        await proxy.close()
        await proxied.close()


async def test_a_write_into_a_namespace_being_deleted_is_told_apart(client: Client) -> None:
    """The apiserver refuses new objects in a terminating namespace with a 403 whose cause is NamespaceTerminating;
    ApiError.namespace_terminating reads it (the controllers and the event recorder then log no error)."""
    ns = f"e2e-terminating-{secrets.token_hex(3)}"
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    held = configmap("held", ns) | {"metadata": {"name": "held", "namespace": ns, "finalizers": ["kaiwo.dev/test"]}}
    await client.create(held)  # its finalizer keeps the namespace terminating until this test removes it
    try:
        await client.delete("v1", "Namespace", ns)
        with pytest.raises(ApiError) as refused:
            await client.create(configmap("late", ns))
        assert refused.value.status == 403 and refused.value.namespace_terminating, refused.value.body
    finally:
        await client.patch("v1", "ConfigMap", "held", {"metadata": {"finalizers": None}}, ns)


async def test_apply_creates_then_skips_identical_apply(client: Client, namespace: str) -> None:
    sent: list[tuple[str, int]] = []
    client.observers.append(lambda method, code: sent.append((method, code)))
    try:
        applier = Applier(client, "kaiwo-test")
        desired = configmap("applied", namespace, v="1")
        created = await applier.apply(desired, None)
        assert created is not None and created["data"] == {"v": "1"}
        assert [s for s in sent if s[0] == "PATCH"] == [("PATCH", 201)]
        live = await client.get("v1", "ConfigMap", "applied", namespace)
        sent.clear()
        assert await applier.apply(configmap("applied", namespace, v="1"), live) is None
        assert sent == [], "an unchanged apply must send no request"
        updated = await applier.apply(configmap("applied", namespace, v="2"), live)
        assert updated is not None and updated["data"] == {"v": "2"}
        assert [s[0] for s in sent] == ["PATCH"]
        managers = {
            m["manager"]
            for m in (await client.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/applied"))["metadata"][
                "managedFields"
            ]
        }
        assert managers == {"kaiwo-test"}
    finally:
        client.observers.pop()


async def test_manager_metrics_and_reconcile_span(client: Client, kubeconfig: str, namespace: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    mgr_client = await Client.from_kubeconfig(kubeconfig)
    mgr_client.tracer = tracer
    seen: list[Request] = []

    class Reconciler:
        async def reconcile(self, req: Request) -> Result | None:
            await mgr_client.get("v1", "ConfigMap", req.name, req.namespace)
            seen.append(req)  # after the GET: the metrics below count it
            return None

    mgr = Manager(
        mgr_client, ManagerOptions(health_address="127.0.0.1:0", metrics_address="127.0.0.1:0"), tracer=tracer
    )
    informer = await mgr.informer("v1", "ConfigMap", namespace=namespace)
    ctrl = Controller("configmap-test", Reconciler(), workers=2)
    ctrl.watches(informer)
    mgr.add(ctrl)
    stop = asyncio.Event()
    run = asyncio.create_task(mgr.run(stop))
    try:
        await client.create(configmap("traced", namespace, v="1"))
        await eventually(lambda: _async(Request(namespace, "traced") in seen), "reconcile of traced", timeout=15)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{mgr.bound['metrics']}/metrics") as r:
                text = await r.text()
            async with http.get(f"http://127.0.0.1:{mgr.bound['health']}/readyz") as r:
                assert r.status == 200
        assert 'controller_runtime_reconcile_total{controller="configmap-test",result="success"}' in text
        assert 'workqueue_adds_total{name="configmap-test"}' in text
        assert 'rest_client_requests_total{code="200",method="GET"}' in text
        assert "controller_runtime_reconcile_time_seconds_bucket" in text

        async def reconcile_span() -> Any:  # finished when the reconcile returns, after ``seen`` showed it started
            return next(
                (
                    s
                    for s in exporter.get_finished_spans()
                    if s.name == "reconcile configmap-test" and s.attributes and s.attributes.get("name") == "traced"
                ),
                None,
            )

        rec_span = await eventually(reconcile_span, "the finished reconcile span", timeout=15)
        spans = exporter.get_finished_spans()
        children = [s for s in spans if s.parent is not None and s.parent.span_id == rec_span.context.span_id]
        assert any(s.name.startswith("GET /api/v1/namespaces/") for s in children)
    finally:
        stop.set()
        assert await asyncio.wait_for(run, 30) == 0
        await mgr_client.close()

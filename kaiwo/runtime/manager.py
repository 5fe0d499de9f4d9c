"""The manager: shared informers, controllers, leader election, health and metrics endpoints, shutdown.

Lifecycle of ``run``: serve /healthz, /readyz and /metrics; start every informer and wait for their caches;
acquire the Lease (if leader election is on; standbys keep warm caches meanwhile); start the controllers;
run until ``stop`` is set (SIGTERM) or leadership is lost. Shutdown drains the controllers' in-flight
reconciles, releases the Lease, stops the informers and the HTTP server. ``run`` returns the process exit
code: 0 after a requested stop, 1 when leadership was lost (the process must exit, as controller-runtime does,
so no two replicas ever reconcile at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry import trace

from kaiwo.runtime.client import Client
from kaiwo.runtime.controller import Controller
from kaiwo.runtime.informer import ApiListerWatcher, Informer, Transform
from kaiwo.runtime.leader import LeaderElectionConfig, LeaderElector
from kaiwo.runtime.metrics import RuntimeMetrics
from kaiwo.runtime.metrics_auth import MetricsAuthorizer, server_tls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManagerOptions:
    health_address: str = "127.0.0.1:8081"  # host:port; empty disables
    metrics_address: str = "127.0.0.1:8080"  # host:port; empty disables
    metrics_secure: bool = False  # HTTPS, and only for tokens allowed to get /metrics (kaiwo.runtime.metrics_auth)
    metrics_cert: tuple[str, str] | None = None  # (certificate, key) files of the secure metrics; None: self-signed
    leader_election: LeaderElectionConfig | None = None
    resync_period: float = 10 * 3600.0  # re-enqueue every primary object this often (0 = never)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


class Manager:
    def __init__(
        self,
        client: Client,
        options: ManagerOptions | None = None,
        *,
        metrics: RuntimeMetrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.client = client
        self.options = options or ManagerOptions()
        self.metrics = metrics or RuntimeMetrics()
        self.tracer = tracer
        client.observers.append(self.metrics.observe_request)
        self.informers: dict[tuple[str, str, str | None, str | None], Informer] = {}
        self.controllers: list[Controller] = []
        self.elector: LeaderElector | None = None
        self.controllers_started = False
        self.bound: dict[str, int] = {}  # "health"/"metrics" -> port actually bound (when asked for port 0)
        self._informer_tasks: list[asyncio.Task[None]] = []

    async def informer(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        transform: Transform | None = None,
    ) -> Informer:
        """The one shared informer for this type (namespace and label selector); created on first use."""
        key = (api_version, kind, namespace, label_selector)
        if key not in self.informers:
            res = await self.client.resource(api_version, kind)
            inf = Informer(
                ApiListerWatcher(self.client, res, namespace, label_selector),
                name=f"{kind}.{api_version}",
                transform=transform,
            )
            self.informers[key] = inf
            if self._informer_tasks:  # manager already running: start it now
                self._informer_tasks.append(asyncio.create_task(inf.run(), name=f"informer-{inf.name}"))
        return self.informers[key]

    def add(self, controller: Controller) -> None:
        if self.tracer is not None:
            controller.tracer = self.tracer
        controller.metrics = self.metrics
        self.controllers.append(controller)

    @property
    def synced(self) -> bool:
        return all(i.has_synced for i in self.informers.values())

    @property
    def ready(self) -> bool:
        leading = self.elector is None or self.elector.is_leader
        return self.synced and (self.controllers_started or not leading)

    # --- http -------------------------------------------------------------------------------------------

    async def _serve(self) -> list[web.AppRunner]:
        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def readyz(_: web.Request) -> web.Response:
            if self.ready:
                return web.Response(text="ok")
            return web.Response(status=503, text="caches not synced or controllers not started")

        authorizer = MetricsAuthorizer(self.client) if self.options.metrics_secure else None

        async def metrics(request: web.Request) -> web.Response:
            if authorizer is not None:
                code, message = await authorizer.check(request.headers.get("Authorization"), request.path)
                if code != 200:
                    return web.Response(status=code, text=message + "\n")
            return web.Response(
                body=self.metrics.exposition(),
                content_type="text/plain",
                headers={"X-Content-Type": "text/plain; version=0.0.4"},
            )

        if authorizer is not None and self.options.metrics_address == self.options.health_address:
            raise ValueError("secure metrics need an address of their own (the probes speak plain HTTP)")

        routes: dict[str, list[web.RouteDef]] = {}
        if self.options.health_address:
            routes.setdefault(self.options.health_address, []).extend(
                [web.get("/healthz", healthz), web.get("/readyz", readyz)]
            )
        if self.options.metrics_address:
            routes.setdefault(self.options.metrics_address, []).append(web.get("/metrics", metrics))
        runners = []
        for address, defs in routes.items():
            app = web.Application()
            app.add_routes(defs)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            host, port = _split(address)
            secure = authorizer is not None and address == self.options.metrics_address
            site = web.TCPSite(
                runner, host, port, ssl_context=server_tls(self.options.metrics_cert) if secure else None
            )
            await site.start()
            bound = runner.addresses[0][1] if runner.addresses else port
            for d in defs:
                self.bound["health" if d.path in ("/healthz", "/readyz") else "metrics"] = bound
            runners.append(runner)
        return runners

    # --- lifecycle --------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        runners = await self._serve()
        self._informer_tasks = [
            asyncio.create_task(i.run(), name=f"informer-{i.name}") for i in self.informers.values()
        ]
        lost = asyncio.Event()
        renew: asyncio.Task[None] | None = None
        resync: asyncio.Task[None] | None = None
        try:
            if not await _until(stop, asyncio.gather(*(i.wait_synced() for i in self.informers.values()))):
                return 0
            log.info("caches synced", extra={"fields": {"informers": len(self.informers)}})
            le = self.options.leader_election
            if le is not None:
                self.elector = LeaderElector(
                    self.client, le, on_change=lambda v: self.metrics.leader.labels(le.name).set(int(v))
                )
                self.metrics.leader.labels(le.name).set(0)
                if not await _until(stop, self.elector.acquire()):
                    return 0
                renew = asyncio.create_task(self._renew(lost), name="leader-renew")
            for c in self.controllers:
                c.start()
            self.controllers_started = True
            log.info("controllers started", extra={"fields": {"controllers": [c.name for c in self.controllers]}})
            if self.options.resync_period > 0:
                resync = asyncio.create_task(self._resync_loop(), name="resync")
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            return 1 if lost.is_set() and not stop.is_set() else 0
        finally:
            await self._shutdown(runners, renew, resync)

    async def _renew(self, lost: asyncio.Event) -> None:
        assert self.elector is not None
        await self.elector.keep_renewing()
        log.error("leader election lost; stopping")
        lost.set()

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.resync_period)
            for c in self.controllers:
                c.resync()

    async def _shutdown(self, runners: list[web.AppRunner], *tasks: asyncio.Task[Any] | None) -> None:
        for t in tasks:
            if t is not None:
                t.cancel()
        if self.controllers_started:
            await asyncio.gather(*(c.stop() for c in self.controllers))
            self.controllers_started = False
        if self.elector is not None and self.elector.is_leader:
            await self.elector.release()
        for t in self._informer_tasks:
            t.cancel()
        await asyncio.gather(*self._informer_tasks, *(t for t in tasks if t is not None), return_exceptions=True)
        self._informer_tasks = []
        for r in runners:
            await r.cleanup()
        log.info("manager stopped")


async def _until(stop: asyncio.Event, aw: Any) -> bool:
    """Await ``aw`` unless ``stop`` is set first; True if ``aw`` finished."""
    work = asyncio.ensure_future(aw)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if work in done:
        work.result()
        return True
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work
    return False


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM and SIGINT (graceful shutdown)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

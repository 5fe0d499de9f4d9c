"""The manager: shared informers, controllers, leader election, health and metrics endpoints, shutdown.

Lifecycle of ``run``: serve /healthz, /readyz and /metrics; start every informer and wait for their caches, at
most ``cache_sync_timeout``; acquire the Lease (if leader election is on; standbys keep warm caches meanwhile);
start each controller once the caches it watches have synced. A cache that cannot sync (an API not installed
yet, a list the server cannot convert) holds back only the controllers that watch it, and /readyz answers 503
naming it, until it syncs. Then run until ``stop`` is set (SIGTERM), leadership is lost, or a supervised task
dies. ``run`` returns the process exit code:
- 0 after a requested stop: no queued key is handed out any more, in-flight reconciles finish (at most
  ``drain_timeout``) while the Lease is still renewed, then the Lease is released so a standby takes over
  within one retry period;
- 1 when leadership was lost: every reconcile is cancelled at once, nothing drains (another replica may
  already be acquiring), and the process must exit, as controller-runtime's does;
- 1 when an informer, a worker, the renewal or the resync task died (a bug, never an API error: those are
  retried inside the tasks): /readyz fails with its name, then the process exits and is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry import trace

from kaiwo.runtime.client import Client
from kaiwo.runtime.controller import DRAIN_TIMEOUT, Controller
from kaiwo.runtime.informer import WATCH_IDLE_TIMEOUT, ApiListerWatcher, Informer, Transform
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
    cache_sync_timeout: float = 120.0  # then start the controllers whose caches synced (controller-runtime: 2 min)
    drain_timeout: float = DRAIN_TIMEOUT  # graceful stop: wait this long for in-flight reconciles
    watch_idle_timeout: float = WATCH_IDLE_TIMEOUT  # a watch silent this long (no event, no bookmark) is replaced
    # (API group, kind) -> the transform every informer of that kind applies to its objects (fields to drop)
    transforms: Mapping[tuple[str, str], Transform] = field(default_factory=dict)


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
        self._started: set[int] = set()  # id() of the controllers whose workers run
        self.failed = ""  # the supervised task that died, if any (fails /readyz)
        self._stopping = False

    async def informer(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        transform: Transform | None = None,
    ) -> Informer:
        """The one shared informer for this type (namespace and label selector); created on first use. Without
        ``transform``, the one ``options.transforms`` names for the kind applies."""
        key = (api_version, kind, namespace, label_selector)
        transform = transform or self.options.transforms.get((api_version.rpartition("/")[0], kind))
        if key not in self.informers:
            res = await self.client.resource(api_version, kind)
            inf = Informer(
                ApiListerWatcher(
                    self.client, res, namespace, label_selector, idle_timeout=self.options.watch_idle_timeout
                ),
                name=f"{kind}.{api_version}",
                transform=transform,
            )
            inf.on_handler_error = lambda name: self.metrics.handler_errors.labels(name).inc()
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

    def unsynced(self) -> list[str]:
        """The informers whose caches have not synced (yet)."""
        return sorted(i.name for i in self.informers.values() if not i.has_synced)

    def not_ready(self) -> str:
        """Why /readyz fails ("" when ready)."""
        if self.failed:
            return f"{self.failed} died; the process is exiting"
        missing = self.unsynced()
        if missing:
            waiting = [c.name for c in self.controllers if any(not i.has_synced for i in c.sources)]
            return f"caches not synced: {', '.join(missing)}" + (
                f"; controllers waiting for them: {', '.join(waiting)}" if waiting else ""
            )
        leading = self.elector is None or self.elector.is_leader
        if leading and not self.controllers_started:
            return "controllers not started"
        return ""

    @property
    def ready(self) -> bool:
        return not self.not_ready()

    # --- http -------------------------------------------------------------------------------------------

    async def _serve(self) -> list[web.AppRunner]:
        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def readyz(_: web.Request) -> web.Response:
            reason = self.not_ready()
            if not reason:
                return web.Response(text="ok")
            return web.Response(status=503, text=reason + "\n")

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
        self._stopping = False
        self._informer_tasks = [
            asyncio.create_task(i.run(), name=f"informer-{i.name}") for i in self.informers.values()
        ]
        lost = asyncio.Event()
        died = asyncio.Event()
        supervised: list[asyncio.Task[Any]] = []
        try:
            self._supervise(self._informer_tasks, died)
            everything = asyncio.gather(*(i.wait_synced() for i in self.informers.values()))
            if not await _until(stop, _within(everything, self.options.cache_sync_timeout), died):
                return 1 if died.is_set() else 0
            if self.unsynced():
                log.error(
                    "caches not synced after %.0fs; their controllers wait for them",
                    self.options.cache_sync_timeout,
                    extra={"fields": {"unsynced": self.unsynced()}},
                )
            else:
                log.info("caches synced", extra={"fields": {"informers": len(self.informers)}})
            le = self.options.leader_election
            if le is not None:
                self.elector = LeaderElector(
                    self.client, le, on_change=lambda v: self.metrics.leader.labels(le.name).set(int(v))
                )
                self.metrics.leader.labels(le.name).set(0)
                if not await _until(stop, self.elector.acquire(), died):
                    return 1 if died.is_set() else 0
                supervised.append(asyncio.create_task(self._renew(lost), name="leader-renew"))
            for c in self.controllers:
                if all(i.has_synced for i in c.sources):
                    self._start(c, died)
                else:
                    supervised.append(asyncio.create_task(self._start_when_synced(c, died), name=f"start-{c.name}"))
            self.controllers_started = True
            log.info("controllers started", extra={"fields": {"controllers": [c.name for c in self.controllers]}})
            if self.options.resync_period > 0:
                supervised.append(asyncio.create_task(self._resync_loop(), name="resync"))
            self._supervise(supervised, died)
            waiters = [asyncio.create_task(e.wait()) for e in (stop, lost, died)]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            return 0 if stop.is_set() and not (lost.is_set() or died.is_set()) else 1
        finally:
            await self._shutdown(runners, supervised, lost)

    def _start(self, c: Controller, died: asyncio.Event) -> None:
        c.start()
        self._started.add(id(c))
        self._supervise(c.tasks, died)

    async def _start_when_synced(self, c: Controller, died: asyncio.Event) -> None:
        await asyncio.gather(*(i.wait_synced() for i in c.sources))
        log.info("caches of controller %s synced; starting it", c.name)
        self._start(c, died)

    def _supervise(self, tasks: list[asyncio.Task[Any]], died: asyncio.Event) -> None:
        """A task that ends while the manager runs (cancelled by ``_shutdown`` is not ending) is fatal."""

        def ended(t: asyncio.Task[Any]) -> None:
            if t.cancelled() or self.failed or died.is_set() or self._stopping:
                return
            if t.get_name().startswith("start-") and t.exception() is None:
                return  # a delayed controller start that did its job
            self.failed = t.get_name()
            exc = t.exception()
            log.error("task %s ended: %r; stopping", t.get_name(), exc, exc_info=exc)
            died.set()

        for t in tasks:
            t.add_done_callback(ended)

    async def _renew(self, lost: asyncio.Event) -> None:
        assert self.elector is not None
        await self.elector.keep_renewing()
        log.error("leader election lost; stopping every reconcile")
        lost.set()
        # Stop reconciling at once, before any standby can acquire: no drain, no further await first.
        for c in self.controllers:
            c.abort()
        await asyncio.Event().wait()  # stay alive: the manager ends this task in its shutdown

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.resync_period)
            for c in self.controllers:
                if id(c) in self._started:
                    c.resync()

    async def _shutdown(
        self, runners: list[web.AppRunner], tasks: list[asyncio.Task[Any]], lost: asyncio.Event
    ) -> None:
        self._stopping = True  # tasks ending from here on are being stopped, not dying
        started = [c for c in self.controllers if id(c) in self._started]
        for t in tasks:
            if t.get_name() != "leader-renew":
                t.cancel()
        if started and not lost.is_set():
            # Graceful: finish in-flight reconciles while the renewal keeps running; a loss meanwhile aborts them.
            drain = asyncio.gather(*(c.stop(self.options.drain_timeout) for c in started))
            await _until(lost, drain)
        for c in started:
            c.abort()
        await asyncio.gather(*(c.stop(0) for c in started))
        self._started.clear()
        self.controllers_started = False
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.elector is not None and self.elector.is_leader and not lost.is_set():
            await self.elector.release()
        for t in self._informer_tasks:
            t.cancel()
        await asyncio.gather(*self._informer_tasks, return_exceptions=True)
        self._informer_tasks = []
        for r in runners:
            await r.cleanup()
        log.info("manager stopped")


async def _within(aw: Any, seconds: float) -> None:
    """Await ``aw`` for at most ``seconds`` (then cancel it and return)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(aw, seconds)


async def _until(stop: asyncio.Event, aw: Any, *more: asyncio.Event) -> bool:
    """Await ``aw`` unless ``stop`` (or any of ``more``) is set first; True if ``aw`` finished."""
    work = asyncio.ensure_future(aw)
    stoppers = [asyncio.create_task(e.wait()) for e in (stop, *more)]
    done, _ = await asyncio.wait({work, *stoppers}, return_when=asyncio.FIRST_COMPLETED)
    for stopper in stoppers:
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

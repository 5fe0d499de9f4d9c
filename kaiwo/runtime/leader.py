"""Leader election on a coordination.k8s.io/v1 Lease (client-go's leaderelection, in asyncio).

A candidate acquires the Lease when it is absent, released (empty holder), or not renewed for
``lease_duration`` as measured on the candidate's *own monotonic clock* since it last saw the Lease change;
wall-clock times written into the Lease are for humans only, so clock skew between machines does not matter
(only clock *rate* does). The leader renews every ``retry_period``; if it cannot renew within
``renew_deadline`` of the *start* of its last successful renewal it stops leading, which the manager turns into
an immediate stop of every reconcile and a process exit. Every attempt (read, then write) is one request each,
without client retries, bounded by the time left until that deadline: a hanging connection cannot keep an old
leader acting. A standby counts the lease's age from the moment its read *returned* (a slow read never makes a
lease look older than it is). Since the leader's renewal started before any standby could see it, and
renew_deadline < lease_duration, the old leader has stopped before any other candidate can take over; the
difference is the margin for stopping the reconciles (see docs/admin-guide.md, "Leader election").

Not guaranteed (as in client-go): fencing. A leader that is paused longer than the lease (e.g. a stopped VM)
may briefly act after another has taken over; reconciles must stay idempotent. On graceful shutdown the
leader releases the Lease (empty holder). A waiting candidate also watches the Lease (docs/design/decisions.md
D16): a release (or deletion) wakes it at once instead of at its next retry, and each renewal it sees there counts
as an observation, made when the event arrived (never before the renewal started, so the argument above holds).
It then tries again exactly when the lease it saw expires. Whether to acquire is decided by the same read and write
as every attempt; without the watch (it fails, or hangs) the candidate still tries every retry period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.clock import Clock, RealClock, bounded
from kaiwo.runtime.timestamps import rfc3339_micro

log = logging.getLogger(__name__)
LEASE_API = "coordination.k8s.io/v1"
WATCH_SECONDS = 300  # a release watch is reopened this often (the apiserver ends it; we add a client margin)


def default_identity() -> str:
    return f"{socket.gethostname()}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class LeaderElectionConfig:
    namespace: str
    name: str
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > 0:
            raise ValueError("leader election: lease duration must be greater than the renew deadline (> 0)")
        if not 0 < self.retry_period < self.renew_deadline:
            raise ValueError("leader election: retry period must be positive and less than the renew deadline")


class LeaderElector:
    def __init__(
        self,
        client: Client,
        config: LeaderElectionConfig,
        *,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.identity = config.identity or default_identity()
        self.clock: Clock = clock or RealClock()
        self.wall = wall  # wall-clock epoch seconds: the Lease's acquire and renew times
        self.on_change = on_change
        self._leading = False
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0  # local monotonic time when the Lease spec last changed as we saw it
        self._lease: dict[str, Any] | None = None  # last Lease object we read or wrote (for resourceVersion)
        self._renewed_at = 0.0  # local monotonic time when our last successful acquire/renew attempt *started*
        self.leading = asyncio.Event()
        self._released = asyncio.Event()  # set by the release watch: the Lease was released or deleted
        self.attempts = 0  # acquire/renew attempts made (observability and tests)

    @property
    def is_leader(self) -> bool:
        return self._leading

    def _set_leading(self, value: bool, lost: str = "lost") -> None:
        if value != self._leading:
            self._leading = value
            (self.leading.set if value else self.leading.clear)()
            log.info(
                "leader election: %s lease %s/%s as %s",
                "acquired" if value else lost,
                self.config.namespace,
                self.config.name,
                self.identity,
            )
            if self.on_change:
                self.on_change(value)

    async def acquire(self) -> None:
        """Return once this candidate holds the Lease: try every retry period, and at once when the release
        watch sees the Lease released."""
        watch = asyncio.create_task(self._watch_releases(), name="leader-release-watch")
        try:
            while True:
                self._released.clear()  # before the attempt: a release during it still wakes the next wait
                if await self._attempt(self.config.renew_deadline):
                    break
                await bounded(self.clock, self._released.wait(), self._until_next_try())
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        self._set_leading(True)

    def _until_next_try(self) -> float:
        """A retry period, or less when the Lease another holds expires sooner (by what this candidate saw)."""
        retry = self.config.retry_period
        holder = (self._observed_spec or {}).get("holderIdentity")
        if not holder or holder == self.identity:
            return retry
        expires_in = self._observed_at + self.config.lease_duration - self.clock.now()
        return expires_in if 0 < expires_in < retry else retry  # expired and still not ours: keep the pace

    def _observe(self, spec: dict[str, Any], now: float) -> None:
        """Note the Lease spec seen at local time ``now``; its age counts from when it was first seen."""
        if spec != self._observed_spec:
            self._observed_spec, self._observed_at = spec, now

    async def _watch_releases(self) -> None:
        """Watch the one Lease: note each change as an observation, and set ``_released`` when it is released
        (empty holder) or deleted. Any failure or end of the watch: reopen after a retry period (meanwhile the
        acquire loop polls as without it)."""
        cfg = self.config
        params = {"watch": "true", "fieldSelector": f"metadata.name={cfg.name}", "timeoutSeconds": WATCH_SECONDS}
        refused = False
        while True:
            try:
                res = await self.client.resource(LEASE_API, "Lease")
                async for line in self.client.stream_lines(res.path(cfg.namespace), params, timeout=WATCH_SECONDS + 30):
                    event = orjson.loads(line)
                    kind, spec = event.get("type"), (event.get("object") or {}).get("spec") or {}
                    if kind in ("ADDED", "MODIFIED"):
                        self._observe(spec, self.clock.now())
                    if kind == "DELETED" or (kind in ("ADDED", "MODIFIED") and not spec.get("holderIdentity")):
                        self._released.set()
            except ApiError as e:  # refused (RBAC without `watch` on leases?): said once, polling goes on
                (log.debug if refused else log.warning)("leader election: cannot watch the lease: %r", e)
                refused = True
            except Exception as e:  # the watch is only a wake-up; polling goes on without it
                log.debug("leader election: release watch ended: %r", e)
            await self.clock.sleep(cfg.retry_period)

    async def keep_renewing(self) -> None:
        """Renew every retry period; return (leadership lost) once no renewal succeeded within renew_deadline of
        the start of the last successful one."""
        cfg = self.config
        while self._leading:
            await self.clock.sleep(cfg.retry_period)
            deadline = self._renewed_at + cfg.renew_deadline
            while True:
                left = deadline - self.clock.now()
                if left <= 0 or not self._leading:  # out of time, or another holder was seen
                    self._set_leading(False)
                    return
                if await self._attempt(left):
                    break
                await self.clock.sleep(min(cfg.retry_period, max(deadline - self.clock.now(), 0.0)))

    async def _attempt(self, limit: float) -> bool:
        """One acquire-or-renew, abandoned after ``limit`` seconds (a failure)."""
        self.attempts += 1
        ok = await bounded(self.clock, self.try_acquire_or_renew(limit), limit)
        if ok is None:
            log.warning("leader election: attempt abandoned after %.1fs (no answer)", limit)
        return bool(ok)

    async def run(self) -> None:
        """Acquire, then renew; returns when leadership is lost."""
        await self.acquire()
        await self.keep_renewing()

    async def _call(self, method: str, body: dict[str, Any] | None, timeout: float) -> Any:
        """One request on the Lease, without client retries (the renew deadline bounds the attempt)."""
        res = await self.client.resource(LEASE_API, "Lease")
        name = None if method == "POST" else self.config.name
        return await self.client.request(
            method, res.path(self.config.namespace, name), body=body, timeout=timeout, retries=False
        )

    async def try_acquire_or_renew(self, timeout: float = 10.0) -> bool:
        cfg = self.config
        started = self.clock.now()
        try:
            lease = await self._call("GET", None, timeout)
        except ApiError as e:
            if not e.not_found:
                log.warning("leader election: cannot read lease: %r", e)
                return False
            lease = None
        except Exception as e:  # any failure is just an unsuccessful attempt
            log.warning("leader election: cannot read lease: %r", e)
            return False
        now = self.clock.now()  # after the read: what we saw is at most this old
        spec_now = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(cfg.lease_duration),
            "renewTime": rfc3339_micro(self.wall()),
        }
        if lease is None:
            body = {
                "apiVersion": LEASE_API,
                "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": {**spec_now, "acquireTime": spec_now["renewTime"], "leaseTransitions": 0},
            }
            return await self._write(self._call("POST", body, timeout), started)
        spec = lease.get("spec") or {}
        self._observe(spec, now)
        holder = spec.get("holderIdentity") or ""
        held_by_other = holder not in ("", self.identity)
        if held_by_other and self._observed_at + cfg.lease_duration > now:
            if self._leading:
                self._set_leading(False)
            return False
        new_spec = dict(spec_now)
        if holder == self.identity:
            new_spec["acquireTime"] = spec.get("acquireTime") or spec_now["renewTime"]
            new_spec["leaseTransitions"] = spec.get("leaseTransitions") or 0
        else:
            new_spec["acquireTime"] = spec_now["renewTime"]
            new_spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        body = {**lease, "spec": new_spec}
        return await self._write(self._call("PUT", body, timeout), started)

    async def _write(self, call: Any, started: float) -> bool:
        try:
            lease = await call
        except ApiError as e:
            if not (e.conflict or e.status == 409):
                log.warning("leader election: cannot write lease: %r", e)
            return False
        except Exception as e:
            log.warning("leader election: cannot write lease: %r", e)
            return False
        self._lease = lease
        self._observed_spec, self._observed_at = lease.get("spec") or {}, self.clock.now()
        self._renewed_at = started  # others may count the lease from no earlier than this
        return True

    async def release(self, timeout: float = 5.0) -> None:
        """Give the Lease up (graceful shutdown) so a successor need not wait for it to expire."""
        if not self._leading or self._lease is None:
            return
        spec = self._lease.get("spec") or {}
        now = rfc3339_micro(self.wall())
        body = {
            **self._lease,
            "spec": {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": now,
                "acquireTime": now,
                "leaseTransitions": spec.get("leaseTransitions") or 0,
            },
        }
        try:
            await self._call("PUT", body, timeout)
        except Exception as e:  # any failure is just an unsuccessful attempt
            log.warning("leader election: cannot release lease: %s", e)
        self._set_leading(False, "released")


def identity_from_env() -> str:
    """POD_NAME when running in a pod (unique and readable), else hostname plus a random suffix."""
    pod = os.environ.get("POD_NAME")
    return f"{pod}_{secrets.token_hex(4)}" if pod else default_identity()

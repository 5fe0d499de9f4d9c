"""Writing desired state: server-side apply that is skipped when nothing changed, and minimal status writes.

- ``Applier.apply(desired, live)``: the desired object's hash (canonical JSON, SHA-256) is recorded in an
  annotation on the child. When the cached live child carries the same hash, no request is sent: a resync of
  settled objects costs zero API writes. Otherwise the object is applied with server-side apply under the
  controller's field manager, with ``force`` so the controller owns the fields it declares.
  Drift made by others in fields we own is corrected on the next change of the desired state, not instantly
  (the cost of skipping). A stale cache right after an apply can cause one redundant, idempotent apply, never
  a duplicate object: applies address objects by name.
- ``Applier.write_status`` (docs/design/decisions.md D11): merge-patches the status subresource, with the cached
  object's resourceVersion as a precondition (a stale cache, e.g. right after a failover, gets 409 Conflict and a retry
  from fresher state instead of overwriting newer status), only when the computed status differs from the cached one (by
  ``differs``), and not again while the cache still shows the very object version our last write started from and we
  would write the same status: a reconcile that runs before the watch delivered our own write sends nothing (and its
  caller emits no second event).
- ``Expectations``: for objects created with generated names (where a stale cache *could* cause a duplicate
  create), a controller records what it created and waits until the cache has seen it before creating again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import orjson

from kaiwo.runtime.client import Client
from kaiwo.runtime.clock import Clock, RealClock
from kaiwo.runtime.objects import Obj

DEFAULT_HASH_ANNOTATION = "kaiwo.silogen.ai/desired-hash"
# Status writes the cache may not have shown yet, oldest dropped first. An entry matters only until the watch
# delivers the write (milliseconds to seconds), and each holds a status, so the last 2,048 writes are kept rather
# than one per object: 10,000 settled workloads do not keep 10,000 statuses twice (docs/performance.md). Dropping
# an entry too early costs at most one identical status write.
MAX_REMEMBERED_WRITES = 2048
StatusDiffers = Callable[[Obj, Obj], bool]


def _not_equal(old: Obj, new: Obj) -> bool:
    return old != new


def desired_hash(obj: Obj) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]


class Applier:
    def __init__(self, client: Client, field_manager: str, hash_annotation: str = DEFAULT_HASH_ANNOTATION) -> None:
        self.client = client
        self.field_manager = field_manager
        self.hash_annotation = hash_annotation
        self.applied = 0  # requests sent (observability and tests)
        self.skipped = 0
        # uid -> (resourceVersion our last status write was based on, the status written)
        self._status_written: dict[str, tuple[str, Obj]] = {}

    def with_hash(self, desired: Obj) -> tuple[Obj, str]:
        digest = desired_hash(desired)
        meta = dict(desired.get("metadata") or {})
        meta["annotations"] = {**(meta.get("annotations") or {}), self.hash_annotation: digest}
        return {**desired, "metadata": meta}, digest

    def unchanged(self, desired: Obj, live: Obj | None) -> bool:
        if live is None:
            return False
        recorded = ((live.get("metadata") or {}).get("annotations") or {}).get(self.hash_annotation)
        return recorded == desired_hash(desired)

    async def apply(self, desired: Obj, live: Obj | None) -> Obj | None:
        """Apply ``desired`` unless ``live`` (from the cache) already records its hash; returns the new object."""
        if self.unchanged(desired, live):
            self.skipped += 1
            return None
        body, _ = self.with_hash(desired)
        self.applied += 1
        return await self.client.apply(body, self.field_manager, force=True)

    async def write_status(self, live: Obj, status: Obj, differs: StatusDiffers = _not_equal) -> Obj | None:
        """Patch ``live``'s status to ``status`` if it differs; returns the new object or None if nothing was sent."""
        meta = live["metadata"]
        uid, version = meta.get("uid", ""), meta.get("resourceVersion", "")
        last = self._status_written.pop(uid, None)
        if last is not None and last[0] == version:  # the cache has not shown our last write yet
            self._status_written[uid] = last
            if not differs(last[1], status):
                return None
        if not differs(live.get("status") or {}, status):
            return None
        self.applied += 1
        written = await self.client.patch(
            live["apiVersion"],
            live["kind"],
            meta["name"],
            {"metadata": {"resourceVersion": version}, "status": status} if version else {"status": status},
            meta.get("namespace"),
            subresource="status",
        )
        if len(self._status_written) >= MAX_REMEMBERED_WRITES:
            del self._status_written[next(iter(self._status_written))]
        self._status_written[uid] = (version, status)
        return written


class Expectations:
    """Creates this controller made that the cache has not shown yet, per owner key (with a safety TTL)."""

    def __init__(self, ttl: float = 300.0, clock: Clock | None = None) -> None:
        self.ttl = ttl
        self.clock: Clock = clock or RealClock()
        self._pending: dict[str, dict[str, float]] = {}

    def expect(self, owner: str, child: str) -> None:
        self._pending.setdefault(owner, {})[child] = self.clock.now()

    def observed(self, owner: str, child: str) -> None:
        pending = self._pending.get(owner)
        if pending is not None:
            pending.pop(child, None)
            if not pending:
                del self._pending[owner]

    def satisfied(self, owner: str) -> bool:
        pending = self._pending.get(owner)
        if not pending:
            return True
        now = self.clock.now()
        for child, since in list(pending.items()):
            if now - since > self.ttl:  # the watch event was lost or the create silently failed: stop waiting
                del pending[child]
        return not pending

    def forget(self, owner: str) -> None:
        self._pending.pop(owner, None)

"""Informer: a watched, indexed, local cache of one resource type (client-go's reflector + indexer).

LIST (paginated), then WATCH from the list's resourceVersion with bookmarks. Why the details matter:
- The server ends a watch after ``timeoutSeconds`` (random in 5-10 min so that many informers do not re-watch
  in lockstep); the client gives up ``CLIENT_GRACE`` later. A stream that silently stops delivering (a dead
  TCP peer, a hung proxy) is thereby replaced within the client timeout instead of hanging forever - the
  classic failure of Python operators.
- A watch resumes from the last resourceVersion seen (events or bookmarks), so nothing is missed. When the
  server no longer has that version (410 Gone, or an ERROR event with code 410, after etcd compaction) or
  refuses it as too large, the informer relists from scratch and diffs against the cache: vanished objects
  produce delete events, changed ones update events, so handlers never miss a deletion.
- A watch also has a read-idle timeout (``WATCH_IDLE_TIMEOUT``): the apiserver sends a bookmark about once a
  minute even when nothing changes, so a stream that delivers no byte for longer is dead (a peer that vanished,
  a proxy that went silent) and is replaced at once, from the last resourceVersion.
- Errors back off 0.8 s doubling to 30 s with jitter; a successful watch event resets the backoff. A watch that
  the server ends at once without any event (``MIN_WATCH_SECONDS``) counts as an error too, so a broken server
  or proxy cannot make the informer reopen watches in a hot loop.
- A handler that raises is logged and counted (``handler_errors``), and skipped: the other handlers still get
  the event and the informer moves on (replaying the event would only raise again).

Objects are plain dicts parsed with orjson; ``metadata.managedFields`` is dropped before caching, an optional
``transform`` may drop more, and short strings are shared (``share_strings``). Handlers are synchronous and
must be fast (they enqueue keys); they are called in event order from the informer task. Cached objects are
shared: never mutate them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from kaiwo.runtime.client import ApiError, Client, Resource
from kaiwo.runtime.clock import Clock, RealClock
from kaiwo.runtime.objects import Obj

log = logging.getLogger(__name__)

Transform = Callable[[Obj], Obj]
WATCH_TIMEOUT_RANGE = (300, 600)
CLIENT_GRACE = 30.0
WATCH_IDLE_TIMEOUT = 90.0  # one bookmark interval (about a minute) and a half
MIN_WATCH_SECONDS = 1.0
BACKOFF_INITIAL, BACKOFF_MAX = 0.8, 30.0
LIST_PAGE_SIZE = 500


def object_key(obj: Obj) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones (client-go's MetaNamespaceKey)."""
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


def strip_managed_fields(obj: Obj) -> Obj:
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


SHARED_STRING_MAX = 64  # label values, names, kinds, condition types and reasons; not messages or JSON blobs


def share_strings(node: object) -> None:
    """Replace every string value of at most ``SHARED_STRING_MAX`` characters with its interned copy, in place.

    Each decoded object has its own copy of every value (orjson shares only keys), yet most short values repeat
    across objects: apiVersions, kinds, namespaces, label values, condition types, a Job's name in its KaiwoJob
    and Workload. Sharing them took 10,000 KaiwoJobs, Jobs and Workloads from 138 to 100 MiB in a measurement
    on a benchmark's objects (docs/performance.md#memory). Interned strings are freed with their last user, so
    unique ones (uids, timestamps) do not pile up. Equality is unchanged; only identity is shared."""
    slots: Iterable[tuple[Any, object]] = (
        node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    )
    for slot, value in slots:  # replacing a value in place is safe while iterating: the size does not change
        if type(value) is str:
            if len(value) <= SHARED_STRING_MAX:
                node[slot] = sys.intern(value)  # type: ignore[index]
        elif isinstance(value, (dict, list)):
            share_strings(value)


def _name(method: Callable[..., Any]) -> str:
    return str(getattr(method, "__qualname__", method))


class ResourceVersionExpired(Exception):
    """The watch cannot resume from our resourceVersion; a relist is needed."""


class ListerWatcher(Protocol):
    """The two calls an informer makes; the real one is ``ApiListerWatcher``, tests script their own."""

    async def list_page(self, continue_token: str | None) -> Obj: ...

    def watch(self, resource_version: str, timeout_seconds: int, client_grace: float) -> AsyncIterator[Obj]: ...


class ApiListerWatcher:
    def __init__(
        self,
        client: Client,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        idle_timeout: float = WATCH_IDLE_TIMEOUT,
    ) -> None:
        self.client = client
        self.idle_timeout = idle_timeout
        self.path = resource.path(namespace)
        self.selectors = {"labelSelector": label_selector, "fieldSelector": field_selector}

    async def list_page(self, continue_token: str | None) -> Obj:
        page: Obj = await self.client.request(
            "GET", self.path, params={**self.selectors, "limit": LIST_PAGE_SIZE, "continue": continue_token}
        )
        return page

    async def watch(
        self, resource_version: str, timeout_seconds: int, client_grace: float = CLIENT_GRACE
    ) -> AsyncIterator[Obj]:
        # The client-side total timeout is what replaces a stream that went silent without closing.
        params = {
            **self.selectors,
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
        }
        try:
            lines = self.client.stream_lines(
                self.path, params, timeout=timeout_seconds + client_grace, idle_timeout=self.idle_timeout
            )
            async for line in lines:
                yield orjson.loads(line)
        except ApiError as e:
            if e.gone or _too_large_rv(e):
                raise ResourceVersionExpired(str(e)) from e
            raise


def _too_large_rv(e: ApiError) -> bool:
    causes = (e.body.get("details") or {}).get("causes") or []
    too_large = any(c.get("reason") == "ResourceVersionTooLarge" for c in causes)
    return too_large or "Too large resource version" in e.message


class EventHandler(Protocol):
    def on_add(self, obj: Obj, initial: bool) -> None: ...

    def on_update(self, old: Obj, new: Obj) -> None: ...

    def on_delete(self, obj: Obj) -> None: ...


@dataclass
class FuncHandler:
    """An EventHandler from plain functions; any may be omitted."""

    add: Callable[[Obj, bool], None] | None = None
    update: Callable[[Obj, Obj], None] | None = None
    delete: Callable[[Obj], None] | None = None

    def on_add(self, obj: Obj, initial: bool) -> None:
        if self.add:
            self.add(obj, initial)

    def on_update(self, old: Obj, new: Obj) -> None:
        if self.update:
            self.update(old, new)

    def on_delete(self, obj: Obj) -> None:
        if self.delete:
            self.delete(obj)


IndexFunc = Callable[[Obj], Iterable[str]]


def by_namespace(obj: Obj) -> Iterable[str]:
    ns = obj["metadata"].get("namespace")
    return (ns,) if ns else ()


def by_owner_uid(obj: Obj) -> Iterable[str]:
    return tuple(ref["uid"] for ref in obj["metadata"].get("ownerReferences") or () if "uid" in ref)


def by_label(key: str) -> IndexFunc:
    def index(obj: Obj) -> Iterable[str]:
        value = (obj["metadata"].get("labels") or {}).get(key)
        return (value,) if value is not None else ()

    return index


def _values(func: IndexFunc, obj: Obj) -> tuple[str, ...]:
    """An index function's values; one that raises on an odd object indexes it nowhere (and is logged)."""
    try:
        return tuple(func(obj))
    except Exception:
        log.exception("index function %s raised on %s; not indexed", _name(func), obj.get("metadata", {}).get("name"))
        return ()


@dataclass
class Indexer:
    """The cache: objects by key plus secondary indexes (index name -> value -> keys)."""

    index_funcs: dict[str, IndexFunc] = field(
        default_factory=lambda: {"namespace": by_namespace, "owner": by_owner_uid}
    )
    items: dict[str, Obj] = field(default_factory=dict)
    indexes: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def add_index(self, name: str, func: IndexFunc) -> None:
        if name in self.index_funcs:
            return
        self.index_funcs[name] = func
        idx: dict[str, set[str]] = {}
        for key, obj in self.items.items():
            for v in _values(func, obj):
                idx.setdefault(v, set()).add(key)
        self.indexes[name] = idx

    def put(self, key: str, obj: Obj) -> Obj | None:
        old = self.items.get(key)
        if old is not None:
            self._unindex(key, old)
        self.items[key] = obj
        for name, func in self.index_funcs.items():
            idx = self.indexes.setdefault(name, {})
            for v in _values(func, obj):
                idx.setdefault(v, set()).add(key)
        return old

    def remove(self, key: str) -> Obj | None:
        old = self.items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, func in self.index_funcs.items():
            idx = self.indexes.get(name, {})
            for v in _values(func, obj):
                keys = idx.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del idx[v]

    def by_index(self, name: str, value: str) -> list[Obj]:
        return [self.items[k] for k in self.indexes.get(name, {}).get(value, ())]


class Informer:
    """Keeps ``indexer`` equal to the server's state of one resource and tells handlers what changed."""

    def __init__(
        self,
        lister_watcher: ListerWatcher,
        *,
        name: str = "",
        transform: Transform | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        watch_timeout_range: tuple[int, int] = WATCH_TIMEOUT_RANGE,
        client_grace: float = CLIENT_GRACE,
    ) -> None:
        self.lw = lister_watcher
        self.name = name
        self.transform = transform
        self.clock: Clock = clock or RealClock()
        self.rng = rng or random.Random()
        self.indexer = Indexer()
        self.handlers: list[EventHandler] = []
        self.resource_version = ""
        self._synced = asyncio.Event()
        self.watch_timeout_range = watch_timeout_range
        self.client_grace = client_grace
        self.relists = 0  # how many full lists were made (observability and tests)
        self.watches = 0  # how many watch streams were opened
        self._events = 0  # events seen on the current stream; any resets the error backoff
        self.handler_errors = 0  # handler calls that raised (each was logged and skipped)
        self.on_handler_error: Callable[[str], None] | None = None  # e.g. a Prometheus counter of the manager

    # --- reading the cache ------------------------------------------------------------------------------

    def get(self, key: str) -> Obj | None:
        return self.indexer.items.get(key)

    def get_by(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.indexer.items.get(f"{namespace}/{name}" if namespace else name)

    def objects(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self.indexer.items.values())
        return self.indexer.by_index("namespace", namespace)

    def by_index(self, name: str, value: str) -> list[Obj]:
        return self.indexer.by_index(name, value)

    def add_index(self, name: str, func: IndexFunc) -> None:
        self.indexer.add_index(name, func)

    def add_handler(self, handler: EventHandler) -> None:
        """Register a handler; it first receives an add for every object already cached."""
        self.handlers.append(handler)
        for obj in list(self.indexer.items.values()):
            self._call(handler.on_add, obj, True)

    def _call(self, method: Callable[..., None], *args: Any) -> None:
        """Deliver one event to one handler; a handler that raises is logged, counted and skipped."""
        try:
            method(*args)
        except Exception:
            self.handler_errors += 1
            log.exception("informer %s: event handler %s raised; skipped", self.name, _name(method))
            if self.on_handler_error is not None:
                self.on_handler_error(self.name)

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # --- the loop ---------------------------------------------------------------------------------------

    def _prepare(self, obj: Obj) -> Obj:
        obj = strip_managed_fields(obj)
        obj = self.transform(obj) if self.transform else obj
        share_strings(obj)
        return obj

    async def run(self) -> None:
        """List and watch until cancelled. A restarted informer resumes watching from its last version."""
        backoff = BACKOFF_INITIAL
        need_list = not self.has_synced
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                    backoff = BACKOFF_INITIAL
                started = self.clock.now()
                await self._watch()
                if self._events or self.clock.now() - started >= MIN_WATCH_SECONDS:
                    backoff = BACKOFF_INITIAL
                    continue  # a normal end of the watch (server timeout): resume from the last version
                log.warning("informer %s: watch ended at once without events; retrying in %.1fs", self.name, backoff)
            except ResourceVersionExpired as e:
                log.info("informer %s: resourceVersion %s expired (%s), relisting", self.name, self.resource_version, e)
                need_list = True
                continue
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self._events:
                    backoff = BACKOFF_INITIAL
                log.warning("informer %s: %r; retrying in %.1fs", self.name, e, backoff)
            await self.clock.sleep(backoff * (1 + 0.2 * self.rng.random()))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _relist(self) -> None:
        items: list[Obj] = []
        token: str | None = None
        while True:
            page = await self.lw.list_page(token)
            # Strip each page as it arrives: holding every page's managedFields until the end doubles the peak
            # heap, and the freed holes stay scattered between cached objects (measured: 3.5 -> 1.8 KB/object).
            items.extend(self._prepare(o) for o in page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        self.relists += 1
        self._replace(items, str(meta.get("resourceVersion", "")))

    def _replace(self, objs: list[Obj], resource_version: str) -> None:
        """Make the cache equal to a fresh list, emitting the differences as events."""
        initial = not self._synced.is_set()
        fresh = {object_key(o): o for o in objs}
        for key in [k for k in self.indexer.items if k not in fresh]:
            gone = self.indexer.remove(key)
            if gone is not None:
                for h in self.handlers:
                    self._call(h.on_delete, gone)
        for key, obj in fresh.items():
            old = self.indexer.put(key, obj)
            for h in self.handlers:
                if old is None:
                    self._call(h.on_add, obj, initial)
                elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                    self._call(h.on_update, old, obj)
        self.resource_version = resource_version
        self._synced.set()

    async def _watch(self) -> None:
        """One watch stream, until the server ends it or it fails."""
        timeout = self.rng.randint(*self.watch_timeout_range)
        self.watches += 1
        self._events = 0
        async for event in self.lw.watch(self.resource_version, timeout, self.client_grace):
            etype = event.get("type")
            obj = event.get("object") or {}
            if etype == "ERROR":
                if obj.get("code") == 410:
                    raise ResourceVersionExpired(obj.get("message", "410 Gone"))
                raise ApiError(int(obj.get("code") or 500), obj, "WATCH", self.name)
            self._events += 1
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if etype == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            obj = self._prepare(obj)
            key = object_key(obj)
            if etype in ("ADDED", "MODIFIED"):
                old = self.indexer.put(key, obj)
                for h in self.handlers:
                    if old is None:
                        self._call(h.on_add, obj, False)
                    else:
                        self._call(h.on_update, old, obj)
            elif etype == "DELETED":
                gone = self.indexer.remove(key) or obj
                for h in self.handlers:
                    self._call(h.on_delete, gone)
            if rv:
                self.resource_version = rv

"""Declarative controller wiring: what a controller reads and what enqueues its keys, as plain data.

A controller is described by a ``ControllerSpec``: a name, its sources and its worker count. The spec is built
without a manager or a cluster (module-level constants), so ``kaiwo.rbac`` derives the operator's reads from the
same specs the manager runs, and a new watch or child kind is one line in one place. The shape follows
controller-runtime's builder (``ControllerManagedBy(mgr).For(...).Owns(...).Watches(...)``):

| source                              | cache | enqueues on add, update, delete                                |
| ----------------------------------- | ----- | -------------------------------------------------------------- |
| ``For(api, kind)``                  | yes   | the object itself (the primary kind; at most one per spec)     |
| ``Owns(api, kind)``                 | yes   | its controlling owner of the ``For`` kind (ownerReferences)    |
| ``Watches(api, kind, mapper=f)``    | yes   | ``f(reconciler, obj)``: any keys, e.g. a singleton or a lookup |
| ``Reads(api, kind)``                | yes   | nothing: the reconciler only reads the cache                   |

Contract:
- ``api`` is one apiVersion or a tuple of candidates in order of preference; the first the cluster serves is used
  (``Sources.served`` tells which, e.g. to write Kueue objects in the version that is read).
- One rule for optional APIs: a source marked ``optional=True`` whose kind no candidate serves is skipped with one
  warning; the reconciler sees ``None`` for it (``Sources.get``) and its handler is not registered. A required
  source that is not served fails the set-up (``ApiError``), as does any discovery error other than not-found.
- ``predicate(old, new)`` may drop updates that cannot matter (controller-runtime's update predicate); adds and
  deletes always pass. Mappers and predicates are named module-level functions, unit-tested on their own.
- ``selector`` is a label selector: the cache holds only matching objects. One kind has one cache per spec (the
  same apiVersions, selector and optionality wherever it appears); the manager shares caches between controllers.
- ``indexes`` adds secondary indexes to a cache (every cache has ``namespace`` and ``owner``).
- The manager waits for every cache (at most its cache-sync timeout), then starts a controller once its ``For``,
  ``Owns`` and ``Watches`` caches have synced: a ``Reads`` cache that cannot sync does not hold it back (see
  kaiwo.runtime.manager). ``seed`` keys are enqueued when the controller starts: a poller's one key that requeues
  itself.
- ``related_batch`` (seconds, default 0): a key enqueued by an ``Owns`` or ``Watches`` change waits this long at
  low priority, and further changes in the meantime join that one pass (docs/design/runtime.md#related-batch).

``build(manager, spec, factory)`` resolves the caches, makes the reconciler from them and registers the
controller. Controllers sharing one reconciler state resolve once with ``resolve`` and ``wire`` each spec.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, TypeVar

from kaiwo.runtime.client import ApiError
from kaiwo.runtime.controller import Controller, Reconciler, Request
from kaiwo.runtime.informer import IndexFunc, Informer
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj

log = logging.getLogger(__name__)

Mapper = Callable[[Any, Obj], Iterable[Request]]  # (the controller's reconciler, changed object) -> keys
Predicate = Callable[[Obj, Obj], bool]  # (old, new) -> whether the update can matter to the reconciler
R = TypeVar("R", bound=Reconciler)


@dataclass(frozen=True)
class Source:
    """A cache of one kind: served under the first of ``api`` the cluster offers, limited to ``selector``."""

    api: str | tuple[str, ...]
    kind: str
    _: KW_ONLY
    selector: str | None = None
    optional: bool = False
    indexes: tuple[tuple[str, IndexFunc], ...] = ()

    @property
    def api_versions(self) -> tuple[str, ...]:
        return (self.api,) if isinstance(self.api, str) else self.api

    @property
    def cache_key(self) -> tuple[tuple[str, ...], str | None, bool]:
        return self.api_versions, self.selector, self.optional


@dataclass(frozen=True, kw_only=True)
class For(Source):
    """The primary kind: each change enqueues the object itself."""

    predicate: Predicate | None = None


@dataclass(frozen=True, kw_only=True)
class Owns(Source):
    """A child kind: each change enqueues its controlling owner of the ``For`` kind."""


@dataclass(frozen=True, kw_only=True)
class Watches(Source):
    """Any kind: each change enqueues what ``mapper(reconciler, obj)`` returns (for an update: of old and new)."""

    mapper: Mapper
    predicate: Predicate | None = None


@dataclass(frozen=True, kw_only=True)
class Reads(Source):
    """A kind the reconciler reads from its cache; its changes enqueue nothing."""


@dataclass(frozen=True)
class ControllerSpec:
    """One controller's wiring: pure data, no manager needed (``kaiwo.rbac`` reads it)."""

    name: str
    sources: tuple[Source, ...] = ()
    workers: int = 2
    seed: tuple[Request, ...] = ()  # keys enqueued when the controller starts (a poller's one key)
    related_batch: float = 0.0  # seconds keys from Owns/Watches changes wait, so a burst of them is one pass

    def __post_init__(self) -> None:
        primaries = [s for s in self.sources if isinstance(s, For)]
        if len(primaries) > 1:
            raise ValueError(f"controller {self.name}: more than one For source")
        if not primaries and any(isinstance(s, Owns) for s in self.sources):
            raise ValueError(f"controller {self.name}: Owns needs a For source (the owner kind)")
        check_caches(self.sources, self.name)

    @property
    def primary(self) -> For | None:
        return next((s for s in self.sources if isinstance(s, For)), None)


def check_caches(sources: Iterable[Source], where: str) -> None:
    """One kind, one cache: every source of a kind names the same apiVersions, selector and optionality."""
    seen: dict[str, tuple[tuple[str, ...], str | None, bool]] = {}
    for s in sources:
        if seen.setdefault(s.kind, s.cache_key) != s.cache_key:
            raise ValueError(f"{where}: {s.kind} appears with different apiVersions, selectors or optionality")


@dataclass
class Sources:
    """The resolved caches of one or more specs, by kind; a skipped optional source is ``None``."""

    informers: dict[str, Informer | None] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # kind -> the apiVersion the cluster serves

    def __getitem__(self, kind: str) -> Informer:
        """The cache of a required source (KeyError for a kind no source names, or one that was skipped)."""
        inf = self.informers.get(kind)
        if inf is None:
            raise KeyError(kind)
        return inf

    def get(self, kind: str) -> Informer | None:
        """The cache of ``kind``; None when it is optional and not served, or not a source at all."""
        return self.informers.get(kind)

    def served(self, kind: str) -> str | None:
        """The apiVersion ``kind`` is read in; None when no candidate is served."""
        return self.versions.get(kind)


async def resolve(manager: Manager, sources: Iterable[Source], *, owner: str = "the operator") -> Sources:
    """Ask ``manager`` for the shared cache of every source (the first served apiVersion), adding its indexes;
    ``owner`` names who goes without a skipped optional source in its warning."""
    sources = tuple(sources)
    check_caches(sources, owner)
    out = Sources()
    for s in sources:
        if s.kind not in out.informers:
            version, out.informers[s.kind] = await _informer(manager, s, owner)
            if version is not None:
                out.versions[s.kind] = version
        inf = out.informers[s.kind]
        if inf is not None:
            for name, func in s.indexes:
                inf.add_index(name, func)
    return out


async def _informer(manager: Manager, s: Source, owner: str) -> tuple[str | None, Informer | None]:
    first: ApiError | None = None
    for version in s.api_versions:
        try:
            return version, await manager.informer(version, s.kind, label_selector=s.selector)
        except ApiError as e:
            if not e.not_found:
                raise
            first = first or e
    assert first is not None
    if not s.optional:
        raise first
    log.warning(
        "%s (%s) is not served by this cluster; %s goes on without it",
        s.kind,
        " or ".join(s.api_versions),
        owner,
    )
    return None, None


def wire(
    manager: Manager, spec: ControllerSpec, reconciler: Reconciler, sources: Sources, *, workers: int | None = None
) -> Controller:
    """Register a controller for ``spec`` over resolved ``sources`` (``workers`` overrides the spec's)."""
    ctrl = Controller(
        spec.name, reconciler, workers=workers or spec.workers, seed=spec.seed, related_batch=spec.related_batch
    )
    primary = spec.primary
    for s in spec.sources:
        inf = sources.get(s.kind)
        if inf is None:
            continue  # an optional API this cluster does not serve
        if isinstance(s, For):
            ctrl.watches(inf, update_filter=s.predicate)
        elif isinstance(s, Owns):
            assert primary is not None  # checked by ControllerSpec
            ctrl.owns(inf, sources.served(primary.kind) or primary.api_versions[0], primary.kind)
        elif isinstance(s, Watches):
            ctrl.watches(inf, functools.partial(s.mapper, reconciler), update_filter=s.predicate)
    manager.add(ctrl)
    return ctrl


async def build(
    manager: Manager, spec: ControllerSpec, factory: Callable[[Sources], R], *, workers: int | None = None
) -> tuple[Controller, R]:
    """Resolve ``spec``'s caches, make the reconciler from them, register the controller; returns both."""
    sources = await resolve(manager, spec.sources, owner=f"controller {spec.name}")
    reconciler = factory(sources)
    return wire(manager, spec, reconciler, sources, workers=workers), reconciler


def reads(specs: Iterable[ControllerSpec]) -> set[tuple[str, str]]:
    """(apiVersion, kind) of every cache the specs may ask for, each candidate version included (RBAC reads)."""
    return {(v, s.kind) for spec in specs for s in spec.sources for v in s.api_versions}

"""Small accessors for Kubernetes objects held as plain dicts (null-safe: the API may send explicit nulls).

``Obj`` is the one name for such a dict everywhere (objects, statuses, patches, manifests). Conditions follow the
Kubernetes convention: at most one per ``type``; ``lastTransitionTime`` moves only when ``status`` changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]


def conditions(obj: Obj | None) -> list[Obj]:
    if not obj:
        return []
    return list((obj.get("status") or {}).get("conditions") or [])


def status_condition(status: Obj | None, ctype: str) -> Obj | None:
    """The condition of type ``ctype`` in a status (a dict with ``conditions``), or None."""
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == ctype), None)


def condition(obj: Obj | None, ctype: str) -> Obj | None:
    """The condition of type ``ctype`` of an object, or None."""
    return status_condition((obj or {}).get("status"), ctype)


def has_condition(obj: Obj | None, ctype: str, status: str = "True") -> bool:
    c = condition(obj, ctype)
    return c is not None and c.get("status") == status


def merge_condition(existing: Iterable[Obj], cond: Obj, now: str) -> list[Obj]:
    """``existing`` with ``cond`` in place of the one of its type, sorted by type. The previous
    ``lastTransitionTime`` is kept while the status stays the same; otherwise (or when there was none) it is ``now``."""
    others, prev = [], None
    for c in existing:
        if c.get("type") == cond["type"]:
            prev = c
        else:
            others.append(dict(c))
    same = prev is not None and prev.get("status") == cond["status"] and prev.get("lastTransitionTime")
    new = {**cond, "lastTransitionTime": prev["lastTransitionTime"] if same and prev else now}
    return sorted([*others, new], key=lambda c: str(c["type"]))

"""Small accessors for Kubernetes objects held as plain dicts (null-safe: the API may send explicit nulls)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def conditions(obj: Obj | None) -> list[Obj]:
    if not obj:
        return []
    return list((obj.get("status") or {}).get("conditions") or [])


def condition(obj: Obj | None, ctype: str) -> Obj | None:
    return next((c for c in conditions(obj) if c.get("type") == ctype), None)


def has_condition(obj: Obj | None, ctype: str, status: str = "True") -> bool:
    c = condition(obj, ctype)
    return c is not None and c.get("status") == status

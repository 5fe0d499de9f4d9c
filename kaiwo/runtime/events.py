"""Kubernetes Events about the objects a controller manages (core/v1, as `kubectl describe` shows them).

Controllers emit an event on a real transition only, never one per reconcile. A failed emit is logged and
ignored: events are best effort and must never fail a reconcile.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kaiwo.runtime.client import Client

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class EventRecorder:
    def __init__(self, client: Client, component: str) -> None:
        self.client = client
        self.component = component

    async def emit(self, obj: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        meta = obj["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace") or "default"},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.client.create(event)
        except Exception as e:  # best effort
            log.warning("could not record event %s on %s: %s", reason, meta["name"], e)

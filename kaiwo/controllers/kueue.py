"""Which Kueue API version the cluster serves: ``v1beta2`` (Kueue's storage version) when offered, else
``v1beta1`` for an older Kueue. Asked once per controller set-up, from API discovery.

Why not always ``v1beta1``: Kueue 0.15+ stores ``v1beta2`` and serves ``v1beta1`` only by converting through
its webhook, so with the Kueue process down every ``v1beta1`` read and write of its objects fails (a
conversion webhook TLS timeout), which would stop the workload caches from syncing at all.
"""

from __future__ import annotations

from kaiwo.runtime.client import ApiError, Client
from kaiwo.translate.queueconfig import KUEUE_API, KUEUE_APIS


async def served_api(client: Client, kind: str = "Workload") -> str:
    """The first of ``KUEUE_APIS`` that serves ``kind``; ``KUEUE_API`` when Kueue is not installed (yet)."""
    for version in KUEUE_APIS:
        try:
            await client.resource(version, kind)
            return version
        except ApiError as e:
            if not e.not_found:
                raise
    return KUEUE_API

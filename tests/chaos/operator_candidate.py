"""The real operator (``python -m kaiwo.manager``) for the chaos tests, with every reconcile's start recorded.

``python -m tests.chaos.operator_candidate OUTFILE [manager flags...]`` runs ``kaiwo.manager.main`` with the
given flags; each reconcile appends ``<POD_NAME> <unix time> <controller> <key>`` to OUTFILE (line-buffered),
so a test can prove that two replicas never reconciled at the same time.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from kaiwo import manager
from kaiwo.runtime.controller import Controller, Request


def record_reconciles(path: str, who: str) -> None:
    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    process = Controller.process

    async def recorded(self: Controller, req: Request) -> Any:
        out.write(f"{who} {time.time():.3f} {self.name} {req}\n")
        return await process(self, req)

    Controller.process = recorded  # type: ignore[method-assign]


if __name__ == "__main__":
    record_reconciles(sys.argv[1], os.environ.get("POD_NAME", "?"))
    sys.exit(manager.main(sys.argv[2:]))

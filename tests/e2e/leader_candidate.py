"""A manager process for the leader-election e2e test.

``python -m tests.e2e.leader_candidate KUBECONFIG NAMESPACE LEASE OUTFILE`` runs a Manager with leader
election whose only controller reconciles the ConfigMap ``tick`` every 0.2 s and appends
``<identity> <unix time>`` to OUTFILE on every reconcile: the file shows exactly when each process acted.
"""

from __future__ import annotations

import asyncio
import sys
import time

from kaiwo.runtime.client import Client
from kaiwo.runtime.controller import Controller, Request, Result
from kaiwo.runtime.leader import LeaderElectionConfig, default_identity
from kaiwo.runtime.manager import Manager, ManagerOptions, stop_on_signals


async def main(kubeconfig: str, namespace: str, lease: str, outfile: str) -> int:
    identity = default_identity()
    client = await Client.from_kubeconfig(kubeconfig)
    log = open(outfile, "a", buffering=1)  # noqa: SIM115, ASYNC230 - opened once, line-buffered

    class Ticker:
        async def reconcile(self, req: Request) -> Result:
            log.write(f"{identity} {time.time():.3f}\n")
            return Result(requeue_after=0.2)

    le = LeaderElectionConfig(namespace=namespace, name=lease, identity=identity)
    mgr = Manager(client, ManagerOptions(health_address="", metrics_address="", leader_election=le))
    ctrl = Controller("ticker", Ticker(), workers=1)
    ctrl.watches(await mgr.informer("v1", "ConfigMap", namespace=namespace))
    mgr.add(ctrl)
    stop = asyncio.Event()
    stop_on_signals(stop)
    print(f"identity {identity}", flush=True)
    try:
        return await mgr.run(stop)
    finally:
        log.close()
        await client.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:5])))

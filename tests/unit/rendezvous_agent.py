"""A stand-in for ``torchrun`` used by tests/unit/test_torchrun_rendezvous.py (torch itself is ~1 GB to install).

It follows torchrun's documented contract, nothing more:
- every option it is not given on the command line defaults to the environment variable ``PET_<OPTION>``
  (upper case, ``-`` -> ``_``): ``--nnodes``, ``--nproc-per-node``, ``--node-rank``, ``--master-addr``,
  ``--master-port``;
- static rendezvous: node rank 0 hosts the store at ``master-addr:master-port``; every agent starts
  ``nproc-per-node`` workers with ``WORLD_SIZE = nnodes * nproc_per_node``, ``RANK = node_rank *
  nproc_per_node + local_rank``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK = node_rank``,
  ``MASTER_ADDR``/``MASTER_PORT``.
Each worker connects to the store and reports ``RANK WORLD_SIZE``; the store answers every worker once
``WORLD_SIZE`` workers have joined, with ``ok`` when their ranks are exactly 0..WORLD_SIZE-1 and all agree on
WORLD_SIZE, else ``bad``. Node 0's agent prints the joined ranks as JSON.

Usage: ``python rendezvous_agent.py agent`` (env from the rendered pod) or ``... worker`` (started by an agent).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

OPTIONS = ("nnodes", "nproc-per-node", "node-rank", "master-addr", "master-port")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    for opt in OPTIONS:
        p.add_argument(f"--{opt}", default=os.environ.get("PET_" + opt.upper().replace("-", "_")))
    return p.parse_args(argv)


def serve_store(sock: socket.socket, world: int, result: list[list[int]]) -> None:
    conns: list[tuple[socket.socket, int, int]] = []
    while len(conns) < world:
        conn, _ = sock.accept()
        rank, size = (int(x) for x in conn.makefile().readline().split())
        conns.append((conn, rank, size))
    ranks = sorted(r for _, r, _ in conns)
    ok = ranks == list(range(world)) and all(s == world for _, _, s in conns)
    for conn, _, _ in conns:
        conn.sendall(b"ok\n" if ok else b"bad\n")
        conn.close()
    result.append(ranks)


def agent(argv: list[str]) -> int:
    a = parse(argv)
    nnodes, nproc, node_rank, port = int(a.nnodes), int(a.nproc_per_node), int(a.node_rank), int(a.master_port)
    world = nnodes * nproc
    result: list[list[int]] = []
    store = None
    if node_rank == 0:
        sock = socket.create_server((a.master_addr, port))
        store = threading.Thread(target=serve_store, args=(sock, world, result))
        store.start()
    workers = []
    for local in range(nproc):
        env = {
            **os.environ,
            "WORLD_SIZE": str(world),
            "RANK": str(node_rank * nproc + local),
            "LOCAL_RANK": str(local),
            "LOCAL_WORLD_SIZE": str(nproc),
            "GROUP_RANK": str(node_rank),
            "MASTER_ADDR": a.master_addr,
            "MASTER_PORT": str(port),
        }
        workers.append(subprocess.Popen([sys.executable, __file__, "worker"], env=env))
    codes = [w.wait(timeout=60) for w in workers]
    if store is not None:
        store.join(timeout=60)
        print(json.dumps(result[0] if result else None))
    return max(codes)


def worker() -> int:
    deadline = time.monotonic() + 30
    while True:  # like torch's TCPStore client: retry until the store is up
        try:
            conn = socket.create_connection((os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])))
            break
        except OSError:
            if time.monotonic() > deadline:
                return 3
            time.sleep(0.05)
    conn.sendall(f"{os.environ['RANK']} {os.environ['WORLD_SIZE']}\n".encode())
    return 0 if conn.makefile().readline().strip() == "ok" else 2


if __name__ == "__main__":
    sys.exit(agent(sys.argv[2:]) if sys.argv[1] == "agent" else worker())

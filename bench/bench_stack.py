"""Warm start time of the full local cluster and the idle memory of each of its processes.

    .venv/bin/python -m bench.bench_stack [--rounds 3] [--idle 30]

Each round runs ``kaiwo-dev up --state <fresh temporary folder>`` (binaries already cached: run
``kaiwo-dev build`` first) and times it until the command returns (cluster ready: control plane, fake nodes,
CRDs, Kueue/KubeRay/AppWrapper healthy and Kueue's webhooks answering). After the last round it waits
``--idle`` seconds and reads VmRSS from /proc/<pid>/status for every process recorded in status.json, then
runs ``kaiwo-dev down``. Prints a table and writes bench/results/stack.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench._kube import write_results

RESULTS = Path(__file__).parent / "results" / "stack.json"
CLI = [sys.executable, "-m", "kaiwo.devcluster.cli"]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def up(state: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run([*CLI, "up", "--state", str(state)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"kaiwo-dev up failed:\n{proc.stderr}")
    return time.perf_counter() - started


def down(state: Path) -> None:
    subprocess.run([*CLI, "down", "--state", str(state)], check=True, stderr=subprocess.DEVNULL)


def run(rounds: int, idle: float) -> dict[str, Any]:
    starts: list[float] = []
    supervisor_ready: list[float] = []
    phases: list[dict[str, float]] = []
    rss: dict[str, float | None] = {}
    for i in range(rounds):
        with tempfile.TemporaryDirectory(prefix="kaiwo-bench-") as tmp:
            state = Path(tmp)
            try:
                starts.append(up(state))
                status = orjson.loads((state / "status.json").read_bytes())
                supervisor_ready.append(status["ready_seconds"])
                phases.append(status["start_seconds"])
                if i == rounds - 1:
                    time.sleep(idle)
                    rss = {name: rss_mib(c["pid"]) for name, c in status["components"].items()}
                    rss["supervisor"] = rss_mib(status["pid"])
            finally:
                down(state)
    return {
        "warm_start_s": {"rounds": [round(s, 2) for s in starts], "median": round(statistics.median(starts), 2)},
        "supervisor_ready_s": {"rounds": supervisor_ready, "median": round(statistics.median(supervisor_ready), 2)},
        "phases_s": phases,  # binaries (cache lookup), control_plane, bootstrap (nodes, CRDs), addons
        "load_average": os.getloadavg(),
        "idle_rss_mib": rss,
        "idle_seconds": idle,
        "host": {"cpus": os.cpu_count()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds to wait before reading RSS")
    args = ap.parse_args()
    result = run(args.rounds, args.idle)
    print(
        f"warm start (`kaiwo-dev up`, fresh state, cached binaries): {result['warm_start_s']['rounds']} s, "
        f"median {result['warm_start_s']['median']} s "
        f"(supervisor start->ready median {result['supervisor_ready_s']['median']} s)"
    )
    for i, phases in enumerate(result["phases_s"]):
        print(f"  round {i + 1} phases (s): {phases}")
    print(f"{'process':<26}{'idle RSS MiB':>14}")
    for name, mib in result["idle_rss_mib"].items():
        print(f"{name:<26}{mib if mib is not None else '-':>14}")
    write_results(RESULTS, result)


if __name__ == "__main__":
    main()

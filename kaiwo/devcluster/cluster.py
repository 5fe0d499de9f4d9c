"""Start, find and stop a local cluster from any process.

A cluster is a state folder (default ``${XDG_STATE_HOME:-~/.local/state}/kaiwo/devcluster/default``) owned by
one supervisor process (supervisor.py). ``up`` is idempotent: a healthy running cluster is reused. With
``attach=True`` the supervisor dies with the calling process (used by the test fixture); otherwise it runs
detached until ``down``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kaiwo.devcluster import addons as addon_registry
from kaiwo.devcluster.build import CONTROL_PLANE, Progress, _stderr, ensure_binaries
from kaiwo.devcluster.components import Layout
from kaiwo.devcluster.process import _die_with_parent, pid_alive, tail


def default_state_dir(name: str = "default") -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kaiwo" / "devcluster" / name


class ClusterError(RuntimeError):
    pass


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Status:
    phase: str  # absent | starting | ready | failed | stopped
    message: str
    data: dict[str, Any]

    @property
    def running(self) -> bool:
        return self.phase in ("starting", "ready")


class DevCluster:
    def __init__(self, state_dir: Path | None = None) -> None:
        self.layout = Layout((state_dir or default_state_dir()).resolve())

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    def status(self) -> Status:
        try:
            data = orjson.loads(self.layout.status.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return Status("absent", "no cluster in this state folder", {})
        phase = data.get("phase", "absent")
        if phase in ("starting", "ready") and not pid_alive(data.get("pid")):
            phase, data["message"] = "failed", "the supervisor process is gone"
        return Status(phase, data.get("message", ""), data)

    def up(
        self,
        *,
        topology: Path | None = None,
        attach: bool = False,
        timeout: float = 300.0,
        complete_after_ms: int = 3000,
        addons: Iterable[str] | None = None,
        progress: Progress = _stderr,
    ) -> Path:
        """Ensure a ready cluster and return its kubeconfig path.

        ``addons`` names the third-party controllers to run (addons.ADDONS; default: addons.DEFAULT_ADDONS). A running
        cluster is reused only if it runs the same ones.
        """
        selected = addon_registry.DEFAULT_ADDONS if addons is None else tuple(addons)
        unknown = set(selected) - set(addon_registry.ADDONS)
        if unknown:
            raise ClusterError(f"unknown addon(s): {', '.join(sorted(unknown))}")
        st = self.status()
        if st.running:
            running = tuple(st.data.get("addons", ()))
            if set(running) != set(selected):
                raise ClusterError(
                    f"the cluster in {self.layout.root} runs addons "
                    f"[{', '.join(running) or 'none'}], not [{', '.join(selected) or 'none'}]; "
                    "stop it with `kaiwo-dev down` first"
                )
        if st.phase == "ready":
            return self.kubeconfig
        if st.phase == "starting":
            return self._wait_ready(st.data["pid"], None, timeout, progress)
        # Builds show progress here, not hidden in the supervisor.
        ensure_binaries([*CONTROL_PLANE, *(addon_registry.ADDONS[a].binary for a in selected)], progress=progress)
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.layout.status.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "kaiwo.devcluster.supervisor",
            "--state",
            str(self.layout.root),
            f"--complete-after-ms={complete_after_ms}",
            f"--addons={','.join(selected) or 'none'}",
        ]
        if topology:
            argv.append(f"--topology={topology.resolve()}")
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        parent = os.getpid()
        with open(self.layout.log("supervisor"), "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=(lambda: _die_with_parent(parent)) if attach else None,
            )
        try:
            return self._wait_ready(proc.pid, proc, timeout, progress)
        except BaseException:  # including Ctrl-C: never leave a half-started cluster behind
            self._terminate(proc.pid, proc)
            raise

    def _wait_ready(self, pid: int, proc: subprocess.Popen[bytes] | None, timeout: float, progress: Progress) -> Path:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            st = self.status()
            if st.message and st.message != last:
                progress(f"  {st.message}")
                last = st.message
            if st.phase == "ready":
                return self.kubeconfig
            if st.phase == "failed":
                raise ClusterError(f"local cluster failed to start: {st.message}")
            exited = proc.poll() is not None if proc else not pid_alive(pid)
            if exited and st.phase != "ready":
                raise ClusterError(
                    "the cluster supervisor exited during start:\n" + tail(self.layout.log("supervisor"))
                )
            time.sleep(0.2)
        raise ClusterError(f"local cluster not ready within {timeout:.0f}s (last: {last}); logs in {self.layout.logs}")

    def down(self, timeout: float = 60.0) -> bool:
        """Stop the cluster; True if one was running."""
        data = self.status().data
        pid = data.get("pid")
        if not pid or not pid_alive(pid):
            self._reap_leftovers(data)
            return False
        self._terminate(pid, None, timeout)
        self._reap_leftovers(data)
        return True

    def _terminate(self, pid: int, proc: subprocess.Popen[bytes] | None, timeout: float = 60.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None and not pid_alive(pid):
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # its children get SIGKILL from the kernel (PDEATHSIG)
        if proc is not None:
            proc.wait()

    @staticmethod
    def _reap_leftovers(data: dict[str, Any]) -> None:
        """Kill components recorded in the status that are somehow still alive (belt and braces)."""
        for name, comp in data.get("components", {}).items():
            pid = comp.get("pid")
            if pid_alive(pid) and name in _cmdline(pid):  # never signal a reused pid
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

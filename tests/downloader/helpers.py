"""Run the downloader as the download Job does (a subprocess on a config file) and put a throttling TCP proxy in
front of a storage server, so a test can kill a download half-way and count what the rerun fetches."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    output: str  # stdout + stderr
    message: str  # the termination message ("" when none was written)

    @property
    def last_line(self) -> str:
        lines = self.output.strip().splitlines()
        return lines[-1] if lines else ""


def write_config(tmp: Path, config: dict[str, Any]) -> Path:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def command(tmp: Path, config: dict[str, Any], workers: int = 4) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kaiwo.downloader",
        "--termination-log",
        str(tmp / "termination-log"),
        "--max-workers",
        str(workers),
        str(write_config(tmp, config)),
    ]


def run(tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None, timeout: float = 60) -> Run:
    term = tmp / "termination-log"
    term.unlink(missing_ok=True)
    done = subprocess.run(
        command(tmp, config),
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    return Run(done.returncode, done.stdout + done.stderr, term.read_text() if term.exists() else "")


def grown(folder: Path, pattern: str, at_least: int) -> Callable[[], bool]:
    """True once a file matching ``pattern`` under ``folder`` holds ``at_least`` bytes."""
    return lambda: any(p.stat().st_size >= at_least for p in folder.rglob(pattern) if p.is_file())


def kill_when(
    tmp: Path, config: dict[str, Any], ready: Callable[[], bool], env: dict[str, str], workers: int = 4
) -> None:
    """Start a download and SIGKILL it as soon as ``ready()`` (a crash half-way through)."""
    proc = subprocess.Popen(command(tmp, config, workers), env=dict(os.environ, **env), cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if ready():
                proc.send_signal(signal.SIGKILL)
                break
            assert proc.poll() is None, "the download finished before it could be interrupted"
            time.sleep(0.02)
        else:
            raise AssertionError("the download never reached the point to interrupt it")
    finally:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class ThrottleProxy:
    """A TCP proxy to 127.0.0.1:``upstream``: ``rate`` limits server-to-client bytes per second (None: no limit);
    ``received`` counts the bytes clients got from the server."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.rate: float | None = None
        self.received = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                if downstream:
                    with self._lock:
                        self.received += len(data)
                    if self.rate:
                        time.sleep(len(data) / self.rate)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._server.close()

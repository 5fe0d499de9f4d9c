"""``kaiwo exec -it`` with a real terminal and ``kaiwo port-forward job/NAME`` with port discovery, against kwok
(which runs exec'ed commands on this machine, in a pseudo-terminal when a TTY is asked for, and answers every
forwarded port with ``cat``). The real ``kaiwo`` executable runs on a local pseudo-terminal of its own, so raw
mode, the window size and SIGWINCH are those of a user's shell."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from tests.e2e.helpers import API, Cli, eventually, ok, phase_is

KAIWO = str(Path(sys.executable).parent / "kaiwo")


def running_job(name: str) -> str:
    container = {"name": "main", "image": "busybox:1.36", "ports": [{"name": "http", "containerPort": 8080}]}
    return yaml.safe_dump(
        {
            "apiVersion": API,
            "kind": "KaiwoJob",
            "metadata": {"name": name, "annotations": {"kwok.kaiwo.dev/duration": "300s"}},
            "spec": {
                "image": "busybox:1.36",
                "entrypoint": "sleep 300",
                "job": {"spec": {"template": {"spec": {"containers": [container]}}}},
            },
        }
    )


class Terminal:
    """``kaiwo`` on a pseudo-terminal: what a user at a shell would see and type."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int, cols: int) -> None:
        self.master, slave = pty.openpty()
        self.resize(rows, cols)
        self.proc = subprocess.Popen([KAIWO, *args], stdin=slave, stdout=slave, stderr=slave, env=env)
        os.close(slave)
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, needle: str, timeout: float = 30) -> None:
        self.expect_any((needle,), timeout)

    def expect_any(self, needles: tuple[str, ...], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(n.encode() in self.seen for n in needles):
            assert time.monotonic() < deadline, f"{needles!r} not seen in {self.seen!r}"
            if not select.select([self.master], [], [], 0.2)[0]:
                continue
            try:
                self.seen += os.read(self.master, 65536)
            except OSError:  # the process ended and closed the terminal
                assert any(n.encode() in self.seen for n in needles), f"{needles!r} not seen in {self.seen!r}"
                return

    def ask_until(self, command: str, needle: str, timeout: float = 30) -> None:
        """Type ``command`` about once a second until ``needle`` appears: for state that reaches the far end on
        another channel than the typing (a resize travels beside stdin)."""
        deadline = time.monotonic() + timeout
        while True:
            self.type(command)
            try:
                self.expect(needle, timeout=1.0)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def wait(self) -> int:
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                if select.select([self.master], [], [], 0.2)[0]:
                    self.seen += os.read(self.master, 65536)
        except OSError:
            pass
        code = self.proc.wait(timeout=5)
        os.close(self.master)
        return code


@pytest.fixture
async def running(cli: Cli, client: Client, namespace: str, operator: Manager) -> str:
    ok(await cli("submit", "-f", "-", "-n", namespace, input=running_job("shell")))
    await eventually(lambda: phase_is(client, "KaiwoJob", "shell", namespace, "RUNNING"), "shell RUNNING", timeout=90)
    return "job/shell"


async def test_exec_it_is_an_interactive_shell_with_the_terminals_size(
    running: str,
    cli: Cli,
    kubeconfig: str,
    namespace: str,
) -> None:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "NO_COLOR": "1"}
    term = Terminal(["exec", running, "-n", namespace, "-it", "--", "sh"], env, rows=33, cols=101)
    try:
        await asyncio.to_thread(term.expect_any, ("# ", "$ "))  # the shell's prompt: it reads from now on
        term.type("stty size; test -t 0 && echo IS-A-TTY\n")
        await asyncio.to_thread(term.expect, "33 101")
        await asyncio.to_thread(term.expect, "IS-A-TTY")
        term.resize(40, 120)
        term.proc.send_signal(signal.SIGWINCH)
        await asyncio.to_thread(term.ask_until, "stty size\n", "40 120")
        term.type("exit 7\n")
        assert await asyncio.to_thread(term.wait) == 7
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    # upstream's form: --command is a shell line, and on a terminal it is interactive with a TTY by default
    # kwok copies the command's terminal output until the command exits; under load it can stop before it has
    # copied the last line, so the command lingers a moment after it (kaiwo itself reads until the stream ends)
    line = "echo ready; read x; echo got-$x; tty; sleep 1"
    term = Terminal(["exec", running, "-n", namespace, "--command", line], env, rows=24, cols=80)
    await asyncio.to_thread(term.expect, "ready")
    term.type("hello\n")
    await asyncio.to_thread(term.expect, "got-hello")
    await asyncio.to_thread(term.expect, "/dev/pts/")
    assert await asyncio.to_thread(term.wait) == 0
    # without a terminal (a script, CI): no TTY
    r = ok(await cli("exec", running, "-n", namespace, "--command", "echo $((6*7)); tty || true"))
    assert r.stdout.splitlines() == ["42", "not a tty"]
    r = ok(await cli("exec", running, "-n", namespace, "-t", "--", "tty"), 1)
    assert "not a terminal" in r.stderr and r.stdout.strip() == "not a tty"  # no TTY, as kubectl does


async def forward(kubeconfig: str, *args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        KAIWO,
        "port-forward",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": kubeconfig, "NO_COLOR": "1"},
    )
    return proc


async def read_forwards(proc: asyncio.subprocess.Process, count: int) -> dict[int, int]:
    """{remote: local} from the ``Forwarding from 127.0.0.1:LOCAL -> REMOTE`` lines."""
    assert proc.stdout is not None
    out = {}
    for _ in range(count):
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("Forwarding from 127.0.0.1:"), line
        local, remote = line.split(":")[1].split(" -> ")
        out[int(remote)] = int(local.split()[0])
    return out


async def echo(port: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(message)
    await writer.drain()
    data = await asyncio.wait_for(reader.readexactly(len(message)), 10)
    writer.close()
    return data


async def test_port_forward_job_finds_the_port(running: str, kubeconfig: str, client: Client, namespace: str) -> None:
    proc = await forward(kubeconfig, running, "-n", namespace)
    try:
        ports = await read_forwards(proc, 1)
        assert list(ports) == [8080]  # the container's declared port
        assert await echo(ports[8080], b"through the tunnel\n") == b"through the tunnel\n"
    finally:
        proc.terminate()
        await proc.wait()

    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "shell-web", "namespace": namespace},
        "spec": {
            "selector": {"batch.kubernetes.io/job-name": "shell"},
            "ports": [{"name": "web", "port": 80, "targetPort": "http"}, {"name": "admin", "port": 9090}],
        },
    }
    await client.create(service)
    proc = await forward(kubeconfig, running, "-n", namespace)
    try:
        ports = await read_forwards(proc, 2)
        assert sorted(ports) == [8080, 9090]  # the Service's target ports, the named one resolved
        assert await echo(ports[9090], b"admin\n") == b"admin\n"
    finally:
        proc.terminate()
        await proc.wait()

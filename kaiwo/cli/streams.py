"""Streaming subresources over websockets: ``pods/exec`` and ``pods/portforward``.

exec speaks ``v5.channel.k8s.io`` (Kubernetes >= 1.30 translates it for the kubelet): every binary message
starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal size, 255
close-a-channel, which is how stdin's end reaches the command). With a TTY the remote side merges stderr into
stdout (so stderr is not requested) and takes the terminal's size as ``{"Width": w, "Height": h}`` on channel 4,
first when the session starts and again on every resize. portforward speaks ``v4.channel.k8s.io`` with two
channels per port (data, error); the first message on each starts with the port number (2 bytes), which is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from kaiwo.runtime.client import Client

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
_EXIT_STATUS = re.compile(r"exit (?:status|code) (\d+)\s*$")


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    error: str = ""  # why the command could not run ("" when it ran, whatever its exit code)


def exec_result(status: dict[str, Any] | None) -> ExecResult:
    """The command's fate from the Status on channel 3. A kubelet says ``NonZeroExitCode`` with an ``ExitCode``
    cause; some runtimes (kwok) only say "exit status N" in the message."""
    if status is None:
        return ExecResult(1, "the connection closed before the command finished")
    if status.get("status") == "Success":
        return ExecResult(0)
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
            return ExecResult(int(cause["message"]))
    message = str(status.get("message") or "")
    match = _EXIT_STATUS.search(message)
    if match:
        return ExecResult(int(match.group(1)))
    return ExecResult(1, message or "the command failed")


async def exec_in_pod(
    client: Client,
    namespace: str,
    pod: str,
    container: str,
    command: list[str],
    *,
    stdout: Callable[[bytes], None],
    stderr: Callable[[bytes], None],
    stdin: AsyncIterator[bytes] | None = None,
    tty: bool = False,
    sizes: AsyncIterator[tuple[int, int]] | None = None,
) -> ExecResult:
    """Run ``command``; ``sizes`` yields (width, height) of the local terminal (only used with ``tty``)."""
    params = [("command", c) for c in command] + [("container", container), ("stdout", "true")]
    params.append(("tty", "true") if tty else ("stderr", "true"))
    if stdin is not None:
        params.append(("stdin", "true"))
    ws = await client.websocket(f"/api/v1/namespaces/{namespace}/pods/{pod}/exec", params, ("v5.channel.k8s.io",))
    feeders = [asyncio.create_task(_feed(ws, stdin))] if stdin is not None else []
    if tty and sizes is not None:
        feeders.append(asyncio.create_task(_resize(ws, sizes)))
    status: dict[str, Any] | None = None
    try:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel == STDOUT and data:
                stdout(data)
            elif channel == STDERR and data:
                stderr(data)
            elif channel == STATUS and data:
                status = orjson.loads(data)
    finally:
        for feeder in feeders:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await feeder
        await ws.close()
    return exec_result(status)


async def _resize(ws: aiohttp.ClientWebSocketResponse, sizes: AsyncIterator[tuple[int, int]]) -> None:
    async for width, height in sizes:
        await ws.send_bytes(bytes([RESIZE]) + orjson.dumps({"Width": width, "Height": height}))


async def _feed(ws: aiohttp.ClientWebSocketResponse, stdin: AsyncIterator[bytes]) -> None:
    async for chunk in stdin:
        await ws.send_bytes(bytes([STDIN]) + chunk)
    await ws.send_bytes(bytes([CLOSE, STDIN]))


async def forward_connection(
    client: Client,
    namespace: str,
    pod: str,
    port: int,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    on_error: Callable[[str], None],
) -> None:
    """Carry one local TCP connection to ``port`` of ``pod`` and back, until either side closes."""
    try:
        ws = await client.websocket(
            f"/api/v1/namespaces/{namespace}/pods/{pod}/portforward", {"ports": str(port)}, ("v4.channel.k8s.io",)
        )
    except Exception as e:
        on_error(f"cannot open a port-forward to {pod}:{port}: {e}")
        writer.close()
        return

    async def upstream() -> None:
        while data := await reader.read(65536):
            await ws.send_bytes(bytes([0]) + data)

    async def downstream() -> None:
        started = [False, False]
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data or msg.data[0] > 1:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if not started[channel]:
                started[channel], data = True, data[2:]
            if channel == 0 and data:
                writer.write(data)
                await writer.drain()
            elif channel == 1 and data:
                on_error(data.decode(errors="replace").strip())

    tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws.close()
        writer.close()

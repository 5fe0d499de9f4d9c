"""A fault-injecting proxy between one client (a manager under test) and the kube-apiserver.

It terminates TLS with a serving certificate from the dev cluster's CA (so the client's kubeconfig only changes
its server address) and opens its own TLS connection upstream with the cluster's admin client certificate.
Modes, switched at any time with ``set``:

- ``pass``: bytes flow both ways unchanged;
- ``delay``: every chunk waits ``delay`` seconds before it is forwarded;
- ``silent``: connections stay open, new ones are accepted, but no byte moves in either direction (a hung
  network path or a frozen peer); held bytes flow again when the mode changes back;
- ``stall``: the connections open now go silent for good (a dead peer behind them); new ones pass;
- ``drop``: every open connection is closed at once and new ones are closed as soon as they are accepted;
- ``http429``: open connections are closed; new ones are answered at the HTTP level, every request with
  ``429 Too Many Requests`` and ``Retry-After``, counted in ``throttled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from pathlib import Path
from typing import Literal

import orjson
import yaml

from kaiwo.devcluster.components import Layout, admin_ssl
from kaiwo.devcluster.pki import PKI

Mode = Literal["pass", "delay", "silent", "stall", "drop", "http429"]
CHUNK = 65536


class FaultProxy:
    def __init__(self, state: Path, upstream: tuple[str, int]) -> None:
        layout = Layout(state)
        pair = PKI(layout.pki).issue("chaos-proxy", "chaos-proxy", ips=("127.0.0.1",), server=True)
        self.server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_ssl.load_cert_chain(str(pair.cert), str(pair.key))
        self.upstream_ssl = admin_ssl(layout)
        self.upstream = upstream
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.retry_after = 1
        self.throttled = 0  # requests answered with 429
        self.throttled_by: Counter[str] = Counter()  # "VERB /path" without query -> requests answered with 429
        self.connections = 0  # client connections accepted
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._closed = asyncio.Event()
        self._open: set[asyncio.StreamWriter] = set()
        self._stalled: set[asyncio.StreamWriter] = set()  # writers that never get another byte
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.server_ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._close_all()
        if self._server is not None:
            self._server.close()

    def set(self, mode: Mode, *, delay: float = 0.0, retry_after: int = 1) -> None:
        self.mode, self.delay, self.retry_after = mode, delay, retry_after
        if mode == "silent":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode in ("drop", "http429"):
            self._close_all()
        if mode == "stall":
            self._stalled |= self._open
            self.mode = "pass"

    def kubeconfig(self, admin_kubeconfig: Path, path: Path) -> Path:
        """A copy of the admin kubeconfig whose server is this proxy."""
        cfg = yaml.safe_load(admin_kubeconfig.read_text())
        for cluster in cfg["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def _close_all(self) -> None:
        for w in list(self._open):
            w.transport.abort()
        self._open.clear()
        self._stalled.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        try:
            if self.mode == "drop":
                return
            if self.mode == "http429":
                await self._throttle(reader, writer)
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream, ssl=self.upstream_ssl)
            self._open.add(up_writer)
            if writer in self._stalled:
                self._stalled.add(up_writer)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                up_writer.transport.abort()
                self._open.discard(up_writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()
            self._open.discard(writer)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while chunk := await src.read(CHUNK):
                await self._flowing.wait()
                if dst in self._stalled:
                    await self._closed.wait()  # never another byte
                    return
                if self.mode == "delay" and self.delay > 0:
                    await asyncio.sleep(self.delay)
                dst.write(chunk)
                await dst.drain()
        finally:
            with contextlib.suppress(Exception):
                dst.transport.abort()

    async def _throttle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if self.mode != "http429":
                return  # the storm is over: close, the client reconnects through the pipe
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            self.throttled += 1
            verb, _, rest = head.split(b"\r\n", 1)[0].decode().partition(" ")
            self.throttled_by[f"{verb} {rest.split(' ', 1)[0].split('?', 1)[0]}"] += 1
            body = orjson.dumps(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "TooManyRequests",
                    "message": "chaos proxy: too many requests, please try again later",
                    "code": 429,
                }
            )
            writer.write(
                b"HTTP/1.1 429 Too Many Requests\r\n"
                + f"Retry-After: {self.retry_after}\r\nContent-Type: application/json\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()

"""A small Hugging Face Hub on 127.0.0.1 (aiohttp) for one fixture model repository with two revisions: the
endpoints ``snapshot_download`` and ``hf_hub_download`` use (revision info, recursive tree listing, and file
resolution with ``X-Repo-Commit``/``ETag`` and ranged reads), the hub's ``X-Error-Code`` error answers, and a
bearer token required for the repository."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

REPO = "kaiwo-tests/tiny-model"
TOKEN = "hf_testTokenThatMustNeverBePrinted"
MiB = 1024 * 1024


class TinyHub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.revisions: dict[str, dict[str, bytes]] = {
            "1" * 40: {"config.json": b'{"v": 1}', "README.md": b"# tiny v1"},
            "2" * 40: {
                "config.json": b'{"v": 2}',
                "README.md": b"# tiny v2",
                # Two shards larger than the hub library's 10 MiB write chunk, so a kill can land in the second.
                "model-00001.safetensors": os.urandom(12 * MiB),
                "model-00002.safetensors": os.urandom(12 * MiB),
                "tokenizer/vocab.txt": b"a\nb\n",
            },
        }
        self.refs = {"main": "2" * 40, "v1": "1" * 40}
        for sha, files in self.revisions.items():
            for name, data in files.items():
                path = root / sha / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        app = web.Application()
        app.router.add_get("/api/models/{ns}/{name}/revision/{rev}", self.revision)
        app.router.add_get("/api/models/{ns}/{name}/tree/{rev}", self.tree)
        app.router.add_route("*", "/{ns}/{name}/resolve/{rev}/{path:.+}", self.resolve)
        self.app = app
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app)
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        started.wait(10)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        started.set()
        self._loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _check(self, request: web.Request) -> tuple[str, dict[str, bytes]] | web.Response:
        if request.headers.get("Authorization") not in (None, f"Bearer {TOKEN}"):
            return web.Response(
                status=401, headers={"X-Error-Message": "Invalid credentials in Authorization header"}, text="no"
            )
        if f"{request.match_info['ns']}/{request.match_info['name']}" != REPO:
            return web.Response(status=401, headers={"X-Error-Code": "RepoNotFound"}, text="Repository not found")
        if request.headers.get("Authorization") is None:  # a private repository
            return web.Response(status=401, headers={"X-Error-Code": "RepoNotFound"}, text="Repository not found")
        rev = request.match_info["rev"]
        sha = self.refs.get(rev, rev)
        if sha not in self.revisions:
            return web.Response(status=404, headers={"X-Error-Code": "RevisionNotFound"}, text="Invalid rev id")
        return sha, self.revisions[sha]

    async def revision(self, request: web.Request) -> web.StreamResponse:
        found = self._check(request)
        if isinstance(found, web.Response):
            return found
        sha, files = found
        body: dict[str, Any] = {"id": REPO, "sha": sha, "siblings": [{"rfilename": n} for n in sorted(files)]}
        return web.json_response(body)

    async def tree(self, request: web.Request) -> web.StreamResponse:
        found = self._check(request)
        if isinstance(found, web.Response):
            return found
        _, files = found
        entries = [
            {"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
            for n, d in sorted(files.items())
        ]
        return web.json_response(entries)

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        found = self._check(request)
        if isinstance(found, web.Response):
            return found
        sha, files = found
        path = request.match_info["path"]
        if path not in files:
            return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound"}, text="Entry not found")
        etag = hashlib.sha256(files[path]).hexdigest()
        return web.FileResponse(self.root / sha / path, headers={"X-Repo-Commit": sha, "ETag": f'"{etag}"'})

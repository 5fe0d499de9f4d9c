"""A git server on 127.0.0.1: ``git http-backend`` (smart HTTP) behind a threaded HTTP server that demands Basic
credentials, serving one bare fixture repository with two commits, a tag and a branch."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

USER = "reader"
TOKEN = "glpat-gitTokenThatMustNeverBePrinted"


def _git(cwd: Path, *args: str) -> str:
    env = dict(
        os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"
    )
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


class GitServer:
    def __init__(self, root: Path) -> None:
        work = root / "work"
        work.mkdir()
        _git(work, "init", "-q", "-b", "main")
        (work / "src" / "model").mkdir(parents=True)
        (work / "README.md").write_text("tiny\n")
        (work / "src" / "model" / "config.json").write_text('{"v": 1}\n')
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "v1")
        self.first = _git(work, "rev-parse", "HEAD")
        _git(work, "tag", "v1")
        (work / "src" / "model" / "config.json").write_text('{"v": 2}\n')
        _git(work, "commit", "-q", "-am", "v2")
        self.second = _git(work, "rev-parse", "HEAD")
        _git(work, "branch", "dev", self.first)
        self.repos = root / "repos"
        self.repos.mkdir()
        _git(root, "clone", "-q", "--bare", str(work), str(self.repos / "tiny.git"))
        self.requests = 0
        self.stall = threading.Event()  # set: requests hang until cleared (a server that stops answering)
        self.stalled = 0  # requests hanging right now
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tiny.git"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._cgi()

            def do_POST(self) -> None:
                self._cgi()

            def _cgi(self) -> None:
                server.requests += 1
                if server.stall.is_set():
                    server.stalled += 1
                    while server.stall.is_set():
                        time.sleep(0.05)
                    server.stalled -= 1
                    self.close_connection = True
                    return
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = dict(
                    os.environ,
                    GIT_PROJECT_ROOT=str(server.repos),
                    GIT_HTTP_EXPORT_ALL="1",
                    PATH_INFO=path,
                    QUERY_STRING=query,
                    REQUEST_METHOD=self.command,
                    CONTENT_TYPE=self.headers.get("Content-Type", ""),
                    CONTENT_LENGTH=str(len(body)),
                    HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""),
                    GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
                    REMOTE_USER=USER,
                    REMOTE_ADDR="127.0.0.1",
                )
                out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

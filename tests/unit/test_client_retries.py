"""The client's retry policy against a local HTTP server: what is repeated, how often, and within which deadline."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.kubeconfig import NoCredentials, Transport


class Server:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.status = 503
        self.retry_after: str | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.method] = self.hits.get(request.method, 0) + 1
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return web.json_response({"kind": "Status", "code": self.status}, status=self.status, headers=headers)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, Client]]:
    server = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = Client(Transport(f"http://127.0.0.1:{runner.addresses[0][1]}", None, None, NoCredentials()))
    try:
        yield server, client
    finally:
        await client.close()
        await runner.cleanup()


async def test_server_errors_are_retried_for_reads_but_not_for_creates_or_deletes(
    served: tuple[Server, Client],
) -> None:
    server, client = served
    client.max_attempts = 3
    for method in ("GET", "POST", "DELETE"):
        with pytest.raises(ApiError):
            await client.request(method, "/x", body=None if method == "GET" else {})
    assert server.hits == {"GET": 3, "POST": 1, "DELETE": 1}


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
async def test_client_errors_are_permanent(served: tuple[Server, Client], status: int) -> None:
    server, client = served
    server.status = status
    with pytest.raises(ApiError):
        await client.request("GET", "/x")
    assert server.hits == {"GET": 1}


async def test_429_is_retried_for_any_verb_after_retry_after_and_within_the_deadline(
    served: tuple[Server, Client],
) -> None:
    server, client = served
    server.status, server.retry_after = 429, "1"
    started = time.monotonic()
    with pytest.raises(ApiError) as e:
        await client.request("POST", "/x", body={}, deadline=2.5)
    took = time.monotonic() - started
    assert e.value.status == 429
    # attempts at 0, 1 and 2 s (Retry-After outweighs the short backoff); a fourth would start past the deadline
    assert server.hits == {"POST": 3}
    assert 2.0 <= took < 2.5


async def test_no_retries_means_one_attempt(served: tuple[Server, Client]) -> None:
    server, client = served
    with pytest.raises(ApiError):
        await client.request("GET", "/x", retries=False)
    assert server.hits == {"GET": 1}

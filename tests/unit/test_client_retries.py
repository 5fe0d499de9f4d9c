"""The client's retry policy against a local HTTP server: what is repeated, how often, and within which deadline."""

from __future__ import annotations

import asyncio
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


async def _storm(client: Client, callers: int, deadline: float) -> list[BaseException | None]:
    async def call(i: int) -> BaseException | None:
        try:
            await client.request("GET", f"/x/{i}", deadline=deadline)
        except (ApiError, TimeoutError) as e:
            return e
        return None

    return list(await asyncio.gather(*(call(i) for i in range(callers))))


async def test_a_429_holds_every_caller_of_the_client_and_then_lets_one_probe_at_a_time(
    served: tuple[Server, Client],
) -> None:
    server, client = served
    server.status, server.retry_after = 429, "1"
    outcomes = await _storm(client, callers=30, deadline=3.5)
    # 30 callers at once: each first attempt may start before the first 429 returns; after it, one probe per
    # Retry-After (at about 1, 2 and 3 s). Retrying independently would be 30 callers x 4 attempts.
    assert all(isinstance(o, ApiError | TimeoutError) for o in outcomes)
    assert server.hits["GET"] <= 30 + 4, server.hits
    assert client.pushback.active and client.pushback.episodes == 1


async def test_the_first_answer_that_is_not_429_opens_the_gate_for_all(served: tuple[Server, Client]) -> None:
    server, client = served
    server.status, server.retry_after = 429, "1"
    with pytest.raises(ApiError):
        await client.request("GET", "/first", retries=False)
    client.pushback.throttled(1.0, probe=False)  # what a retried call records on that answer
    server.status = 200
    started = time.monotonic()
    outcomes = await _storm(client, callers=20, deadline=10)
    took = time.monotonic() - started
    assert outcomes == [None] * 20
    assert not client.pushback.active
    assert 0.9 <= took < 2.0, "held until the Retry-After, then the probe's success released everyone at once"
    assert server.hits["GET"] == 1 + 20, "no caller was sent twice"


async def test_a_caller_held_past_its_deadline_gets_a_timeout_and_calls_without_retries_bypass_the_gate(
    served: tuple[Server, Client],
) -> None:
    server, client = served
    server.status = 200
    client.pushback.throttled(30.0, probe=False)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.request("GET", "/held", deadline=0.5)
    assert 0.4 <= time.monotonic() - started < 1.5
    assert "GET" not in server.hits, "a held call sends nothing"
    await client.request("PUT", "/lease", body={}, retries=False)  # a lease renewal is not held
    assert server.hits == {"PUT": 1}
    assert not client.pushback.active, "its answer tells the client the server accepts work again"


async def test_a_stream_probe_answered_with_an_error_that_is_not_429_opens_the_gate(
    served: tuple[Server, Client],
) -> None:
    server, client = served
    server.status = 500
    client.pushback.throttled(0.0, probe=False)
    with pytest.raises(ApiError):
        async with client.open_stream("/watch", {}, timeout=5):
            pass
    assert not client.pushback.active, "the server answered: later calls must not wait for a probe that ended"

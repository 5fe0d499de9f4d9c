"""Kubernetes API access on one shared aiohttp session.

kaiwo.runtime.kubeconfig turns kubeconfig / in-cluster credentials into a ``Transport`` (TLS context, proxy,
credentials: every transport setting kubectl honours); the session is opened from it. Bodies are
(de)serialised with orjson into plain dicts; the generated OpenAPI models are never used because they are
slow and lossy for custom resources.

Every call has a timeout per attempt and a caller deadline over all attempts. What is retried (with
exponential backoff and jitter, never sooner than the server's Retry-After, never past the deadline):
- any verb on 429 (the server did not process it) and on a connection that could not be opened (nothing sent);
  a 429 also holds every other call of the client until the server accepts work again (kaiwo.runtime.pushback);
- idempotent calls only on 5xx, timeouts and broken connections: GET, PUT (a replace carries its
  resourceVersion, so a repeat after a lost answer is a 409, not a second write), and server-side apply or merge
  PATCH (applying them twice gives the same object). POST and DELETE are not retried there: a repeat could
  create a duplicate (an Event) or delete a successor object of the same name.
Every other error (400, 403, 404, 409, 422, ...) is permanent and raises ``ApiError`` at once with the
apiserver's Status message. ``retries=False`` makes one attempt only (lease renewals bound their own time).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from opentelemetry import trace

from kaiwo.runtime import kubeconfig, tracing
from kaiwo.runtime.kubeconfig import KubeconfigError
from kaiwo.runtime.objects import Obj
from kaiwo.runtime.pushback import Pushback

DEFAULT_TIMEOUT = 30.0  # one attempt
DEFAULT_DEADLINE = 60.0  # all attempts of one call, waits included
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})  # for idempotent calls; 429 for every call
MAX_RETRY_AFTER = 60.0
BACKOFF_BASE, BACKOFF_MAX = 0.2, 10.0
IDEMPOTENT_PATCHES = frozenset({"application/apply-patch+yaml", "application/merge-patch+json"})


class ApiError(Exception):
    """A non-success answer of the apiserver, with its Status reason and message."""

    def __init__(self, status: int, body: Any, method: str = "", path: str = "") -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        self.reason: str = self.body.get("reason", "")
        self.message: str = self.body.get("message") or (body if isinstance(body, str) else "") or ""
        self.retry_after: float | None = None
        super().__init__(f"{method} {path}: {status} {self.reason}: {self.message}".strip())

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def namespace_terminating(self) -> bool:
        """A write refused because its namespace is being deleted (the apiserver's NamespaceTerminating cause):
        nothing to fix, the object is about to go with its namespace. (A StatusCause's type is its JSON "reason".)"""
        causes = (self.body.get("details") or {}).get("causes") or []
        return self.status == 403 and any(c.get("reason") == "NamespaceTerminating" for c in causes)


def idempotent(method: str, content_type: str | None) -> bool:
    """Whether repeating the call after a lost answer cannot do anything the first one did not."""
    return method in ("GET", "HEAD", "PUT") or (method == "PATCH" and content_type in IDEMPOTENT_PATCHES)


def retryable(exc: BaseException, is_idempotent: bool) -> bool:
    """Whether a failed attempt may be repeated (see the module docstring)."""
    if isinstance(exc, ApiError):
        return exc.status == 429 or (is_idempotent and exc.status in RETRYABLE_STATUS)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return True  # the connection was never opened: nothing was sent
    return is_idempotent and isinstance(exc, aiohttp.ClientConnectionError | TimeoutError)


def retry_delay(attempt: int, exc: BaseException, rng: random.Random = random.Random()) -> float:  # noqa: B008
    """Full-jitter exponential backoff after ``attempt`` failures, but never shorter than the server's Retry-After."""
    delay = rng.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt))
    if isinstance(exc, ApiError) and exc.retry_after is not None:
        delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER))
    return delay


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name:
            parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


def _api_error(status: int, raw: bytes, method: str, path: str) -> ApiError:
    """The ApiError of a failed response: its Status object when the body is JSON, else the body as text."""
    try:
        decoded: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        decoded = raw.decode(errors="replace")
    return ApiError(status, decoded, method, path)


def _with_retry_after(err: ApiError, headers: Mapping[str, str]) -> ApiError:
    if "Retry-After" in headers:
        with contextlib.suppress(ValueError):
            err.retry_after = float(headers["Retry-After"])
    return err


class Client:
    """Thin async REST client. Create with ``await Client.from_kubeconfig(...)``; close with ``await close()``."""

    def __init__(self, transport: kubeconfig.Transport) -> None:
        self.transport = transport
        self._session: aiohttp.ClientSession | None = None  # opened on first use, inside the event loop
        # Observers of every HTTP exchange (method, status code; 0 = no response), e.g. Prometheus counters.
        self.observers: list[Callable[[str, int], None]] = []
        self.tracer: trace.Tracer = trace.get_tracer("kaiwo.runtime.client")
        self.host: str = transport.server
        self._resources: dict[tuple[str, str], Resource] = {}
        self._discovered: set[str] = set()
        self.max_attempts = 5
        self.retried = 0  # attempts repeated (observability and tests)
        self.pushback = Pushback()  # the server's 429s hold every call of this client (kaiwo.runtime.pushback)
        self.connection_limit = kubeconfig.CONNECTION_LIMIT  # set before the first call; the session keeps it

    @classmethod
    async def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> Client:
        return cls(kubeconfig.load_kubeconfig(path, context))

    @classmethod
    def in_cluster(cls) -> Client:
        return cls(kubeconfig.in_cluster())

    @classmethod
    async def auto(cls, kubeconfig: str | None = None, context: str | None = None) -> Client:
        """kubeconfig if given or found, else the in-cluster service account."""
        try:
            return await cls.from_kubeconfig(kubeconfig, context)
        except KubeconfigError:
            if kubeconfig:
                raise
            return cls.in_cluster()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self.transport.open_session(self.connection_limit)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers: dict[str, str] = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        headers.update(await self.transport.auth_headers())
        return headers

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        url = self.host + path
        if params:
            clean = {
                k: ("true" if v is True else "false" if v is False else v) for k, v in params.items() if v is not None
            }
            if clean:
                url += "?" + urlencode(clean)
        return url

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        retries: bool = True,
    ) -> Any:
        """One API call, retried as the module docstring says, within ``deadline`` seconds in all; returns the
        decoded JSON body (or None when empty)."""
        data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        is_idempotent = idempotent(method, content_type if data is not None else None)
        end = time.monotonic() + deadline
        attempt = 0
        while True:
            attempt += 1
            # Calls without retries (lease renewals) bypass the shared gate: APF serves leader election at its own
            # priority level, and a renewal must not wait behind workload requests.
            probe = await self.pushback.admit(end) if retries else False
            left = end - time.monotonic()
            try:
                result = await self._once(method, path, params, data, content_type, max(min(timeout, left), 0.001))
            except ApiError as e:
                self._answered(e, probe)
                failure: BaseException = e
            except (aiohttp.ClientError, TimeoutError) as e:
                if probe:
                    self.pushback.abandoned()
                failure = e
            except asyncio.CancelledError:
                if probe:
                    self.pushback.abandoned()
                raise
            else:
                self.pushback.answered()
                return result
            if not retries or attempt >= self.max_attempts or not retryable(failure, is_idempotent):
                raise failure
            delay = retry_delay(attempt, failure)
            if time.monotonic() + delay >= end:
                raise failure
            self.retried += 1
            await asyncio.sleep(delay)

    async def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        data: bytes | None,
        content_type: str,
        timeout: float,
    ) -> Any:
        headers = await self._headers(content_type if data is not None else None)
        name, attributes = tracing.api_call(method, path)
        with self.tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
            tracing.inject(headers)  # traceparent: the apiserver's spans join this trace
            try:
                async with self.session.request(
                    method,
                    self._url(path, params),
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as resp:
                    raw = await resp.read()
            except BaseException:
                self._observe(method, 0)
                raise
            self._observe(method, resp.status)
            span.set_attribute("http.request.method", method)
            span.set_attribute("http.response.status_code", resp.status)
            if resp.status >= 400:
                raise _with_retry_after(_api_error(resp.status, raw, method, path), resp.headers)
            return orjson.loads(raw) if raw else None

    def _answered(self, err: ApiError, probe: bool) -> None:
        """Tell the pushback gate what an error answer means: a 429 holds every call, any other answer (even a
        failure) shows the server accepts work again and ends a probe."""
        if err.status == 429:
            self.pushback.throttled(retry_delay(0, err), probe=probe)
        else:
            self.pushback.answered()

    def _observe(self, method: str, code: int) -> None:
        for observe in self.observers:
            observe(method, code)

    async def stream_lines(
        self, path: str, params: Mapping[str, Any], *, timeout: float, idle_timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """Yield the lines of a streaming response (watch), with a total client-side timeout and an optional
        read-idle timeout (no byte for that long raises ``aiohttp.ServerTimeoutError``)."""
        async with self.open_stream(path, params, timeout=timeout, method="WATCH", idle_timeout=idle_timeout) as body:
            async for line in body:
                if line.strip():
                    yield line

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        timeout: float | None = None,
        method: str = "GET",
        idle_timeout: float | None = None,
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """The raw body of a GET (pod logs, watches), unbuffered; ``timeout=None`` for follow-mode streams.
        ``method`` only names the request in metrics and errors (a watch is a GET). A stream waits at the
        pushback gate like any call, for at most DEFAULT_TIMEOUT."""
        headers = await self._headers(None)
        probe = await self.pushback.admit(time.monotonic() + DEFAULT_TIMEOUT)
        try:
            resp = await self.session.get(
                self._url(path, params),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=DEFAULT_TIMEOUT, sock_read=idle_timeout),
            )
        except BaseException:
            if probe:
                self.pushback.abandoned()
            raise
        async with resp:  # releases the connection (closed when the body was not read to its end)
            self._observe(method, resp.status)
            if resp.status >= 400:
                err = _with_retry_after(_api_error(resp.status, await resp.read(), method, path), resp.headers)
                self._answered(err, probe)
                raise err
            self.pushback.answered()
            yield resp.content

    async def websocket(
        self, path: str, params: Mapping[str, Any] | list[tuple[str, str]], protocols: tuple[str, ...]
    ) -> aiohttp.ClientWebSocketResponse:
        """A websocket to a streaming subresource (pods/exec, pods/portforward); the caller closes it.
        ``params`` may repeat keys (``command``) when given as pairs."""
        headers = await self._headers(None)
        del headers["Accept"]  # a kubelet answers 406 to an upgrade that asks for JSON
        query = urlencode(list(params.items()) if isinstance(params, Mapping) else params)
        url = "ws" + (self.host + path).removeprefix("http") + (f"?{query}" if query else "")
        try:
            return await self.session.ws_connect(
                url, headers=headers, protocols=protocols, timeout=aiohttp.ClientWSTimeout(ws_close=10.0)
            )
        except aiohttp.WSServerHandshakeError as e:
            raise ApiError(e.status, {"message": e.message}, "GET", path) from None

    # --- discovery -------------------------------------------------------------------------------------

    async def resource(self, api_version: str, kind: str) -> Resource:
        """The REST mapping of a kind, from API discovery (cached; refreshed once on a miss)."""
        key = (api_version, kind)
        if key not in self._resources:
            await self._discover(api_version, refresh=api_version in self._discovered)
        try:
            return self._resources[key]
        except KeyError:
            raise ApiError(
                404, {"reason": "NotFound", "message": f"the server has no resource for kind {kind} in {api_version}"}
            ) from None

    async def _discover(self, api_version: str, refresh: bool = False) -> None:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            doc = await self.request("GET", path)
        except ApiError as e:
            if e.not_found:
                self._discovered.add(api_version)
                return
            raise
        self._discovered.add(api_version)
        for r in doc.get("resources", []):
            if "/" in r["name"]:
                continue
            self._resources[(api_version, r["kind"])] = Resource(api_version, r["kind"], r["name"], r["namespaced"])

    def forget_discovery(self) -> None:
        """Drop cached mappings (after installing CRDs)."""
        self._resources.clear()
        self._discovered.clear()

    # --- object helpers --------------------------------------------------------------------------------

    async def _locate(self, obj: Mapping[str, Any]) -> tuple[Resource, str | None, str]:
        """REST mapping, namespace and name ("" for a create with generateName)."""
        res = await self.resource(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata", {})
        return res, meta.get("namespace") if res.namespaced else None, meta.get("name", "")

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        res = await self.resource(api_version, kind)
        result: Obj = await self.request("GET", res.path(namespace, name))
        return result

    async def get_or_none(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return await self.get(api_version, kind, name, namespace)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str | None = None, **params: Any) -> list[Obj]:
        """All items, following pagination."""
        res = await self.resource(api_version, kind)
        items: list[Obj] = []
        cont: str | None = None
        while True:
            page = await self.request("GET", res.path(namespace), params={**params, "limit": 500, "continue": cont})
            items.extend(page.get("items", []))
            cont = page.get("metadata", {}).get("continue")
            if not cont:
                return items

    async def create(self, obj: Mapping[str, Any], **params: Any) -> Obj:
        res, ns, _ = await self._locate(obj)
        result: Obj = await self.request("POST", res.path(ns), body=obj, params=params)
        return result

    async def apply(
        self,
        obj: Mapping[str, Any],
        field_manager: str,
        *,
        force: bool = True,
        dry_run: bool = False,
        subresource: str | None = None,
    ) -> Obj:
        """Server-side apply of ``obj`` (a full intent, as a dict)."""
        res, ns, name = await self._locate(obj)
        params: dict[str, Any] = {"fieldManager": field_manager, "force": force}
        if dry_run:
            params["dryRun"] = "All"
        result: Obj = await self.request(
            "PATCH",
            res.path(ns, name, subresource),
            params=params,
            body=obj,
            content_type="application/apply-patch+yaml",
        )
        return result

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Obj:
        res = await self.resource(api_version, kind)
        ctype = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[patch_type]
        result: Obj = await self.request(
            "PATCH", res.path(namespace, name, subresource), body=patch, content_type=ctype
        )
        return result

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
        missing_ok: bool = True,
    ) -> None:
        res = await self.resource(api_version, kind)
        try:
            await self.request("DELETE", res.path(namespace, name), body={"propagationPolicy": propagation})
        except ApiError as e:
            if not (missing_ok and e.not_found):
                raise

"""MetricsAuthorizer: the status codes of --metrics-secure and the decision cache, with a fake API."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from kaiwo.runtime.client import ApiError
from kaiwo.runtime.metrics_auth import MetricsAuthorizer, self_signed_pair, server_tls
from kaiwo.runtime.objects import Obj


class FakeApi:
    """TokenReview accepts the tokens in ``users``; SubjectAccessReview allows the users in ``readers``."""

    def __init__(self, users: dict[str, str], readers: set[str]) -> None:
        self.users, self.readers = users, readers
        self.calls: list[str] = []
        self.down = False

    async def create(self, obj: Obj) -> Obj:
        self.calls.append(obj["kind"])
        if self.down:
            raise ApiError(503, {"message": "apiserver unavailable"}, "POST", "/apis")
        spec = obj["spec"]
        if obj["kind"] == "TokenReview":
            user = self.users.get(spec["token"])
            return {
                "status": {"authenticated": True, "user": {"username": user, "groups": ["g"]}}
                if user
                else {"authenticated": False, "error": "invalid bearer token"}
            }
        assert spec["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}
        return {"status": {"allowed": spec["user"] in self.readers}}


def authorizer(api: FakeApi, now: list[float]) -> MetricsAuthorizer:
    return MetricsAuthorizer(api, ttl=60, clock=lambda: now[0])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, 401),
        ("Basic abc", 401),
        ("Bearer ", 401),
        ("Bearer unknown", 401),
        ("Bearer alice-token", 403),
        ("Bearer prom-token", 200),
        ("bearer prom-token", 200),
    ],
)
async def test_status_codes(header: str | None, code: int) -> None:
    api = FakeApi(
        {"alice-token": "alice", "prom-token": "system:serviceaccount:monitoring:prometheus"},
        {"system:serviceaccount:monitoring:prometheus"},
    )
    got, message = await authorizer(api, [0.0]).check(header, "/metrics")
    assert got == code, message
    if code == 403:
        assert "'alice' may not get /metrics" in message


async def test_decisions_are_cached_per_token_until_the_ttl() -> None:
    api = FakeApi({"t": "prom"}, {"prom"})
    now = [0.0]
    auth = authorizer(api, now)
    assert (await auth.check("Bearer t", "/metrics"))[0] == 200
    assert (await auth.check("Bearer t", "/metrics"))[0] == 200
    assert api.calls == ["TokenReview", "SubjectAccessReview"]
    api.readers.clear()  # access revoked: seen once the cached decision expires
    now[0] = 61.0
    assert (await auth.check("Bearer t", "/metrics"))[0] == 403
    assert len(api.calls) == 4


async def test_review_failures_are_500_and_not_cached() -> None:
    api = FakeApi({"t": "prom"}, {"prom"})
    auth = authorizer(api, [0.0])
    api.down = True
    code, message = await auth.check("Bearer t", "/metrics")
    assert code == 500 and "apiserver unavailable" in message
    api.down = False
    assert (await auth.check("Bearer t", "/metrics"))[0] == 200


def test_self_signed_certificate_loads_and_given_files_must_exist(tmp_path: Any) -> None:
    assert isinstance(server_tls(), ssl.SSLContext)
    cert, key = self_signed_pair()
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    assert isinstance(server_tls((str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))), ssl.SSLContext)
    with pytest.raises(ValueError, match="does not exist"):
        server_tls((str(tmp_path / "missing.pem"), str(tmp_path / "k.pem")))

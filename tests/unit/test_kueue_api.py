"""Which Kueue API version the controllers use: v1beta2 when served, v1beta1 for an older Kueue."""

from __future__ import annotations

import pytest

from kaiwo.controllers.kueue import served_api
from kaiwo.runtime.client import ApiError
from kaiwo.translate.queueconfig import KUEUE_API, KUEUE_V1BETA1


class Discovery:
    def __init__(self, *served: str, error: int = 404) -> None:
        self.served = served
        self.error = error

    async def resource(self, api_version: str, kind: str) -> object:
        if api_version in self.served:
            return object()
        raise ApiError(self.error, {"message": f"no {kind} in {api_version}"})


async def test_v1beta2_is_preferred() -> None:
    assert await served_api(Discovery(KUEUE_V1BETA1, KUEUE_API)) == KUEUE_API  # type: ignore[arg-type]


async def test_an_older_kueue_gets_v1beta1() -> None:
    assert await served_api(Discovery(KUEUE_V1BETA1)) == KUEUE_V1BETA1  # type: ignore[arg-type]


async def test_no_kueue_yet_means_the_preferred_version() -> None:
    assert await served_api(Discovery()) == KUEUE_API  # type: ignore[arg-type]


async def test_discovery_errors_other_than_not_found_raise() -> None:
    with pytest.raises(ApiError):
        await served_api(Discovery(error=503))  # type: ignore[arg-type]

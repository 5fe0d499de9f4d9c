"""kaiwo.runtime.timestamps: the one RFC 3339 formatter and parser."""

from __future__ import annotations

import pytest

from kaiwo.runtime import timestamps


def test_time_is_whole_seconds_utc_with_z() -> None:
    assert timestamps.rfc3339(1_767_225_600.9) == "2026-01-01T00:00:00Z"


def test_micro_time_keeps_microseconds() -> None:
    assert timestamps.rfc3339_micro(1_767_225_600.25) == "2026-01-01T00:00:00.250000Z"


@pytest.mark.parametrize(
    "stamp",
    ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00"],
)
def test_parse_accepts_zones_fractions_and_takes_no_zone_as_utc(stamp: str) -> None:
    assert timestamps.epoch(stamp) == 1_767_225_600.0
    assert timestamps.parse(stamp).tzinfo is not None


def test_round_trip() -> None:
    assert timestamps.epoch(timestamps.rfc3339(1_767_225_661)) == 1_767_225_661
    assert timestamps.epoch(timestamps.rfc3339_micro(1_767_225_661.5)) == 1_767_225_661.5


def test_not_rfc3339_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        timestamps.parse("yesterday")

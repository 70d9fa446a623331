"""Times: one stored form, one reader of ISO 8601, one reader of ages (shopsearch/timestamps.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shopsearch.api.cmd_report import parse_since
from shopsearch.api.keys import parse_expires
from shopsearch.timestamps import format_timestamp, parse_age, utc_time
from shopsearch.ubi import from_ubi_event, stored_event

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def test_a_time_without_an_offset_is_utc_everywhere_it_is_read():
    assert utc_time("2024-05-01T10:00") == utc_time("2024-05-01T10:00Z") == utc_time("2024-05-01T12:00+02:00")
    assert parse_since("2024-05-01T10:00") == parse_since("2024-05-01T10:00Z")
    assert parse_expires("2026-01-31T10:00", NOW) == parse_expires("2026-01-31T10:00Z", NOW)
    # a record another UBI writer logged without an offset trains as UTC, as it sorts
    ubi = stored_event({"action_name": "purchase", "timestamp": "2024-01-01T00:00:05", "session_id": "s1",
                        "event_attributes": {"object": {"object_id": "p1"}}})
    assert from_ubi_event(ubi).timestamp == "2024-01-01T00:00:05Z"


def test_ages_and_durations_read_alike():
    assert parse_age("24h") == timedelta(days=1) and parse_age(" 2w ") == timedelta(weeks=2)
    assert parse_age("2024-05-01") is None and parse_age("1.5d") is None and parse_age("-1d") is None
    assert parse_since("7d", now=NOW) == NOW - timedelta(days=7)
    assert parse_expires("7d", NOW) == NOW + timedelta(days=7)
    with pytest.raises(ValueError, match="must be in the future"):  # a key dead on arrival locks the API
        parse_expires("0d", NOW)


@pytest.mark.parametrize("value", ["9999999w", "36526d"])
def test_an_age_past_a_century_is_an_error_not_an_overflow(value):
    with pytest.raises(ValueError, match="over a century"):
        parse_since(value)
    with pytest.raises(ValueError, match="over a century"):
        parse_expires(value)


def test_the_stored_form():
    assert format_timestamp(datetime(2024, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=1)))) == "2024-01-01T00:30:00Z"
    with pytest.raises(ValueError, match="out of range"):
        format_timestamp(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))

"""Times: the one stored form of a logged time, and the readers of the times clients, logs and people write.

- :func:`format_timestamp`: the stored form, ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC (events, UBI records,
  quarantine runs);
- :func:`parse_timestamp`: a stored timestamp, strictly (an offset of zero);
- :func:`read_iso`: any ISO 8601 date or date-time (``Z`` too), as written;
- :func:`utc_time`: the same as an aware datetime, a time without an offset read as UTC (logs other UBI writers
  made, ``--since``, ``--expires``; :func:`as_utc` for a datetime already read);
- :func:`parse_age`: an age or duration such as ``24h``, ``7d``, ``2w``;
- :func:`not_ahead`: refuses a client's time too far ahead of the server's clock.

Example:
    >>> format_timestamp(utc_time("2024-01-01T01:00:00+01:00"))
    '2024-01-01T00:00:00Z'
    >>> parse_age("2w")
    datetime.timedelta(days=14)
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

MAX_AHEAD_S = 86_400.0  # how far a client's clock may run ahead of the server's
MAX_AGE = timedelta(days=36_525)  # a century: past it, an age is a typo (and now minus it may leave the calendar)
_AGE = re.compile(r"^(\d{1,7})([hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def format_timestamp(ts: datetime) -> str:
    """An aware datetime as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC, the stored form.

    Raises:
        ValueError: the time has no UTC equivalent in the calendar (year 1 at +01:00).

    >>> format_timestamp(datetime(2024, 1, 1, 1, tzinfo=timezone.utc))
    '2024-01-01T01:00:00Z'
    """
    try:
        return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    except OverflowError:  # year 1 at +01:00, year 9999 at -01:00
        raise ValueError(f"{ts.isoformat()} is out of range in UTC") from None


def read_iso(text: str) -> datetime:
    """An ISO 8601 date or date-time as written: aware when it carries an offset (``Z`` accepted on Python 3.10
    too), naive when not.

    Raises:
        ValueError: not ISO 8601.
    """
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def utc_time(text: str) -> datetime:
    """An ISO 8601 date or date-time as an aware datetime, read as UTC when it carries no offset: another UBI writer
    may log times so, and records from several writers must order without a TypeError.

    Raises:
        ValueError: not ISO 8601.

    >>> utc_time("2024-01-01T00:00:05") == utc_time("2024-01-01T01:00:05+01:00")
    True
    """
    return as_utc(read_iso(text))


def as_utc(ts: datetime) -> datetime:
    """``ts``, read as UTC when it carries no offset (a TOML local date-time, a log's naive time)."""
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries a UTC offset of zero (the stored form, or ``+00:00``).

    Raises:
        ValueError: not a string, not ISO 8601, no timezone, or a non-UTC offset.

    >>> parse_timestamp("2024-01-01T00:00:00Z").year
    2024
    """
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be an ISO 8601 UTC string; got {value!r}")
    try:
        ts = read_iso(value)
    except ValueError:
        raise ValueError(f"timestamp must be ISO 8601 (e.g. 2024-01-01T00:00:00Z); got {value!r}") from None
    if ts.tzinfo is None or ts.utcoffset().total_seconds() != 0:
        raise ValueError(f"timestamp must be in UTC (suffix Z or +00:00); got {value!r}")
    return ts


def not_ahead(ts: datetime) -> datetime:
    """``ts`` (aware), unless it is more than :data:`MAX_AHEAD_S` ahead of the server's clock: an event from the
    future would sort after everything and pair with every later purchase.

    Raises:
        ValueError: ``ts`` is further ahead.
    """
    if (ts - utcnow()).total_seconds() > MAX_AHEAD_S:
        raise ValueError(f"{format_timestamp(ts)} is more than a day ahead of the server's clock")
    return ts


def parse_age(text: str) -> timedelta | None:
    """An age or duration written as a whole number of hours, days or weeks (``24h``, ``7d``, ``2w``); None when
    ``text`` is not of that form.

    Raises:
        ValueError: over a century.

    >>> parse_age("36h"), parse_age("2024-05-01")
    (datetime.timedelta(days=1, seconds=43200), None)
    """
    m = _AGE.match(text.strip())
    if not m:
        return None
    age = int(m.group(1)) * _UNITS[m.group(2)]
    if age > MAX_AGE:
        raise ValueError(f"{text.strip()!r} is over a century")
    return age

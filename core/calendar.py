"""Days and timezones: the day list every daily loop walks, and the one timezone check."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def each_day(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from `start` to `end`, both included; none when `end` is before `start`."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def known_timezone(name: str) -> str:
    """`name` when it is an IANA timezone, else a ValueError that says what to write instead."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone '{name}'; use an IANA name like Europe/Berlin") from exc
    return name

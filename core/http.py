"""HTTP details every layer reads the same way."""

from __future__ import annotations

import datetime as dt
import email.utils


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header as seconds to wait, whether the server sent seconds or an HTTP date;
    None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT even when it does not say so
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())

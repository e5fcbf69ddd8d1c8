"""Missing numbers as None: one conversion for the engine, JSON output and the formatting."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd


def is_missing(value: Any) -> bool:
    """None, NA, NaT or NaN: a number (or label) that is not there."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def optional_float(value: Any) -> float | None:
    """`value` as a float, or None when it is missing (None, NA, NaT or NaN); inf stays inf."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    result = float(value)
    return None if math.isnan(result) else result


def number(value: Any) -> float | None:
    """A JSON-safe float: NaN, NA, NaT, inf, None and anything that is not a number are null."""
    try:
        result = optional_float(value)
    except (TypeError, ValueError):
        return None
    return None if result is None or math.isinf(result) else result


def json_value(value: Any) -> Any:
    """A JSON-friendly scalar: dates and timestamps as ISO strings, missing numbers as None,
    numpy scalars as Python ones (what the dashboard's drill-down records hold)."""

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp | np.datetime64):
        stamp = pd.Timestamp(value)
        return (
            stamp.date().isoformat()
            if stamp == stamp.normalize() and stamp.tzinfo is None
            else stamp.isoformat()
        )
    if isinstance(value, dt.date):  # datetime.date and datetime.datetime, as databases give them
        return value.isoformat()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return number(value)
    return value

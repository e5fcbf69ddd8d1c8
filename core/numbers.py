"""Missing numbers as None: one conversion for the engine, JSON output and the formatting."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


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

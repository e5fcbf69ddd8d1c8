"""How a metric's numbers read: one formatting for the CLI, the dashboard, the digest and reviews."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from kr_metrics.metrics import METRICS


def number(value: Any) -> float | None:
    """A JSON-safe float: NaN, NA, NaT, inf and None are null."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) or math.isinf(result) else result


def format_value(value: Any, metric: str, unit: str | None = None) -> str:
    """`36.0%` for rates, `12,396 EUR` for money, `1,204` for counts, `62.6` otherwise; `—` for none."""
    amount = number(value)
    if amount is None:
        return "—"
    kind = METRICS[metric].unit if metric in METRICS else ""
    if kind == "ratio":
        return f"{amount:.1%}"
    if kind == "currency":
        return f"{amount:,.0f}" + (f" {unit}" if unit else "")
    if kind == "count":
        return f"{amount:,.0f}"
    return f"{amount:,.1f}"


def format_percent(value: Any) -> str:
    amount = number(value)
    return "—" if amount is None else f"{amount:.0%}"

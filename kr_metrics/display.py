"""How a metric's numbers read: one formatting for the CLI, the dashboard, the digest and reviews."""

from __future__ import annotations

from typing import Any

from core.numbers import number
from kr_metrics.metrics import METRICS

__all__ = ["format_percent", "format_value", "number"]


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

"""How a metric's numbers read: one formatting for the CLI, the dashboard, the digest and reviews."""

from __future__ import annotations

from typing import Any

from core.numbers import number
from kr_metrics.metrics import METRICS

__all__ = [
    "SHOWN_DECIMALS",
    "UNCERTAIN",
    "format_percent",
    "format_value",
    "is_uncertain",
    "number",
]

# Progress and grades are shown as whole percentages: "reached" is judged on that precision,
# so a KR shown at 100 % of its target never reads "falls short".
SHOWN_DECIMALS = 2
# The words a status reason carries when the margin of error spans the expected path.
UNCERTAIN = "the sample is too small to tell"


def is_uncertain(status_reason: str | None) -> bool:
    """Whether a status reason says the sample is too small to tell."""
    return bool(status_reason) and UNCERTAIN in str(status_reason)


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


STATUS_LABELS = {
    "on_track": "On track", "at_risk": "At risk", "off_track": "Off track", "no_data": "No data",
    "stale": "Stale", "low_sample": "Low sample", "achieved": "Achieved",
    "partially_achieved": "Partially achieved", "missed": "Missed", "healthy": "Healthy",
    "unhealthy": "Unhealthy",
}  # fmt: skip


def label(status: str | None) -> str:
    """ "at_risk" -> "At risk"; a status or verdict the scoring adds later reads the same way."""
    return STATUS_LABELS.get(str(status)) or str(status).replace("_", " ").capitalize()


def shown_status(row: dict) -> str:
    """What a KR's status reads: its verdict once its cycle's last day is the row's day (closed
    cycles show grades and verdicts, not on/off track), else its status."""
    verdict = row.get("verdict")
    if isinstance(verdict, str) and verdict:
        return verdict
    return str(row.get("status"))


def pace_text(row: dict) -> str:
    """The value against the value expected by today, in words a team lead reads without a
    formula: "12,396 of 12,234 EUR expected by today" (accumulating), "36.0% vs 33.4% expected
    by today" (level)."""
    metric, unit = row["metric"], row.get("unit")
    value, expected = number(row.get("value")), number(row.get("expected_value"))
    if value is None or expected is None:
        return ""
    if row.get("metric_kind") == "accumulating":
        return f"{format_value(value, metric)} of {format_value(expected, metric, unit)} expected by today"
    return f"{format_value(value, metric, unit)} vs {format_value(expected, metric, unit)} expected by today"


def value_with_margin(row: dict) -> str:
    """The value with its 95 % margin of error wherever the value appears: "62.6 ±11.3"."""
    text = format_value(row.get("value"), row["metric"], row.get("unit"))
    margin = number(row.get("margin_of_error"))
    if margin is not None and number(row.get("value")) is not None:
        text += " ±" + format_value(margin, row["metric"])
    return text

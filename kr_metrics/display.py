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
    "numbers_in_words",
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
    "on_track": "On track",
    "at_risk": "At risk",
    "off_track": "Off track",
    "no_data": "No data",
    "stale": "Stale",
    "low_sample": "Low sample",
    "achieved": "Achieved",
    "partially_achieved": "Partially achieved",
    "missed": "Missed",
    "healthy": "Healthy",
    "unhealthy": "Unhealthy",
}


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


# What a built-in metric's numerator and denominator count, in words: "{n}" is the formatted
# numerator, "{d}" the denominator ("12 won of 40 closed deals"). Money reads with its currency.
NUMBER_WORDS: dict[str, str] = {
    "revenue_per_existing_customer": "{n} won from {d} existing customers",
    "nps": "{n} promoters minus detractors of {d} responses",
    "win_rate": "{n} won of {d} closed deals",
    "won_revenue": "{n} from won deals",
    "new_business_revenue": "{n} from won new-business deals",
    "existing_customer_revenue": "{n} from existing customers' won deals",
    "won_deals": "{n} won deals",
    "new_customers": "{n} new customers",
    "average_deal_size": "{n} won in {d} won deals",
    "sales_cycle_days": "{n} days from creation to close over {d} won deals",
    "pipeline_created": "{n} in deals created",
    "open_pipeline": "{n} in open deals",
    "nps_responses": "{n} responses",
    "average_nps_score": "{n} points over {d} responses",
}
_MONEY_NUMERATORS = {
    "revenue_per_existing_customer",
    "won_revenue",
    "new_business_revenue",
    "existing_customer_revenue",
    "average_deal_size",
    "pipeline_created",
    "open_pipeline",
}


def numbers_in_words(
    metric: str, numerator: Any, denominator: Any, unit: str | None = None, *, basis: str = "count"
) -> str | None:
    """The formula's inputs said plainly — "12 won of 40 closed deals", "120,000 EUR won from
    8 existing customers" — or None when there is nothing to say (a custom metric, or no
    numbers stored: pages written before the flow stored them)."""
    top, bottom = number(numerator), number(denominator)
    template = NUMBER_WORDS.get(metric)
    if top is None or template is None or ("{d}" in template and bottom is None):
        return None
    by_amount = metric == "win_rate" and basis == "amount"
    money = metric in _MONEY_NUMERATORS or by_amount

    def text(amount: float, is_money: bool) -> str:
        if is_money:
            return f"{amount:,.0f}" + (f" {unit}" if unit else "")
        return f"{amount:,.0f}" if amount == round(amount) else f"{amount:,.1f}"

    if by_amount:
        template = "{n} won of {d} in closed deals"
    return template.format(
        n=text(top, money), d=text(bottom, by_amount) if bottom is not None else ""
    )

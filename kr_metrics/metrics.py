"""The metric library: what each built-in metric means, computed on prepared canonical frames."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Columns a `where:` filter may name. Deal metrics see the deal's own columns and its customer's
# (the deal's value wins where both have one, e.g. `team`); NPS metrics see the customer's.
CUSTOMER_FILTER_COLUMNS = frozenset(
    {"segment", "region", "industry", "team", "owner_id", "customer_id"}
)
DEAL_FILTER_COLUMNS = frozenset(
    {
        "team",
        "owner_id",
        "pipeline",
        "stage",
        "currency",
        "deal_type",
        "customer_id",
        "segment",
        "region",
        "industry",
    }
)
NPS_FILTER_COLUMNS = frozenset({"survey_id", *CUSTOMER_FILTER_COLUMNS})


@dataclass(frozen=True)
class MetricResult:
    """One metric value with what it was computed from (for sample sizes and explanations)."""

    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    sample_size: int = 0


@dataclass(frozen=True)
class Window:
    """Inclusive range of reporting-timezone dates, plus what the metric needs about the cycle."""

    start: dt.date
    end: dt.date
    cycle_start: dt.date


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    unit: str
    valid_range: tuple[float | None, float | None]
    # True when "no data" is a legitimate outcome that yields null instead of a number.
    nullable: bool
    filter_columns: frozenset[str]
    compute: Callable[[PreparedData, Window, Scope], MetricResult]


@dataclass(frozen=True)
class PreparedData:
    """Canonical frames without deleted rows, with customer attributes joined in, computed once."""

    deals: pd.DataFrame  # + segment, region, industry, customer_team, customer_owner_id
    customers: pd.DataFrame
    nps_responses: pd.DataFrame  # + submitted_date (reporting tz), customer attributes
    timezone: str


def _in_window(dates: pd.Series, window: Window) -> pd.Series:
    start = pd.Timestamp(window.start)
    end = pd.Timestamp(window.end)
    return (dates >= start) & (dates <= end)


@dataclass(frozen=True)
class Scope:
    """Boolean masks, one per prepared frame, of the rows a KR's `where:` keeps."""

    deals: np.ndarray
    customers: np.ndarray
    nps_responses: np.ndarray


def existing_customer_keys(deals: pd.DataFrame, cycle_start: dt.date) -> pd.MultiIndex:
    """(source, customer_id) of customers with a won deal closed before the cycle started."""
    won_before = deals["is_won"].fillna(False) & (deals["close_date"] < pd.Timestamp(cycle_start))
    keys = deals.loc[won_before, ["source", "customer_id"]].dropna().drop_duplicates()
    return pd.MultiIndex.from_frame(keys)


def revenue_per_existing_customer(data: PreparedData, window: Window, scope: Scope) -> MetricResult:
    deals = data.deals
    existing = existing_customer_keys(deals, window.cycle_start)
    deal_keys = pd.MultiIndex.from_frame(deals[["source", "customer_id"]])
    numerator_mask = (
        scope.deals
        & deals["is_won"].fillna(False)
        & _in_window(deals["close_date"], window)
        & deal_keys.isin(existing)
    )
    revenue = float(deals.loc[numerator_mask, "amount_home"].sum())
    customers = data.customers
    customer_keys = pd.MultiIndex.from_frame(customers[["source", "customer_id"]])
    denominator_mask = scope.customers & customer_keys.isin(existing)
    count = int(denominator_mask.sum())
    if count == 0:
        return MetricResult(None, revenue, 0, 0)
    return MetricResult(revenue / count, revenue, count, count)


def nps(data: PreparedData, window: Window, scope: Scope) -> MetricResult:
    responses = data.nps_responses
    in_scope = scope.nps_responses & _in_window(responses["submitted_date"], window)
    scores = responses.loc[in_scope, "score"]
    n = int(scores.size)
    if n == 0:
        return MetricResult(None, None, 0, 0)
    promoters = int((scores >= 9).sum())
    detractors = int((scores <= 6).sum())
    return MetricResult(100.0 * (promoters - detractors) / n, promoters - detractors, n, n)


def win_rate(data: PreparedData, window: Window, scope: Scope) -> MetricResult:
    deals = data.deals
    closed = (
        scope.deals & deals["is_closed"].fillna(False) & _in_window(deals["close_date"], window)
    )
    n = int(closed.sum())
    if n == 0:
        return MetricResult(None, 0, 0, 0)
    won = int((closed & deals["is_won"].fillna(False)).sum())
    return MetricResult(won / n, won, n, n)


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "revenue_per_existing_customer",
            "Won revenue (reporting currency) in the window from existing customers, "
            "divided by the number of existing customers matching the filters.",
            "currency",
            (0.0, None),
            True,
            DEAL_FILTER_COLUMNS,
            revenue_per_existing_customer,
        ),
        MetricSpec(
            "nps",
            "100 × (promoters − detractors) / responses submitted in the window.",
            "score",
            (-100.0, 100.0),
            True,
            NPS_FILTER_COLUMNS,
            nps,
        ),
        MetricSpec(
            "win_rate",
            "Won / (won + lost) of deals closed in the window, by count.",
            "ratio",
            (0.0, 1.0),
            True,
            DEAL_FILTER_COLUMNS,
            win_rate,
        ),
    )
}


def scope_for(data: PreparedData, where: dict) -> Scope:
    """Masks of the rows each entity keeps under `where`; every condition must hold.

    A condition on a column an entity does not have (e.g. `pipeline` for customers) does not
    restrict that entity: the denominator of revenue_per_existing_customer counts existing
    customers by customer attributes only.
    """

    def mask(frame: pd.DataFrame) -> np.ndarray:
        keep = np.ones(len(frame), dtype=bool)
        for column, wanted in where.items():
            if column not in frame.columns:
                continue
            values = [str(v) for v in (wanted if isinstance(wanted, list) else [wanted])]
            keep &= frame[column].astype("string").isin(values).fillna(False).to_numpy(dtype=bool)
        return keep

    return Scope(mask(data.deals), mask(data.customers), mask(data.nps_responses))

"""The metric library: what each built-in metric means, as additive daily events the engine sums."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES

# What a metric's cycle value does over the window (docs/metrics.md, "Kinds"):
# ACCUMULATING values start at 0 on the cycle's first day and grow (won revenue, won deals,
# revenue per existing customer = a sum over a fixed set of customers); a LEVEL is a rate or an
# average that moves up and down around where it stands (win rate, NPS, average deal size).
ACCUMULATING = "accumulating"
LEVEL = "level"
METRIC_KINDS = (ACCUMULATING, LEVEL)

# Columns a `where:` filter may name. Deal metrics see the deal's own columns and its customer's
# (the deal's value wins where both have one, e.g. `team`); NPS metrics see the customer's.
CUSTOMER_FILTER_COLUMNS = frozenset(
    {"segment", "region", "industry", "team", "owner_id", "customer_id", "source"}
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
        "source",
        "segment",
        "region",
        "industry",
        "is_won",
        "is_closed",
        "customer_team",
    }
)
NPS_FILTER_COLUMNS = frozenset({"survey_id", *CUSTOMER_FILTER_COLUMNS})
FILTER_COLUMNS = {
    DEALS: DEAL_FILTER_COLUMNS,
    NPS_RESPONSES: NPS_FILTER_COLUMNS,
    CUSTOMERS: CUSTOMER_FILTER_COLUMNS,
}


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
class Scope:
    """Boolean masks, one per prepared frame, of the rows a KR's `where:` keeps.

    `deal_only` is the deals mask of the conditions on columns only a deal has (pipeline,
    deal_type, ...): per-customer metrics pick customers by the customer's attributes and
    narrow their deals with these.
    """

    deals: np.ndarray
    customers: np.ndarray
    nps_responses: np.ndarray
    deal_only: np.ndarray

    def of(self, entity: str) -> np.ndarray:
        return getattr(self, entity)

    def __and__(self, other: Scope) -> Scope:
        return Scope(
            self.deals & other.deals,
            self.customers & other.customers,
            self.nps_responses & other.nps_responses,
            self.deal_only & other.deal_only,
        )


@dataclass(frozen=True)
class PreparedData:
    """Canonical frames without deleted rows, customer attributes joined in, days computed once.

    deals: + segment, region, industry, customer_team, customer_owner_id, created_day
    nps_responses: + submitted_day and the customer's attributes; customers: + created_day.
    Every `*_day`/`close_date` column is a datetime64 at midnight of the reporting-timezone day.
    """

    deals: pd.DataFrame
    customers: pd.DataFrame
    nps_responses: pd.DataFrame
    timezone: str
    # Facts several metrics share within one run (customer codes, existing customers per
    # anchor day), computed on first use.
    cache: dict = field(default_factory=dict, compare=False, repr=False)
    # The canonical frames as staged (deals, customers, nps_responses), for the compiled engine.
    staged: tuple | None = field(default=None, compare=False, repr=False)

    def frame(self, entity: str) -> pd.DataFrame:
        return getattr(self, entity)


@dataclass(frozen=True)
class Events:
    """Dated, additive contributions of the records in scope.

    A value over a window is `combine` applied to the sums of `num`, `den` and `n` over the
    events dated inside it — which is what lets the engine compute a whole date range with
    one cumulative sum instead of one computation per day.
    """

    day: pd.Series  # datetime64[ns]
    num: np.ndarray
    den: np.ndarray | None = None  # ratios: the denominator per event
    n: np.ndarray | None = None  # records behind the number (sample size); defaults to 1 each
    den_constant: float | None = None  # per_constant metrics: one divisor for the whole window


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    unit: str  # currency | ratio | score | count | days | number
    entity: str
    valid_range: tuple[float | None, float | None]
    # True when "no data" is a legitimate outcome that yields null instead of a number.
    nullable: bool
    combine: str  # sum | ratio | per_constant
    events: Callable[[PreparedData, Scope, dt.date, str], Events] | None = None
    # Non-additive aggregations (min, max, count_distinct) of custom metrics: rows + reducer.
    reduce: str | None = None
    scale: float = 1.0
    # Counted from the beginning of time up to the as-of day (a balance, e.g. open pipeline).
    point_in_time: bool = False
    # The events depend on the window start (e.g. "existing customer" = before it), so a
    # rolling window cannot reuse one cumulative sum; the engine evaluates such days one by one.
    anchored: bool = False
    formula: str = ""
    edge_cases: str = ""
    custom: bool = False
    inputs: tuple[str, ...] = field(default_factory=tuple)
    # Custom simple metrics: their own structured filter, ANDed with a KR's `where`.
    filters: dict = field(default_factory=dict)
    # Custom derived metrics: the parsed arithmetic over `inputs`.
    expression: Any = None
    # ACCUMULATING or LEVEL: where a KR's progress bar starts (0, or the baseline).
    kind: str = LEVEL
    # Custom simple metrics, as declared (the compiled engine builds its SQL from these):
    # the aggregation, the column it aggregates (None: rows) and the date column of the window.
    agg: str | None = None
    expr: str | None = None
    date: str | None = None

    @property
    def filter_columns(self) -> frozenset[str]:
        return FILTER_COLUMNS[self.entity]


def _false(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].fillna(False).to_numpy(dtype=bool)


def _amount(frame: pd.DataFrame) -> np.ndarray:
    return frame["amount_home"].fillna(0.0).to_numpy(dtype="float64")


def _customer_codes(data: PreparedData) -> tuple[np.ndarray, np.ndarray, int]:
    """One integer per (source, customer_id), shared by deals and customers; -1 for none."""
    if "customer_codes" not in data.cache:
        keys = pd.concat(
            [data.deals[["source", "customer_id"]], data.customers[["source", "customer_id"]]]
        )
        source_codes, _ = pd.factorize(keys["source"])
        customer_codes, uniques = pd.factorize(keys["customer_id"])
        combined = np.where(
            customer_codes < 0,
            -1,
            source_codes.astype(np.int64) * (len(uniques) + 1) + customer_codes,
        )
        codes, distinct = pd.factorize(combined)
        codes = np.where(combined < 0, -1, codes)
        n_deals = len(data.deals)
        data.cache["customer_codes"] = (codes[:n_deals], codes[n_deals:], len(distinct))
    return data.cache["customer_codes"]


def existing_customers(data: PreparedData, anchor: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """Masks over deals and over customers: is the (deal's) customer existing at `anchor`?

    Existing means a won deal (not deleted) closed before `anchor`. Computed once per anchor
    and run, since every KR of a cycle shares its cycle start.
    """
    cache_key = ("existing", anchor)
    if cache_key not in data.cache:
        deal_codes, customer_codes, n_codes = _customer_codes(data)
        deals = data.deals
        won_before = (
            _false(deals, "is_won") & (deals["close_date"] < pd.Timestamp(anchor)).to_numpy()
        )
        lookup = np.zeros(n_codes + 1, dtype=bool)  # last slot stands for "no customer" (-1)
        lookup[deal_codes[won_before & (deal_codes >= 0)]] = True
        data.cache[cache_key] = (
            lookup[deal_codes] & (deal_codes >= 0),
            lookup[customer_codes] & (customer_codes >= 0),
        )
    return data.cache[cache_key]


def _won(data: PreparedData, scope: Scope) -> np.ndarray:
    deals = data.deals
    return scope.deals & _false(deals, "is_won") & deals["close_date"].notna().to_numpy()


def _sum_events(frame: pd.DataFrame, rows: np.ndarray, day: str, values: np.ndarray) -> Events:
    return Events(day=frame.loc[rows, day], num=values[rows])


# --- event builders of the built-ins (data, scope mask, anchor day, basis) -> Events ---------------


def _won_revenue(data, scope, anchor, basis):
    return _sum_events(data.deals, _won(data, scope), "close_date", _amount(data.deals))


def _new_business_revenue(data, scope, anchor, basis):
    rows = _won(data, scope) & (data.deals["deal_type"] == "new_business").fillna(False).to_numpy()
    return _sum_events(data.deals, rows, "close_date", _amount(data.deals))


def _existing_customer_revenue(data, scope, anchor, basis):
    existing_deals, _ = existing_customers(data, anchor)
    rows = _won(data, scope) & existing_deals
    return _sum_events(data.deals, rows, "close_date", _amount(data.deals))


def _revenue_per_existing_customer(data, scope, anchor, basis):
    """A sum over one fixed set of customers, the same above and below the line.

    The set: staged, live customers that are existing at the anchor and match the filters on
    customer attributes (`team` is the customer's team). The numerator is the revenue of those
    customers' won deals, narrowed further by deal-only filters (pipeline, deal_type, ...);
    deals of a deleted or unstaged customer count on neither side.
    """
    _, existing_customer_rows = existing_customers(data, anchor)
    chosen = scope.customers & existing_customer_rows
    deal_codes, customer_codes, n_codes = _customer_codes(data)
    lookup = np.zeros(n_codes + 1, dtype=bool)  # last slot stands for "no customer" (-1)
    lookup[customer_codes[chosen]] = True
    of_chosen = lookup[deal_codes] & (deal_codes >= 0)
    won = _false(data.deals, "is_won") & data.deals["close_date"].notna().to_numpy()
    rows = won & of_chosen & scope.deal_only
    events = _sum_events(data.deals, rows, "close_date", _amount(data.deals))
    return Events(day=events.day, num=events.num, den_constant=float(chosen.sum()))


def _won_deals(data, scope, anchor, basis):
    rows = _won(data, scope)
    return Events(day=data.deals.loc[rows, "close_date"], num=np.ones(int(rows.sum())))


def _new_customers(data, scope, anchor, basis):
    deals = data.deals
    won = _false(deals, "is_won") & deals["close_date"].notna().to_numpy()
    order = deals.loc[won, ["source", "customer_id", "close_date", "deal_id"]].dropna(
        subset=["customer_id"]
    )
    # A customer is new on the day of its first won deal ever; ties broken by deal id so the
    # same deal is always "the first" and filters on it are deterministic.
    first = order.sort_values(["close_date", "deal_id"]).drop_duplicates(["source", "customer_id"])
    rows = np.zeros(len(deals), dtype=bool)
    rows[deals.index.get_indexer(first.index)] = True
    rows &= scope.deals
    return Events(day=deals.loc[rows, "close_date"], num=np.ones(int(rows.sum())))


def _average_deal_size(data, scope, anchor, basis):
    rows = _won(data, scope)
    return Events(
        day=data.deals.loc[rows, "close_date"],
        num=_amount(data.deals)[rows],
        den=np.ones(int(rows.sum())),
    )


def _sales_cycle_days(data, scope, anchor, basis):
    deals = data.deals
    rows = _won(data, scope) & deals["created_day"].notna().to_numpy()
    days = (deals["close_date"] - deals["created_day"]).dt.days.to_numpy(dtype="float64")
    return Events(day=deals.loc[rows, "close_date"], num=days[rows], den=np.ones(int(rows.sum())))


def _pipeline_created(data, scope, anchor, basis):
    rows = scope.deals & data.deals["created_day"].notna().to_numpy()
    return _sum_events(data.deals, rows, "created_day", _amount(data.deals))


def _open_pipeline(data, scope, anchor, basis):
    deals = data.deals
    amount = _amount(deals)
    opened = scope.deals & deals["created_day"].notna().to_numpy()
    closed = opened & _false(deals, "is_closed") & deals["close_date"].notna().to_numpy()
    # A balance: +amount on the day a deal is created, -amount on the day it closes — and never
    # before its creation day (a deal closed before the day it was created was never open).
    closed_day = deals.loc[closed, ["created_day", "close_date"]].max(axis=1)
    day = pd.concat([deals.loc[opened, "created_day"], closed_day])
    num = np.concatenate([amount[opened], -amount[closed]])
    n = np.concatenate([np.ones(int(opened.sum())), -np.ones(int(closed.sum()))])
    return Events(day=day, num=num, n=n)


def _win_rate(data, scope, anchor, basis):
    deals = data.deals
    rows = scope.deals & _false(deals, "is_closed") & deals["close_date"].notna().to_numpy()
    weight = _amount(deals) if basis == "amount" else np.ones(len(deals))
    won = _false(deals, "is_won")
    return Events(day=deals.loc[rows, "close_date"], num=(weight * won)[rows], den=weight[rows])


def _nps(data, scope, anchor, basis):
    responses = data.nps_responses
    score = responses["score"].to_numpy(dtype="float64", na_value=np.nan)
    rows = scope.nps_responses & ~np.isnan(score)
    net = (score >= 9).astype(float) - (score <= 6).astype(float)
    return Events(
        day=responses.loc[rows, "submitted_day"], num=net[rows], den=np.ones(int(rows.sum()))
    )


def _nps_responses(data, scope, anchor, basis):
    responses = data.nps_responses
    rows = scope.nps_responses
    return Events(day=responses.loc[rows, "submitted_day"], num=np.ones(int(rows.sum())))


def _average_nps_score(data, scope, anchor, basis):
    responses = data.nps_responses
    score = responses["score"].to_numpy(dtype="float64", na_value=np.nan)
    rows = scope.nps_responses & ~np.isnan(score)
    return Events(
        day=responses.loc[rows, "submitted_day"], num=score[rows], den=np.ones(int(rows.sum()))
    )


def _nps_promoters(data, scope, anchor, basis):
    responses = data.nps_responses
    score = responses["score"].to_numpy(dtype="float64", na_value=np.nan)
    rows = scope.nps_responses & ~np.isnan(score)
    return Events(
        day=responses.loc[rows, "submitted_day"],
        num=(score >= 9)[rows].astype(float),
        den=(score <= 6)[rows].astype(float),
    )


_NONE_IS_ZERO = "No matching deals gives 0, not null: an empty sum is a real zero."


def _spec(name, unit, entity, valid_range, nullable, combine, events, formula, edge_cases, **kw):
    # Window sums (and a window sum over a fixed set of customers) accumulate; ratios of two
    # sums and balances (open pipeline) are levels.
    accumulates = combine in ("sum", "per_constant") and not kw.get("point_in_time")
    return MetricSpec(
        name=name,
        description=formula,
        unit=unit,
        entity=entity,
        valid_range=valid_range,
        nullable=nullable,
        combine=combine,
        events=events,
        formula=formula,
        edge_cases=edge_cases,
        kind=ACCUMULATING if accumulates else LEVEL,
        **kw,
    )


BUILT_IN_METRICS: tuple[MetricSpec, ...] = (
    _spec(
        "revenue_per_existing_customer",
        "currency",
        DEALS,
        (0.0, None),
        True,
        "per_constant",
        _revenue_per_existing_customer,
        "Σ amount_home of won deals closed in the window whose customer is an existing customer "
        "÷ number of existing customers matching the filters. Existing customer: a won deal "
        "closed before the window's cycle start.",
        "No existing customers → null (flagged), never 0. Existing customers without revenue "
        "in the window → 0.",
        anchored=True,
    ),
    _spec(
        "nps",
        "score",
        NPS_RESPONSES,
        (-100.0, 100.0),
        True,
        "ratio",
        _nps,
        "100 × (promoters 9–10 − detractors 0–6) ÷ responses submitted in the window.",
        "No responses → null. The sample size is reported with every value.",
        scale=100.0,
    ),
    _spec(
        "win_rate",
        "ratio",
        DEALS,
        (0.0, 1.0),
        True,
        "ratio",
        _win_rate,
        "won ÷ (won + lost) of deals closed in the window; by count, or by amount_home with "
        "`basis: amount`.",
        "No closed deals → null.",
    ),
    _spec(
        "won_revenue",
        "currency",
        DEALS,
        (0.0, None),
        False,
        "sum",
        _won_revenue,
        "Σ amount_home of won deals closed in the window.",
        _NONE_IS_ZERO,
    ),
    _spec(
        "new_business_revenue",
        "currency",
        DEALS,
        (0.0, None),
        False,
        "sum",
        _new_business_revenue,
        "Σ amount_home of won deals of type new_business closed in the window.",
        _NONE_IS_ZERO + " Deals without a deal_type are not new business.",
    ),
    _spec(
        "existing_customer_revenue",
        "currency",
        DEALS,
        (0.0, None),
        False,
        "sum",
        _existing_customer_revenue,
        "Σ amount_home of won deals closed in the window from "
        "existing customers (won deal before the cycle start).",
        _NONE_IS_ZERO,
        anchored=True,
    ),
    _spec(
        "won_deals",
        "count",
        DEALS,
        (0.0, None),
        False,
        "sum",
        _won_deals,
        "Number of won deals closed in the window.",
        _NONE_IS_ZERO,
    ),
    _spec(
        "new_customers",
        "count",
        DEALS,
        (0.0, None),
        False,
        "sum",
        _new_customers,
        "Number of customers whose first won deal ever closed in the window (filters apply "
        "to that first deal).",
        "None → 0.",
    ),
    _spec(
        "average_deal_size",
        "currency",
        DEALS,
        (0.0, None),
        True,
        "ratio",
        _average_deal_size,
        "Σ amount_home ÷ number of won deals closed in the window.",
        "No won deals → null.",
    ),
    _spec(
        "sales_cycle_days",
        "days",
        DEALS,
        (0.0, None),
        True,
        "ratio",
        _sales_cycle_days,
        "Average days from creation (reporting-timezone day) to close of won deals closed in "
        "the window.",
        "No won deals → null.",
    ),
    _spec(
        "pipeline_created",
        "currency",
        DEALS,
        (0.0, None),
        False,
        "sum",
        _pipeline_created,
        "Σ amount_home of deals created in the window (any outcome).",
        _NONE_IS_ZERO,
    ),
    _spec(
        "open_pipeline",
        "currency",
        DEALS,
        (0.0, None),
        False,
        "sum",
        _open_pipeline,
        "Σ amount_home of deals open at the end of the as-of day: created on or before it and "
        "not closed by then. A balance, not a window sum.",
        "No open deals → 0.",
        point_in_time=True,
    ),
    _spec(
        "nps_responses",
        "count",
        NPS_RESPONSES,
        (0.0, None),
        False,
        "sum",
        _nps_responses,
        "Number of NPS responses submitted in the window.",
        "None → 0.",
    ),
    _spec(
        "average_nps_score",
        "score",
        NPS_RESPONSES,
        (0.0, 10.0),
        True,
        "ratio",
        _average_nps_score,
        "Mean score (0–10) of responses submitted in the window.",
        "No responses → null.",
    ),
)

METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in BUILT_IN_METRICS}

# Not a metric anyone can name: promoters (num) and detractors (den) for NPS's margin of error.
NPS_SHARES = MetricSpec(
    name="_nps_shares",
    description="",
    unit="count",
    entity=NPS_RESPONSES,
    valid_range=(None, None),
    nullable=False,
    combine="ratio",
    events=_nps_promoters,  # ratio keeps both sums
)
Z_95 = 1.96


def margin_of_error(
    metric: str, value: np.ndarray, sample: np.ndarray, promoters=None, detractors=None
) -> np.ndarray:
    """95 % margin of error of a value: NPS from its promoter/detractor shares, win rate as a
    binomial proportion; NaN for metrics without a sampling interpretation."""
    n = np.asarray(sample, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "nps" and promoters is not None:
            p, d = promoters / n, detractors / n
            return np.where(n > 0, Z_95 * 100.0 * np.sqrt((p + d - (p - d) ** 2) / n), np.nan)
        if metric == "win_rate":
            return np.where(n > 0, Z_95 * np.sqrt(value * (1 - value) / n), np.nan)
    return np.full(len(n), np.nan)


def scope_for(data: PreparedData, where: dict) -> Scope:
    """Masks of the rows each entity keeps under `where`; every condition must hold.

    A condition value may be a scalar, a list (any of), or `{not: value-or-list}`. A condition
    on a column an entity does not have (e.g. `pipeline` for customers) does not restrict that
    entity: the denominator of revenue_per_existing_customer counts existing customers by
    customer attributes only.
    """

    def mask(entity: str, columns: Iterable[str]) -> np.ndarray:
        frame = data.frame(entity)
        keep = np.ones(len(frame), dtype=bool)
        for column in columns:
            wanted = where[column]
            if entity == CUSTOMERS and column == "customer_team":
                column = "team"  # a customer's own team, as deals see it
            if column not in frame.columns:
                continue
            negate = isinstance(wanted, dict)
            if negate:
                wanted = wanted["not"]
            values = [str(v) for v in (wanted if isinstance(wanted, list) else [wanted])]
            # Codes of the column's distinct values, once per run: a filter is then a lookup.
            cache_key = ("codes", entity, column)
            if cache_key not in data.cache:
                data.cache[cache_key] = pd.factorize(frame[column].astype("string"))
            codes, uniques = data.cache[cache_key]
            wanted_codes = np.flatnonzero(pd.Index(uniques).isin(values))
            hit = np.isin(codes, wanted_codes)
            keep &= ~hit if negate else hit
        return keep

    deal_only = [c for c in where if c not in CUSTOMER_FILTER_COLUMNS and c != "customer_team"]
    return Scope(
        mask(DEALS, where),
        mask(CUSTOMERS, where),
        mask(NPS_RESPONSES, where),
        mask(DEALS, deal_only),
    )

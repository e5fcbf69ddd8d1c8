"""The records behind a number, selected with the compiled engine's own filters and measures.

The rows listed are the rows the compiled statements count — the same `where:` conditions
(kr_metrics.sql.filters), the same row conditions and contributions (compiler.measures) — so
a number and its records cannot disagree.
"""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.metrics import MetricSpec, Window
from kr_metrics.sql.compiler import COUNT, _amount, _won, measures
from kr_metrics.sql.filters import condition, customer_condition_on_deals, deal_only_condition
from kr_metrics.sql.views import VIEW_KINDS, Views, day_value, flag

ID_COLUMNS = {DEALS: "deal_id", NPS_RESPONSES: "response_id", CUSTOMERS: "customer_id"}

# The record's own columns shown next to its contribution (the drill-down in words, explain).
RECORD_COLUMNS = {
    DEALS: [
        "source",
        "deal_id",
        "name",
        "customer_id",
        "owner_id",
        "team",
        "stage",
        "deal_type",
        "is_won",
        "amount",
        "currency",
        "amount_home",
        "close_date",
    ],
    NPS_RESPONSES: [
        "source",
        "response_id",
        "customer_id",
        "team",
        "score",
        "survey_id",
        "comment",
        "submitted_at",
    ],
}
# What every listed record carries besides its own columns.
EXPLAINED_COLUMNS = ["entity", "record_id", "day", "contribution", "weight", "customer_name"]
# How a list of records is ordered: newest first (the KR page), or by how much each adds to
# the number (explain); ties by id, so a page never changes between two reads.
ORDERS = ("newest", "largest")


def no_records_reason(spec: MetricSpec) -> str | None:
    """Why `spec`'s value has no records to list (None: it has)."""
    if spec.reduce:
        return (
            f"metric '{spec.name}' aggregates with '{spec.reduce}', which has no per-record "
            "contributions to list"
        )
    if spec.combine in ("metric_ratio", "derived"):
        inputs = ", ".join(spec.inputs or ())
        return (
            f"metric '{spec.name}' is computed from other metrics ({inputs}), not from records: "
            "explain a KR on one of them to see their records"
        )
    return None


def records_statement(
    spec: MetricSpec,
    views: Views,
    where: dict,
    window: Window,
    basis: str = "count",
    *,
    details: bool = False,
) -> sa.Select:
    """One row per record counted in `spec`'s value over `window`: its id, the day it counts on,
    its `contribution` to the numerator and its `weight` in the denominator (NULL: none).

    With `details`, each row also carries the record's own columns (RECORD_COLUMNS) and its
    customer's name, joined in the same statement from the prepared views.
    """
    reason = no_records_reason(spec)
    if reason:
        raise ValueError(reason)
    wheres = [where] + ([spec.filters] if spec.filters else [])
    start, end = day_value(window.start), day_value(window.end)
    in_window = None  # the records' days: within the window unless a balance says otherwise
    if spec.point_in_time:
        # open_pipeline: a deal is in the balance on the window's last day when it was created
        # by then and had not closed by then (compiler._add_balance: +amount on the creation
        # day, -amount on max(creation, close) day).
        entity, day = DEALS, "created_day"
        views.need(
            DEALS,
            "source",
            "deal_id",
            "created_day",
            "close_date",
            "is_closed",
            "amount_home",
            *(c for w in wheres for c in w if c in VIEW_KINDS[DEALS]),
        )
        _need_details(views, DEALS, details)
        c = views.deals.c
        closed_by_end = sa.and_(flag(c.is_closed), c.close_date.is_not(None), c.close_date <= end)
        rows = sa.and_(
            c.created_day.is_not(None), sa.not_(closed_by_end), condition(c, DEALS, wheres)
        )
        in_window = c.created_day <= end
        contribution, weight = _amount(c), None
    elif spec.name == "revenue_per_existing_customer":
        entity, day = DEALS, "close_date"
        views.need(
            DEALS,
            "source",
            "deal_id",
            "close_date",
            "is_won",
            "amount_home",
            "first_won",
            "customer_live",
            *(c for w in wheres for c in w if c in VIEW_KINDS[DEALS]),
            *(
                {"team": "customer_team", "owner_id": "customer_owner_id"}.get(c, c)
                for w in wheres
                for c in w
            ),
        )
        _need_details(views, DEALS, details)
        c = views.deals.c
        rows = sa.and_(
            _won(c),
            c.first_won < day_value(window.cycle_start),
            flag(c.customer_live),
            customer_condition_on_deals(c, wheres),
            deal_only_condition(c, wheres),
        )
        contribution, weight = _amount(c), None
    else:
        shape = measures(spec, basis)
        entity, day = shape.entity, shape.date
        views.need(
            entity,
            "source",
            ID_COLUMNS[entity],
            *shape.columns,
            *(c for w in wheres for c in w if c in VIEW_KINDS[entity]),
        )
        _need_details(views, entity, details)
        c = views.of(entity).c
        rows = sa.and_(shape.rows(c), condition(c, entity, wheres))
        if spec.name == "existing_customer_revenue":
            rows = sa.and_(rows, c.first_won < day_value(window.cycle_start))
        contribution = sa.literal(1.0) if shape.num is COUNT else shape.num(c)
        weight = (
            None if shape.den is None else (sa.literal(1.0) if shape.den is COUNT else shape.den(c))
        )
    columns = [
        c[day].label("day"),
        c.source,
        c[ID_COLUMNS[entity]].label("record_id"),
        sa.cast(contribution, sa.Double).label("contribution"),
        sa.cast(weight if weight is not None else sa.null(), sa.Double).label("weight"),
    ]
    selected = sa.select(*columns)
    if details:
        names = views.live_customers
        selected = sa.select(
            *columns,
            *(c[name] for name in RECORD_COLUMNS[entity] if name != "source"),
            names.c.name.label("customer_name"),
        ).select_from(
            views.of(entity).outerjoin(
                names,
                sa.and_(names.c.source == c.source, names.c.customer_id == c.customer_id),
            )
        )
    return selected.where(
        rows, c[day].between(start, end) if in_window is None else in_window
    ).order_by(c[day], c.source, c[ID_COLUMNS[entity]])


def _need_details(views: Views, entity: str, details: bool) -> None:
    """The display columns and the customers' names, asked for before the views are built."""
    if details:
        views.need(entity, *RECORD_COLUMNS[entity])
        views.need(CUSTOMERS, "name")


def listed_records_statement(
    spec: MetricSpec,
    views: Views,
    where: dict,
    window: Window,
    basis: str = "count",
    *,
    order: str = "newest",
    limit: int | None = None,
) -> sa.Select:
    """The records behind `spec`'s value with what a reader sees (records_statement with
    details), ordered by `order` (ORDERS), the first `limit` of them, each row with the `total`
    number of records (counted before the limit)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    records = records_statement(spec, views, where, window, basis, details=True).subquery("records")
    r = records.c
    ties = (r.record_id, r.source)
    by = (
        (r.day.desc(), *ties)
        if order == "newest"
        else (sa.func.abs(r.contribution).desc(), r.day.desc(), *ties)
    )
    statement = sa.select(*r, sa.func.count().over().label("total")).order_by(*by)
    return statement if limit is None else statement.limit(limit)


def records_behind(
    spec: MetricSpec, staged, where: dict, window: Window, *, basis: str = "count"
) -> pd.DataFrame:
    """The records (day index; source, record_id, contribution, weight) behind `spec`'s value."""
    views = Views(staged.tables, staged.timezone)
    statement = records_statement(spec, views, where, window, basis)
    key = ("records", spec.name, json.dumps(where, sort_keys=True, default=str))
    return staged.run({key: statement})[key]

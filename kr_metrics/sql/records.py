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


def records_statement(
    spec: MetricSpec, views: Views, where: dict, window: Window, basis: str = "count"
) -> sa.Select:
    """One row per record counted in `spec`'s value over `window`: its id, the day it counts on,
    its `contribution` to the numerator and its `weight` in the denominator (NULL: none)."""
    if spec.reduce or spec.point_in_time or spec.combine in ("metric_ratio", "derived"):
        raise ValueError(
            f"metric '{spec.name}' has no additive records to list; list its inputs' records"
        )
    wheres = [where] + ([spec.filters] if spec.filters else [])
    start, end = day_value(window.start), day_value(window.end)
    if spec.name == "revenue_per_existing_customer":
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
        c = views.of(entity).c
        rows = sa.and_(shape.rows(c), condition(c, entity, wheres))
        if spec.name == "existing_customer_revenue":
            rows = sa.and_(rows, c.first_won < day_value(window.cycle_start))
        contribution = sa.literal(1.0) if shape.num is COUNT else shape.num(c)
        weight = (
            None if shape.den is None else (sa.literal(1.0) if shape.den is COUNT else shape.den(c))
        )
    return (
        sa.select(
            c[day].label("day"),
            c.source,
            c[ID_COLUMNS[entity]].label("record_id"),
            sa.cast(contribution, sa.Double).label("contribution"),
            sa.cast(weight if weight is not None else sa.null(), sa.Double).label("weight"),
        )
        .where(rows, c[day].between(start, end))
        .order_by(c[day], c.source, c[ID_COLUMNS[entity]])
    )


def records_behind(
    spec: MetricSpec, staged, where: dict, window: Window, *, basis: str = "count"
) -> pd.DataFrame:
    """The records (day index; source, record_id, contribution, weight) behind `spec`'s value."""
    views = Views(staged.tables, staged.timezone)
    statement = records_statement(spec, views, where, window, basis)
    key = ("records", spec.name, json.dumps(where, sort_keys=True, default=str))
    return staged.run({key: statement})[key]

"""`where:` filters compiled to SQL conditions, with exactly the engine's semantics (scope_for).

A condition value is a scalar, a list (any of) or `{not: value-or-list}`; values compare as
text; a missing value never matches (and so always passes a `not`); a condition on a column
the entity does not have does not restrict it. Values are bound parameters, never SQL text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import sqlalchemy as sa

from core.canonical import CUSTOMERS, DEALS
from kr_metrics.metrics import CUSTOMER_FILTER_COLUMNS
from kr_metrics.sql.views import VIEW_KINDS, matches

# A customer's columns as a deal row carries them (for filters on the customer of a deal).
_CUSTOMER_ON_DEAL = {
    "team": "customer_team",
    "owner_id": "customer_owner_id",
    "segment": "segment",
    "region": "region",
    "industry": "industry",
    "customer_id": "customer_id",
    "source": "source",
}


# A condition already evaluated per customer (a bit of the deal row's customer signature,
# kr_metrics.sql.views): (view column, wanted) -> the condition, or None to compare the column.
Bits = Callable[[str, object], sa.ColumnElement | None]


def _no_bits(name: str, wanted) -> None:
    return None


def condition(
    columns: Mapping[str, sa.ColumnElement],
    entity: str,
    wheres: Iterable[dict],
    bits: Bits = _no_bits,
) -> sa.ColumnElement:
    """Rows of `entity` (its prepared view's `columns`) that every `where` in `wheres` keeps."""
    kinds = VIEW_KINDS[entity]
    clauses = []
    for where in wheres:
        for column, wanted in where.items():
            name = "team" if entity == CUSTOMERS and column == "customer_team" else column
            if name not in kinds:
                continue
            hit = bits(name, wanted)
            clauses.append(matches(columns[name], kinds[name], wanted) if hit is None else hit)
    return sa.and_(sa.true(), *clauses)


def customer_condition_on_deals(
    columns: Mapping[str, sa.ColumnElement], wheres: Iterable[dict], bits: Bits = _no_bits
) -> sa.ColumnElement:
    """The customer-side filters of `wheres` (as `condition(.., CUSTOMERS, ..)`), evaluated on a
    deal row through its customer's columns."""
    kinds = VIEW_KINDS[CUSTOMERS]
    clauses = []
    for where in wheres:
        for column, wanted in where.items():
            name = "team" if column == "customer_team" else column
            if name not in kinds:
                continue
            if name not in _CUSTOMER_ON_DEAL:
                raise ValueError(
                    f"filter on the customer's '{column}' is not supported for per-customer metrics"
                )
            on_deal = _CUSTOMER_ON_DEAL[name]
            hit = bits(on_deal, wanted)
            clauses.append(matches(columns[on_deal], kinds[name], wanted) if hit is None else hit)
    return sa.and_(sa.true(), *clauses)


def deal_only_condition(
    columns: Mapping[str, sa.ColumnElement], wheres: Iterable[dict]
) -> sa.ColumnElement:
    """The conditions on columns only a deal has (pipeline, deal_type, ...)."""
    only = [
        {
            k: v
            for k, v in where.items()
            if k not in CUSTOMER_FILTER_COLUMNS and k != "customer_team"
        }
        for where in wheres
    ]
    return condition(columns, DEALS, only)

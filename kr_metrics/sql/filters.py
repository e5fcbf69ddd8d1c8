"""`where:` filters compiled to SQL conditions, with exactly the engine's semantics (scope_for).

A condition value is a scalar, a list (any of) or `{not: value-or-list}`; values compare as
text; a missing value never matches (and so always passes a `not`); a condition on a column
the entity does not have does not restrict it. Values are bound parameters, never SQL text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa

from core.canonical import CUSTOMERS, DEALS
from kr_metrics.metrics import CUSTOMER_FILTER_COLUMNS
from kr_metrics.sql.views import VIEW_KINDS

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


def _matches(column: sa.ColumnElement, kind: str, wanted) -> sa.ColumnElement:
    negate = isinstance(wanted, dict)
    if negate:
        wanted = wanted["not"]
    values = [str(v) for v in (wanted if isinstance(wanted, list) else [wanted])]
    if kind == "bool":  # pandas shows booleans as "True" / "False"
        hits = [column.is_(True) for v in values if v == "True"]
        hits += [column.is_(False) for v in values if v == "False"]
        hit = sa.or_(*hits) if hits else sa.false()
    else:
        text = column if kind == "string" else sa.cast(column, sa.String)
        hit = sa.func.coalesce(text.in_(values), sa.false())
    return sa.not_(hit) if negate else hit


def condition(
    columns: Mapping[str, sa.ColumnElement], entity: str, wheres: Iterable[dict]
) -> sa.ColumnElement:
    """Rows of `entity` (its prepared view's `columns`) that every `where` in `wheres` keeps."""
    kinds = VIEW_KINDS[entity]
    clauses = []
    for where in wheres:
        for column, wanted in where.items():
            name = "team" if entity == CUSTOMERS and column == "customer_team" else column
            if name not in kinds:
                continue
            clauses.append(_matches(columns[name], kinds[name], wanted))
    return sa.and_(sa.true(), *clauses)


def customer_condition_on_deals(
    columns: Mapping[str, sa.ColumnElement], wheres: Iterable[dict]
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
            clauses.append(_matches(columns[_CUSTOMER_ON_DEAL[name]], kinds[name], wanted))
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

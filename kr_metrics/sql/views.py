"""The staged canonical tables as SQLAlchemy Core, and the prepared views every metric reads."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import sqlalchemy as sa

from core.canonical import CANONICAL_TABLES, CUSTOMERS, DEALS, NPS_RESPONSES

ENTITIES = (DEALS, CUSTOMERS, NPS_RESPONSES)
# sa.Double, not sa.Float: DuckDB reads a bare FLOAT as single precision.
_TYPES = {"string": sa.String, "bool": sa.Boolean, "float": sa.Double, "int": sa.Integer,
          "timestamp": lambda: sa.DateTime(timezone=True), "date": sa.Date}  # fmt: skip

# Columns the prepared views add to the canonical ones, with their kinds (as engine.prepare).
CUSTOMER_ATTRIBUTES = {"segment": "string", "region": "string", "industry": "string"}
VIEW_KINDS = {
    DEALS: {**CANONICAL_TABLES[DEALS].columns, **CUSTOMER_ATTRIBUTES, "customer_team": "string",
            "customer_owner_id": "string", "created_day": "date"},
    NPS_RESPONSES: {**CANONICAL_TABLES[NPS_RESPONSES].columns, **CUSTOMER_ATTRIBUTES,
                    "team": "string", "owner_id": "string", "submitted_day": "date"},
    CUSTOMERS: {**CANONICAL_TABLES[CUSTOMERS].columns, "created_day": "date"},
}  # fmt: skip


def staged_tables(prefix: str = "", schema: str | None = None) -> dict[str, sa.Table]:
    """deals, customers and nps_responses as Core tables named `prefix + entity`: the frames
    registered in DuckDB (no prefix) or the staging tables of the store (`staging_`)."""
    metadata = sa.MetaData(schema=schema)
    return {
        entity: sa.Table(prefix + entity, metadata,
                         *(sa.Column(name, _TYPES[kind]()) for name, kind in CANONICAL_TABLES[entity].columns.items()))
        for entity in ENTITIES
    }  # fmt: skip


def day_value(day: dt.date) -> sa.ColumnElement:
    return sa.cast(sa.literal(day, sa.Date), sa.Date)


def plus_days(day: sa.ColumnElement, days) -> sa.ColumnElement:
    # DuckDB adds an INTEGER to a DATE, not a BIGINT; PostgreSQL takes either.
    return day + sa.cast(
        days if isinstance(days, sa.ColumnElement) else sa.literal(int(days)), sa.Integer
    )


def flag(column: sa.ColumnElement) -> sa.ColumnElement:
    """A nullable boolean read as the engine reads it: missing is False."""
    return sa.func.coalesce(column, sa.false())


def _live(table) -> sa.ColumnElement:
    return sa.not_(flag(table.c.is_deleted))


def local_day(stamp: sa.ColumnElement, timezone: str) -> sa.ColumnElement:
    """The reporting-timezone day of a UTC timestamp (`timezone()` is DuckDB's and PostgreSQL's)."""
    return sa.cast(sa.func.timezone(sa.literal(timezone), stamp), sa.Date)


@dataclass
class Views:
    """The prepared views (as engine.prepare): live rows, customer attributes joined, local days.

    Extra columns cost a join or a window, so they are added only when a metric needs them:
    `first_won` (the day of a customer's first won deal, for existing customers) and
    `is_first_won_deal` (new customers).
    """

    tables: dict[str, sa.Table]
    timezone: str
    with_first_won: bool = False
    with_first_won_deal: bool = False

    @cached_property
    def live_customers(self) -> sa.Subquery:
        c = self.tables[CUSTOMERS]
        return (sa.select(*c.c, local_day(c.c.created_at, self.timezone).label("created_day"))
                .where(_live(c)).subquery("live_customers"))  # fmt: skip

    @cached_property
    def first_won(self) -> sa.Subquery:
        d = self.tables[DEALS]
        return (
            sa.select(d.c.source, d.c.customer_id,
                      sa.func.min(sa.cast(d.c.close_date, sa.Date)).label("first_won"))
            .where(_live(d), flag(d.c.is_won), d.c.close_date.is_not(None), d.c.customer_id.is_not(None))
            .group_by(d.c.source, d.c.customer_id)
            .subquery("first_won")
        )  # fmt: skip

    @cached_property
    def first_won_deals(self) -> sa.Subquery:
        """Each customer's first won deal ever; ties broken by deal id, as the engine does."""
        d = self.tables[DEALS]
        rank = sa.func.row_number().over(partition_by=(d.c.source, d.c.customer_id),
                                         order_by=(d.c.close_date, d.c.deal_id))  # fmt: skip
        ranked = (
            sa.select(d.c.source, d.c.deal_id, rank.label("rank"))
            .where(_live(d), flag(d.c.is_won), d.c.close_date.is_not(None), d.c.customer_id.is_not(None))
            .subquery("ranked_won_deals")
        )  # fmt: skip
        return (
            sa.select(ranked.c.source, ranked.c.deal_id)
            .where(ranked.c.rank == 1)
            .subquery("first_won_deals")
        )

    @cached_property
    def deals(self) -> sa.Subquery:
        d, c = self.tables[DEALS], self.live_customers
        columns = [col for col in d.c if col.name != "close_date"]
        columns += [
            sa.cast(d.c.close_date, sa.Date).label("close_date"),
            c.c.segment, c.c.region, c.c.industry,
            c.c.team.label("customer_team"), c.c.owner_id.label("customer_owner_id"),
            c.c.customer_id.is_not(None).label("customer_live"),
            local_day(d.c.created_at, self.timezone).label("created_day"),
        ]  # fmt: skip
        joined = d.outerjoin(
            c, sa.and_(c.c.source == d.c.source, c.c.customer_id == d.c.customer_id)
        )
        if self.with_first_won:
            f = self.first_won
            joined = joined.outerjoin(
                f, sa.and_(f.c.source == d.c.source, f.c.customer_id == d.c.customer_id)
            )
            columns.append(f.c.first_won)
        if self.with_first_won_deal:
            w = self.first_won_deals
            joined = joined.outerjoin(
                w, sa.and_(w.c.source == d.c.source, w.c.deal_id == d.c.deal_id)
            )
            columns.append(w.c.deal_id.is_not(None).label("is_first_won_deal"))
        return sa.select(*columns).select_from(joined).where(_live(d)).subquery("deals_view")

    @cached_property
    def nps_responses(self) -> sa.Subquery:
        r, c = self.tables[NPS_RESPONSES], self.live_customers
        joined = r.outerjoin(
            c, sa.and_(c.c.source == r.c.source, c.c.customer_id == r.c.customer_id)
        )
        return (
            sa.select(*r.c, c.c.segment, c.c.region, c.c.industry, c.c.team, c.c.owner_id,
                      local_day(r.c.submitted_at, self.timezone).label("submitted_day"))
            .select_from(joined).where(_live(r)).subquery("nps_responses_view")
        )  # fmt: skip

    @cached_property
    def customers(self) -> sa.Subquery:
        c, f = self.live_customers, self.first_won
        joined = c.outerjoin(
            f, sa.and_(f.c.source == c.c.source, f.c.customer_id == c.c.customer_id)
        )
        return sa.select(*c.c, f.c.first_won).select_from(joined).subquery("customers_view")

    def of(self, entity: str) -> sa.Subquery:
        return getattr(self, entity)

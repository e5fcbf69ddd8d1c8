"""The staged canonical tables as SQLAlchemy Core, and the prepared views every metric reads."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import sqlalchemy as sa

from core.canonical import CANONICAL_TABLES, CUSTOMERS, DEALS, NPS_RESPONSES

ENTITIES = (DEALS, CUSTOMERS, NPS_RESPONSES)
SIGNATURE_BITS = 62  # conditions per BIGINT signature (positive, so 62)
# sa.Double, not sa.Float: DuckDB reads a bare FLOAT as single precision.
_TYPES = {
    "string": sa.String,
    "bool": sa.Boolean,
    "float": sa.Double,
    "int": sa.Integer,
    "timestamp": lambda: sa.DateTime(timezone=True),
    "date": sa.Date,
}

# Columns the prepared views add to the canonical ones, with their kinds (as engine.prepare).
CUSTOMER_ATTRIBUTES = {"segment": "string", "region": "string", "industry": "string"}
VIEW_KINDS = {
    DEALS: {
        **CANONICAL_TABLES[DEALS].columns,
        **CUSTOMER_ATTRIBUTES,
        "customer_team": "string",
        "customer_owner_id": "string",
        "created_day": "date",
    },
    NPS_RESPONSES: {
        **CANONICAL_TABLES[NPS_RESPONSES].columns,
        **CUSTOMER_ATTRIBUTES,
        "team": "string",
        "owner_id": "string",
        "submitted_day": "date",
    },
    CUSTOMERS: {**CANONICAL_TABLES[CUSTOMERS].columns, "created_day": "date"},
}


def staged_tables(prefix: str = "", schema: str | None = None) -> dict[str, sa.Table]:
    """deals, customers and nps_responses as Core tables named `prefix + entity`: the frames
    registered in DuckDB (no prefix) or the staging tables of the store (`staging_`)."""
    metadata = sa.MetaData(schema=schema)
    return {
        entity: sa.Table(
            prefix + entity,
            metadata,
            *(
                sa.Column(name, _TYPES[kind]())
                for name, kind in CANONICAL_TABLES[entity].columns.items()
            ),
        )
        for entity in ENTITIES
    }


def constant(value, type_) -> sa.ColumnElement:
    """A number or date the compiler derives (never a user's text): rendered into the statement
    (`literal_execute`), so the database plans with the value instead of a placeholder."""
    return sa.bindparam(None, value, type_=type_, literal_execute=True)


def day_value(day: dt.date) -> sa.ColumnElement:
    return sa.cast(constant(day, sa.Date), sa.Date)


def plus_days(day: sa.ColumnElement, days) -> sa.ColumnElement:
    # DuckDB adds an INTEGER to a DATE, not a BIGINT; PostgreSQL takes either.
    offset = days if isinstance(days, sa.ColumnElement) else constant(int(days), sa.Integer)
    return day + sa.cast(offset, sa.Integer)


def flag(column: sa.ColumnElement) -> sa.ColumnElement:
    """A nullable boolean read as the engine reads it: missing is False."""
    return sa.func.coalesce(column, sa.false())


def _live(table) -> sa.ColumnElement:
    return sa.not_(flag(table.c.is_deleted))


def local_day(stamp: sa.ColumnElement, timezone: str) -> sa.ColumnElement:
    """The reporting-timezone day of a UTC timestamp (`timezone()` is DuckDB's and PostgreSQL's)."""
    return sa.cast(sa.func.timezone(sa.literal(timezone), stamp), sa.Date)


def matches(column: sa.ColumnElement, kind: str, wanted) -> sa.ColumnElement:
    """One `where:` condition on one column (kr_metrics.sql.filters has the semantics)."""
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


# What each prepared column is made of: a staged column, a customer's, or computed.
FROM_CUSTOMER = {
    DEALS: {
        "segment": "segment",
        "region": "region",
        "industry": "industry",
        "customer_team": "team",
        "customer_owner_id": "owner_id",
    },
    NPS_RESPONSES: {
        "segment": "segment",
        "region": "region",
        "industry": "industry",
        "team": "team",
        "owner_id": "owner_id",
    },
}


@dataclass
class Views:
    """The prepared views (as engine.prepare): live rows, customer attributes joined, local days.

    Each view carries only the columns some metric or filter needs (`need`): every column costs
    a scan, a join or a timezone conversion. `first_won` is the day of a customer's first won
    deal (existing customers), `is_first_won_deal` marks that deal (new customers),
    `customer_live` says the deal's customer is staged and not deleted.
    A view that several statements read is computed once (MATERIALIZED).
    """

    tables: dict[str, sa.Table]
    timezone: str
    needed: dict[str, set[str]] = field(
        default_factory=lambda: {entity: set() for entity in ENTITIES}
    )
    uses: dict[str, int] = field(default_factory=lambda: {entity: 0 for entity in ENTITIES})
    # Conditions on a deal's customer (view column, wanted as JSON) -> their bit in the deal
    # row's `customer_signature`: evaluated once per customer, not once per deal.
    customer_bits: dict[tuple[str, str], int] = field(default_factory=dict)

    def need(self, entity: str, *columns: str) -> None:
        self.needed[entity].update(columns)

    def need_customer_condition(self, column: str, wanted) -> None:
        """A condition on the customer's `column` (a deal view column, `segment` say) that deal
        rows will test: a bit of `customer_signature` (up to SIGNATURE_BITS of them; beyond,
        the deal view carries the column and the condition compares it)."""
        key = (column, json.dumps(wanted, sort_keys=True, default=str))
        if key in self.customer_bits:
            return
        if len(self.customer_bits) < SIGNATURE_BITS:
            self.customer_bits[key] = len(self.customer_bits)
        else:
            self.need(DEALS, column)

    def customer_condition(self, columns) -> Callable:
        """`filters.Bits` over a deal row's `columns`: the registered conditions as bit tests."""

        def bit(name: str, wanted) -> sa.ColumnElement | None:
            index = self.customer_bits.get((name, json.dumps(wanted, sort_keys=True, default=str)))
            if index is None:
                return None
            mask = constant(1 << index, sa.BigInteger)
            return columns.customer_signature.bitwise_and(mask) != constant(0, sa.BigInteger)

        return bit

    def use(self, entity: str) -> None:
        self.uses[entity] += 1

    def _cte(self, select: sa.Select, name: str, entity: str | None) -> sa.CTE:
        cte = select.cte(name)
        if entity is None or self.uses[entity] > 1:
            cte = cte.prefix_with("MATERIALIZED")
        return cte

    @cached_property
    def live_customers(self) -> sa.Subquery:
        c = self.tables[CUSTOMERS]
        wanted = {"source", "customer_id"} | {
            name
            for entity, names in FROM_CUSTOMER.items()
            for view_name, name in names.items()
            if view_name in self.needed[entity]
        }
        wanted |= {FROM_CUSTOMER[DEALS][name] for name, _ in self.customer_bits}
        wanted |= self.needed[CUSTOMERS] & set(c.c.keys())
        columns = [col for col in c.c if col.name in wanted]
        if "created_day" in self.needed[CUSTOMERS]:
            columns.append(local_day(c.c.created_at, self.timezone).label("created_day"))
        return sa.select(*columns).where(_live(c)).subquery("live_customers")

    @cached_property
    def first_won(self) -> sa.CTE:
        d = self.tables[DEALS]
        return self._cte(
            sa.select(
                d.c.source,
                d.c.customer_id,
                sa.func.min(sa.cast(d.c.close_date, sa.Date)).label("first_won"),
            )
            .where(
                _live(d),
                flag(d.c.is_won),
                d.c.close_date.is_not(None),
                d.c.customer_id.is_not(None),
            )
            .group_by(d.c.source, d.c.customer_id),
            "first_won",
            None,
        )

    @cached_property
    def first_won_deals(self) -> sa.Subquery:
        """Each customer's first won deal ever; ties broken by deal id, as the engine does."""
        d = self.tables[DEALS]
        rank = sa.func.row_number().over(
            partition_by=(d.c.source, d.c.customer_id), order_by=(d.c.close_date, d.c.deal_id)
        )
        ranked = (
            sa.select(d.c.source, d.c.deal_id, rank.label("rank"))
            .where(
                _live(d),
                flag(d.c.is_won),
                d.c.close_date.is_not(None),
                d.c.customer_id.is_not(None),
            )
            .subquery("ranked_won_deals")
        )
        return (
            sa.select(ranked.c.source, ranked.c.deal_id)
            .where(ranked.c.rank == 1)
            .subquery("first_won_deals")
        )

    def _with_customer(self, entity: str, table: sa.Table, columns: list, joined):
        needed = self.needed[entity]
        from_customer = {
            name: source for name, source in FROM_CUSTOMER[entity].items() if name in needed
        }
        bits = entity == DEALS and bool(self.customer_bits)
        if not (from_customer or bits or "customer_live" in needed):
            return columns, joined
        c = self.deal_customers if bits else self.live_customers
        joined = joined.outerjoin(
            c, sa.and_(c.c.source == table.c.source, c.c.customer_id == table.c.customer_id)
        )
        columns += [c.c[source].label(name) for name, source in from_customer.items()]
        if "customer_live" in needed:
            columns.append(c.c.customer_id.is_not(None).label("customer_live"))
        if bits:  # no customer row: every attribute missing, so only `not:` conditions hold
            nobody = sum(
                1 << index
                for (_, wanted), index in self.customer_bits.items()
                if isinstance(json.loads(wanted), dict)
            )
            signature = sa.func.coalesce(c.c.customer_signature, constant(nobody, sa.BigInteger))
            columns.append(signature.label("customer_signature"))
        return columns, joined

    @cached_property
    def deal_customers(self) -> sa.Subquery:
        """The live customers as the deals view joins them: the attributes a deal metric reads,
        and the conditions on the customer its filters test as bits of one BIGINT
        (`customer_signature`) instead of the attributes' text. The join's hash table holds
        200,000 customers at a million deals; 8 bytes of signature in place of three text
        attributes is ~10 MiB less at the statement's peak (bench/README.md, run 4)."""
        c = self.live_customers
        text = {
            source for name, source in FROM_CUSTOMER[DEALS].items() if name in self.needed[DEALS]
        }
        columns = [c.c.source, c.c.customer_id, *(col for col in c.c if col.name in text)]
        signature = self._signature(c).label("customer_signature")
        return sa.select(*columns, signature).subquery("deal_customers")

    def _signature(self, customers) -> sa.ColumnElement:
        """The registered customer conditions as bits, over `customers`' columns."""
        kinds = VIEW_KINDS[DEALS]
        return sum(
            (
                sa.case(
                    (
                        matches(
                            customers.c[FROM_CUSTOMER[DEALS][name]], kinds[name], json.loads(w)
                        ),
                        constant(1 << index, sa.BigInteger),
                    ),
                    else_=constant(0, sa.BigInteger),
                )
                for (name, w), index in self.customer_bits.items()
            ),
            constant(0, sa.BigInteger),
        )

    @cached_property
    def deals(self) -> sa.CTE:
        d, needed = self.tables[DEALS], self.needed[DEALS]
        columns = [col for col in d.c if col.name in needed and col.name != "close_date"]
        if "close_date" in needed:
            columns.append(sa.cast(d.c.close_date, sa.Date).label("close_date"))
        if "created_day" in needed:
            columns.append(local_day(d.c.created_at, self.timezone).label("created_day"))
        columns, joined = self._with_customer(DEALS, d, columns, d)
        if "first_won" in needed:
            f = self.first_won
            joined = joined.outerjoin(
                f, sa.and_(f.c.source == d.c.source, f.c.customer_id == d.c.customer_id)
            )
            columns.append(f.c.first_won)
        if "is_first_won_deal" in needed:
            w = self.first_won_deals
            joined = joined.outerjoin(
                w, sa.and_(w.c.source == d.c.source, w.c.deal_id == d.c.deal_id)
            )
            columns.append(w.c.deal_id.is_not(None).label("is_first_won_deal"))
        return self._cte(
            sa.select(*columns).select_from(joined).where(_live(d)), "deals_view", DEALS
        )

    @cached_property
    def nps_responses(self) -> sa.CTE:
        r, needed = self.tables[NPS_RESPONSES], self.needed[NPS_RESPONSES]
        columns = [col for col in r.c if col.name in needed]
        columns.append(local_day(r.c.submitted_at, self.timezone).label("submitted_day"))
        columns, joined = self._with_customer(NPS_RESPONSES, r, columns, r)
        return self._cte(
            sa.select(*columns).select_from(joined).where(_live(r)),
            "nps_responses_view",
            NPS_RESPONSES,
        )

    @cached_property
    def customers(self) -> sa.CTE:
        c, f = self.live_customers, self.first_won
        joined = c.outerjoin(
            f, sa.and_(f.c.source == c.c.source, f.c.customer_id == c.c.customer_id)
        )
        return self._cte(
            sa.select(*c.c, f.c.first_won).select_from(joined), "customers_view", CUSTOMERS
        )

    def of(self, entity: str) -> sa.CTE:
        return getattr(self, entity)

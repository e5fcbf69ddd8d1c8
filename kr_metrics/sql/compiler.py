"""Leaf metric requests compiled to set-based SQL: one statement per metric family.

A *leaf* is a built-in or custom simple metric over one scope and a list of windows (ratios and
derived metrics are combined from their leaves by the engine). Leaves that read the same rows
by the same day column form a *family*: one statement scans the rows once, aggregates every
leaf and scope per day (`SUM(..) FILTER (WHERE scope)`), fills a dense day spine and turns the
daily sums into window values with window functions — cumulative from a cycle start, rolling
over N days, or a running balance. The moving "existing customer" anchor of a rolling window
becomes, per deal, the interval of as-of days it counts on, so it too is one running sum.
No statement is per KR or per day; no user value is ever SQL text (filters are bound).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.metrics import MetricSpec, Window
from kr_metrics.sql.filters import condition, customer_condition_on_deals, deal_only_condition
from kr_metrics.sql.views import (
    FROM_CUSTOMER,
    SIGNATURE_BITS,
    VIEW_KINDS,
    Views,
    constant,
    day_value,
    flag,
    plus_days,
)

COUNT = "count(*)"  # a measure that counts the rows
EXISTING = ("existing_customer_revenue", "revenue_per_existing_customer")
DATE_COLUMN = {
    "close_date": "close_date",
    "created_day": "created_day",
    "submitted_day": "submitted_day",
}


@dataclass(frozen=True)
class Leaf:
    """One leaf metric over one scope (filters ANDed) and windows, as the engine asks for it."""

    spec: MetricSpec = field(compare=False, hash=False)  # specs hold dicts; the name identifies
    name: str = ""
    scope: tuple[str, ...] = ()  # each a JSON `where` dict; all must hold
    basis: str = "count"
    windows: tuple[Window, ...] = ()

    @property
    def wheres(self) -> list[dict]:
        return [json.loads(w) for w in self.scope]


@dataclass
class Sums:
    """A leaf's window sums, aligned with its windows."""

    num: np.ndarray
    den: np.ndarray
    n: np.ndarray


# --- windows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowClass:
    """Windows one window function serves: `fixed` (all start on `start`, existing customers
    at `anchor`), `rolling` (`days` long, anchored at their own start) or `balance` (from the
    beginning of time, for point-in-time metrics)."""

    kind: str
    start: dt.date | None = None
    anchor: dt.date | None = None
    days: int | None = None


def window_classes(
    spec: MetricSpec, windows: Sequence[Window]
) -> list[tuple[WindowClass, list[int]]]:
    if spec.point_in_time:
        return [(WindowClass("balance"), list(range(len(windows))))]
    lengths = {(w.end - w.start).days + 1 for w in windows}
    anchored_at_start = all(w.cycle_start == w.start for w in windows)
    if len(lengths) == 1 and anchored_at_start and len({w.start for w in windows}) > 1:
        return [(WindowClass("rolling", days=lengths.pop()), list(range(len(windows))))]
    anchored = spec.anchored or spec.name in EXISTING
    groups: dict[WindowClass, list[int]] = {}
    for i, w in enumerate(windows):
        key = WindowClass("fixed", start=w.start, anchor=w.cycle_start if anchored else None)
        groups.setdefault(key, []).append(i)
    return list(groups.items())


# --- families ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregate:
    """`how` (sum, count, min, max, count_distinct) of a value over the rows of a condition.
    Values and conditions are computed once per row and shared by every aggregate that names
    the same key."""

    how: str
    rows_key: tuple
    rows: Callable  # (columns) -> boolean
    value_key: tuple | None = None
    value: Callable | None = None  # (columns) -> number; None counts rows


@dataclass
class Family:
    """Rows of one view by one day column: every leaf and scope aggregated per day at once."""

    key: tuple
    events: Callable[[dt.date, dt.date], sa.Select]  # (lo, hi) -> rows with a `day` column
    balance: bool = False  # events before the first day are carried in (running balances)
    reduce: bool = False  # min / max / count_distinct: one reduction per window, by range join
    aggregates: dict[tuple, Aggregate] = field(default_factory=dict)
    outputs: dict[tuple, tuple[tuple, WindowClass]] = field(default_factory=dict)
    lo: dt.date | None = None
    hi: dt.date | None = None

    def need(self, lo: dt.date, hi: dt.date) -> None:
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def output(self, key: tuple, aggregate: Aggregate, window: WindowClass) -> tuple:
        """Ask for `aggregate` over `window`; the answer's address in the results (see read)."""
        self.aggregates.setdefault(key, aggregate)
        self.outputs.setdefault((key, window), (key, window))
        return key, window

    def dated(self, lo: dt.date, hi: dt.date, name: str) -> tuple[sa.Subquery, dict, dict]:
        """The family's rows in range with their day, one column per distinct value and per
        distinct condition (so a scope's filter is evaluated once per row, not per aggregate)."""
        events = self.events(lo, hi).subquery(f"{name}_events")
        values, conditions = {}, {}
        for aggregate in self.aggregates.values():
            conditions.setdefault(aggregate.rows_key, aggregate.rows)
            if aggregate.value is not None:
                values.setdefault(aggregate.value_key, aggregate.value)
        value_labels = {key: f"v{i}" for i, key in enumerate(values)}
        condition_labels = {key: f"r{i}" for i, key in enumerate(conditions)}
        day = events.c.day
        if self.balance:  # carried in: everything before the first day counts on the first day
            day, in_range = (
                sa.func.greatest(events.c.day, day_value(lo)),
                events.c.day <= day_value(hi),
            )
        else:
            in_range = events.c.day.between(day_value(lo), day_value(hi))
        dated = (
            sa.select(
                day.label("day"),
                *(build(events.c).label(value_labels[key]) for key, build in values.items()),
                *(
                    sa.func.coalesce(build(events.c), sa.false()).label(condition_labels[key])
                    for key, build in conditions.items()
                ),
            )
            .where(in_range)
            .subquery(f"{name}_dated")
        )
        return dated, value_labels, condition_labels

    def aggregate_expression(self, aggregate: Aggregate, dated, values, conditions, inside=None):
        rows = dated.c[conditions[aggregate.rows_key]]
        if inside is not None:
            rows = sa.and_(rows, inside)
        if aggregate.value is None:
            return sa.cast(sa.func.count().filter(rows), sa.Double)
        value = dated.c[values[aggregate.value_key]]
        if aggregate.how == "count_distinct":
            return sa.cast(sa.func.count(sa.distinct(value)).filter(rows), sa.Double)
        return sa.cast(getattr(sa.func, aggregate.how)(value).filter(rows), sa.Double)

    def cumulative(self, lo: dt.date, hi: dt.date, index: int) -> sa.Select:
        """(family, aggregate, day, value): every aggregate of the family per day, long — in two
        steps, so that a hundred scopes do not cost a hundred passes over a million rows: rows
        are first summed by (day, signature), the signature being which of the family's
        conditions a row meets (bits of a few BIGINTs); those few groups are then joined to
        the family's aggregates (a small VALUES table: which word and bit, which measure) and
        summed by (day, aggregate). Long rather than one FILTERed column per aggregate: a
        hundred and fifty FILTERed sums in one GROUP BY cost DuckDB tens of MiB of aggregate
        state, the join and a one-sum GROUP BY almost nothing. A day on which an aggregate has
        no rows has no row (its running sum carries)."""
        dated, values, conditions = self.dated(lo, hi, f"f{index}")
        bits = {
            label: (i // SIGNATURE_BITS, i % SIGNATURE_BITS)
            for i, label in enumerate(conditions.values())
        }
        words = range(len(conditions) // SIGNATURE_BITS + 1)
        signature = [
            sum(
                (
                    sa.case(
                        (dated.c[label], constant(1 << bit, sa.BigInteger)),
                        else_=constant(0, sa.BigInteger),
                    )
                    for label, (word, bit) in bits.items()
                    if word == w
                ),
                constant(0, sa.BigInteger),
            ).label(f"s{w}")
            for w in words
        ]
        grouped = (
            sa.select(
                dated.c.day,
                *signature,
                sa.func.count().label("rows"),
                *(sa.func.sum(dated.c[label]).label(label) for label in values.values()),
            )
            .group_by(dated.c.day, *(sa.literal_column(f"s{w}") for w in words))
            .subquery(f"f{index}_grouped")
        )
        value_index = {label: i for i, label in enumerate(values.values())}
        wanted = (
            sa.values(
                sa.column("aggregate", sa.Integer),
                sa.column("word", sa.Integer),
                sa.column("mask", sa.BigInteger),
                sa.column("measure", sa.Integer),
                name=f"f{index}_aggregates",
                literal_binds=True,
            )
            .data(
                [
                    (
                        i,
                        bits[conditions[aggregate.rows_key]][0],
                        1 << bits[conditions[aggregate.rows_key]][1],
                        -1 if aggregate.value is None else value_index[values[aggregate.value_key]],
                    )
                    for i, aggregate in enumerate(self.aggregates.values())
                ]
            )
            .alias(f"f{index}_aggregates")
        )
        word = (
            grouped.c.s0
            if len(words) == 1
            else sa.case(
                *((wanted.c.word == constant(w, sa.Integer), grouped.c[f"s{w}"]) for w in words),
                else_=constant(0, sa.BigInteger),
            )
        )
        rows = sa.cast(grouped.c["rows"], sa.Double)
        measure = (
            sa.case(
                *(
                    (wanted.c.measure == constant(i, sa.Integer), grouped.c[label])
                    for label, i in value_index.items()
                ),
                else_=rows,
            )
            if value_index
            else rows
        )
        meets = word.bitwise_and(sa.cast(wanted.c.mask, sa.BigInteger)) != 0
        return (
            sa.select(
                constant(index, sa.Integer).label("family"),
                wanted.c.aggregate,
                grouped.c.day,
                sa.cast(sa.func.sum(measure), sa.Double).label("value"),
            )
            .select_from(grouped.join(wanted, meets))
            .group_by(grouped.c.day, wanted.c.aggregate)
        )

    def reduced_statement(self) -> sa.Select:
        """min / max / count_distinct cannot be summed across days: each spine day joins the rows
        of its widest window and every output reduces its own window's rows."""
        spine = _spine(self.lo, self.hi)
        dated, values, conditions = self.dated(self.lo, self.hi, "reduced")
        joined = spine.outerjoin(dated, dated.c.day <= spine.c.day)
        outputs = []
        for i, (key, window) in enumerate(self.outputs.values()):
            start = (
                day_value(window.start)
                if window.kind == "fixed"
                else plus_days(spine.c.day, -(window.days - 1))
            )
            expression = self.aggregate_expression(
                self.aggregates[key], dated, values, conditions, dated.c.day >= start
            )
            outputs.append(expression.label(f"o{i}"))
        return (
            sa.select(spine.c.day, *outputs)
            .select_from(joined)
            .group_by(spine.c.day)
            .order_by(spine.c.day)
        )


def _spine(lo: dt.date, hi: dt.date) -> sa.CTE:
    """Every day from lo to hi: window functions run over days, not over rows."""
    offsets = (
        sa.func.generate_series(constant(0, sa.Integer), constant((hi - lo).days, sa.Integer))
        .table_valued("i")
        .render_derived()
    )
    return sa.select(plus_days(day_value(lo), offsets.c.i).label("day")).cte("spine")


def combined_statement(families: Sequence[Family]) -> sa.Select:
    """All additive families in one statement: every aggregate's running sum per day, as one
    window function over the long (family, aggregate, day) table. Windows of any kind are
    differences of two running sums (`windowed_sums`): cumulative from a cycle start, rolling
    over N days, or a balance since the beginning."""
    lo, hi = min(f.lo for f in families), max(f.hi for f in families)
    long = sa.union_all(
        *(family.cumulative(lo, hi, i) for i, family in enumerate(families))
    ).subquery("long")
    running = sa.func.sum(long.c.value).over(
        partition_by=(long.c.family, long.c.aggregate), order_by=long.c.day, rows=(None, 0)
    )
    return sa.select(long.c.family, long.c.aggregate, long.c.day, running.label("running_sum"))


def windowed_sums(
    running: pd.DataFrame, lo: dt.date, window: WindowClass, ends: Sequence[dt.date]
) -> np.ndarray:
    """An aggregate over each window ending on `ends`, from its running sums by day (days
    without rows carry the last sum; before the first day it is 0)."""

    def at(days) -> np.ndarray:
        return running.reindex(days).fillna(0.0).to_numpy(dtype="float64")

    end_sums = at(ends)
    if window.kind == "balance":
        return end_sums
    if window.kind == "rolling":
        return end_sums - at([end - dt.timedelta(days=window.days) for end in ends])
    return end_sums - at([window.start - dt.timedelta(days=1)] * len(ends))


# --- what each leaf sums -------------------------------------------------------------------------

NPS_METRICS = ("nps", "nps_responses", "average_nps_score", "_nps_shares")
_ONE = sa.cast(constant(1.0, sa.Double), sa.Double)
_ZERO = sa.cast(constant(0.0, sa.Double), sa.Double)


def _amount(c) -> sa.ColumnElement:
    return sa.func.coalesce(c.amount_home, _ZERO)


def _won(c) -> sa.ColumnElement:
    return sa.and_(flag(c.is_won), c.close_date.is_not(None))


def _number(column, kind: str) -> sa.ColumnElement:
    if kind == "bool":
        return sa.case((column.is_(True), _ONE), (column.is_(False), _ZERO))
    return sa.cast(column, sa.Double)


@dataclass(frozen=True)
class Measures:
    """An additive leaf: its entity and day column, the columns it reads, which rows count and
    what they add to the numerator and denominator (None: no denominator; COUNT: 1 per row)."""

    entity: str
    date: str
    columns: tuple[str, ...]
    rows: Callable
    num: Callable | str
    den: Callable | str | None = None


def measures(spec: MetricSpec, basis: str) -> Measures:
    name = spec.name
    if spec.custom:
        kind = VIEW_KINDS[spec.entity].get(spec.expr or "", "string")
        expr, date = spec.expr, spec.date
        if not expr:
            rows = lambda c: c[date].is_not(None)  # noqa: E731
        else:
            rows = lambda c: sa.and_(c[date].is_not(None), c[expr].is_not(None))  # noqa: E731
        num = COUNT if spec.agg == "count" or not expr else (lambda c: _number(c[expr], kind))
        den = COUNT if spec.agg == "average" else None
        return Measures(spec.entity, date, tuple(c for c in (date, expr) if c), rows, num, den)
    if name in NPS_METRICS:
        with_score = lambda c: c.score.is_not(None)  # noqa: E731
        shape = {
            "nps": (
                with_score,
                lambda c: sa.case((c.score >= 9, _ONE), (c.score <= 6, -_ONE), else_=_ZERO),
                COUNT,
            ),
            "_nps_shares": (
                with_score,
                lambda c: sa.case((c.score >= 9, _ONE), else_=_ZERO),
                lambda c: sa.case((c.score <= 6, _ONE), else_=_ZERO),
            ),
            "average_nps_score": (with_score, lambda c: sa.cast(c.score, sa.Double), COUNT),
            "nps_responses": (lambda c: sa.true(), COUNT, None),
        }[name]
        return Measures(NPS_RESPONSES, "submitted_day", ("score",), *shape)
    deal = ("close_date", "is_won", "is_closed", "amount_home")
    if name == "pipeline_created":
        return Measures(
            DEALS, "created_day", ("created_day", "amount_home"), lambda c: sa.true(), _amount
        )
    if name == "win_rate":
        weight = _amount if basis == "amount" else (lambda c: _ONE)
        return Measures(
            DEALS,
            "close_date",
            deal,
            lambda c: sa.and_(flag(c.is_closed), c.close_date.is_not(None)),
            lambda c: sa.case((flag(c.is_won), weight(c)), else_=_ZERO),
            weight,
        )
    shape = {
        "won_revenue": (deal, _won, _amount, None),
        "new_business_revenue": (
            deal + ("deal_type",),
            lambda c: sa.and_(_won(c), flag(c.deal_type == "new_business")),
            _amount,
            None,
        ),
        "existing_customer_revenue": (deal + ("first_won",), _won, _amount, None),
        "won_deals": (deal, _won, COUNT, None),
        "new_customers": (
            deal + ("is_first_won_deal",),
            lambda c: flag(c.is_first_won_deal),
            COUNT,
            None,
        ),
        "average_deal_size": (deal, _won, _amount, COUNT),
        "sales_cycle_days": (
            deal + ("created_day",),
            lambda c: sa.and_(_won(c), c.created_day.is_not(None)),
            lambda c: sa.cast(c.close_date - c.created_day, sa.Double),
            COUNT,
        ),
    }[name]
    return Measures(DEALS, "close_date", *shape)


# --- the compiler --------------------------------------------------------------------------------


class Compiler:
    """Collects leaves into families; `statements()` then `read()` gives each leaf its sums."""

    def __init__(self, views: Views) -> None:
        self.views = views
        self.families: dict[tuple, Family] = {}
        self.reads: list[tuple[Leaf, list[tuple[list[int], dict[str, tuple[tuple, str]]]]]] = []

    def family(self, key: tuple, events: Callable, uses: dict[str, int], **kw) -> Family:
        if key not in self.families:
            self.families[key] = Family(key, events, **kw)
            for entity, count in uses.items():
                for _ in range(count):
                    self.views.use(entity)
        return self.families[key]

    def _need_filters(self, entity: str, wheres: list[dict]) -> None:
        for where in wheres:
            for column, wanted in where.items():
                name = "team" if entity == CUSTOMERS and column == "customer_team" else column
                if entity == DEALS and name in FROM_CUSTOMER[DEALS]:
                    self.views.need_customer_condition(name, wanted)  # a bit, not the text
                elif name in VIEW_KINDS[entity]:
                    self.views.need(entity, name)

    def _condition(self, c, entity: str, wheres: list[dict]) -> sa.ColumnElement:
        """`filters.condition`, a deal's customer conditions read from its customer signature."""
        if entity != DEALS:
            return condition(c, entity, wheres)
        return condition(c, entity, wheres, self.views.customer_condition(c))

    def _view_family(self, entity: str, date: str, reduce: bool = False) -> Family:
        def events(lo, hi):
            view = self.views.of(entity)
            return sa.select(*view.c, view.c[date].label("day"))

        self.views.need(entity, date)
        return self.family(
            ("reduce" if reduce else "view", entity, date), events, {entity: 1}, reduce=reduce
        )

    def add(self, leaf: Leaf) -> None:
        parts = []
        for window, positions in window_classes(leaf.spec, leaf.windows):
            lo = min(leaf.windows[i].start for i in positions)
            hi = max(leaf.windows[i].end for i in positions)
            if window.kind == "rolling":
                lo = min(leaf.windows[i].end for i in positions) - dt.timedelta(
                    days=window.days - 1
                )
            parts.append((positions, self._add(leaf, window, lo, hi)))
        self.reads.append((leaf, parts))

    def _add(
        self, leaf: Leaf, window: WindowClass, lo: dt.date, hi: dt.date
    ) -> dict[str, tuple[tuple, str]]:
        spec, wheres = leaf.spec, leaf.wheres
        if spec.reduce:
            return self._add_reduced(leaf, window, lo, hi)
        if spec.name == "revenue_per_existing_customer":
            return self._add_per_existing_customer(leaf, window, lo, hi)
        if spec.point_in_time:
            return self._add_balance(leaf, window, lo, hi)
        if spec.name == "existing_customer_revenue" and window.kind == "rolling":
            return self._add_existing_rolling(leaf, window, lo, hi)
        shape = measures(spec, leaf.basis)
        self.views.need(shape.entity, *shape.columns)
        self._need_filters(shape.entity, wheres)
        family = self._view_family(shape.entity, shape.date)
        family.need(lo, hi)
        anchor = window.anchor
        rows_key = (spec.name, leaf.basis, leaf.scope, anchor)

        def rows(c):
            keep = sa.and_(shape.rows(c), self._condition(c, shape.entity, wheres))
            return sa.and_(keep, c.first_won < day_value(anchor)) if anchor is not None else keep

        def aggregate(part, measure):
            if measure is COUNT:
                return Aggregate("sum", rows_key, rows)
            return Aggregate("sum", rows_key, rows, (spec.name, leaf.basis, part), measure)

        out = {
            "num": (
                family.key,
                family.output(rows_key + ("num",), aggregate("num", shape.num), window),
            ),
            "n": (family.key, family.output(rows_key + ("n",), aggregate("n", COUNT), window)),
        }
        if shape.den is not None:
            out["den"] = (
                family.key,
                family.output(rows_key + ("den",), aggregate("den", shape.den), window),
            )
        return out

    def _add_balance(self, leaf, window, lo, hi):
        """open_pipeline: +amount on the creation day, -amount on the close day, summed up to
        each as-of day (a running balance over the whole history)."""
        wheres = leaf.wheres
        self.views.need(DEALS, "created_day", "close_date", "is_closed", "amount_home")
        self._need_filters(DEALS, wheres)

        def events(lo_, hi_):
            view = self.views.deals
            opened = view.c.created_day.is_not(None)
            closed = sa.and_(opened, flag(view.c.is_closed), view.c.close_date.is_not(None))
            return sa.union_all(
                sa.select(*view.c, view.c.created_day.label("day"), _ONE.label("sign")).where(
                    opened
                ),
                # Never before the creation day: a deal closed before it was created was never open.
                sa.select(
                    *view.c,
                    sa.func.greatest(view.c.created_day, view.c.close_date).label("day"),
                    (-_ONE).label("sign"),
                ).where(closed),
            )

        return self._signed(
            leaf,
            self.family(("balance", "open_pipeline"), events, {DEALS: 2}, balance=True),
            lo,
            hi,
            lambda c: self._condition(c, DEALS, wheres),
        )

    def _signed(self, leaf, family, lo, hi, rows, with_count=True):
        family.need(lo, hi)
        key = (leaf.spec.name, leaf.basis, leaf.scope)
        balance = WindowClass("balance")
        signed = Aggregate("sum", key, rows, ("signed amount",), lambda c: c.sign * _amount(c))
        out = {"num": (family.key, family.output(key + ("num",), signed, balance))}
        if with_count:
            count = Aggregate("sum", key, rows, ("sign",), lambda c: c.sign)
            out["n"] = (family.key, family.output(key + ("n",), count, balance))
        return out

    def _interval_family(self, days: int) -> Family:
        """Won deals of existing customers over `days`-long windows anchored at their start:
        a deal closed on c of a customer first won on f counts on as-of days max(c, f+days)
        .. c+days-1 (+amount on the first, -amount the day after the last)."""
        self.views.need(DEALS, "close_date", "is_won", "amount_home", "first_won")

        def events(lo, hi):
            view = self.views.deals
            start = sa.func.greatest(view.c.close_date, plus_days(view.c.first_won, days))
            end = plus_days(view.c.close_date, days)
            counts = sa.and_(
                _won(view.c), view.c.first_won < view.c.close_date, end > day_value(lo)
            )
            return sa.union_all(
                sa.select(*view.c, start.label("day"), _ONE.label("sign")).where(
                    counts, start <= day_value(hi)
                ),
                sa.select(*view.c, end.label("day"), (-_ONE).label("sign")).where(
                    counts, end <= day_value(hi)
                ),
            )

        return self.family(("interval", days), events, {DEALS: 2}, balance=True)

    def _existing_customers_family(self, days: int | None) -> Family:
        """Live customers by the day they become existing for the windows at hand: their first
        won day (cycle windows compare it with the anchor) or, for rolling windows, `days` later."""

        def events(lo, hi):
            view = self.views.customers
            day = view.c.first_won if days is None else plus_days(view.c.first_won, days)
            return sa.select(*view.c, day.label("day")).where(view.c.first_won.is_not(None))

        return self.family(("customers", days), events, {CUSTOMERS: 1}, balance=True)

    def _add_existing_rolling(self, leaf, window, lo, hi):
        wheres = leaf.wheres
        self._need_filters(DEALS, wheres)
        return self._signed(
            leaf,
            self._interval_family(window.days),
            lo,
            hi,
            lambda c: self._condition(c, DEALS, wheres),
        )

    def _add_per_existing_customer(self, leaf, window, lo, hi):
        """revenue_per_existing_customer: one fixed set of live existing customers chosen by their
        own attributes, above (their won deals, narrowed by deal-only filters) and below the line."""
        wheres, key = leaf.wheres, (leaf.spec.name, leaf.basis, leaf.scope)
        self.views.need(DEALS, "close_date", "is_won", "amount_home", "first_won", "customer_live")
        self._need_filters(DEALS, wheres)
        self._need_filters(CUSTOMERS, wheres)
        for where in wheres:  # the customer's own columns as the deal row carries them
            for column, wanted in where.items():
                on_deal = _customer_column_on_deal(column)
                if on_deal in FROM_CUSTOMER[DEALS]:
                    self.views.need_customer_condition(on_deal, wanted)
                else:
                    self.views.need(DEALS, on_deal)

        def chosen_deals(c):
            return sa.and_(
                flag(c.customer_live),
                customer_condition_on_deals(c, wheres, self.views.customer_condition(c)),
                deal_only_condition(c, wheres),
            )

        if window.kind == "rolling":
            customers = self._existing_customers_family(window.days)
            customers.need(lo, hi)
            out = self._signed(
                leaf, self._interval_family(window.days), lo, hi, chosen_deals, with_count=False
            )
            chosen = Aggregate("sum", key, lambda c: condition(c, CUSTOMERS, wheres))
            den = customers.output(key + ("den",), chosen, WindowClass("balance"))
            return {**out, "den": (customers.key, den), "n": (customers.key, den)}
        anchor = day_value(window.anchor)
        rows_key = key + (window.anchor,)
        deals = self._view_family(DEALS, "close_date")
        customers = self._existing_customers_family(None)
        deals.need(lo, hi)
        customers.need(lo, hi)
        revenue = Aggregate(
            "sum",
            rows_key,
            lambda c: sa.and_(_won(c), c.first_won < anchor, chosen_deals(c)),
            ("amount",),
            _amount,
        )
        chosen = Aggregate(
            "sum",
            rows_key,
            lambda c: sa.and_(c.first_won < anchor, condition(c, CUSTOMERS, wheres)),
        )
        num = deals.output(rows_key + ("num",), revenue, window)
        den = customers.output(rows_key + ("den",), chosen, WindowClass("balance"))
        return {"num": (deals.key, num), "den": (customers.key, den), "n": (customers.key, den)}

    def _add_reduced(self, leaf, window, lo, hi):
        spec, wheres, key = leaf.spec, leaf.wheres, (leaf.spec.name, leaf.basis, leaf.scope)
        self.views.need(spec.entity, spec.date, spec.expr)
        self._need_filters(spec.entity, wheres)
        family = self._view_family(spec.entity, spec.date, reduce=True)
        family.need(lo, hi)
        kind = VIEW_KINDS[spec.entity].get(spec.expr, "string")

        def rows(c):
            return sa.and_(
                c[spec.date].is_not(None),
                c[spec.expr].is_not(None),
                self._condition(c, spec.entity, wheres),
            )

        def value(c):
            return c[spec.expr] if kind == "string" else _number(c[spec.expr], kind)

        num = family.output(
            key + ("value",), Aggregate(spec.reduce, key, rows, (spec.name, "value"), value), window
        )
        n = family.output(key + ("n",), Aggregate("sum", key, rows), window)
        return {"num": (family.key, num), "n": (family.key, n)}

    def statements(self) -> dict[tuple, sa.Select]:
        """One statement for every additive family, and one per family of non-additive metrics."""
        additive = [f for f in self.families.values() if not f.reduce]
        statements = {("combined",): combined_statement(additive)} if additive else {}
        statements.update(
            {f.key: f.reduced_statement() for f in self.families.values() if f.reduce}
        )
        return statements

    def read(self, results: dict[tuple, pd.DataFrame]) -> dict[Leaf, Sums]:
        """Each leaf's sums at its windows' ends, from the statements' results."""
        additive = [f for f in self.families.values() if not f.reduce]
        running = {}
        if additive:
            lo, hi = min(f.lo for f in additive), max(f.hi for f in additive)
            days = pd.Index([lo + dt.timedelta(days=i) for i in range(-1, (hi - lo).days + 1)])
            long = results[("combined",)].reset_index()
            long[["family", "aggregate"]] = long[["family", "aggregate"]].astype("int64")
            wide = long.pivot_table(
                index="day", columns=["family", "aggregate"], values="running_sum", aggfunc="first"
            )
            wide = wide.reindex(days).ffill().fillna(0.0)
            running = {f.key: (i, wide) for i, f in enumerate(additive)}
        sums = {}
        for leaf, parts in self.reads:
            size = len(leaf.windows)
            out = Sums(np.zeros(size), np.full(size, np.nan), np.zeros(size))
            for positions, outputs in parts:
                ends = [leaf.windows[i].end for i in positions]
                for measure, (family_key, (key, window)) in outputs.items():
                    family = self.families[family_key]
                    if family.reduce:
                        column = results[family_key][
                            f"o{list(family.outputs).index((key, window))}"
                        ]
                        values = column.reindex(ends).to_numpy(dtype="float64", na_value=np.nan)
                    else:
                        index, wide = running[family_key]
                        column = (index, list(family.aggregates).index(key))
                        series = (
                            wide[column] if column in wide else pd.Series(0.0, index=wide.index)
                        )
                        values = windowed_sums(series, lo, window, ends)
                    getattr(out, measure)[positions] = values
            sums[leaf] = out
        return sums


def _customer_column_on_deal(column: str) -> str:
    return {"team": "customer_team", "owner_id": "customer_owner_id"}.get(column, column)

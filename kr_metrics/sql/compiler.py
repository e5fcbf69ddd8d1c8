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
from kr_metrics.sql.views import VIEW_KINDS, Views, day_value, flag, plus_days

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


@dataclass
class Family:
    """One statement: rows of one view by one day column, every leaf and scope aggregated."""

    key: tuple
    events: Callable[[dt.date, dt.date], sa.FromClause]  # (lo, hi) -> rows with a `day` column
    balance: bool = False  # events before the first day are carried in (running balances)
    reduce: bool = False  # min / max / count_distinct: one reduction per window, by range join
    aggregates: dict[tuple, Callable] = field(default_factory=dict)  # key -> (cols, spine) -> expr
    outputs: dict[tuple, tuple[tuple, WindowClass]] = field(default_factory=dict)
    lo: dt.date | None = None
    hi: dt.date | None = None

    def need(self, lo: dt.date, hi: dt.date) -> None:
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def output(self, aggregate_key: tuple, build: Callable, window: WindowClass) -> str:
        self.aggregates.setdefault(aggregate_key, build)
        key = (aggregate_key, window)
        self.outputs.setdefault(key, (aggregate_key, window))
        return f"o{list(self.outputs).index(key)}"

    def statement(self) -> sa.Select:
        events = self.events(self.lo, self.hi).subquery("events")
        spine_days = (
            sa.func.generate_series(0, (self.hi - self.lo).days).table_valued("i").render_derived()
        )
        spine = sa.select(plus_days(day_value(self.lo), spine_days.c.i).label("day")).cte("spine")
        labels = {key: f"a{i}" for i, key in enumerate(self.aggregates)}
        if self.reduce:
            return self._reduced_statement(events, spine, labels)
        if self.balance:  # carried in: everything before the first day counts on the first day
            others = [column for column in events.c if column.name != "day"]
            clamped = sa.func.greatest(events.c.day, day_value(self.lo)).label("day")
            dated = (
                sa.select(*others, clamped)
                .where(events.c.day <= day_value(self.hi))
                .subquery("dated")
            )
        else:
            dated = (
                sa.select(events)
                .where(events.c.day.between(day_value(self.lo), day_value(self.hi)))
                .subquery("dated")
            )
        daily = (
            sa.select(dated.c.day, *(build(dated.c, None).label(labels[key]) for key, build in self.aggregates.items()))
            .group_by(dated.c.day).cte("daily")
        )  # fmt: skip
        filled = (
            sa.select(spine.c.day, *(sa.func.coalesce(daily.c[label], 0).label(label) for label in labels.values()))
            .select_from(spine.outerjoin(daily, daily.c.day == spine.c.day)).cte("filled")
        )  # fmt: skip
        outputs = [self._windowed(filled, labels[agg], window).label(f"o{i}")
                   for i, (agg, window) in enumerate(self.outputs.values())]  # fmt: skip
        return sa.select(filled.c.day, *outputs).order_by(filled.c.day)

    @staticmethod
    def _windowed(filled, label: str, window: WindowClass) -> sa.ColumnElement:
        column = filled.c[label]
        if window.kind == "fixed":
            column = sa.case((filled.c.day >= day_value(window.start), column))
            frame = (None, 0)
        elif window.kind == "rolling":
            frame = (-(window.days - 1), 0)
        else:
            frame = (None, 0)
        return sa.func.coalesce(sa.func.sum(column).over(order_by=filled.c.day, rows=frame), 0)

    def _reduced_statement(self, events, spine, labels) -> sa.Select:
        """min / max / count_distinct cannot be summed across days: each spine day joins the rows
        of its widest window and every output reduces its own window's rows."""
        joined = spine.outerjoin(
            events, sa.and_(events.c.day <= spine.c.day, events.c.day >= day_value(self.lo))
        )
        outputs = []
        for i, (agg, window) in enumerate(self.outputs.values()):
            start = (day_value(window.start) if window.kind == "fixed"
                     else plus_days(spine.c.day, -(window.days - 1)))  # fmt: skip
            outputs.append(self.aggregates[agg](events.c, events.c.day >= start).label(f"o{i}"))
        return (
            sa.select(spine.c.day, *outputs)
            .select_from(joined)
            .group_by(spine.c.day)
            .order_by(spine.c.day)
        )


# --- what each leaf sums -------------------------------------------------------------------------


def _amount(c) -> sa.ColumnElement:
    return sa.func.coalesce(c.amount_home, sa.literal(0.0, sa.Double))


def _won(c) -> sa.ColumnElement:
    return sa.and_(flag(c.is_won), c.close_date.is_not(None))


def _number(column, kind: str) -> sa.ColumnElement:
    if kind == "bool":
        return sa.case(
            (column.is_(True), sa.literal(1.0, sa.Double)),
            (column.is_(False), sa.literal(0.0, sa.Double)),
        )
    return sa.cast(column, sa.Double)


def _sum(value, rows) -> sa.ColumnElement:
    if value is COUNT:
        return sa.cast(sa.func.count().filter(rows), sa.Double)
    return sa.cast(sa.func.sum(value).filter(rows), sa.Double)


def additive_measures(
    spec: MetricSpec, basis: str, c
) -> tuple[str, str, sa.ColumnElement, object, object]:
    """(entity, day column, rows, num, den) of an additive leaf; den None for sums; COUNT counts."""
    name = spec.name
    if spec.custom:
        entity, date = spec.entity, spec.date
        rows = c[date].is_not(None)
        kind = VIEW_KINDS[entity].get(spec.expr or "", "string")
        value = COUNT
        if spec.expr:
            rows = sa.and_(rows, c[spec.expr].is_not(None))
            value = COUNT if spec.agg == "count" else _number(c[spec.expr], kind)
        return entity, date, rows, value, (COUNT if spec.agg == "average" else None)
    if name in ("nps", "nps_responses", "average_nps_score", "_nps_shares"):
        score = c.score
        rows = sa.true() if name == "nps_responses" else score.is_not(None)
        one, zero = sa.literal(1.0, sa.Double), sa.literal(0.0, sa.Double)
        if name == "nps":
            num = sa.case((score >= 9, one), (score <= 6, -one), else_=zero)
            return NPS_RESPONSES, "submitted_day", rows, num, COUNT
        if name == "_nps_shares":
            return (
                NPS_RESPONSES,
                "submitted_day",
                rows,
                sa.case((score >= 9, one), else_=zero),
                sa.case((score <= 6, one), else_=zero),
            )
        if name == "average_nps_score":
            return NPS_RESPONSES, "submitted_day", rows, sa.cast(score, sa.Double), COUNT
        return NPS_RESPONSES, "submitted_day", rows, COUNT, None
    if name == "pipeline_created":
        return DEALS, "created_day", sa.true(), _amount(c), None
    if name == "win_rate":
        weight = _amount(c) if basis == "amount" else sa.literal(1.0, sa.Double)
        rows = sa.and_(flag(c.is_closed), c.close_date.is_not(None))
        return (
            DEALS,
            "close_date",
            rows,
            sa.case((flag(c.is_won), weight), else_=sa.literal(0.0, sa.Double)),
            weight,
        )
    measures = {
        "won_revenue": (_won(c), _amount(c), None),
        "new_business_revenue": (sa.and_(_won(c), flag(c.deal_type == "new_business")), _amount(c), None),
        "existing_customer_revenue": (_won(c), _amount(c), None),
        "won_deals": (_won(c), COUNT, None),
        "new_customers": (flag(c.get("is_first_won_deal", sa.false())), COUNT, None),
        "average_deal_size": (_won(c), _amount(c), COUNT),
        "sales_cycle_days": (sa.and_(_won(c), c.created_day.is_not(None)),
                             sa.cast(c.close_date - c.created_day, sa.Double), COUNT),
    }  # fmt: skip
    rows, num, den = measures[name]
    return DEALS, "close_date", rows, num, den


# --- the compiler --------------------------------------------------------------------------------


class Compiler:
    """Collects leaves into families; `statements()` then `read()` gives each leaf its sums."""

    def __init__(self, views: Views) -> None:
        self.views = views
        self.families: dict[tuple, Family] = {}
        self.reads: list[tuple[Leaf, list[tuple[list[int], dict[str, tuple[str, str]]]]]] = []

    def family(self, key: tuple, events: Callable, **kw) -> Family:
        if key not in self.families:
            self.families[key] = Family(key, events, **kw)
        return self.families[key]

    def _view_family(self, entity: str, date: str, reduce: bool = False) -> Family:
        def events(lo, hi):
            view = self.views.of(entity)
            return sa.select(*view.c, view.c[date].label("day"))

        return self.family(("reduce" if reduce else "view", entity, date), events, reduce=reduce)

    def add(self, leaf: Leaf) -> None:
        spec = leaf.spec
        parts = []
        for window, positions in window_classes(spec, leaf.windows):
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
    ) -> dict[str, tuple[str, str]]:
        spec, wheres, key = leaf.spec, leaf.wheres, (leaf.spec.name, leaf.scope, leaf.basis)
        if spec.reduce:
            return self._add_reduced(leaf, window, lo, hi)
        if spec.point_in_time:
            return self._add_balance(leaf, window, lo, hi)
        if spec.name in EXISTING:
            self.views.with_first_won = True
            if window.kind == "rolling":
                return self._add_existing_rolling(leaf, window, lo, hi)
        if spec.name == "new_customers":
            self.views.with_first_won_deal = True
        if spec.name == "revenue_per_existing_customer":
            return self._add_per_existing_customer(leaf, window, lo, hi)
        entity, date, has_den = self._shape(spec)
        family = self._view_family(entity, DATE_COLUMN[date])
        family.need(lo, hi)
        anchor = window.anchor

        def rows_of(c):
            rows = sa.and_(additive_measures(spec, leaf.basis, c)[2], condition(c, entity, wheres))
            if spec.name == "existing_customer_revenue":
                rows = sa.and_(rows, c.first_won < day_value(anchor))
            return rows

        def measure(index):
            return lambda c, _: _sum(additive_measures(spec, leaf.basis, c)[index], rows_of(c))

        out = {"num": (family.key, family.output(key + (anchor, "num"), measure(3), window)),
               "n": (family.key, family.output(key + (anchor, "n"), lambda c, _: _sum(COUNT, rows_of(c)), window))}  # fmt: skip
        if has_den:
            out["den"] = (family.key, family.output(key + (anchor, "den"), measure(4), window))
        return out

    @staticmethod
    def _shape(spec: MetricSpec) -> tuple[str, str, bool]:
        """(entity, day column, has a denominator) of an additive leaf."""
        if spec.custom:
            return spec.entity, spec.date, spec.agg == "average"
        if spec.name in ("nps", "nps_responses", "average_nps_score", "_nps_shares"):
            return NPS_RESPONSES, "submitted_day", spec.name != "nps_responses"
        if spec.name == "pipeline_created":
            return DEALS, "created_day", False
        return DEALS, "close_date", spec.combine == "ratio"

    def _add_balance(self, leaf, window, lo, hi):
        """open_pipeline: +amount on the creation day, -amount on the close day, summed up to
        each as-of day (a running balance over the whole history)."""
        wheres, key = leaf.wheres, (leaf.spec.name, leaf.scope, leaf.basis)

        def events(lo_, hi_):
            view = self.views.deals
            opened = view.c.created_day.is_not(None)
            closed = sa.and_(opened, flag(view.c.is_closed), view.c.close_date.is_not(None))
            one = sa.literal(1.0, sa.Double)
            return sa.union_all(
                sa.select(*view.c, view.c.created_day.label("day"), one.label("sign")).where(
                    opened
                ),
                sa.select(*view.c, view.c.close_date.label("day"), (-one).label("sign")).where(
                    closed
                ),
            )

        family = self.family(("balance", "open_pipeline"), events, balance=True)
        family.need(lo, hi)
        num = family.output(
            key + ("num",),
            lambda c, _: _sum(c.sign * _amount(c), condition(c, DEALS, wheres)),
            window,
        )
        n = family.output(
            key + ("n",), lambda c, _: _sum(c.sign, condition(c, DEALS, wheres)), window
        )
        return {"num": (family.key, num), "n": (family.key, n)}

    def _interval_family(self, days: int) -> Family:
        """Won deals of existing customers over `days`-long windows anchored at their start:
        a deal closed on c of a customer first won on f counts on as-of days max(c, f+days)
        .. c+days-1 (+amount on the first, -amount the day after the last)."""

        def events(lo, hi):
            view = self.views.deals
            start, end = (
                sa.func.greatest(view.c.close_date, plus_days(view.c.first_won, days)),
                plus_days(view.c.close_date, days),
            )
            counts = sa.and_(
                _won(view.c), view.c.first_won < view.c.close_date, end > day_value(lo)
            )
            one = sa.literal(1.0, sa.Double)
            return sa.union_all(
                sa.select(*view.c, start.label("day"), one.label("sign")).where(counts, start <= day_value(hi)),
                sa.select(*view.c, end.label("day"), (-one).label("sign")).where(counts, end <= day_value(hi)),
            )  # fmt: skip

        return self.family(("interval", days), events, balance=True)

    def _existing_customers_family(self, days: int | None) -> Family:
        """Live customers by the day they become existing: the day after their first won deal
        (cycle windows compare it with the anchor) or, for rolling windows, `days` later."""

        def events(lo, hi):
            view = self.views.customers
            day = view.c.first_won if days is None else plus_days(view.c.first_won, days)
            return sa.select(*view.c, day.label("day")).where(view.c.first_won.is_not(None))

        return self.family(("customers", days), events, balance=True)

    def _add_existing_rolling(self, leaf, window, lo, hi):
        if leaf.spec.name == "revenue_per_existing_customer":
            return self._add_per_existing_customer(leaf, window, lo, hi)
        wheres, key = leaf.wheres, (leaf.spec.name, leaf.scope, leaf.basis)
        family = self._interval_family(window.days)
        family.need(lo, hi)
        cumulative = WindowClass("balance")
        num = family.output(
            key + ("num",),
            lambda c, _: _sum(c.sign * _amount(c), condition(c, DEALS, wheres)),
            cumulative,
        )
        n = family.output(
            key + ("n",), lambda c, _: _sum(c.sign, condition(c, DEALS, wheres)), cumulative
        )
        return {"num": (family.key, num), "n": (family.key, n)}

    def _add_per_existing_customer(self, leaf, window, lo, hi):
        """revenue_per_existing_customer: one fixed set of live existing customers chosen by their
        own attributes, above (their won deals, narrowed by deal-only filters) and below the line."""
        wheres, key = leaf.wheres, (leaf.spec.name, leaf.scope, leaf.basis)

        def chosen_deals(c):
            return sa.and_(
                flag(c.customer_live),
                customer_condition_on_deals(c, wheres),
                deal_only_condition(c, wheres),
            )

        if window.kind == "rolling":
            deals = self._interval_family(window.days)
            customers = self._existing_customers_family(window.days)
            cumulative = WindowClass("balance")
            num = deals.output(
                key + ("num",), lambda c, _: _sum(c.sign * _amount(c), chosen_deals(c)), cumulative
            )
            den = customers.output(
                key + ("den",),
                lambda c, _: _sum(COUNT, condition(c, CUSTOMERS, wheres)),
                cumulative,
            )
        else:
            anchor = day_value(window.anchor)
            deals = self._view_family(DEALS, "close_date")
            customers = self._existing_customers_family(None)
            num = deals.output(key + (window.anchor, "num"),
                               lambda c, _: _sum(_amount(c), sa.and_(_won(c), c.first_won < anchor, chosen_deals(c))), window)  # fmt: skip
            den = customers.output(key + (window.anchor, "den"),
                                   lambda c, _: _sum(COUNT, sa.and_(c.first_won < anchor, condition(c, CUSTOMERS, wheres))),
                                   WindowClass("balance"))  # fmt: skip
        deals.need(lo, hi)
        customers.need(lo, hi)
        return {"num": (deals.key, num), "den": (customers.key, den), "n": (customers.key, den)}

    def _add_reduced(self, leaf, window, lo, hi):
        spec, wheres, key = leaf.spec, leaf.wheres, (leaf.spec.name, leaf.scope, leaf.basis)
        family = self._view_family(spec.entity, DATE_COLUMN[spec.date], reduce=True)
        family.need(lo, hi)
        kind = VIEW_KINDS[spec.entity].get(spec.expr, "string")

        def rows(c, inside):
            return sa.and_(
                c[spec.date].is_not(None),
                c[spec.expr].is_not(None),
                condition(c, spec.entity, wheres),
                inside,
            )

        def value(c, inside):
            column = c[spec.expr] if kind == "string" else _number(c[spec.expr], kind)
            if spec.reduce == "count_distinct":
                return sa.cast(
                    sa.func.count(sa.distinct(column)).filter(rows(c, inside)), sa.Double
                )
            return getattr(sa.func, spec.reduce)(column).filter(rows(c, inside))

        num = family.output(key + ("value",), value, window)
        n = family.output(
            key + ("n",),
            lambda c, inside: sa.cast(sa.func.count().filter(rows(c, inside)), sa.Double),
            window,
        )
        return {"num": (family.key, num), "n": (family.key, n)}

    def statements(self) -> dict[tuple, sa.Select]:
        return {key: family.statement() for key, family in self.families.items()}

    def read(self, results: dict[tuple, pd.DataFrame]) -> dict[Leaf, Sums]:
        """Each leaf's sums at its windows' ends, from the statements' results (indexed by day)."""
        sums = {}
        for leaf, parts in self.reads:
            size = len(leaf.windows)
            out = Sums(np.zeros(size), np.full(size, np.nan), np.zeros(size))
            for positions, columns in parts:
                ends = [leaf.windows[i].end for i in positions]
                for measure, (family_key, column) in columns.items():
                    frame = results[family_key]
                    values = frame[column].reindex(ends).to_numpy(dtype="float64", na_value=np.nan)
                    getattr(out, measure)[positions] = values
            sums[leaf] = out
        return sums

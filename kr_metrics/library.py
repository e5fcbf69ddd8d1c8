"""The metric library of a definition set: the built-ins plus the custom metrics sales ops declare."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.canonical import CANONICAL_TABLES
from kr_metrics.definitions import DerivedMetric, Location, Problem, RatioMetric, SimpleMetric
from kr_metrics.expressions import ExpressionError, divides_by_zero, is_linear, parse
from kr_metrics.metrics import ACCUMULATING, LEVEL, METRICS, Events, MetricSpec, PreparedData, Scope

# The day each entity's window applies to, unless a simple metric names another date column.
DEFAULT_DATE = {"deals": "close_date", "nps_responses": "submitted_day", "customers": "created_day"}
DATE_COLUMNS = {
    "deals": {"close_date", "created_day"},
    "nps_responses": {"submitted_day"},
    "customers": {"created_day"},
}
NUMERIC_KINDS = {"float", "int", "bool"}
_RANGES = {"ratio": (0.0, 1.0), "count": (0.0, None), "currency": (None, None), "days": (0.0, None)}


def _columns(entity: str) -> dict[str, str]:
    columns = dict(CANONICAL_TABLES[entity].columns)
    if entity == "deals":
        columns.update(segment="string", region="string", industry="string", customer_team="string")
    if entity == "nps_responses":
        columns.update(
            segment="string", region="string", industry="string", team="string", owner_id="string"
        )
    return columns


def _simple_events(metric: SimpleMetric):
    date = metric.date or DEFAULT_DATE[metric.entity]

    def events(data: PreparedData, scope: Scope, anchor: Any, basis: str) -> Events:
        frame = data.frame(metric.entity)
        rows = scope.of(metric.entity) & frame[date].notna().to_numpy()
        if metric.expr and metric.agg in ("count", "count_distinct"):
            # Counts count the rows whose column has a value, of whatever type (ids are text).
            values = np.ones(len(frame))
            rows &= frame[metric.expr].notna().to_numpy()
        elif metric.expr:
            values = pd.to_numeric(frame[metric.expr], errors="coerce").to_numpy(
                dtype="float64", na_value=np.nan
            )
            rows &= ~np.isnan(values)
        else:
            values = np.ones(len(frame))
        day = frame.loc[rows, date]
        if metric.agg == "count":
            return Events(day=day, num=np.ones(int(rows.sum())))
        if metric.agg == "average":
            return Events(day=day, num=values[rows], den=np.ones(int(rows.sum())))
        if metric.agg == "sum":
            return Events(day=day, num=values[rows])
        # min / max / count_distinct: not additive over days; the engine reduces per window.
        raw = frame.loc[rows, metric.expr] if metric.agg == "count_distinct" else values[rows]
        return Events(day=day, num=np.asarray(raw))

    return events


def derived_kind(
    metric: SimpleMetric | RatioMetric | DerivedMetric,
    library: dict[str, MetricSpec],
    tree: Any = None,
) -> str:
    """A custom metric's kind unless its YAML says `kind:` (docs/metrics.md, "Kinds").

    Sums, counts and distinct counts accumulate; averages, minima and maxima are levels; a ratio
    of two metrics is a level (numerator and denominator grow together); a derived metric
    accumulates when every input accumulates and the arithmetic is a sum of them scaled by
    numbers (`won_revenue - existing_customer_revenue`, `won_revenue / 1000`).
    """
    if metric.kind:
        return metric.kind
    if isinstance(metric, SimpleMetric):
        return ACCUMULATING if metric.agg in ("sum", "count", "count_distinct") else LEVEL
    if isinstance(metric, RatioMetric):
        return LEVEL
    inputs_accumulate = all(library[name].kind == ACCUMULATING for name in metric.metrics)
    return ACCUMULATING if inputs_accumulate and tree is not None and is_linear(tree) else LEVEL


def _inputs(metric: RatioMetric | DerivedMetric) -> tuple[str, ...]:
    if isinstance(metric, RatioMetric):
        return (metric.numerator, metric.denominator)
    return tuple(metric.metrics)


def build_library(
    custom: list[SimpleMetric | RatioMetric | DerivedMetric],
    locations: dict[tuple[str, ...], Location],
    known_metrics: dict[str, MetricSpec] | None = None,
) -> tuple[dict[str, MetricSpec], list[Problem]]:
    """Built-ins plus compiled custom metrics, and the problems found while compiling them."""
    library: dict[str, MetricSpec] = dict(known_metrics or METRICS)
    problems: list[Problem] = []

    def at(name: str, field: str | None = None) -> tuple[str, int | None]:
        loc = locations.get(("metric", name, field)) if field else None
        loc = loc if loc and loc.line else locations.get(("metric", name))
        return (loc.file, loc.line) if loc else ("?", None)

    by_name = {m.name: m for m in custom}
    for metric in custom:
        if metric.name in METRICS:
            problems.append(
                Problem(
                    *at(metric.name),
                    f"custom metric '{metric.name}' has the name of a "
                    "built-in metric; choose another name",
                    code="shadows-builtin",
                )
            )
            continue
        if isinstance(metric, SimpleMetric):
            columns = _columns(metric.entity)
            date = metric.date or DEFAULT_DATE[metric.entity]
            if metric.expr and metric.expr not in columns:
                problems.append(
                    Problem(
                        *at(metric.name, "expr"),
                        f"metric '{metric.name}': '{metric.expr}' is not "
                        f"a column of {metric.entity}; columns: {', '.join(sorted(columns))}",
                        code="bad-column",
                    )
                )
                continue
            if (
                metric.expr
                and metric.agg in ("sum", "average", "min", "max")
                and columns[metric.expr] not in NUMERIC_KINDS
            ):
                problems.append(
                    Problem(
                        *at(metric.name, "expr"),
                        f"metric '{metric.name}': agg '{metric.agg}' "
                        f"needs a numeric column, '{metric.expr}' is {columns[metric.expr]}",
                        code="bad-column",
                    )
                )
                continue
            if date not in DATE_COLUMNS[metric.entity]:
                problems.append(
                    Problem(
                        *at(metric.name),
                        f"metric '{metric.name}': date '{date}' is not one of "
                        f"{', '.join(sorted(DATE_COLUMNS[metric.entity]))}",
                        code="bad-column",
                    )
                )
                continue
            bad = [c for c in metric.filter if c not in columns]
            if bad:
                problems.append(
                    Problem(
                        *at(metric.name, "filter"),
                        f"metric '{metric.name}': filter on unknown column(s) {', '.join(bad)}",
                        code="bad-filter",
                    )
                )
                continue
            additive = metric.agg in ("sum", "count", "average")
            low, high = metric.min, metric.max
            if low is None and high is None:
                low, high = _RANGES.get(metric.unit, (None, None))
            library[metric.name] = MetricSpec(
                name=metric.name,
                description=metric.description or f"{metric.agg} of {metric.expr or 'rows'}",
                unit=metric.unit,
                entity=metric.entity,
                valid_range=(low, high),
                nullable=metric.agg != "sum" and metric.agg != "count",
                combine="ratio" if metric.agg == "average" else "sum",
                events=_simple_events(metric),
                reduce=None if additive else metric.agg,
                formula=f"{metric.agg}({metric.expr or '*'}) of {metric.entity} dated by {date} in the window"
                + (f", where {dict(metric.filter)}" if metric.filter else ""),
                custom=True,
                filters=dict(metric.filter),
                kind=derived_kind(metric, library),
                agg=metric.agg,
                expr=metric.expr,
                date=date,
            )

    # ratio and derived metrics, in dependency order; cycles and unknown inputs are errors.
    pending = [m for m in custom if not isinstance(m, SimpleMetric) and m.name not in METRICS]
    trees: dict[str, Any] = {}
    broken: set[str] = set()
    for metric in pending:
        missing = [i for i in _inputs(metric) if i not in by_name and i not in METRICS]
        if missing:
            field = (
                "metrics"
                if isinstance(metric, DerivedMetric)
                else ("numerator" if metric.numerator in missing else "denominator")
            )
            problems.append(
                Problem(
                    *at(metric.name, field),
                    f"metric '{metric.name}' uses unknown metric(s) {', '.join(missing)}",
                    code="unknown-metric",
                )
            )
            broken.add(metric.name)
        elif isinstance(metric, DerivedMetric):
            try:
                trees[metric.name] = parse(metric.expr, set(metric.metrics))
                if division := divides_by_zero(trees[metric.name]):
                    raise ExpressionError(
                        f"'{division}' divides by zero, so the metric never has "
                        "a value; divide by a metric or a number other than 0"
                    )
            except ExpressionError as exc:
                problems.append(
                    Problem(
                        *at(metric.name, "expr"), f"metric '{metric.name}': {exc}", code="bad-expr"
                    )
                )
                broken.add(metric.name)
    waiting = [m for m in pending if m.name not in broken]
    while waiting:
        ready = [m for m in waiting if all(i in library for i in _inputs(m))]
        if not ready:
            break
        for metric in ready:
            inputs = _inputs(metric)
            ratio = isinstance(metric, RatioMetric)
            formula = f"{inputs[0]} ÷ {inputs[1]}" if ratio else metric.expr
            entities = {library[i].entity for i in inputs}
            library[metric.name] = MetricSpec(
                name=metric.name,
                description=metric.description or formula,
                unit=metric.unit,
                entity=entities.pop() if len(entities) == 1 else "deals",
                valid_range=(metric.min, metric.max),
                nullable=True,
                combine="metric_ratio" if ratio else "derived",
                formula=formula,
                custom=True,
                inputs=inputs,
                expression=trees.get(metric.name),
                kind=derived_kind(metric, library, trees.get(metric.name)),
            )
        waiting = [m for m in waiting if m not in ready]
    for metric in waiting:  # what is left can only wait for itself, or for a broken metric
        problems.append(
            Problem(
                *at(metric.name),
                f"metric '{metric.name}' depends on itself through "
                "other metrics (a cycle) or on a metric with errors",
                code="metric-cycle",
            )
        )
    return library, problems

"""The metric library of a definition set: the built-ins plus the custom metrics sales ops declare."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from connectors.schema import CANONICAL_TABLES
from kr_metrics.definitions import DerivedMetric, Location, Problem, RatioMetric, SimpleMetric
from kr_metrics.expressions import ExpressionError, parse
from kr_metrics.metrics import FILTER_COLUMNS, METRICS, Events, MetricSpec, PreparedData, Scope

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
        if metric.expr:
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
            problems.append(Problem(*at(metric.name), f"custom metric '{metric.name}' has the name of a "
                                    "built-in metric; choose another name", code="shadows-builtin"))  # fmt: skip
            continue
        if isinstance(metric, SimpleMetric):
            columns = _columns(metric.entity)
            date = metric.date or DEFAULT_DATE[metric.entity]
            if metric.expr and metric.expr not in columns:
                problems.append(Problem(*at(metric.name, "expr"), f"metric '{metric.name}': '{metric.expr}' is not "
                                        f"a column of {metric.entity}; columns: {', '.join(sorted(columns))}",
                                        code="bad-column"))  # fmt: skip
                continue
            if (
                metric.expr
                and metric.agg in ("sum", "average", "min", "max")
                and columns[metric.expr] not in NUMERIC_KINDS
            ):
                problems.append(Problem(*at(metric.name, "expr"), f"metric '{metric.name}': agg '{metric.agg}' "
                                        f"needs a numeric column, '{metric.expr}' is {columns[metric.expr]}",
                                        code="bad-column"))  # fmt: skip
                continue
            if date not in DATE_COLUMNS[metric.entity]:
                problems.append(Problem(*at(metric.name), f"metric '{metric.name}': date '{date}' is not one of "
                                        f"{', '.join(sorted(DATE_COLUMNS[metric.entity]))}", code="bad-column"))  # fmt: skip
                continue
            bad = [c for c in metric.filter if c not in columns]
            if bad:
                problems.append(Problem(*at(metric.name, "filter"), f"metric '{metric.name}': filter on unknown "
                                        f"column(s) {', '.join(bad)}", code="bad-filter"))  # fmt: skip
                continue
            additive = metric.agg in ("sum", "count", "average")
            low, high = metric.min, metric.max
            if low is None and high is None:
                low, high = _RANGES.get(metric.unit, (None, None))
            library[metric.name] = MetricSpec(
                name=metric.name, description=metric.description or f"{metric.agg} of {metric.expr or 'rows'}",
                unit=metric.unit, entity=metric.entity, valid_range=(low, high),
                nullable=metric.agg != "sum" and metric.agg != "count", combine="ratio" if metric.agg == "average" else "sum",
                events=_simple_events(metric), reduce=None if additive else metric.agg,
                formula=f"{metric.agg}({metric.expr or '*'}) of {metric.entity} dated by {date} in the window"
                + (f", where {dict(metric.filter)}" if metric.filter else ""),
                custom=True, filters=dict(metric.filter),
            )  # fmt: skip

    # ratio and derived metrics, in dependency order; cycles and unknown inputs are errors.
    pending = [m for m in custom if not isinstance(m, SimpleMetric) and m.name not in METRICS]
    trees: dict[str, Any] = {}
    for metric in pending:
        inputs = (
            (metric.numerator, metric.denominator)
            if isinstance(metric, RatioMetric)
            else tuple(metric.metrics)
        )
        missing = [i for i in inputs if i not in by_name and i not in METRICS]
        if missing:
            field = (
                "metrics"
                if isinstance(metric, DerivedMetric)
                else ("numerator" if metric.numerator in missing else "denominator")
            )
            problems.append(Problem(*at(metric.name, field), f"metric '{metric.name}' uses unknown metric(s) "
                                    f"{', '.join(missing)}", code="unknown-metric"))  # fmt: skip
            continue
        if isinstance(metric, DerivedMetric):
            try:
                trees[metric.name] = parse(metric.expr, set(metric.metrics))
            except ExpressionError as exc:
                problems.append(
                    Problem(
                        *at(metric.name, "expr"), f"metric '{metric.name}': {exc}", code="bad-expr"
                    )
                )
                continue
    resolved = set(library)
    progress = True
    while progress:
        progress = False
        for metric in pending:
            if metric.name in resolved or (
                isinstance(metric, DerivedMetric) and metric.name not in trees
            ):
                continue
            inputs = (
                (metric.numerator, metric.denominator)
                if isinstance(metric, RatioMetric)
                else tuple(metric.metrics)
            )
            if not all(i in resolved for i in inputs):
                continue
            entities = {library[i].entity for i in inputs}
            low, high = metric.min, metric.max
            library[metric.name] = MetricSpec(
                name=metric.name,
                description=metric.description or (f"{inputs[0]} ÷ {inputs[1]}" if isinstance(metric, RatioMetric) else metric.expr),
                unit=metric.unit, entity=library[inputs[0]].entity if len(entities) == 1 else "deals",
                valid_range=(low, high), nullable=True,
                combine="metric_ratio" if isinstance(metric, RatioMetric) else "derived",
                formula=f"{inputs[0]} ÷ {inputs[1]}" if isinstance(metric, RatioMetric) else metric.expr,
                custom=True, inputs=inputs, expression=trees.get(metric.name),
            )  # fmt: skip
            resolved.add(metric.name)
            progress = True
    for metric in pending:
        if metric.name not in resolved and not any(
            p.file == at(metric.name)[0] and p.line == at(metric.name)[1] for p in problems
        ):
            if isinstance(metric, DerivedMetric) and metric.name not in trees:
                continue
            problems.append(Problem(*at(metric.name), f"metric '{metric.name}' depends on itself through "
                                    "other metrics (a cycle)", code="metric-cycle"))  # fmt: skip
    # Inputs of a ratio/derived metric over different entities can still share a KR's filters
    # only where the columns exist on each; the KR filter check uses the first input's entity.
    for name, spec in library.items():
        if spec.inputs and spec.entity not in FILTER_COLUMNS:  # pragma: no cover - defensive
            problems.append(Problem(*at(name), f"metric '{name}' has no entity", code="bad-metric"))
    return library, problems

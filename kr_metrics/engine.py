"""The engine: every KR and KPI of the definitions, for one day or a date range, in one pass."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.calendar import each_day
from core.numbers import optional_float
from kr_metrics.definitions import DefinitionSet, KeyResult, definition_version, window_days
from kr_metrics.expressions import evaluate as evaluate_expression
from kr_metrics.metrics import (
    METRICS,
    NPS_SHARES,
    MetricResult,
    MetricSpec,
    PreparedData,
    Scope,
    Window,
    margin_of_error,
    scope_for,
)
from kr_metrics.scoring import key_result_kind, start_value

VALUE_COLUMNS = [
    "as_of",
    "kind",
    "cycle",
    "objective",
    "key",
    "title",
    "team",
    "level",
    "ambition",
    "metric",
    "value",
    "numerator",
    "denominator",
    "sample_size",
    "baseline",
    "target",
    "unit",
    "healthy_min",
    "healthy_max",
    "cycle_start",
    "cycle_end",
    "window_start",
    "window_end",
    "milestones",
    "margin_of_error",
    "definition_version",
    "start_value",
    "metric_kind",
]


def prepare(
    deals: pd.DataFrame,
    customers: pd.DataFrame,
    nps_responses: pd.DataFrame,
    *,
    timezone: str,
) -> PreparedData:
    """Drop deleted rows, join customer attributes and compute local days, once per run."""
    deals = deals[~deals["is_deleted"].fillna(False)]
    customers = customers[~customers["is_deleted"].fillna(False)].reset_index(drop=True)
    responses = nps_responses[~nps_responses["is_deleted"].fillna(False)]

    def local_day(stamps: pd.Series) -> pd.Series:
        # Windows are reporting-timezone days: 23:30 UTC on 31 Dec is already January in Berlin.
        return (
            stamps.dt.tz_convert(timezone)
            .dt.tz_localize(None)
            .dt.normalize()
            .astype("datetime64[ns]")
        )

    attributes = customers[
        ["source", "customer_id", "segment", "region", "industry", "team", "owner_id"]
    ]
    deal_view = deals.merge(
        attributes.rename(columns={"team": "customer_team", "owner_id": "customer_owner_id"}),
        on=["source", "customer_id"],
        how="left",
    )
    deal_view["created_day"] = local_day(deal_view["created_at"])
    deal_view["close_date"] = deal_view["close_date"].astype("datetime64[ns]")
    response_view = responses.merge(attributes, on=["source", "customer_id"], how="left")
    response_view["submitted_day"] = local_day(response_view["submitted_at"])
    customers = customers.assign(created_day=local_day(customers["created_at"]))
    return PreparedData(
        deals=deal_view.reset_index(drop=True),
        customers=customers,
        nps_responses=response_view.reset_index(drop=True),
        timezone=timezone,
        staged=(deals, customers, nps_responses),
    )


def window_for(start: dt.date, end: dt.date, as_of: dt.date) -> Window:
    """The one time-window function: [start, min(as_of, end)] with the cycle start it belongs to."""
    return Window(start=start, end=min(as_of, end), cycle_start=start)


def rolling_window(days: int, as_of: dt.date) -> Window:
    start = as_of - dt.timedelta(days=days - 1)
    return Window(start=start, end=as_of, cycle_start=start)


@dataclass
class Series:
    """A metric's values over a list of windows, as arrays aligned with the windows."""

    value: np.ndarray
    numerator: np.ndarray
    denominator: np.ndarray
    sample: np.ndarray


def _day_index(days: pd.Series, origin: np.datetime64) -> np.ndarray:
    """Whole days since `origin`; undated events (NaT) land far before it and are never counted."""
    values = days.to_numpy(dtype="datetime64[ns]")
    undated = np.isnat(values)
    index = (np.where(undated, origin, values) - origin) // np.timedelta64(1, "D")
    return np.where(undated, np.iinfo(np.int64).min // 2, index.astype(np.int64))


def _cumulative(
    weights: np.ndarray | None, idx: np.ndarray, inside: np.ndarray, before: np.ndarray, length: int
) -> tuple[np.ndarray, float]:
    """Cumulative daily sums (with a leading 0) and the total dated before the range."""
    w = np.ones(len(idx)) if weights is None else np.asarray(weights, dtype="float64")
    daily = np.bincount(idx[inside], weights=w[inside], minlength=length)
    return np.concatenate([[0.0], np.cumsum(daily)]), float(w[before].sum())


def _additive_series(
    spec: MetricSpec, data: PreparedData, scope: Scope, windows: Sequence[Window], basis: str
) -> Series:
    """Sum dated events over each window with one cumulative sum per anchor (cycle start)."""
    n_windows = len(windows)
    value = np.full(n_windows, np.nan)
    numerator = np.full(n_windows, np.nan)
    denominator = np.full(n_windows, np.nan)
    sample = np.zeros(n_windows)
    anchors = pd.Series([w.cycle_start for w in windows])
    groups = anchors.groupby(anchors).indices if spec.anchored else {None: np.arange(n_windows)}
    for anchor, positions in groups.items():
        events = spec.events(data, scope, anchor or windows[positions[0]].cycle_start, basis)
        starts = np.array([np.datetime64(windows[i].start, "D") for i in positions])
        ends = np.array([np.datetime64(windows[i].end, "D") for i in positions])
        origin = starts.min().astype("datetime64[ns]")
        length = int((ends.max() - starts.min()).astype(int)) + 1
        idx = _day_index(events.day, origin)
        undated = idx == np.iinfo(np.int64).min // 2
        inside = (idx >= 0) & (idx < length)
        before = (idx < 0) & ~undated

        num_c, num_open = _cumulative(events.num, idx, inside, before, length)
        den_c = (
            _cumulative(events.den, idx, inside, before, length)[0]
            if events.den is not None
            else None
        )
        n_c, n_open = _cumulative(events.n, idx, inside, before, length)
        a = ((starts - starts.min()).astype(int)).astype(np.int64)
        b = ((ends - starts.min()).astype(int)).astype(np.int64) + 1
        if spec.point_in_time:
            num = num_c[b] + num_open
            cnt = n_c[b] + n_open
            den = None
        else:
            num = num_c[b] - num_c[a]
            cnt = n_c[b] - n_c[a]
            den = den_c[b] - den_c[a] if den_c is not None else None
        with np.errstate(divide="ignore", invalid="ignore"):
            if spec.combine == "sum":
                val, dnm = num, np.full(len(positions), np.nan)
            elif spec.combine == "ratio":
                dnm = den
                val = np.where(den != 0, spec.scale * num / np.where(den != 0, den, 1), np.nan)
            else:  # per_constant: one divisor for the whole window (e.g. existing customers)
                constant = events.den_constant or 0.0
                dnm = np.full(len(positions), constant)
                val = np.full(len(positions), np.nan) if constant == 0 else num / constant
                cnt = dnm
        value[positions] = val
        numerator[positions] = num
        denominator[positions] = dnm
        sample[positions] = cnt
    return Series(value, numerator, denominator, sample)


def _reduced_series(
    spec: MetricSpec, data: PreparedData, scope: Scope, windows: Sequence[Window], basis: str
) -> Series:
    """min / max / count_distinct cannot be summed across days: reduce each window's events."""
    events = spec.events(data, scope, windows[0].cycle_start, basis)
    days = events.day.to_numpy(dtype="datetime64[ns]")
    values = pd.Series(events.num)
    out = np.full(len(windows), np.nan)
    sample = np.zeros(len(windows))
    for i, window in enumerate(windows):  # one reduction per window (day), not per row
        inside = (days >= np.datetime64(window.start)) & (days <= np.datetime64(window.end))
        chosen = values[inside]
        sample[i] = len(chosen)
        if spec.reduce == "count_distinct":
            out[i] = chosen.nunique()
        elif len(chosen):
            out[i] = chosen.min() if spec.reduce == "min" else chosen.max()
    return Series(out, out.copy(), np.full(len(windows), np.nan), sample)


class PandasBackend:
    """Computes leaf metrics from prepared frames with numpy: scopes are boolean masks.

    The engine's orchestration (`evaluate_with`, `series_of`) only talks to a backend, so the
    compiled SQL engine (kr_metrics.sql) reuses it unchanged with scopes that are filters.
    """

    def __init__(self, data: PreparedData) -> None:
        self.data = data
        self._scopes: dict[str, Scope] = {}

    def scope(self, where: dict) -> Scope:
        cache_key = json.dumps(where, sort_keys=True, default=str)
        if cache_key not in self._scopes:
            self._scopes[cache_key] = scope_for(self.data, where)
        return self._scopes[cache_key]

    def narrow(self, scope: Scope, filters: dict) -> Scope:
        return scope & scope_for(self.data, filters)

    def leaf(self, spec: MetricSpec, scope: Scope, windows: Sequence[Window], basis: str) -> Series:
        if spec.reduce:
            return _reduced_series(spec, self.data, scope, windows, basis)
        return _additive_series(spec, self.data, scope, windows, basis)


def series_of(
    spec: MetricSpec,
    library: dict[str, MetricSpec],
    backend,
    scope,
    windows: Sequence[Window],
    *,
    basis: str = "count",
) -> Series:
    """`spec` over each window, for one scope: ratios and derived metrics from their inputs."""
    if spec.filters:
        scope = backend.narrow(scope, spec.filters)
    if spec.combine in ("metric_ratio", "derived"):
        inputs = {
            name: series_of(library[name], library, backend, scope, windows, basis=basis)
            for name in spec.inputs
        }
        return combine_inputs(spec, inputs, len(windows))
    return backend.leaf(spec, scope, windows, basis)


def combine_inputs(spec: MetricSpec, inputs: dict[str, Series], n_windows: int) -> Series:
    """A ratio of two metrics or a derived expression, window by window."""
    if spec.combine == "metric_ratio":
        num, den = inputs[spec.inputs[0]].value, inputs[spec.inputs[1]].value
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(den != 0, num / np.where(den != 0, den, 1), np.nan)
        return Series(value, num, den, inputs[spec.inputs[1]].sample)
    value = evaluate_expression(spec.expression, {k: v.value for k, v in inputs.items()})
    value = np.broadcast_to(value, (n_windows,)).astype("float64")
    sample = np.min(np.vstack([v.sample for v in inputs.values()]), axis=0)
    return Series(value, value.copy(), np.full(n_windows, np.nan), sample)


def metric_series(
    spec: MetricSpec,
    library: dict[str, MetricSpec],
    data: PreparedData,
    scope: Scope,
    windows: Sequence[Window],
    *,
    basis: str = "count",
) -> Series:
    """`spec` over each window, for one scope: the single computation both modes share."""
    return series_of(spec, library, PandasBackend(data), scope, windows, basis=basis)


def metric_over_windows(
    spec: MetricSpec,
    library: dict[str, MetricSpec],
    data: PreparedData,
    scope: Scope,
    windows: Sequence[Window],
    *,
    basis: str = "count",
) -> list[MetricResult]:
    series = metric_series(spec, library, data, scope, windows, basis=basis)
    return [
        MetricResult(
            optional_float(series.value[i]),
            optional_float(series.numerator[i]),
            optional_float(series.denominator[i]),
            int(series.sample[i]),
        )
        for i in range(len(windows))
    ]


def metric_value(
    spec: MetricSpec, data: PreparedData, window: Window, scope: Scope, basis: str = "count"
) -> MetricResult:
    """One metric over one window (history mode gives the same numbers for every day)."""
    return metric_over_windows(spec, {spec.name: spec}, data, scope, [window], basis=basis)[0]


def _cycle_windows(
    kr: KeyResult, cycle_start: dt.date, cycle_end: dt.date, days: list[dt.date]
) -> list[Window]:
    rolling = window_days(kr.window)
    if rolling:
        return [rolling_window(rolling, day) for day in days]
    return [window_for(cycle_start, cycle_end, day) for day in days]


def evaluate_history(
    definitions: DefinitionSet,
    data: PreparedData,
    start: dt.date,
    end: dt.date,
    *,
    kpis_from: dt.date | None = None,
) -> pd.DataFrame:
    """Every KR and KPI value from start to end, computed with pandas (the test oracle of the
    compiled engine); see `evaluate_with`."""
    return evaluate_with(definitions, PandasBackend(data), start, end, kpis_from=kpis_from)


def evaluate_with(
    definitions: DefinitionSet,
    backend,
    start: dt.date,
    end: dt.date,
    *,
    kpis_from: dt.date | None = None,
) -> pd.DataFrame:
    """One row per (day, KR of a cycle running that day) and per (day, KPI), start..end inclusive.

    Each KR's whole date range comes from one cumulative pass over its events, so a 90-day
    backfill costs about as much as a single day; filters shared by several KRs are evaluated
    once. The numbers equal those of evaluating each day on its own.
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    library = definitions.library or METRICS
    all_days = each_day(start, end)
    scope = backend.scope

    frames = []
    for loaded, kr in definitions.key_results():
        cycle, objective = loaded.cycle, loaded.objective
        days = [d for d in all_days if cycle.contains(d)]
        if not days:
            continue
        spec = library[kr.metric]
        kr_scope = scope(kr.where)
        windows = _cycle_windows(kr, cycle.start, cycle.end, days)
        series = series_of(spec, library, backend, kr_scope, windows, basis=kr.basis)
        margin = _margin(kr.metric, kr.basis, series, backend, kr_scope, windows)
        baseline = baseline_with(kr, cycle, spec, library, backend, kr_scope)
        target = kr.target_for(baseline)
        kind = key_result_kind(spec.kind, rolling=window_days(kr.window) is not None)
        version = definition_version(cycle, objective.model_copy(update={"key_results": [kr]}))
        frames.append(
            pd.DataFrame(
                {
                    "as_of": days,
                    "kind": "kr",
                    "cycle": cycle.key,
                    "objective": objective.key,
                    "key": kr.key,
                    "title": kr.title,
                    "team": objective.team or _team_filter(kr.where),
                    "level": objective.level.value,
                    "ambition": objective.ambition.value,
                    "metric": kr.metric,
                    "value": series.value,
                    "numerator": series.numerator,
                    "denominator": series.denominator,
                    "sample_size": series.sample,
                    "baseline": baseline,
                    "target": target,
                    "unit": kr.unit,
                    "healthy_min": np.nan,
                    "healthy_max": np.nan,
                    "cycle_start": cycle.start,
                    "cycle_end": cycle.end,
                    "window_start": [w.start for w in windows],
                    "window_end": [w.end for w in windows],
                    "milestones": json.dumps(
                        [[m.date.isoformat(), m.target] for m in kr.milestones]
                    )
                    if kr.milestones
                    else None,
                    "margin_of_error": margin,
                    "definition_version": version,
                    "start_value": start_value(kind, baseline, kr.start),
                    "metric_kind": kind,
                }
            )
        )
    kpi_days = [d for d in all_days if kpis_from is None or d >= kpis_from]
    for kpi in definitions.kpis if kpi_days else ():
        spec = library[kpi.metric]
        windows = [rolling_window(window_days(kpi.window) or 90, day) for day in kpi_days]
        series = series_of(spec, library, backend, scope(kpi.where), windows, basis=kpi.basis)
        frames.append(
            pd.DataFrame(
                {
                    "as_of": kpi_days,
                    "kind": "kpi",
                    "cycle": None,
                    "objective": None,
                    "key": kpi.key,
                    "title": kpi.title,
                    "team": kpi.team,
                    "level": None,
                    "ambition": None,
                    "metric": kpi.metric,
                    "value": series.value,
                    "numerator": series.numerator,
                    "denominator": series.denominator,
                    "sample_size": series.sample,
                    "baseline": np.nan,
                    "target": np.nan,
                    "unit": None,
                    "healthy_min": kpi.healthy.min,
                    "healthy_max": kpi.healthy.max,
                    "cycle_start": None,
                    "cycle_end": None,
                    "window_start": [w.start for w in windows],
                    "window_end": [w.end for w in windows],
                    "milestones": None,
                    "margin_of_error": _margin(
                        kpi.metric, kpi.basis, series, backend, scope(kpi.where), windows
                    ),
                    "definition_version": definition_version(kpi),
                }
            )
        )
    frames = [f for f in frames if not f.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=VALUE_COLUMNS)
    frame = frame.reindex(columns=VALUE_COLUMNS)
    for col in (
        "value",
        "numerator",
        "denominator",
        "baseline",
        "target",
        "healthy_min",
        "healthy_max",
        "start_value",
    ):
        frame[col] = pd.to_numeric(frame[col]).astype("float64")
    frame["sample_size"] = frame["sample_size"].fillna(0).astype("int64")
    return frame


def evaluate(definitions: DefinitionSet, data: PreparedData, as_of: dt.date) -> pd.DataFrame:
    """Every KR of every cycle running on `as_of`, and every KPI; see VALUE_COLUMNS."""
    return evaluate_history(definitions, data, as_of, as_of)


def _margin(
    metric: str, basis: str, series: Series, backend, scope, windows: Sequence[Window]
) -> np.ndarray:
    if metric == "nps":
        shares = series_of(NPS_SHARES, METRICS, backend, scope, windows)
        return margin_of_error(
            metric, series.value, series.sample, shares.numerator, shares.denominator
        )
    if metric == "win_rate" and basis == "count":
        return margin_of_error(metric, series.value, series.sample)
    return np.full(len(windows), np.nan)


def _team_filter(where: dict) -> str | None:
    team = where.get("team")
    return team if isinstance(team, str) else None


def _baseline(
    kr: KeyResult, cycle, spec: MetricSpec, library, data: PreparedData, scope: Scope
) -> float | None:
    """The KR's baseline computed with pandas (the test oracle of the compiled engine's
    `kr_metrics.sql.engine.computed_baselines`); see `baseline_with`."""
    return baseline_with(kr, cycle, spec, library, PandasBackend(data), scope)


def baseline_with(kr: KeyResult, cycle, spec: MetricSpec, library, backend, scope) -> float | None:
    """The KR's baseline: its number, or the metric over the whole previous cycle (through any
    backend: the compiled engine and the pandas oracle share this)."""
    if not kr.baseline_is_computed:
        return float(kr.baseline)
    previous_start, previous_end = cycle.previous()
    rolling = window_days(kr.window)
    window = (
        rolling_window(rolling, previous_end)
        if rolling
        else Window(previous_start, previous_end, previous_start)
    )
    value = series_of(spec, library, backend, scope, [window], basis=kr.basis).value[0]
    return optional_float(value)


def explain_key_result(
    definitions: DefinitionSet, loaded, kr: KeyResult, data: PreparedData, as_of: dt.date
) -> dict:
    """Everything `krpulse definitions explain` shows: formula inputs and the records behind them."""
    from kr_metrics.explain import records_behind

    library = definitions.library or METRICS
    spec = library[kr.metric]
    cycle = loaded.cycle
    day = min(max(as_of, cycle.start), cycle.end)
    (window,) = _cycle_windows(kr, cycle.start, cycle.end, [day])
    scope = scope_for(data, kr.where)
    if spec.filters:
        scope = scope & scope_for(data, spec.filters)
    (result,) = metric_over_windows(spec, library, data, scope, [window], basis=kr.basis)
    records = pd.DataFrame()
    if spec.events is not None and not spec.reduce:
        behind = records_behind(spec, data, scope, window, basis=kr.basis)
        records = behind.records.reindex(
            behind.records["contribution"].abs().sort_values(ascending=False, kind="stable").index
        )
    return {
        "cycle": cycle.key,
        "kr": kr.key,
        "metric": kr.metric,
        "formula": spec.formula,
        "filters": dict(kr.where),
        "window_start": window.start,
        "window_end": window.end,
        "value": result.value,
        "numerator": result.numerator,
        "denominator": result.denominator,
        "sample_size": result.sample_size,
        "records": records,
    }

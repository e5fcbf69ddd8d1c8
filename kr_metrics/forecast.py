"""Forecast: each KR's projected end-of-cycle value and grade, from its own daily series.

The method (documented in docs/forecast.md, back-tested by bench/backtest_forecast.py):

- **Cumulative KRs** (sums and "per customer" values over the cycle so far, e.g. won_revenue,
  revenue_per_existing_customer): the value grows with time, so the forecast adds the recent
  pace for the days left: `value + pace × remaining_days`, where the pace is the average daily
  increase over the last `PACE_DAYS` days (or since the cycle started, if that is shorter).
- **Rates** (win_rate, nps, averages over the cycle so far): the end value is the rate over the
  whole cycle; the best predictor in the back-test was the cycle-to-date rate itself, so that
  is the forecast (projecting the recent numerator and denominator paces was worse).
- **Levels** (balances such as open_pipeline, rolling windows, custom ratio/derived metrics):
  a least-squares line through the last `PACE_DAYS` daily values, extended to the cycle end.

On the cycle's last day the forecast is the value itself. The forecast grade applies the KR's
scoring to the forecast value.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kr_metrics.metrics import METRICS, MetricSpec

PACE_DAYS = 28


def forecast_kind(spec: MetricSpec | None, window_start_is_cycle_start: bool) -> str:
    if spec is None or spec.point_in_time or spec.reduce or not window_start_is_cycle_start:
        return "level"
    if spec.combine in ("sum", "per_constant"):
        return "cumulative"
    if spec.combine == "ratio":
        return "rate"
    return "level"


def _lagged(values: np.ndarray, lag: np.ndarray) -> np.ndarray:
    index = np.arange(len(values)) - lag
    return values[np.clip(index, 0, None)]


def _forecast_one(kr: pd.DataFrame, spec: MetricSpec | None) -> np.ndarray:
    """Projected end value for each day of one KR's series (days ascending, from cycle start)."""
    days = pd.to_datetime(kr["as_of"])
    start = pd.to_datetime(kr["cycle_start"])
    end = pd.to_datetime(kr["cycle_end"])
    elapsed = ((days - start).dt.days + 1).to_numpy(dtype="float64")
    remaining = ((end - days).dt.days).clip(lower=0).to_numpy(dtype="float64")
    lag = np.minimum(PACE_DAYS, elapsed - 1).astype(int)
    value = kr["value"].to_numpy(dtype="float64")
    from_cycle_start = bool((pd.to_datetime(kr["window_start"]) == start).all())
    kind = forecast_kind(spec, from_cycle_start)

    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "cumulative":
            filled = np.nan_to_num(value)
            # On day one the pace is the first day's value itself (the cycle started from zero).
            pace = np.where(lag > 0, (filled - _lagged(filled, lag)) / np.maximum(lag, 1), filled)
            projected = value + pace * remaining
            if spec is not None and spec.combine == "per_constant":
                projected = np.where(np.isnan(value), np.nan, projected)
            return projected
        if kind == "rate":
            # The cycle-to-date rate predicted the end-of-cycle rate better than projecting the
            # recent numerator and denominator paces (back-test in docs/forecast.md).
            return value.copy()
    series = pd.Series(value)
    x = pd.Series(np.arange(len(value), dtype="float64"))
    window = series.rolling(PACE_DAYS, min_periods=3)
    slope = (
        x.rolling(PACE_DAYS, min_periods=3).cov(series) / x.rolling(PACE_DAYS, min_periods=3).var()
    )
    mean_x = x.rolling(PACE_DAYS, min_periods=3).mean()
    fitted_now = window.mean() + slope * (x - mean_x)
    projected = (fitted_now + slope * pd.Series(remaining)).to_numpy()
    return np.where(np.isnan(projected), value, projected)


def add_forecasts(
    history: pd.DataFrame, library: dict[str, MetricSpec] | None = None
) -> pd.DataFrame:
    """Add `forecast_value` (and `forecast_grade` where baseline/target exist) to KR rows.

    `history` must hold each KR's rows from its cycle start (what evaluate_history gives when
    started at the cycle start); KPI rows get no forecast.
    """
    library = library or METRICS
    out = history.copy()
    out["forecast_value"] = np.nan
    krs = out[out["kind"] == "kr"].sort_values("as_of")
    for (_, _), rows in krs.groupby(["cycle", "key"], sort=False):  # one pass per KR, not per row
        out.loc[rows.index, "forecast_value"] = _forecast_one(
            rows, library.get(rows["metric"].iloc[0])
        )
    span = out["target"] - out["baseline"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["forecast_grade"] = ((out["forecast_value"] - out["baseline"]) / span).clip(0.0, 1.0)
    out.loc[span == 0, "forecast_grade"] = np.nan
    return out


def backtest(definitions, data, cycles, checkpoints=(30, 45, 60)) -> pd.DataFrame:
    """Forecast accuracy on closed cycles: each KR of `definitions` re-run over each of `cycles`.

    For every (cycle, KR, checkpoint day) the forecast made on that day is compared with the
    value the KR actually reached on the cycle's last day. Returns one row per comparison with
    `error` (forecast − actual) and `abs_pct_error` (|error| ÷ |actual|, NaN when actual is 0).
    """
    from kr_metrics.definitions import DefinitionSet, LoadedObjective
    from kr_metrics.engine import evaluate_history

    rows = []
    for cycle in cycles:
        moved = DefinitionSet(
            cycles={cycle.key: cycle},
            objectives=[
                LoadedObjective(cycle, lo.objective, lo.file) for lo in definitions.objectives
            ],
            library=definitions.library,
        )
        history = add_forecasts(
            evaluate_history(moved, data, cycle.start, cycle.end), moved.library
        )
        history = history[history["kind"] == "kr"]
        actual = history[history["as_of"] == cycle.end].set_index("key")["value"]
        for day in checkpoints:
            as_of = cycle.start + dt.timedelta(days=day - 1)
            made = history[history["as_of"] == as_of].set_index("key")
            for key, row in made.iterrows():  # a handful of KRs per checkpoint
                rows.append({"cycle": cycle.key, "kr": key, "metric": row["metric"], "day": day,
                             "forecast": row["forecast_value"], "naive": row["value"],
                             "actual": actual.get(key, np.nan)})  # fmt: skip
    result = pd.DataFrame(rows)
    result["error"] = result["forecast"] - result["actual"]
    with np.errstate(divide="ignore", invalid="ignore"):
        result["abs_pct_error"] = (result["error"].abs() / result["actual"].abs()).replace(
            np.inf, np.nan
        )
        result["naive_abs_pct_error"] = (
            (result["naive"] - result["actual"]).abs() / result["actual"].abs()
        ).replace(np.inf, np.nan)
    return result

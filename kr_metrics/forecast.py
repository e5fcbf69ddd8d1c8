"""Forecast: each KR's projected end-of-cycle value and grade, from its own daily series.

The method (documented in docs/forecast.md, back-tested by bench/backtest_forecast.py) follows
the KR's kind (kr_metrics.scoring, docs/metrics.md "Kinds"):

- **Accumulating KRs** (won revenue, revenue per existing customer, ...): the value grows with
  time, so the forecast adds the recent pace for the days left:
  `value + pace × remaining_days`, where the pace is the average daily increase over the last
  `PACE_DAYS` days (or since the cycle started, if that is shorter).
- **Cycle-to-date rates** (win rate, NPS, averages over the cycle): today's numerator and
  denominator plus the days left at the recent volume and at the trend of the *daily* rate
  (weighted least squares over the last `PACE_DAYS` days), the trend shrunk by how clearly the
  data show it (`_cycle_rate`).
- **Other levels** (balances such as open_pipeline, rolling windows, custom ratio/derived
  metrics): today's value moved along the least-squares trend of the last `PACE_DAYS` values,
  the slope shrunk the same way.
A KR moving along a straight line (its expected path) keeps its whole trend and is forecast to
reach where the line goes; a noisy series without a clear trend keeps today's value.

Before `MIN_FORECAST_DAYS` (10) days there is no forecast (too early: one big deal on day one is
not a pace); on the cycle's last day the forecast is the value itself. The forecast grade
applies the KR's scoring (from its start value) to the forecast value.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kr_metrics.metrics import ACCUMULATING, METRICS, MetricSpec

PACE_DAYS = 28
# Days with data before a trend is fitted at all (a few points fit anything), and so the days
# before there is any forecast: one big deal on day one is not a pace.
MIN_TREND_POINTS = 10
MIN_FORECAST_DAYS = MIN_TREND_POINTS
SIGNIFICANCE = 2.0  # standard errors a trend's slope must clear before it is extrapolated


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
    value = kr["value"].to_numpy(dtype="float64")
    lag = np.minimum(PACE_DAYS, elapsed - 1).astype(int)
    from_cycle_start = bool((pd.to_datetime(kr["window_start"]) == start).all())
    if kr["metric_kind"].iloc[0] == ACCUMULATING:
        filled = np.nan_to_num(value)
        with np.errstate(divide="ignore", invalid="ignore"):
            pace = np.where(lag > 0, (filled - _lagged(filled, lag)) / np.maximum(lag, 1), filled)
        projected = value + pace * remaining
    elif from_cycle_start and spec is not None and spec.combine == "ratio" and not spec.reduce:
        projected = _cycle_rate(kr, value, remaining, lag, spec.scale)
    else:
        projected = _least_squares(value, remaining)
    if spec is not None:  # a win rate is not forecast above 100 %, an NPS not below −100
        low, high = spec.valid_range
        projected = np.clip(
            projected, -np.inf if low is None else low, np.inf if high is None else high
        )
    projected = np.where(elapsed < MIN_FORECAST_DAYS, np.nan, projected)
    return np.where(remaining == 0, value, projected)


def _shrinkage(slope: pd.Series, slope_variance: pd.Series) -> pd.Series:
    """How much of a fitted trend to keep: 1 − SIGNIFICANCE² × variance ÷ slope², at least 0.

    A straight line (no residual) keeps its whole slope; a slope within two standard errors of
    zero is noise and is dropped (positive-part James–Stein shrinkage with a 95 % threshold):
    extrapolated over the weeks left in a cycle, even half of a noise slope misleads.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = slope_variance.clip(lower=0.0) / slope**2
    return (1.0 - SIGNIFICANCE**2 * ratio).clip(lower=0.0).fillna(0.0)


def _least_squares(value: np.ndarray, remaining: np.ndarray) -> np.ndarray:
    """The current value moved along the least-squares line of the last PACE_DAYS values,
    its slope shrunk by how clearly the data show it (_shrinkage)."""
    series = pd.Series(value)
    x = pd.Series(np.arange(len(value), dtype="float64"))
    rolling = {"window": PACE_DAYS, "min_periods": MIN_TREND_POINTS}
    n = series.rolling(**rolling).count()
    var_x = x.rolling(**rolling).var()
    slope = x.rolling(**rolling).cov(series) / var_x
    residual = (series.rolling(**rolling).var() - slope**2 * var_x) * (n - 1) / (n - 2)
    weight = _shrinkage(slope, residual / ((n - 1) * var_x))
    projected = (series + weight * slope * pd.Series(remaining)).to_numpy()
    return np.where(np.isnan(projected), value, projected)


def _cycle_rate(
    kr: pd.DataFrame, value: np.ndarray, remaining: np.ndarray, lag: np.ndarray, scale: float
) -> np.ndarray:
    """A cycle-to-date rate (win rate, NPS, averages) at its end: today's numerator and
    denominator plus the days left, at the recent volume and at the daily rate's trend.

    The trend is a weighted least-squares line through the last PACE_DAYS *daily* rates
    (weights: each day's denominator), shrunk by how clearly the data show it. The daily rates
    are independent where the cycle-to-date series is a running average that looks smooth even
    when it is only noise. A KR moving along a straight path keeps its whole trend and is
    forecast to arrive where its path goes; without a clear trend the forecast is the
    cycle-to-date rate, the better predictor in the back-test (docs/forecast.md).
    """
    numerator = kr["numerator"].to_numpy(dtype="float64")
    denominator = kr["denominator"].to_numpy(dtype="float64")
    daily_num = np.diff(np.nan_to_num(numerator), prepend=0.0) * scale
    daily_den = np.diff(np.nan_to_num(denominator), prepend=0.0)
    t = np.arange(len(value), dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(daily_den > 0, daily_num / daily_den, 0.0)
    w = np.where(daily_den > 0, daily_den, 0.0)
    sums = (
        pd.DataFrame(
            {
                "w": w,
                "wt": w * t,
                "wr": w * rate,
                "wtt": w * t * t,
                "wtr": w * t * rate,
                "wrr": w * rate * rate,
                "k": (w > 0).astype(float),
            }
        )
        .rolling(PACE_DAYS, min_periods=1)
        .sum()
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ctt = sums["wtt"] - sums["wt"] ** 2 / sums["w"]
        ctr = sums["wtr"] - sums["wt"] * sums["wr"] / sums["w"]
        crr = sums["wrr"] - sums["wr"] ** 2 / sums["w"]
        slope = ctr / ctt
        fitted_now = sums["wr"] / sums["w"] + slope * (pd.Series(t) - sums["wt"] / sums["w"])
        slope_variance = (crr - slope * ctr) / (sums["k"] - 2) / ctt
    usable = (sums["k"] >= MIN_TREND_POINTS) & np.isfinite(slope) & np.isfinite(fitted_now)
    weight = _shrinkage(slope, slope_variance).where(usable, 0.0).to_numpy()
    slope, fitted_now = slope.fillna(0.0).to_numpy(), fitted_now.fillna(0.0).to_numpy()
    filled_den = np.nan_to_num(denominator)
    with np.errstate(divide="ignore", invalid="ignore"):
        volume = np.where(lag > 0, (filled_den - _lagged(filled_den, lag)) / np.maximum(lag, 1), 0)
        level = value + weight * (fitted_now - value)  # today's rate, trend-weighted
        future_num = volume * (remaining * level + weight * slope * remaining * (remaining + 1) / 2)
        future_den = volume * remaining
        current_num = value * filled_den
        projected = (current_num + future_num) / (filled_den + future_den)
    return np.where(np.isfinite(projected), projected, value)


def add_forecasts(
    history: pd.DataFrame, library: dict[str, MetricSpec] | None = None
) -> pd.DataFrame:
    """Add `forecast_value` and `forecast_grade` to KR rows.

    `history` must hold each KR's rows from its cycle start (what evaluate_history gives when
    started at the cycle start); KPI rows get no forecast. Rows without `metric_kind` take it
    from the metric library (hand-made frames, tests).
    """
    out = history.copy()
    if "metric_kind" not in out.columns:
        kinds = {name: spec.kind for name, spec in (library or METRICS).items()}
        out["metric_kind"] = out["metric"].map(kinds)
    if "start_value" not in out.columns:
        out["start_value"] = np.where(out["metric_kind"] == ACCUMULATING, 0.0, out["baseline"])
    out["forecast_value"] = np.nan
    krs = out[out["kind"] == "kr"].sort_values("as_of")
    for (_, _), rows in krs.groupby(["cycle", "key"], sort=False):  # one pass per KR, not per row
        out.loc[rows.index, "forecast_value"] = _forecast_one(
            rows, (library or METRICS).get(rows["metric"].iloc[0])
        )
    span = out["target"] - out["start_value"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["forecast_grade"] = ((out["forecast_value"] - out["start_value"]) / span).clip(0.0, 1.0)
    out.loc[span == 0, "forecast_grade"] = np.nan
    return out


def backtest(definitions, staged, cycles, checkpoints=(30, 45, 60)) -> pd.DataFrame:
    """Forecast accuracy on closed cycles: each KR of `definitions` re-run over each of `cycles`.

    The KRs are moved into every cycle of `cycles` and the compiled engine computes all of them
    over `staged` (a `kr_metrics.sql.engine.Staged`: DuckDB frames or the store's staging
    tables) in one history-mode run from the first cycle's start to the last one's end. For
    every (cycle, KR, checkpoint day) the forecast made on that day is compared with the value
    the KR actually reached on the cycle's last day. Returns one row per comparison, by cycle,
    checkpoint and KR, with `error` (forecast − actual) and `abs_pct_error` (|error| ÷ |actual|,
    NaN when actual is 0).
    """
    from kr_metrics.definitions import DefinitionSet, LoadedObjective
    from kr_metrics.sql.engine import evaluate_history

    cycles = list(cycles)
    moved = DefinitionSet(
        cycles={cycle.key: cycle for cycle in cycles},
        objectives=[
            LoadedObjective(cycle, lo.objective, lo.file)
            for cycle in cycles
            for lo in definitions.objectives
        ],
        library=definitions.library,
    )
    start, end = min(c.start for c in cycles), max(c.end for c in cycles)
    history = add_forecasts(evaluate_history(moved, staged, start, end), moved.library)
    history = history[history["kind"] == "kr"].reset_index(drop=True)
    history["order"] = history.index  # the engine's KR order, kept within a checkpoint
    ends = pd.DataFrame({"cycle": [c.key for c in cycles], "as_of": [c.end for c in cycles]})
    actual = history.merge(ends, on=["cycle", "as_of"])[["cycle", "key", "value"]]
    made_on = pd.DataFrame(
        [
            (position, cycle.key, checkpoint, day, cycle.start + dt.timedelta(days=day - 1))
            for position, cycle in enumerate(cycles)
            for checkpoint, day in enumerate(checkpoints)
        ],
        columns=["position", "cycle", "checkpoint", "day", "as_of"],
    )
    made = made_on.merge(history, on=["cycle", "as_of"]).sort_values(
        ["position", "checkpoint", "order"], kind="stable"
    )
    made = made.merge(actual.rename(columns={"value": "actual"}), on=["cycle", "key"], how="left")
    result = pd.DataFrame(
        {
            "cycle": made["cycle"],
            "kr": made["key"],
            "metric": made["metric"],
            "day": made["day"],
            "forecast": made["forecast_value"],
            "naive": made["value"],
            "actual": made["actual"],
        }
    ).reset_index(drop=True)
    result["error"] = result["forecast"] - result["actual"]
    with np.errstate(divide="ignore", invalid="ignore"):
        result["abs_pct_error"] = (result["error"].abs() / result["actual"].abs()).replace(
            np.inf, np.nan
        )
        result["naive_abs_pct_error"] = (
            (result["naive"] - result["actual"]).abs() / result["actual"].abs()
        ).replace(np.inf, np.nan)
    return result

"""Forecasts on series with a known trend, for each kind of metric."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kr_metrics.forecast import add_forecasts

START, END = dt.date(2026, 10, 1), dt.date(2026, 12, 30)  # 91 days


def series(metric, values, numerator=None, denominator=None, days=40, window_start=START):
    as_of = [START + dt.timedelta(days=i) for i in range(days)]
    return pd.DataFrame({
        "as_of": as_of, "kind": "kr", "cycle": "c", "key": metric, "metric": metric,
        "value": values, "numerator": numerator if numerator is not None else values,
        "denominator": denominator if denominator is not None else np.nan,
        "baseline": 0.0, "target": 1.0, "cycle_start": START, "cycle_end": END,
        "window_start": window_start,
    })  # fmt: skip


def test_cumulative_metric_projects_its_recent_pace():
    t = np.arange(1, 41, dtype=float)
    frame = add_forecasts(series("won_revenue", 1000.0 * t).assign(target=91_000.0))
    assert frame["forecast_value"].to_numpy() == pytest.approx(np.full(40, 91_000.0))
    assert frame["forecast_grade"].iloc[-1] == pytest.approx(1.0)


def test_cumulative_metric_follows_a_change_of_pace_within_28_days():
    t = np.arange(1, 41, dtype=float)
    values = np.where(t <= 10, 100.0 * t, 1000.0 + 300.0 * (t - 10))  # speeds up on day 11
    frame = add_forecasts(series("won_revenue", values))
    last = frame.iloc[-1]
    assert last["forecast_value"] == pytest.approx(values[-1] + 300.0 * 51)


def test_rate_projects_numerator_and_denominator_separately():
    t = np.arange(1, 41, dtype=float)
    won, closed = 3.0 * t, 10.0 * t  # a steady 30 % win rate
    frame = add_forecasts(series("win_rate", won / closed, won, closed))
    assert frame["forecast_value"].to_numpy() == pytest.approx(np.full(40, 0.3))


def test_nps_forecast_moves_toward_the_recent_mix():
    t = np.arange(1, 41, dtype=float)
    # 1 response a day; net promoters +0 per day for 12 days, then +1 a day (all promoters)
    net = np.where(t <= 12, 0.0, t - 12)
    frame = add_forecasts(series("nps", 100 * net / t, net, t))
    last = frame.iloc[-1]
    expected = 100 * (net[-1] + 1.0 * 51) / (40 + 51)
    assert last["forecast_value"] == pytest.approx(expected)
    assert last["forecast_value"] > last["value"]


def test_levels_extend_a_least_squares_line():
    t = np.arange(40, dtype=float)
    frame = add_forecasts(series("open_pipeline", 5000.0 + 20.0 * t))
    assert frame["forecast_value"].iloc[-1] == pytest.approx(5000.0 + 20.0 * 90)


def test_on_the_last_day_the_forecast_is_the_value():
    t = np.arange(1, 92, dtype=float)
    frame = add_forecasts(series("won_revenue", 7.0 * t, days=91))
    assert frame["forecast_value"].iloc[-1] == pytest.approx(7.0 * 91)

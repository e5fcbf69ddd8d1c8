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
    return pd.DataFrame(
        {
            "as_of": as_of,
            "kind": "kr",
            "cycle": "c",
            "key": metric,
            "metric": metric,
            "value": values,
            "numerator": numerator if numerator is not None else values,
            "denominator": denominator if denominator is not None else np.nan,
            "baseline": 0.0,
            "target": 1.0,
            "cycle_start": START,
            "cycle_end": END,
            "window_start": window_start,
        }
    )


def test_cumulative_metric_projects_its_recent_pace():
    t = np.arange(1, 41, dtype=float)
    frame = add_forecasts(series("won_revenue", 1000.0 * t).assign(target=91_000.0))
    assert frame["forecast_value"].to_numpy()[9:] == pytest.approx(np.full(31, 91_000.0))
    assert frame["forecast_grade"].iloc[-1] == pytest.approx(1.0)


def test_no_forecast_in_the_first_ten_days():
    t = np.arange(1, 41, dtype=float)
    frame = add_forecasts(series("won_revenue", 1000.0 * t))
    assert frame["forecast_value"].iloc[:9].isna().all()
    assert frame["forecast_value"].iloc[9:].notna().all()


def test_cumulative_metric_follows_a_change_of_pace_within_28_days():
    t = np.arange(1, 41, dtype=float)
    values = np.where(t <= 10, 100.0 * t, 1000.0 + 300.0 * (t - 10))  # speeds up on day 11
    frame = add_forecasts(series("won_revenue", values))
    last = frame.iloc[-1]
    assert last["forecast_value"] == pytest.approx(values[-1] + 300.0 * 51)


def test_a_noisy_rate_without_a_clear_trend_is_forecast_at_its_cycle_to_date_value():
    # One response a day, promoter or not at random: the trend a run of luck suggests is
    # dropped unless it clears two standard errors, so most forecasts are today's value.
    rng = np.random.default_rng(7)
    unchanged = 0
    for _ in range(100):
        promoters = rng.integers(0, 2, size=40).astype(float)
        net, responses = np.cumsum(promoters), np.arange(1, 41, dtype=float)
        frame = add_forecasts(series("nps", 100 * net / responses, net, responses))
        unchanged += frame["forecast_value"].iloc[-1] == pytest.approx(frame["value"].iloc[-1])
    assert unchanged >= 85


def test_a_rate_moving_on_a_straight_path_is_forecast_to_arrive_where_the_path_goes():
    # win rate rising linearly from 30 % to 36 % over the 91 days, 4 closed deals a day
    days = np.arange(1, 41, dtype=float)
    value = 0.30 + 0.06 * days / 91
    closed = 4.0 * days
    frame = add_forecasts(series("win_rate", value, value * closed, closed))
    assert frame["forecast_value"].iloc[-1] == pytest.approx(0.36)


def test_a_rate_is_never_forecast_outside_its_valid_range():
    days = np.arange(1, 41, dtype=float)
    value = np.minimum(0.5 + 0.02 * days, 0.98)
    frame = add_forecasts(series("win_rate", value, value * days, days))
    assert frame["forecast_value"].max() <= 1.0


def test_levels_extend_a_least_squares_line():
    t = np.arange(40, dtype=float)
    frame = add_forecasts(series("open_pipeline", 5000.0 + 20.0 * t))
    assert frame["forecast_value"].iloc[-1] == pytest.approx(5000.0 + 20.0 * 90)


def test_on_the_last_day_the_forecast_is_the_value():
    t = np.arange(1, 92, dtype=float)
    frame = add_forecasts(series("won_revenue", 7.0 * t, days=91))
    assert frame["forecast_value"].iloc[-1] == pytest.approx(7.0 * 91)


def test_backtest_on_the_demo_orgs_closed_cycles(demo_data, tmp_path):
    from conftest import REPO

    from connectors.files import FilesSource
    from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
    from kr_metrics.definitions import Cycle
    from kr_metrics.forecast import backtest
    from kr_metrics.loader import load_definitions
    from kr_metrics.sql.engine import DuckDBStaged
    from okr_store.db import create_engine
    from okr_store.schema import upgrade
    from okr_store.staging import read_staged, stage

    engine = create_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    stage(FilesSource("demo", demo_data), engine, home_currency="EUR")
    frames = {t: read_staged(engine, t) for t in (DEALS, CUSTOMERS, NPS_RESPONSES)}
    staged = DuckDBStaged(
        frames[DEALS], frames[CUSTOMERS], frames[NPS_RESPONSES], timezone="Europe/Berlin"
    )
    cycles = [Cycle(key=k, timezone="Europe/Berlin") for k in ("2026-Q1", "2026-Q2", "2026-Q3")]
    result = backtest(load_definitions(REPO / "definitions" / "2026-Q4.yaml"), staged, cycles)
    by_day = result.groupby("day")["abs_pct_error"].mean()
    assert by_day[60] < by_day[30] < 0.30  # the figures docs/forecast.md reports
    revenue = result[result["metric"] == "revenue_per_existing_customer"]
    assert revenue["abs_pct_error"].mean() < revenue["naive_abs_pct_error"].mean() / 1.5

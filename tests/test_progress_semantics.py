"""What progress, pace and status mean over a whole cycle, for each kind of metric.

A KR exactly on its expected path is on track every day from the first to the last; at half
the pace it is off track; the status never contradicts the forecast without a reason.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kr_metrics.forecast import MIN_FORECAST_DAYS, add_forecasts
from kr_metrics.metrics import ACCUMULATING, LEVEL
from kr_metrics.scoring import (
    ACHIEVED,
    AT_RISK,
    OFF_TRACK,
    ON_TRACK,
    ScoringPolicy,
    score_key_results,
    start_value,
)

START = dt.date(2026, 10, 1)
POLICY = ScoringPolicy()


def whole_cycle(kind: str, pace: float, *, days: int = 92, ambition: str = "roofshot"):
    """A KR's daily rows over a whole cycle, moving at `pace` × its expected path.

    accumulating: won revenue from 0 towards 92,000 EUR; level: win rate from a 30 % baseline
    towards 36 %, 10 closed deals a day.
    """
    end = START + dt.timedelta(days=days - 1)
    elapsed = np.arange(1, days + 1, dtype=float)
    success = POLICY.success_grade(ambition)
    share = pace * success * elapsed / days
    if kind == ACCUMULATING:
        metric, baseline, target = "won_revenue", 80_000.0, 92_000.0
        value = target * share
        numerator, denominator, sample = value, np.full(days, np.nan), elapsed
    else:
        metric, baseline, target = "win_rate", 0.30, 0.36
        value = baseline + (target - baseline) * share
        denominator = 10.0 * elapsed
        numerator, sample = value * denominator, denominator
    as_of = [START + dt.timedelta(days=i) for i in range(days)]
    frame = pd.DataFrame(
        {
            "as_of": as_of,
            "kind": "kr",
            "cycle": "c",
            "key": f"{kind}-kr",
            "metric": metric,
            "value": value,
            "numerator": numerator,
            "denominator": denominator,
            "sample_size": sample,
            "baseline": baseline,
            "target": target,
            "start_value": start_value(kind, baseline, None),
            "metric_kind": kind,
            "ambition": ambition,
            "cycle_start": START,
            "cycle_end": end,
            "window_start": START,
            "window_end": as_of,
            "margin_of_error": np.nan,
        }
    )
    return score_key_results(add_forecasts(frame), POLICY)


@pytest.mark.parametrize("kind", [ACCUMULATING, LEVEL])
@pytest.mark.parametrize("ambition", ["roofshot", "moonshot"])
def test_a_kr_exactly_on_its_expected_path_is_on_track_every_day(kind, ambition):
    scored = whole_cycle(kind, pace=1.0, ambition=ambition)
    assert (scored["status"] == ON_TRACK).all(), scored.loc[
        scored["status"] != ON_TRACK, ["as_of", "status", "status_reason"]
    ]
    assert scored["expected_value"].to_numpy() == pytest.approx(scored["value"].to_numpy())
    assert scored["verdict"].iloc[-1] == ACHIEVED
    assert scored["verdict"].iloc[:-1].isna().all()


@pytest.mark.parametrize("kind", [ACCUMULATING, LEVEL])
def test_a_kr_at_half_the_pace_is_off_track(kind):
    scored = whole_cycle(kind, pace=0.5)
    judged = scored.iloc[MIN_FORECAST_DAYS - 1 :]
    assert ON_TRACK not in set(judged["status"])
    behind = (judged["expected_progress"] - judged["progress"]).round(2) > POLICY.at_risk_gap
    assert (judged.loc[behind, "status"] == OFF_TRACK).all()
    assert scored["status"].iloc[-1] == OFF_TRACK


def test_an_accumulating_kr_starts_from_zero_not_from_last_cycles_full_value():
    scored = whole_cycle(ACCUMULATING, pace=1.0)
    middle = scored.iloc[45]
    assert middle["start_value"] == 0.0
    assert middle["baseline"] == 80_000.0  # what `+20%` and "same point last cycle" use
    assert middle["progress"] == pytest.approx(46 / 92)
    assert middle["expected_value"] == pytest.approx(92_000.0 * 46 / 92)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from([ACCUMULATING, LEVEL]),
    ambition=st.sampled_from(["roofshot", "moonshot"]),
    days=st.integers(min_value=28, max_value=92),
    pace=st.floats(min_value=1.0, max_value=1.5),
)
def test_on_or_ahead_of_its_path_a_kr_is_never_behind(kind, ambition, days, pace):
    scored = whole_cycle(kind, pace=pace, days=days, ambition=ambition)
    assert (scored["status"] == ON_TRACK).all()


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from([ACCUMULATING, LEVEL]),
    days=st.integers(min_value=28, max_value=92),
    pace=st.floats(min_value=0.0, max_value=1.5),
)
def test_the_status_never_contradicts_the_forecast_without_a_reason(kind, days, pace):
    scored = whole_cycle(kind, pace=pace, days=days)
    forecast_reaches = scored["forecast_grade"].round(2) >= scored["success_grade"]
    on_track = scored["status"] == ON_TRACK
    assert not (on_track & scored["forecast_grade"].notna() & ~forecast_reaches).any()
    disagree = scored["status"] == AT_RISK
    for reason in scored.loc[disagree, "status_reason"]:
        assert "pace" in reason or "reached" in reason
        assert "forecast" in reason


def test_reached_is_judged_on_the_precision_that_is_shown():
    # 35.997 % is shown as 36.0 %, progress as 100 %: it must not read "falls short".
    frame = whole_cycle(LEVEL, pace=1.0)
    frame = frame.drop(columns=["progress", "grade", "status", "status_reason", "verdict"])
    frame.loc[frame.index[-1], ["value", "forecast_value"]] = 0.35997
    frame.loc[frame.index[-1], "forecast_grade"] = (0.35997 - 0.30) / 0.06
    last = score_key_results(frame, POLICY).iloc[-1]
    assert last["status"] == ON_TRACK
    assert last["verdict"] == ACHIEVED
    assert "short" not in last["status_reason"]


def test_a_rate_whose_margin_spans_the_expected_path_says_the_sample_cannot_tell():
    frame = whole_cycle(LEVEL, pace=1.0).drop(columns=["status", "status_reason"])
    frame["margin_of_error"] = 0.08
    frame.loc[:, "value"] = frame["expected_value"] - 0.05
    scored = score_key_results(frame, POLICY)
    assert scored["status_reason"].str.contains("too small to tell").all()


def test_an_explicit_start_overrides_the_kind():
    assert start_value(ACCUMULATING, 80_000.0, 40_000.0) == 40_000.0
    assert start_value(ACCUMULATING, 80_000.0, None) == 0.0
    assert start_value(LEVEL, 0.30, None) == 0.30


# --- the demo org, every day of both demo cycles ------------------------------------------------


@pytest.fixture(scope="module")
def demo_days(tmp_path_factory, demo_data):
    """Every KR of the demo on every day of 2026-Q3 and of 2026-Q4 up to the demo's today, as
    `krpulse demo` computes them (one history pass, nothing written)."""
    from dashboard_support import make_demo_project

    from connectors.demo_org import DEMO_AS_OF
    from pipelines import flow
    from pipelines.settings import load_settings

    project = make_demo_project(tmp_path_factory.mktemp("demo"), demo_data)
    settings = load_settings(str(project / "krpulse.yaml"))
    engine = flow.open_database(settings)
    flow.sync_sources(settings, engine)
    definitions = flow.load_definition_set(settings)
    staged = flow.staged_data(settings, engine)
    days = [
        dt.date(2026, 7, 1) + dt.timedelta(days=i)
        for i in range((DEMO_AS_OF - dt.date(2026, 7, 1)).days + 1)
    ]
    computed = flow.compute_days(settings, definitions, staged, days)
    return pd.concat([progress for _, progress, _ in computed.values()], ignore_index=True)


def test_demo_revenue_per_existing_customer_reads_as_its_pace_says(demo_days):
    rows = demo_days[demo_days["metric"] == "revenue_per_existing_customer"]
    assert rows.groupby(["cycle", "kr"]).ngroups == 6  # three KRs in each demo cycle
    for (cycle, kr), series in rows.groupby(["cycle", "kr"]):
        assert (series["status"] != OFF_TRACK).any(), f"{cycle}/{kr} is off track all cycle"
        assert (series["start_value"] == 0.0).all()
    today = rows[rows["as_of"] == rows["as_of"].max()]
    assert set(today["status"]) <= {ON_TRACK, AT_RISK}
    assert today["progress"].between(0.0, 1.5).all()


def test_no_demo_kr_has_a_status_that_contradicts_its_forecast_without_a_reason(demo_days):
    judged = demo_days[demo_days["status"].isin([ON_TRACK, AT_RISK, OFF_TRACK])]
    forecast_short = judged["forecast_grade"].round(2) < judged["success_grade"]
    assert not (judged["status"].eq(ON_TRACK) & forecast_short).any()
    for row in judged[judged["status"] != ON_TRACK].to_dict("records"):
        assert "forecast" in row["status_reason"] or "too early" in row["status_reason"], row


def test_the_demos_closed_cycle_ends_with_verdicts(demo_days):
    last = demo_days[demo_days["as_of"] == dt.date(2026, 9, 30)]
    assert len(last) and last["verdict"].isin(["achieved", "partially_achieved", "missed"]).all()

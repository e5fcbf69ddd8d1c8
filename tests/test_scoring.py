"""Scoring: progress, grade, expected progress and status."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from kr_metrics.scoring import ScoringPolicy, kpi_health, score_key_results


def kr(value, baseline=50.0, target=70.0, ambition="roofshot", as_of=dt.date(2026, 11, 15)):
    return {
        "value": value,
        "baseline": baseline,
        "target": target,
        "ambition": ambition,
        "cycle_start": dt.date(2026, 10, 1),
        "cycle_end": dt.date(2026, 12, 31),
        "window_end": as_of,
        "metric": "nps",
        "sample_size": 100,
    }


def score(*rows, policy=ScoringPolicy()):
    frame = pd.DataFrame(list(rows))
    frame["value"] = frame["value"].astype("float64")
    return score_key_results(frame, policy)


def test_progress_grade_and_expected_progress():
    scored = score(kr(60.0)).iloc[0]
    assert scored.progress == pytest.approx(0.5)
    assert scored.grade == pytest.approx(0.5)
    assert scored.expected_progress == pytest.approx(46 / 92)
    assert scored.status == "on_track"


def test_grade_is_clamped_but_progress_is_not():
    scored = score(kr(80.0), kr(40.0))
    assert list(scored.progress) == pytest.approx([1.5, -0.5])
    assert list(scored.grade) == [1.0, 0.0]


def test_a_kr_that_should_go_down_scores_the_same_way():
    scored = score(kr(35.0, baseline=40.0, target=30.0)).iloc[0]
    assert scored.progress == pytest.approx(0.5)


def test_status_thresholds():
    # expected progress on 15 Nov is 0.5; at_risk from 0.10 behind, off_track from 0.25 behind
    statuses = score(kr(59.0), kr(57.0), kr(52.0), kr(None)).status.tolist()
    assert statuses == ["on_track", "at_risk", "off_track", "no_data"]


def test_moonshot_expected_path_is_scaled_to_its_success_grade():
    scored = score(kr(57.0, ambition="moonshot")).iloc[0]
    assert scored.expected_progress == pytest.approx(0.7 * 46 / 92)
    assert scored.status == "on_track"  # 0.35 progress against 0.35 expected


def test_reaching_the_success_grade_is_on_track_even_early():
    scored = score(kr(64.0, ambition="moonshot", as_of=dt.date(2026, 12, 31))).iloc[0]
    assert scored.grade == pytest.approx(0.7)
    assert scored.status == "on_track"


def test_kpi_health_against_its_range():
    frame = pd.DataFrame(
        {
            "value": [0.3, 0.1, None],
            "healthy_min": [0.2, 0.2, 0.2],
            "healthy_max": [None, None, None],
        }
    )
    frame = frame.astype("float64")
    assert kpi_health(frame).tolist() == ["healthy", "unhealthy", "no_data"]


def test_policy_rejects_a_moonshot_success_outside_the_method():
    with pytest.raises(ValueError, match="0.6 and 0.7"):
        ScoringPolicy(moonshot_success=0.9)


def test_expected_progress_follows_milestones():
    phased = kr(60.0) | {"milestones": '[["2026-10-31", 52.0], ["2026-11-30", 66.0]]'}
    # 15 Nov is day 46; between 31 Oct (day 31, progress 0.1) and 30 Nov (day 61, progress 0.8)
    scored = score(phased).iloc[0]
    assert scored.expected_progress == pytest.approx(0.1 + (46 - 31) / (61 - 31) * 0.7)
    assert scored.status == "on_track"


def test_milestones_change_the_status_of_a_slow_start():
    linear, phased = score(
        kr(57.2), kr(57.2) | {"milestones": '[["2026-10-31", 52.0], ["2026-11-30", 66.0]]'}
    ).status
    assert (linear, phased) == ("at_risk", "on_track")  # 0.36 against 0.5 linear, 0.45 phased


def test_a_rate_on_too_few_records_says_so():
    scored = score(
        kr(60.0) | {"sample_size": 4}, kr(60.0) | {"sample_size": 4, "metric": "won_revenue"}
    )
    assert scored.status.tolist() == ["low_sample", "on_track"]
    assert (
        score(kr(60.0) | {"sample_size": 4}, policy=ScoringPolicy(min_sample=3)).status[0]
        == "on_track"
    )

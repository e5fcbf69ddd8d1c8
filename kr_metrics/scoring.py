"""Scoring: start, progress, grade, expected path, status and verdict of KRs; health of KPIs.

What the numbers mean (docs/metrics.md, "Progress and status", says it in sales-ops words):

- **start** is where the progress bar begins: 0 for accumulating KRs (their cycle value starts
  at 0 on the cycle's first day), the baseline for level KRs, or the KR's own `start:`.
- progress = (value − start) ÷ (target − start); the grade is progress clamped to 0–1.
- The **expected path** runs from start to target over the cycle (or through the KR's
  milestones), scaled to the success grade (1.0 roofshot, 0.7 moonshot);
  `expected_value` = start + expected progress × (target − start): the value expected by today.
- **Status** is decided by one rule, `STATUS_RULE`, from two signals judged on the precision
  that is shown (whole percent of progress):
  pace — how far progress is behind the expected path — and forecast — whether the projected
  end-of-cycle value reaches the success grade.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kr_metrics.display import SHOWN_DECIMALS, UNCERTAIN, format_value
from kr_metrics.metrics import ACCUMULATING, LEVEL, METRICS

# Metrics whose value is a rate over records: their sample size decides how far to trust them.
SAMPLED_METRICS = sorted(n for n, s in METRICS.items() if s.combine in ("ratio", "per_constant"))
# Metrics with a 95 % margin of error (engine._margin): a margin wider than the distance to the
# expected path means the sample cannot tell on track from off track.
MARGIN_METRICS = ("nps", "win_rate")

ON_TRACK = "on_track"
AT_RISK = "at_risk"
OFF_TRACK = "off_track"
NO_DATA = "no_data"
STALE = "stale"
LOW_SAMPLE = "low_sample"
KR_STATUSES = (ON_TRACK, AT_RISK, OFF_TRACK, NO_DATA, STALE, LOW_SAMPLE)

ACHIEVED = "achieved"
PARTIALLY_ACHIEVED = "partially_achieved"
MISSED = "missed"
VERDICTS = (ACHIEVED, PARTIALLY_ACHIEVED, MISSED)

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"


STATUS_RULE = """\
pace:     good   — the grade reached the success grade, or progress is at most `at_risk_gap`
                   behind the expected path;
          behind — at most `off_track_gap` behind;  far behind — more than that.
forecast: good   — the forecast grade reaches the success grade;
          short  — it falls short by at most `off_track_gap`;  far short — by more;
          none   — fewer than `forecast.MIN_FORECAST_DAYS` days of data (pace decides alone).
status:   on_track  when pace and forecast are both good;
          at_risk   when one of them is good and the other is not (the reason names which),
                    or both are behind/short but neither far;
          off_track when neither is good and one of them is far behind/far short.
before these: no value → no_data; a rate on fewer than `min_sample` records → low_sample.
A rate whose 95 % margin of error spans the distance to the expected path keeps its status, and
its reason says the sample is too small to tell."""


@dataclass(frozen=True)
class ScoringPolicy:
    """How far behind the expected path a KR may fall before it is at risk or off track."""

    moonshot_success: float = 0.7
    at_risk_gap: float = 0.10
    off_track_gap: float = 0.25
    # Ratios and NPS on fewer records than this are shown with status `low_sample`.
    min_sample: int = 10
    # A cycle's grades are final this many days after its end (late CRM updates still count).
    grace_days: int = 7
    # From this grade a KR that missed its success grade is "partially achieved".
    partial_grade: float = 0.4

    def __post_init__(self) -> None:
        if not 0.6 <= self.moonshot_success <= 0.7:
            raise ValueError("moonshot_success must be between 0.6 and 0.7")
        if not 0 <= self.at_risk_gap <= self.off_track_gap:
            raise ValueError("need 0 <= at_risk_gap <= off_track_gap")

    def success_grade(self, ambition: str) -> float:
        return self.moonshot_success if ambition == "moonshot" else 1.0


def key_result_kind(metric_kind: str, rolling: bool) -> str:
    """A KR over a rolling window is a level whatever its metric: the window slides, it does
    not start from zero with the cycle."""
    return LEVEL if rolling else metric_kind


def start_value(kind: str, baseline: float | None, explicit: float | None) -> float | None:
    """Where the progress bar starts: the KR's `start:`, else 0 (accumulating) or the baseline."""
    if explicit is not None:
        return float(explicit)
    if kind == ACCUMULATING:
        return 0.0
    return baseline


def verdict(
    grade: float | None, ambition: str, policy: ScoringPolicy = ScoringPolicy()
) -> str | None:
    """A roofshot is achieved at grade 1.0, a moonshot at its success grade (0.6–0.7); both are
    partially achieved from `policy.partial_grade`; below that, missed. No grade, no verdict.
    Judged on the shown precision, like the status."""
    if grade is None or pd.isna(grade):
        return None
    shown = round(float(grade), SHOWN_DECIMALS)
    if shown >= policy.success_grade(ambition):
        return ACHIEVED
    if shown >= policy.partial_grade:
        return PARTIALLY_ACHIEVED
    return MISSED


def expected_progress(
    cycle_start: pd.Series, cycle_end: pd.Series, as_of: pd.Series, success: pd.Series
) -> pd.Series:
    """Elapsed share of the cycle (as_of counted as a full day), scaled to the success grade."""
    start = pd.to_datetime(cycle_start)
    total = (pd.to_datetime(cycle_end) - start).dt.days + 1
    elapsed = ((pd.to_datetime(as_of) - start).dt.days + 1).clip(lower=0)
    return (elapsed / total).clip(0.0, 1.0) * success


def milestone_progress(
    milestones: str, start_at: float, target: float, cycle_start, cycle_end, as_of
) -> float:
    """Expected progress piecewise-linear through the KR's own milestones (phased targets).

    The path starts at the KR's start on the cycle's first morning, passes each milestone's
    value at the end of its day, and ends at the target at the end of the cycle.
    """
    if target == start_at or pd.isna(target) or pd.isna(start_at):
        return float("nan")
    first = pd.Timestamp(cycle_start)
    total = (pd.Timestamp(cycle_end) - first).days + 1
    points = json.loads(milestones)
    xs = [0.0] + [(pd.Timestamp(day) - first).days + 1.0 for day, _ in points] + [float(total)]
    ys = [0.0] + [(value - start_at) / (target - start_at) for _, value in points] + [1.0]
    elapsed = min(max((pd.Timestamp(as_of) - first).days + 1, 0), total)
    return float(np.interp(elapsed, xs, ys))


def _with_start(krs: pd.DataFrame) -> pd.DataFrame:
    """Rows from before start values existed (or hand-made frames) measure from the baseline."""
    if "start_value" not in krs.columns:
        krs["start_value"] = krs["baseline"]
    if "metric_kind" not in krs.columns:
        krs["metric_kind"] = LEVEL
    return krs


def _expected(krs: pd.DataFrame, success: np.ndarray) -> pd.Series:
    expected = expected_progress(
        krs["cycle_start"], krs["cycle_end"], krs["window_end"], pd.Series(success, index=krs.index)
    )
    if "milestones" in krs.columns:
        phased = krs["milestones"].notna()
        for index in krs.index[phased]:  # one per KR with phased targets, not per data row
            row = krs.loc[index]
            path = milestone_progress(
                row["milestones"],
                row["start_value"],
                row["target"],
                row["cycle_start"],
                row["cycle_end"],
                row["window_end"],
            )
            expected.loc[index] = path * row["success_grade"]
    return expected


def _signal(gap: pd.Series, good: pd.Series, policy: ScoringPolicy) -> np.ndarray:
    """0 good, 1 behind, 2 far behind; NaN stays NaN (no signal)."""
    level = np.where(good, 0.0, np.where(gap <= policy.off_track_gap + 1e-9, 1.0, 2.0))
    return np.where(gap.isna() & ~good, np.nan, level)


def score_key_results(
    values: pd.DataFrame, policy: ScoringPolicy = ScoringPolicy()
) -> pd.DataFrame:
    """Add progress, grade, expected progress and value, status, its reason and the verdict
    (on a cycle's last day) to KR rows of an engine frame (with forecasts, see forecast.py).

    KRs that should go down (target below start) score the same way. A null value stays null
    all the way to `no_data`.
    """
    krs = _with_start(values.copy())
    success = np.where(krs["ambition"] == "moonshot", policy.moonshot_success, 1.0)
    krs["success_grade"] = success
    span = krs["target"] - krs["start_value"]
    with np.errstate(divide="ignore", invalid="ignore"):
        krs["progress"] = (krs["value"] - krs["start_value"]) / span.where(span != 0)
    krs["grade"] = krs["progress"].clip(0.0, 1.0)
    krs["expected_progress"] = _expected(krs, success)
    krs["expected_value"] = krs["start_value"] + krs["expected_progress"] * span
    shown_grade = krs["grade"].round(SHOWN_DECIMALS)
    shown_gap = (krs["expected_progress"] - krs["progress"]).round(SHOWN_DECIMALS)
    reached = shown_grade >= success
    pace = _signal(shown_gap, reached | (shown_gap <= policy.at_risk_gap + 1e-9), policy)
    forecast_grade = (
        krs["forecast_grade"] if "forecast_grade" in krs.columns else pd.Series(np.nan, krs.index)
    )
    shown_forecast = forecast_grade.round(SHOWN_DECIMALS)
    forecast = _signal(success - shown_forecast, shown_forecast >= success, policy)
    krs["status"], krs["status_reason"] = _status(krs, pace, forecast, policy)
    last_day = pd.to_datetime(krs["window_end"]) >= pd.to_datetime(krs["cycle_end"])
    krs["verdict"] = [
        verdict(g, a, policy) if last else None
        for g, a, last in zip(krs["grade"], krs["ambition"], last_day, strict=True)
    ]
    return krs


def _status(
    krs: pd.DataFrame, pace: np.ndarray, forecast: np.ndarray, policy: ScoringPolicy
) -> tuple[np.ndarray, list[str | None]]:
    """STATUS_RULE, applied to every row at once; the reason says which signal decided."""
    both_good = (pace == 0) & ((forecast == 0) | np.isnan(forecast))
    one_good = ((pace == 0) | (forecast == 0)) & ~both_good
    one_far = (pace == 2) | (forecast == 2)
    sampled = krs["metric"].isin(SAMPLED_METRICS).to_numpy()
    low_sample = sampled & (krs["sample_size"].fillna(0).to_numpy() < policy.min_sample)
    status = np.select(
        [krs["progress"].isna().to_numpy(), low_sample, both_good, one_good, one_far],
        [NO_DATA, LOW_SAMPLE, ON_TRACK, AT_RISK, OFF_TRACK],
        default=AT_RISK,
    )
    reasons = [
        _reason(row, status[i], pace[i], forecast[i], policy)
        for i, row in enumerate(krs.to_dict("records"))  # one sentence per KR row of the day
    ]
    return status, reasons


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _reason(row: dict, status: str, pace: float, forecast: float, policy: ScoringPolicy) -> str:
    """One sentence: what pace and forecast say, e.g. "on pace (55% vs 43% expected), but the
    forecast ends at 55% (success at 70%)"."""
    if status == NO_DATA:
        return "no value yet: nothing in the window to measure"
    if status == LOW_SAMPLE:
        return (
            f"only {int(row.get('sample_size') or 0)} records; a rate is judged from "
            f"{policy.min_sample}"
        )
    success = row["success_grade"]
    goal = "the target" if success >= 1 else f"the {_percent(success)} success grade"
    of_goal = "" if success >= 1 else f" (success at {_percent(success)})"
    if round(row["grade"], SHOWN_DECIMALS) >= success:
        pace_text = f"reached {_percent(row['grade'])} of the way{of_goal}"
    else:
        words = {0: "on pace", 1: "behind pace", 2: "far behind pace"}[int(pace)]
        pace_text = f"{words} ({_percent(row['progress'])} vs {_percent(row['expected_progress'])} expected)"
    if np.isnan(forecast):
        forecast_text = "too early to forecast"
    elif forecast == 0:
        forecast_text = f"the forecast reaches {goal}"
    else:
        forecast_text = (
            f"the forecast ends at {_percent(row['forecast_grade'])} of the way{of_goal}"
        )
    joint = ", but " if (pace == 0) != (forecast == 0) and not np.isnan(forecast) else "; "
    return pace_text + joint + forecast_text + _uncertainty(row, status)


def _uncertainty(row: dict, status: str) -> str:
    """Say when a rate's margin of error spans the distance to the expected path."""
    margin = row.get("margin_of_error")
    expected_value = row.get("expected_value")
    if status not in (ON_TRACK, AT_RISK, OFF_TRACK) or margin is None or pd.isna(margin):
        return ""
    if row["metric"] not in MARGIN_METRICS or expected_value is None or pd.isna(expected_value):
        return ""
    if abs(row["value"] - expected_value) > margin:
        return ""
    margin_text = format_value(margin, row["metric"])
    return f"; ±{margin_text} spans the expected path: {UNCERTAIN}"


def kpi_health(values: pd.DataFrame) -> pd.Series:
    """healthy / unhealthy against the KPI's range; no_data when there is no value."""
    value = values["value"]
    low_ok = values["healthy_min"].isna() | (value >= values["healthy_min"])
    high_ok = values["healthy_max"].isna() | (value <= values["healthy_max"])
    return pd.Series(
        np.select([value.isna(), low_ok & high_ok], [NO_DATA, HEALTHY], default=UNHEALTHY),
        index=values.index,
    )

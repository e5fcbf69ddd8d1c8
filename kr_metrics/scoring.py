"""Scoring: progress, grade, expected progress and status of KRs; health of KPIs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kr_metrics.metrics import METRICS

# Metrics whose value is a rate over records: their sample size decides how far to trust them.
SAMPLED_METRICS = sorted(n for n, s in METRICS.items() if s.combine in ("ratio", "per_constant"))

ON_TRACK = "on_track"
AT_RISK = "at_risk"
OFF_TRACK = "off_track"
NO_DATA = "no_data"
STALE = "stale"
LOW_SAMPLE = "low_sample"
KR_STATUSES = (ON_TRACK, AT_RISK, OFF_TRACK, NO_DATA, STALE, LOW_SAMPLE)

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"


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


def expected_progress(
    cycle_start: pd.Series, cycle_end: pd.Series, as_of: pd.Series, success: pd.Series
) -> pd.Series:
    """Elapsed share of the cycle (as_of counted as a full day), scaled to the success grade."""
    start = pd.to_datetime(cycle_start)
    total = (pd.to_datetime(cycle_end) - start).dt.days + 1
    elapsed = ((pd.to_datetime(as_of) - start).dt.days + 1).clip(lower=0)
    return (elapsed / total).clip(0.0, 1.0) * success


def milestone_progress(milestones: str, baseline: float, target: float, cycle_start, cycle_end,
                       as_of) -> float:  # fmt: skip
    """Expected progress piecewise-linear through the KR's own milestones (phased targets).

    The path starts at 0 on the cycle's first morning, passes each milestone's progress at the
    end of its day, and ends at 1 at the end of the cycle.
    """
    if target == baseline or pd.isna(target) or pd.isna(baseline):
        return float("nan")
    start = pd.Timestamp(cycle_start)
    total = (pd.Timestamp(cycle_end) - start).days + 1
    points = json.loads(milestones)
    xs = [0.0] + [(pd.Timestamp(day) - start).days + 1.0 for day, _ in points] + [float(total)]
    ys = [0.0] + [(value - baseline) / (target - baseline) for _, value in points] + [1.0]
    elapsed = min(max((pd.Timestamp(as_of) - start).days + 1, 0), total)
    return float(np.interp(elapsed, xs, ys))


def score_key_results(
    values: pd.DataFrame, policy: ScoringPolicy = ScoringPolicy()
) -> pd.DataFrame:
    """Add progress, grade, expected_progress and status to KR rows of an engine frame.

    progress = (value − baseline) / (target − baseline), so KRs that should go down (target
    below baseline) score the same way. A null value stays null all the way to `no_data`.
    """
    krs = values.copy()
    success = np.where(krs["ambition"] == "moonshot", policy.moonshot_success, 1.0)
    krs["success_grade"] = success
    krs["progress"] = (krs["value"] - krs["baseline"]) / (krs["target"] - krs["baseline"])
    krs["grade"] = krs["progress"].clip(0.0, 1.0)
    krs["expected_progress"] = expected_progress(
        krs["cycle_start"], krs["cycle_end"], krs["window_end"], pd.Series(success, index=krs.index)
    )
    if "milestones" in krs.columns:
        phased = krs["milestones"].notna()
        for index in krs.index[phased]:  # one per KR with phased targets, not per data row
            row = krs.loc[index]
            krs.loc[index, "expected_progress"] = milestone_progress(
                row["milestones"], row["baseline"], row["target"], row["cycle_start"],
                row["cycle_end"], row["window_end"],
            ) * row["success_grade"]  # fmt: skip
    behind = krs["expected_progress"] - krs["progress"]
    sampled = krs["metric"].isin(SAMPLED_METRICS).to_numpy()
    low_sample = sampled & (krs["sample_size"].fillna(0).to_numpy() < policy.min_sample)
    status = np.select(
        [
            krs["progress"].isna(),
            low_sample,
            (krs["grade"] >= krs["success_grade"]) | (behind <= policy.at_risk_gap),
            behind <= policy.off_track_gap,
        ],
        [NO_DATA, LOW_SAMPLE, ON_TRACK, AT_RISK],
        default=OFF_TRACK,
    )
    krs["status"] = status
    return krs


def kpi_health(values: pd.DataFrame) -> pd.Series:
    """healthy / unhealthy against the KPI's range; no_data when there is no value."""
    value = values["value"]
    low_ok = values["healthy_min"].isna() | (value >= values["healthy_min"])
    high_ok = values["healthy_max"].isna() | (value <= values["healthy_max"])
    return pd.Series(
        np.select([value.isna(), low_ok & high_ok], [NO_DATA, HEALTHY], default=UNHEALTHY),
        index=values.index,
    )

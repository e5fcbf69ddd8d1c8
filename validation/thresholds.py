"""Limits of the data suites and the number suites (krpulse.yaml `validation:` fills them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from validation.report import WARNING


@dataclass(frozen=True)
class DataThresholds:
    """Limits of the data suites (krpulse.yaml `validation.data`; defaults in the README)."""

    future_tolerance_hours: float = 24.0  # closed deals' close dates, NPS submission times
    max_age_years: float = 30.0  # older dates are "decades off"
    max_years_ahead: float = 5.0  # expected close dates of open deals
    max_deleted_share: float = 0.2  # of the rows staged before the sync: a mass deletion
    max_quarantined_share: float = 0.05  # of the records the sync fetched
    min_rows_for_shares: int = 50  # smaller tables/syncs are not judged by shares
    usual_changes: int = 100  # a median this high over recent syncs makes an empty sync odd
    history_syncs: int = 14  # how many earlier syncs make "recent history"
    min_history_syncs: int = 3  # fewer earlier syncs: no history to compare with yet


@dataclass(frozen=True)
class ChangeLimit:
    """The largest day-over-day change of a metric, and what exceeding it is."""

    max_change: float
    severity: str = WARNING


@dataclass(frozen=True)
class NumberThresholds:
    """Limits of the number suites (krpulse.yaml `validation.numbers`).

    A day-over-day change is measured against the metric's scale: for metrics with a bounded
    range (NPS −100..100, rates 0..1) as a share of that range; otherwise relative to the
    larger of the two values. A change to or from zero or null is not judged.
    """

    max_daily_change: float = 0.5
    daily_change_severity: str = WARNING
    metrics: Mapping[str, ChangeLimit] = field(default_factory=dict)

    def limit(self, metric: str) -> ChangeLimit:
        return self.metrics.get(metric) or ChangeLimit(
            self.max_daily_change, self.daily_change_severity
        )

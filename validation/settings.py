"""krpulse.yaml `validation:`: thresholds of the data suites and the number suites."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from validation.thresholds import ChangeLimit, DataThresholds, NumberThresholds

Severity = Literal["warning", "error"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataValidationSettings(_Settings):
    """Limits of the suites run on the rows each sync changed."""

    future_tolerance_hours: float = Field(
        default=24.0, ge=0, description="Closed deals and NPS responses may lie this far ahead."
    )
    max_age_years: float = Field(default=30.0, gt=0, description="Older dates are implausible.")
    max_years_ahead: float = Field(
        default=5.0, ge=0, description="Furthest expected close date of an open deal."
    )
    max_deleted_share: float = Field(
        default=0.2, ge=0, le=1, description="Deleted in one sync, of the rows staged: an error."
    )
    max_quarantined_share: float = Field(
        default=0.05, ge=0, le=1, description="Quarantined, of the records fetched: an error."
    )
    min_rows_for_shares: int = Field(
        default=50, ge=0, description="Smaller tables and syncs are not judged by shares."
    )
    usual_changes: int = Field(
        default=100, ge=1, description="Median changes per sync from which an empty sync warns."
    )
    history_syncs: int = Field(default=14, ge=1, description="Earlier syncs that make history.")
    min_history_syncs: int = Field(default=3, ge=1, description="Fewer: no history yet.")

    def thresholds(self) -> DataThresholds:
        return DataThresholds(**self.model_dump())


class MetricChangeSettings(_Settings):
    max_daily_change: float = Field(gt=0)
    severity: Severity = "warning"


class NumberValidationSettings(_Settings):
    """Limits of the suites run on each day's KR and KPI values (ranges come from the metrics)."""

    max_daily_change: float = Field(
        default=0.5,
        gt=0,
        description="Largest day-over-day change: a share of the range for bounded metrics "
        "(NPS, rates), else relative to the larger value.",
    )
    daily_change_severity: Severity = "warning"
    metrics: dict[str, MetricChangeSettings] = Field(
        default_factory=dict, description="Per-metric limits, e.g. {nps: {max_daily_change: 0.2}}"
    )

    def thresholds(self) -> NumberThresholds:
        return NumberThresholds(
            max_daily_change=self.max_daily_change,
            daily_change_severity=self.daily_change_severity,
            metrics={
                name: ChangeLimit(limit.max_daily_change, limit.severity)
                for name, limit in self.metrics.items()
            },
        )


class ValidationSettings(_Settings):
    data: DataValidationSettings = Field(default_factory=DataValidationSettings)
    numbers: NumberValidationSettings = Field(default_factory=NumberValidationSettings)

"""What the gate decides from the suites' reports: the verdict on each sync and on each day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from kr_metrics.definitions import DefinitionSet
from kr_metrics.metrics import METRICS
from validation.report import ValidationReport


@dataclass(frozen=True)
class SyncVerdict:
    """The data gate's verdict on the newest sync of one (source, object)."""

    source: str
    object: str
    sync_id: int
    synced_at: dt.datetime
    report: ValidationReport
    accepted: str | None = None  # "accepted by WHO at WHEN: WHY" when an operator accepted it

    @property
    def suite(self) -> str:
        return f"{self.source}/{self.object}"

    @property
    def blocked(self) -> bool:
        """The staged state failed the gate and nobody accepted it."""
        return self.report.blocked and not self.accepted

    def block_reason(self) -> str:
        return (
            f"{self.report.reason(200)} (sync {self.sync_id}; once the CRM is fixed, sync again, "
            f"or accept it: krpulse validate --accept {self.sync_id} --by NAME --why TEXT)"
        )


@dataclass(frozen=True)
class DayVerdict:
    """The whole gate's verdict on one day: what blocks it, what only warns, and the reason its
    KRs show when it is blocked."""

    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stale_reason: str | None = None
    # The suites' reports behind the verdict (each sync's, then the day's numbers'), so a caller
    # can show every failing expectation with its examples (the Dagster check metadata).
    reports: list[ValidationReport] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return bool(self.failures)


def data_block_reason(verdicts: Iterable[SyncVerdict]) -> str | None:
    """Why the data gate blocks every day computed from the staged data, or None."""
    failing = [v for v in verdicts if v.blocked]
    if not failing:
        return None
    return "blocked by the data gate: " + " | ".join(v.block_reason() for v in failing)


def day_verdict(verdicts: list[SyncVerdict], numbers: ValidationReport | None) -> DayVerdict:
    """The data gate first: staged data that failed its suites blocks the day (its `numbers`
    need not be checked, None); else the number suites' report on the day's values decides."""
    data_warnings = [
        line
        for v in verdicts
        if v.report.failures and not v.blocked
        for line in ([f"{v.suite}: sync {v.sync_id} {v.accepted}"] if v.accepted else [])
        + v.report.summary().splitlines()
    ]
    data_reason = data_block_reason(verdicts)
    if data_reason:
        failures = [line for v in verdicts if v.blocked for line in v.report.summary().splitlines()]
        return DayVerdict(failures, data_warnings, data_reason, [v.report for v in verdicts])
    if numbers is None:
        raise ValueError("the data gate passed: the day's number report is needed")
    lines = numbers.summary().splitlines()
    reports = [*(v.report for v in verdicts), numbers]
    if numbers.blocked:
        return DayVerdict(
            lines, data_warnings, "blocked by the number gate: " + numbers.reason(250), reports
        )
    return DayVerdict([], data_warnings + ([] if numbers.success else lines), None, reports)


def number_rules(
    definitions: DefinitionSet | None,
) -> tuple[dict[str, tuple[float | None, float | None]], list[str]]:
    """Valid ranges and nullable metrics of the definitions' library (built-ins and custom)."""
    library = (definitions.library if definitions is not None else None) or METRICS
    ranges = {name: spec.valid_range for name, spec in library.items()}
    return ranges, [name for name, spec in library.items() if spec.nullable]

"""What a suite found: failed expectations with example records, and the suite's verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from core.canonical import ID_COLUMNS

ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)
# Columns an example record is described by, when it has them (a values frame's).
EXAMPLE_COLUMNS = ("key", "metric", "value", "previous_value", "daily_change")


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed expectation, with a few offending records from the caller's frame."""

    expectation: str
    column: str | None
    unexpected_count: int
    examples: list[dict] = field(default_factory=list)
    severity: str = ERROR
    rule: str = ""  # what it means in words, e.g. "amounts not negative"

    @property
    def short(self) -> str:
        """The rule and the keys (or ids) of a few offending records, for a stale reason."""
        ids = [str(ex.get("key") or _record_id(ex)) for ex in self.examples[:3]]
        ids = [i for i in ids if i and i != "None"]
        what = self.rule or self.expectation
        return (
            f"{what} ({self.unexpected_count} rows" + (f": {', '.join(ids)}" if ids else "") + ")"
        )


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of one suite: `success` means no failure at all; `blocked` means an ERROR one."""

    suite: str
    success: bool
    evaluated_rows: int
    failures: list[ExpectationFailure] = field(default_factory=list)

    @property
    def errors(self) -> list[ExpectationFailure]:
        return [f for f in self.failures if f.severity == ERROR]

    @property
    def warnings(self) -> list[ExpectationFailure]:
        return [f for f in self.failures if f.severity == WARNING]

    @property
    def blocked(self) -> bool:
        """An ERROR failure: the push below this suite must not happen."""
        return bool(self.errors)

    @property
    def status(self) -> str:
        return "failed" if self.blocked else "warned" if self.failures else "passed"

    def summary(self) -> str:
        """Human-readable report: a header line, then one line per failed expectation."""
        if self.success:
            return f"{self.suite}: OK ({self.evaluated_rows} rows)"
        verdict = "FAILED" if self.blocked else "WARNING"
        lines = [
            f"{self.suite}: {verdict} ({len(self.failures)} failing expectation(s), "
            f"{self.evaluated_rows} rows)"
        ]
        for failure in self.failures:
            tag = "" if failure.severity == ERROR else "[warning] "
            line = f"  - {tag}{failure.expectation}: {failure.unexpected_count} unexpected"
            if failure.examples:
                line += ", e.g. " + "; ".join(_describe_example(ex) for ex in failure.examples)
            lines.append(line)
        return "\n".join(lines)

    def reason(self, limit: int = 300) -> str:
        """One line for a stale KR: which suite blocked and on which expectations."""
        shown = self.errors or self.failures
        text = f"{self.suite}: " + "; ".join(f.short for f in shown)
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationReport:
        failures = [ExpectationFailure(**f) for f in data.get("failures", [])]
        return cls(data["suite"], bool(data["success"]), int(data["evaluated_rows"]), failures)


def combine(suite: str, reports: list[ValidationReport]) -> ValidationReport:
    """Several reports on the same rows as one (e.g. row checks and volume checks of a sync)."""
    failures = [f for r in reports for f in r.failures]
    rows = max((r.evaluated_rows for r in reports), default=0)
    return ValidationReport(
        suite=suite, success=not failures, evaluated_rows=rows, failures=failures
    )


def _record_id(example: dict) -> str:
    return next((str(example[c]) for c in ID_COLUMNS.values() if c and example.get(c)), "")


def _describe_example(example: dict) -> str:
    shown = {k: example[k] for k in EXAMPLE_COLUMNS if k in example} or example
    return " ".join(f"{k}={v}" for k, v in shown.items())

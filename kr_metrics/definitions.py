"""KR and KPI definitions: the pydantic models (kr_metrics.loader reads them from YAML)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.calendar import known_timezone

Key = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)]
MetricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=80)]
Scalar = str | int | float | bool
FilterValue = Scalar | list[Scalar] | dict[Literal["not"], Scalar | list[Scalar]]
Filters = dict[str, FilterValue]
_RELATIVE_TARGET = re.compile(r"^\s*([+-])\s*(\d+(?:\.\d+)?)\s*%\s*$")
_QUARTER_KEY = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH_KEY = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_ROLLING = re.compile(r"^rolling_(\d{1,4})d$")
PREVIOUS_CYCLE = "previous_cycle"
# No sales number is counted in quadrillions: anything larger is a typo or a pasted id.
LARGEST_NUMBER = 1e15


class Level(StrEnum):
    company = "company"
    team = "team"
    individual = "individual"


class Ambition(StrEnum):
    roofshot = "roofshot"
    moonshot = "moonshot"


class _Model(BaseModel):
    # Unknown keys are errors: a typo like `traget:` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _month_end(year: int, month: int) -> dt.date:
    first_of_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return first_of_next - dt.timedelta(days=1)


def implied_dates(key: str) -> tuple[dt.date, dt.date] | None:
    """The dates a calendar key stands for: 2026-Q4 -> Oct 1 .. Dec 31, 2026-11 -> November."""
    if match := _QUARTER_KEY.match(key):
        year, quarter = int(match.group(1)), int(match.group(2))
        return dt.date(year, 3 * quarter - 2, 1), _month_end(year, 3 * quarter)
    if match := _MONTH_KEY.match(key):
        year, month = int(match.group(1)), int(match.group(2))
        return dt.date(year, month, 1), _month_end(year, month)
    return None


class Cycle(_Model):
    """One OKR cycle. `key: 2026-Q4` or `key: 2026-11` implies its dates; otherwise give them."""

    key: Key
    start: dt.date
    end: dt.date
    timezone: str | None = Field(
        default=None,
        description="Leave out: the cycle reports in krpulse.yaml's timezone. When given, it "
        "must be the same as krpulse.yaml's.",
    )

    @model_validator(mode="before")
    @classmethod
    def _dates_from_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or ("start" in data and "end" in data):
            return data
        key = str(data.get("key", ""))
        implied = implied_dates(key)
        if implied is None:
            raise ValueError(
                f"cycle '{key}' needs `start` and `end` dates, or a key like 2026-Q4 (quarter) "
                "or 2026-11 (month) that implies them"
            )
        return {**data, "start": data.get("start", implied[0]), "end": data.get("end", implied[1])}

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        return None if value is None else known_timezone(value)

    @model_validator(mode="after")
    def _ordered(self) -> Cycle:
        if self.end < self.start:
            raise ValueError(f"cycle ends ({self.end}) before it starts ({self.start})")
        return self

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end

    def previous(self) -> tuple[dt.date, dt.date]:
        """Dates of the cycle before this one: the previous quarter or month, else same length."""
        if _QUARTER_KEY.match(self.key) or _MONTH_KEY.match(self.key):
            end = self.start - dt.timedelta(days=1)
            months = 3 if _QUARTER_KEY.match(self.key) else 1
            month_index = end.year * 12 + end.month - 1 - (months - 1)
            return dt.date(month_index // 12, month_index % 12 + 1, 1), end
        return self.start - dt.timedelta(days=self.days), self.start - dt.timedelta(days=1)


def sensible_number(value: Any, field: str) -> Any:
    """A finite number of a sensible size; text and None pass through to other checks."""
    if not isinstance(value, float | int) or isinstance(value, bool):
        return value
    if math.isnan(value):
        raise ValueError(f"`{field}` is .nan (not a number); write the number you mean")
    if math.isinf(value):
        raise ValueError(f"`{field}` is infinite; write a finite number")
    if abs(value) > LARGEST_NUMBER:
        raise ValueError(
            f"`{field}` is {float(value):.3g}, absurdly large (over {LARGEST_NUMBER:.0e}); check "
            "for extra zeros or a pasted id"
        )
    return value


class Milestone(_Model):
    """A phased target: the value the KR should have reached by `date`."""

    date: dt.date
    target: float

    @field_validator("target")
    @classmethod
    def _sensible(cls, value: float) -> float:
        return sensible_number(value, "target")


def window_days(window: str) -> int | None:
    """`rolling_90d` -> 90; `cycle` -> None."""
    match = _ROLLING.match(window)
    return int(match.group(1)) if match else None


def _check_window(value: str) -> str:
    if value != "cycle" and not _ROLLING.match(value):
        raise ValueError(f"window '{value}' is not `cycle` or `rolling_<days>d` (e.g. rolling_90d)")
    if value != "cycle" and window_days(value) == 0:
        raise ValueError("a rolling window needs at least one day")
    return value


class KeyResult(_Model):
    key: Key
    title: str
    metric: str = Field(description="A built-in metric (see docs/metrics.md) or a custom one.")
    where: Filters = Field(
        default_factory=dict,
        description="Canonical columns of the deal or its customer: a value, a list of values, "
        "or {not: value-or-list}.",
    )
    baseline: float | Literal["previous_cycle"] = Field(
        description="A number, or `previous_cycle`: the same metric over the previous cycle."
    )
    target: float | str | None = Field(
        description="An absolute number, or a change relative to the baseline such as '+20%'. "
        "Left empty by `krpulse new-cycle` for sales ops to fill in."
    )
    start: float | None = Field(
        default=None,
        description="Where the progress bar starts. Default: 0 for accumulating metrics (won "
        "revenue, revenue per existing customer), the baseline for levels (win rate, NPS).",
    )
    unit: str | None = None
    window: str = Field(default="cycle", description="`cycle` (default) or `rolling_<days>d`.")
    basis: Literal["count", "amount"] = Field(
        default="count", description="win_rate only: count deals (default) or weigh by amount."
    )
    milestones: list[Milestone] = Field(default_factory=list, description="Phased targets.")

    @field_validator("window")
    @classmethod
    def _known_window(cls, value: str) -> str:
        return _check_window(value)

    @field_validator("baseline", "target", "start")
    @classmethod
    def _sensible(cls, value: Any, info: ValidationInfo) -> Any:
        return sensible_number(value, str(info.field_name))

    @model_validator(mode="after")
    def _milestones_in_order(self) -> KeyResult:
        dates = [m.date for m in self.milestones]
        if dates != sorted(dates) or len(set(dates)) != len(dates):
            raise ValueError("milestones must have distinct dates in ascending order")
        return self

    @field_validator("target")
    @classmethod
    def _target_form(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, str) and not _RELATIVE_TARGET.match(value):
            raise ValueError(
                f"target '{value}' is neither a number nor a relative change like '+20%' or '-10%'"
            )
        return value

    @property
    def baseline_is_computed(self) -> bool:
        return self.baseline == PREVIOUS_CYCLE

    def target_for(self, baseline: float | None) -> float | None:
        """The absolute target: '+20%' means 1.2 × baseline; None while the baseline is unknown."""
        if self.target is None:
            return None
        if isinstance(self.target, str):
            if baseline is None:
                return None
            match = _RELATIVE_TARGET.match(self.target)
            assert match is not None  # guaranteed by the validator
            sign = 1.0 if match.group(1) == "+" else -1.0
            return baseline * (1.0 + sign * float(match.group(2)) / 100.0)
        return float(self.target)

    @property
    def target_value(self) -> float | None:
        """The absolute target when the baseline is a number (None for `previous_cycle`)."""
        return self.target_for(None if self.baseline_is_computed else float(self.baseline))


class Objective(_Model):
    key: Key
    title: str
    level: Level
    team: str | None = None
    owner: str | None = None
    aligns_to: Key | None = None
    ambition: Ambition = Ambition.roofshot
    key_results: list[KeyResult] = Field(min_length=1)

    @model_validator(mode="after")
    def _team_for_team_level(self) -> Objective:
        if self.level is not Level.company and not self.team:
            raise ValueError(f"a {self.level.value}-level objective needs a `team`")
        return self


class HealthyRange(_Model):
    min: float | None = None
    max: float | None = None

    @field_validator("min", "max")
    @classmethod
    def _sensible(cls, value: float | None, info: ValidationInfo) -> float | None:
        return sensible_number(value, str(info.field_name))

    @model_validator(mode="after")
    def _ordered(self) -> HealthyRange:
        if self.min is None and self.max is None:
            raise ValueError("a healthy range needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"healthy.min ({self.min}) is above healthy.max ({self.max})")
        return self


class Kpi(_Model):
    key: Key
    title: str
    metric: str
    team: str | None = None
    where: Filters = Field(default_factory=dict)
    window: str = Field(default="rolling_90d", description="`rolling_<days>d` (default 90 days).")
    basis: Literal["count", "amount"] = "count"
    healthy: HealthyRange

    @field_validator("window")
    @classmethod
    def _rolling_only(cls, value: str) -> str:
        _check_window(value)
        if value == "cycle":
            raise ValueError("a KPI is not tied to a cycle: use a rolling window like rolling_90d")
        return value


# --- custom metrics, MetricFlow-like ------------------------------------------------------------


class _MetricModel(_Model):
    @field_validator("min", "max", check_fields=False)
    @classmethod
    def _sensible(cls, value: float | None, info: ValidationInfo) -> float | None:
        return sensible_number(value, str(info.field_name))


class SimpleMetric(_MetricModel):
    """An aggregation over one canonical column of one entity, with structured filters."""

    name: MetricName
    type: Literal["simple"]
    description: str = ""
    entity: Literal["deals", "nps_responses", "customers"] = "deals"
    agg: Literal["sum", "count", "average", "min", "max", "count_distinct"]
    expr: str | None = Field(default=None, description="The canonical column to aggregate.")
    filter: Filters = Field(default_factory=dict)
    date: str | None = Field(
        default=None,
        description="The date column the window applies to (deals: close_date; "
        "nps_responses: submitted_day; customers: created_day).",
    )
    unit: Literal["currency", "count", "ratio", "score", "days", "number"] = "number"
    kind: Literal["accumulating", "level"] | None = Field(
        default=None,
        description="accumulating (starts at 0 each cycle and grows) or level (a rate or average); "
        "derived from the metric's definition when left out.",
    )
    min: float | None = Field(default=None, description="Smallest valid value (validation gate).")
    max: float | None = Field(default=None, description="Largest valid value (validation gate).")

    @model_validator(mode="after")
    def _expr_unless_count(self) -> SimpleMetric:
        if self.agg != "count" and not self.expr:
            raise ValueError(f"agg '{self.agg}' needs `expr`: the column to aggregate")
        return self


class RatioMetric(_MetricModel):
    """numerator ÷ denominator, both metrics (built-in or custom)."""

    name: MetricName
    type: Literal["ratio"]
    description: str = ""
    numerator: MetricName
    denominator: MetricName
    unit: Literal["currency", "count", "ratio", "score", "days", "number"] = "ratio"
    kind: Literal["accumulating", "level"] | None = Field(
        default=None,
        description="accumulating (starts at 0 each cycle and grows) or level (a rate or average); "
        "derived from the metric's definition when left out.",
    )
    min: float | None = None
    max: float | None = None


class DerivedMetric(_MetricModel):
    """Arithmetic (+ − × ÷, numbers, parentheses) over other metrics; parsed, never eval'd."""

    name: MetricName
    type: Literal["derived"]
    description: str = ""
    expr: str = Field(description="e.g. 'won_revenue - existing_customer_revenue'")
    metrics: list[MetricName] = Field(min_length=1)
    unit: Literal["currency", "count", "ratio", "score", "days", "number"] = "number"
    kind: Literal["accumulating", "level"] | None = Field(
        default=None,
        description="accumulating (starts at 0 each cycle and grows) or level (a rate or average); "
        "derived from the metric's definition when left out.",
    )
    min: float | None = None
    max: float | None = None


CustomMetric = Annotated[SimpleMetric | RatioMetric | DerivedMetric, Field(discriminator="type")]


class DefinitionsFile(_Model):
    """One YAML file: a cycle with its objectives, and/or standing KPIs, and/or custom metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: str | None = Field(default=None, alias="$schema", exclude=True)
    cycle: Cycle | None = None
    objectives: list[Objective] = Field(default_factory=list)
    kpis: list[Kpi] = Field(default_factory=list)
    metrics: list[CustomMetric] = Field(default_factory=list)

    @model_validator(mode="after")
    def _objectives_need_cycle(self) -> DefinitionsFile:
        if self.objectives and self.cycle is None:
            raise ValueError("objectives need a `cycle:` section in the same file")
        return self


# ---------------------------------------------------------------------------------------------
# The merged result and its problems


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    severity: str = "error"
    code: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        message = " ".join(self.message.split("\n"))  # one problem, one line (titles may wrap)
        return f"{where}: {self.severity}: {message}"


class DefinitionError(ValueError):
    """Definitions that cannot be used; `problems` names each file, line and fix."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class LoadedObjective:
    cycle: Cycle
    objective: Objective
    file: str


@dataclass(frozen=True)
class Location:
    file: str
    line: int | None


@dataclass
class DefinitionSet:
    """All definitions found under a path, merged; keys are unique within their kind."""

    cycles: dict[str, Cycle] = field(default_factory=dict)
    objectives: list[LoadedObjective] = field(default_factory=list)
    kpis: list[Kpi] = field(default_factory=list)
    custom_metrics: list[SimpleMetric | RatioMetric | DerivedMetric] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # Where each thing was defined: ("kr", cycle/key), ("objective", cycle/key), ("kpi", key),
    # ("metric", name), with sub-keys like ("kr", cycle/key, "target") for single fields.
    locations: dict[tuple[str, ...], Location] = field(default_factory=dict)
    library: dict[str, Any] = field(default_factory=dict)  # metric name -> MetricSpec

    def cycles_at(self, day: dt.date) -> list[Cycle]:
        return [c for c in self.cycles.values() if c.contains(day)]

    def key_results(self) -> Iterable[tuple[LoadedObjective, KeyResult]]:
        for loaded in self.objectives:
            for kr in loaded.objective.key_results:
                yield loaded, kr

    def find_key_result(
        self, key: str, cycle: str | None = None
    ) -> tuple[LoadedObjective, KeyResult]:
        matches = [
            (lo, kr)
            for lo, kr in self.key_results()
            if kr.key == key and cycle in (None, lo.cycle.key)
        ]
        if not matches:
            raise KeyError(f"no key result '{key}'" + (f" in cycle {cycle}" if cycle else ""))
        if len(matches) > 1:
            cycles = ", ".join(lo.cycle.key for lo, _ in matches)
            raise KeyError(
                f"key result '{key}' exists in several cycles ({cycles}): name the cycle"
            )
        return matches[0]


def definition_version(*parts: BaseModel) -> str:
    """A short content hash: the same definition always gives the same version."""
    payload = json.dumps([p.model_dump(mode="json") for p in parts], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]

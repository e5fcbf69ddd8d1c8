"""KR and KPI definitions: pydantic models, and the YAML loader that reports file and line."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

Key = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)]
FilterValue = str | int | float | bool | list[str | int | float | bool]
_RELATIVE_TARGET = re.compile(r"^\s*([+-])\s*(\d+(?:\.\d+)?)\s*%\s*$")


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


class Cycle(_Model):
    key: Key
    start: dt.date
    end: dt.date
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown timezone '{value}'; use an IANA name like Europe/Berlin"
            ) from exc
        return value

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


class KeyResult(_Model):
    key: Key
    title: str
    metric: str
    where: dict[str, FilterValue] = Field(default_factory=dict)
    baseline: float
    target: float | str = Field(
        description="An absolute number, or a change relative to the baseline such as '+20%'."
    )
    unit: str | None = None

    @field_validator("target")
    @classmethod
    def _target_form(cls, value: float | str) -> float | str:
        if isinstance(value, str) and not _RELATIVE_TARGET.match(value):
            raise ValueError(
                f"target '{value}' is neither a number nor a relative change like '+20%' or '-10%'"
            )
        return value

    @property
    def target_value(self) -> float:
        """The absolute target: '+20%' means 1.2 × baseline."""
        if isinstance(self.target, str):
            match = _RELATIVE_TARGET.match(self.target)
            assert match is not None  # guaranteed by the validator
            sign = 1.0 if match.group(1) == "+" else -1.0
            return self.baseline * (1.0 + sign * float(match.group(2)) / 100.0)
        return float(self.target)


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
    where: dict[str, FilterValue] = Field(default_factory=dict)
    window_days: int = Field(default=90, ge=1, description="KPIs look back this many days.")
    healthy: HealthyRange


class DefinitionsFile(_Model):
    """One YAML file: a cycle with its objectives, and/or standing KPIs."""

    cycle: Cycle | None = None
    objectives: list[Objective] = Field(default_factory=list)
    kpis: list[Kpi] = Field(default_factory=list)

    @model_validator(mode="after")
    def _objectives_need_cycle(self) -> DefinitionsFile:
        if self.objectives and self.cycle is None:
            raise ValueError("objectives need a `cycle:` section in the same file")
        return self


# ---------------------------------------------------------------------------------------------
# Loading with line numbers


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}"


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


@dataclass
class DefinitionSet:
    """All definitions found under a path, merged; keys are unique within their kind."""

    cycles: dict[str, Cycle] = field(default_factory=dict)
    objectives: list[LoadedObjective] = field(default_factory=list)
    kpis: list[Kpi] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def cycles_at(self, day: dt.date) -> list[Cycle]:
        return [c for c in self.cycles.values() if c.contains(day)]

    def key_results(self) -> Iterable[tuple[LoadedObjective, KeyResult]]:
        for loaded in self.objectives:
            for kr in loaded.objective.key_results:
                yield loaded, kr


def definition_version(*parts: BaseModel) -> str:
    """A short content hash: the same definition always gives the same version."""
    payload = json.dumps([p.model_dump(mode="json") for p in parts], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node that `loc` (a pydantic error location) reaches."""
    line = None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown key '{error['loc'][-1]}' (check its spelling)"
        loc = ".".join(str(p) for p in error["loc"][:-1])
    elif error["type"] == "missing":
        message = f"missing required key '{error['loc'][-1]}'"
        loc = ".".join(str(p) for p in error["loc"][:-1])
    return f"{loc}: {message}" if loc else message


def _parse_file(path: Path, display: str) -> tuple[DefinitionsFile | None, Any, list[Problem]]:
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        return None, None, [Problem(display, line, f"invalid YAML: {exc.problem}")]
    except UnicodeDecodeError:
        return None, None, [Problem(display, None, "not UTF-8 text")]
    if data is None:
        return None, None, [Problem(display, None, "file is empty", "warning")]
    if not isinstance(data, CommentedMap):
        return (
            None,
            None,
            [Problem(display, 1, "expected a mapping with `cycle`, `objectives`, `kpis`")],
        )
    data.pop("$schema", None)
    try:
        return DefinitionsFile.model_validate(data), data, []
    except ValidationError as exc:
        problems = [
            Problem(display, _line_of(data, tuple(err["loc"])), _describe(err))
            for err in exc.errors(include_url=False)
        ]
        return None, data, problems


def definition_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_definitions(
    path: Path | str, *, known_metrics: dict[str, Any] | None = None
) -> DefinitionSet:
    """Load every YAML file under `path` into one DefinitionSet, or raise DefinitionError.

    `known_metrics` maps metric names to an object with a `filter_columns` attribute; metric
    names and `where` columns are then checked too, with the line of the offending key.
    """
    path = Path(path)
    if not path.exists():
        raise DefinitionError([Problem(str(path), None, "no such file or folder")])
    files = definition_files(path)
    if not files:
        raise DefinitionError([Problem(str(path), None, "no .yaml definition files found")])

    problems: list[Problem] = []
    result = DefinitionSet()
    seen: dict[tuple[str, str], str] = {}

    def claim(kind: str, key: str, where: str, line: int | None, display: str) -> None:
        if (kind, key) in seen:
            problems.append(
                Problem(
                    display,
                    line,
                    f"duplicate {kind} key '{key}' (also defined at {seen[(kind, key)]})",
                )
            )
        else:
            seen[(kind, key)] = where

    for file in files:
        display = str(file)
        parsed, raw, file_problems = _parse_file(file, display)
        problems.extend(p for p in file_problems if p.severity == "error")
        result.warnings.extend(p for p in file_problems if p.severity == "warning")
        if parsed is None:
            continue
        if parsed.cycle is not None:
            existing = result.cycles.get(parsed.cycle.key)
            if existing is not None and existing != parsed.cycle:
                problems.append(
                    Problem(
                        display,
                        _line_of(raw, ("cycle",)),
                        f"cycle '{parsed.cycle.key}' is defined differently in another file",
                    )
                )
            result.cycles[parsed.cycle.key] = parsed.cycle
        for i, objective in enumerate(parsed.objectives):
            loc = ("objectives", i)
            line = _line_of(raw, (*loc, "key"))
            claim(
                "objective",
                f"{parsed.cycle.key}/{objective.key}",
                f"{display}:{line}",
                line,
                display,
            )
            for j, kr in enumerate(objective.key_results):
                kr_loc = (*loc, "key_results", j)
                kr_line = _line_of(raw, (*kr_loc, "key"))
                claim(
                    "key result",
                    f"{parsed.cycle.key}/{kr.key}",
                    f"{display}:{kr_line}",
                    kr_line,
                    display,
                )
                if kr.target_value == kr.baseline:
                    problems.append(
                        Problem(
                            display,
                            _line_of(raw, (*kr_loc, "target")),
                            f"target equals baseline for KR '{kr.key}'; a KR must move",
                        )
                    )
                problems.extend(
                    _check_metric(kr.metric, kr.where, raw, kr_loc, display, known_metrics)
                )
            result.objectives.append(LoadedObjective(parsed.cycle, objective, display))
        for i, kpi in enumerate(parsed.kpis):
            line = _line_of(raw, ("kpis", i, "key"))
            claim("KPI", kpi.key, f"{display}:{line}", line, display)
            problems.extend(
                _check_metric(kpi.metric, kpi.where, raw, ("kpis", i), display, known_metrics)
            )
            result.kpis.append(kpi)

    for loaded in result.objectives:
        target = loaded.objective.aligns_to
        if target and ("objective", f"{loaded.cycle.key}/{target}") not in seen:
            problems.append(
                Problem(
                    loaded.file,
                    None,
                    f"objective '{loaded.objective.key}' aligns_to '{target}', which is not an "
                    f"objective of cycle {loaded.cycle.key}",
                )
            )
    if problems:
        raise DefinitionError(problems)
    return result


def _check_metric(
    metric: str,
    where: dict[str, Any],
    raw: Any,
    loc: tuple[Any, ...],
    display: str,
    known_metrics: dict[str, Any] | None,
) -> list[Problem]:
    if known_metrics is None:
        return []
    if metric not in known_metrics:
        return [
            Problem(
                display,
                _line_of(raw, (*loc, "metric")),
                f"unknown metric '{metric}'; known metrics: {', '.join(sorted(known_metrics))}",
            )
        ]
    allowed = known_metrics[metric].filter_columns
    return [
        Problem(
            display,
            _line_of(raw, (*loc, "where", column)),
            f"metric '{metric}' cannot be filtered by '{column}'; "
            f"filter columns: {', '.join(sorted(allowed))}",
        )
        for column in where
        if column not in allowed
    ]

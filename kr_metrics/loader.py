"""Load definition YAML files into one DefinitionSet; every problem names its file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from kr_metrics import plain_errors
from kr_metrics.definitions import (
    PREVIOUS_CYCLE,
    Cycle,
    DefinitionError,
    DefinitionSet,
    DefinitionsFile,
    LoadedObjective,
    Location,
    Problem,
    implied_dates,
)

SCHEMA_FILE = "krpulse-definitions.schema.json"
CYCLE_CODES = ("cycle-key-dates", "cycle-timezone")


def line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node that `loc` (a pydantic error location) reaches."""
    line = node.lc.line + 1 if isinstance(node, CommentedMap | CommentedSeq) else None
    for part in plain_errors.data_path(node, loc):
        # Keys merged in with `<<: *anchor` have no position of their own: keep the parent's.
        position = node.lc.data.get(part) if hasattr(node, "lc") else None
        line = position[0] + 1 if position else line
        node = node[part]
    return line


def _read_yaml(path: Path, display: str) -> tuple[Any, list[Problem]]:
    """The file's YAML, or the problems that stop it from being read (with their lines)."""
    yaml = YAML(typ="rt")
    yaml.Constructor = plain_errors.DefinitionsConstructor
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        return None, [
            Problem(
                display,
                line,
                "the file is not UTF-8 text: save it as UTF-8 "
                "(in Excel or an editor: 'Save as… UTF-8')",
                code="encoding",
            )
        ]
    try:
        return yaml.load(text), []
    except MarkedYAMLError as exc:
        line, message = plain_errors.yaml_problem(exc)
        return None, [Problem(display, line or 1, message, code="yaml")]
    except ReaderError as exc:
        line, message = plain_errors.reader_problem(exc, text)
        return None, [Problem(display, line, message, code="yaml")]
    except YAMLError as exc:  # no mark in some ruamel versions: point at the top of the file
        return None, [Problem(display, 1, f"invalid YAML: {exc}", code="yaml")]
    except RecursionError:
        return None, [
            Problem(
                display,
                1,
                "invalid YAML: the file nests lists or blocks too deeply to be a definitions file",
                code="yaml",
            )
        ]


def _parse_file(path: Path, display: str) -> tuple[DefinitionsFile | None, Any, list[Problem]]:
    data, problems = _read_yaml(path, display)
    if problems:
        return None, None, problems
    if data is None:
        return None, None, [Problem(display, 1, "file is empty", "warning", code="empty")]
    if not isinstance(data, CommentedMap):
        line = data.lc.line + 1 if hasattr(data, "lc") else 1
        message = (
            "expected a block of `cycle:`, `objectives:`, `kpis:` or `metrics:` at the top "
            f"of the file, found {plain_errors.describe_value(data)}"
        )
        return None, None, [Problem(display, line, message, code="shape")]
    try:
        return DefinitionsFile.model_validate(data), data, []
    except ValidationError as exc:
        return None, data, _validation_problems(exc, data, display)
    except RecursionError:
        return (
            None,
            data,
            [
                Problem(
                    display,
                    1,
                    "the file nests lists or blocks too deeply to be a definitions file",
                    code="shape",
                )
            ],
        )


def _validation_problems(exc: ValidationError, data: Any, display: str) -> list[Problem]:
    """One plain sentence per field pydantic complained about, at the field's line."""
    problems = []
    grouped = []
    for err in exc.errors(include_url=False):
        err = {**err, "loc": tuple(p for p in err["loc"] if not str(p).startswith("function-"))}
        if err["type"] in (
            "extra_forbidden",
            "missing",
            "union_tag_invalid",
            "union_tag_not_found",
        ):
            problems.append(_shape_problem(err, data, display))
        else:
            grouped.append(err)
    for path, errors in plain_errors.group_errors(grouped, data):
        message = plain_errors.pydantic_message(errors, path)
        problems.append(_problem_at(data, path, display, message, errors[0]["type"]))
    return sorted(problems, key=lambda p: p.line or 0)


def _problem_at(data: Any, path: tuple, display: str, message: str, code: str) -> Problem:
    context = plain_errors.context_of(data, path)
    text = f"{context}: {message}" if context else message
    return Problem(display, line_of(data, path), text, code=code)


def _shape_problem(err: dict[str, Any], data: Any, display: str) -> Problem:
    """Unknown and missing keys, and a custom metric's `type:`."""
    loc, kind = err["loc"], err["type"]
    parent = plain_errors.data_path(data, loc[:-1])
    if kind == "extra_forbidden":
        message = (
            f"unknown key '{plain_errors.visible(str(loc[-1]))}' (check its spelling; "
            f"an editor with {SCHEMA_FILE} suggests the keys that exist)"
        )
        return _problem_at(data, (*parent, loc[-1]), display, message, kind)
    if kind == "missing":
        message = f"missing required key '{loc[-1]}': add `{loc[-1]}:`"
        return _problem_at(data, parent, display, message, kind)
    # A custom metric's `type:` is wrong or missing: pydantic reports it on the whole metric.
    metric_type = (*plain_errors.data_path(data, loc), "type")
    message = (
        f"`type: {err.get('ctx', {}).get('tag')}` is not a metric type"
        if kind == "union_tag_invalid"
        else "missing required key 'type'"
    )
    return _problem_at(
        data,
        metric_type,
        display,
        f"{message}: a metric's `type` is simple, ratio or derived",
        kind,
    )


def definition_files(path: Path) -> list[Path]:
    """The YAML files under `path`, skipping hidden folders and files: a Kubernetes ConfigMap
    volume keeps a second copy of every file in a hidden `..<timestamp>` folder."""
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


class _Collector:
    """Merges parsed files into one DefinitionSet, recording where each thing was defined."""

    def __init__(self, timezone: str | None):
        self.result = DefinitionSet()
        self.problems: list[Problem] = []
        self.timezone = timezone

    def claim(
        self, kind: str, key: str, display: str, line: int | None, *sub: tuple[str, int | None]
    ) -> bool:
        existing = self.result.locations.get((kind, key))
        if existing is not None:
            self.problems.append(
                Problem(
                    display,
                    line,
                    f"duplicate {kind} key '{key}' (also defined at {existing.file}:{existing.line}); "
                    "every key must be unique: rename one",
                    code="duplicate",
                )
            )
            return False
        self.result.locations[(kind, key)] = Location(display, line)
        for name, sub_line in sub:
            self.result.locations[(kind, key, name)] = Location(display, sub_line)
        return True

    def add_file(self, display: str, parsed: DefinitionsFile, raw: Any) -> None:
        for i, metric in enumerate(parsed.metrics):
            loc = ("metrics", i)
            self.claim(
                "metric",
                metric.name,
                display,
                line_of(raw, (*loc, "name")),
                *[
                    (f, line_of(raw, (*loc, f)))
                    for f in ("expr", "filter", "numerator", "denominator", "metrics", "type")
                ],
            )
            self.result.custom_metrics.append(metric)
        cycle = self._add_cycle(display, parsed.cycle, raw) if parsed.cycle else None
        for i, objective in enumerate(parsed.objectives):
            assert cycle is not None  # guaranteed by the model
            self._add_objective(display, cycle, objective, ("objectives", i), raw)
        for i, kpi in enumerate(parsed.kpis):
            loc = ("kpis", i)
            self.claim(
                "kpi",
                kpi.key,
                display,
                line_of(raw, (*loc, "key")),
                *[
                    (f, line_of(raw, (*loc, f)))
                    for f in ("metric", "where", "healthy", "basis", "window")
                ],
            )
            for column in kpi.where:
                self.result.locations[("kpi", kpi.key, "where", column)] = Location(
                    display, line_of(raw, (*loc, "where", column))
                )
            self.result.kpis.append(kpi)

    def _add_cycle(self, display: str, cycle: Cycle, raw: Any) -> Cycle:
        at = {f: line_of(raw, ("cycle", f)) for f in ("key", "start", "end", "timezone")}
        self.problems.extend(_cycle_problems(cycle, display, at, self.timezone))
        # The effective timezone: a cycle without `timezone:` reports in krpulse.yaml's.
        if cycle.timezone is None and self.timezone:
            cycle = cycle.model_copy(update={"timezone": self.timezone})
        existing = self.result.cycles.get(cycle.key)
        if existing is not None and existing != cycle:
            where = self.result.locations[("cycle", cycle.key)]
            self.problems.append(
                Problem(
                    display,
                    line_of(raw, ("cycle",)),
                    f"cycle '{cycle.key}' is defined differently at {where.file}:{where.line} "
                    f"({existing.start} .. {existing.end}, {existing.timezone}); make both the same",
                    code="cycle-conflict",
                )
            )
            return existing
        self.result.cycles[cycle.key] = cycle
        self.result.locations.setdefault(
            ("cycle", cycle.key), Location(display, line_of(raw, ("cycle",)))
        )
        for field, line in at.items():
            self.result.locations.setdefault(("cycle", cycle.key, field), Location(display, line))
        return cycle

    def _add_objective(self, display: str, cycle: Cycle, objective, loc: tuple, raw: Any) -> None:
        okey = f"{cycle.key}/{objective.key}"
        self.claim(
            "objective",
            okey,
            display,
            line_of(raw, (*loc, "key")),
            *[(f, line_of(raw, (*loc, f))) for f in ("aligns_to", "key_results", "title", "team")],
        )
        for j, kr in enumerate(objective.key_results):
            kr_loc = (*loc, "key_results", j)
            kr_key = f"{cycle.key}/{kr.key}"
            self.claim(
                "kr",
                kr_key,
                display,
                line_of(raw, (*kr_loc, "key")),
                *[
                    (f, line_of(raw, (*kr_loc, f)))
                    for f in (
                        "metric",
                        "where",
                        "baseline",
                        "target",
                        "start",
                        "basis",
                        "window",
                        "milestones",
                    )
                ],
            )
            for column in kr.where:
                self.result.locations[("kr", kr_key, "where", column)] = Location(
                    display, line_of(raw, (*kr_loc, "where", column))
                )
            for m, _ in enumerate(kr.milestones):
                self.result.locations[("kr", kr_key, "milestones", str(m))] = Location(
                    display, line_of(raw, (*kr_loc, "milestones", m))
                )
        self.result.objectives.append(LoadedObjective(cycle, objective, display))


def _cycle_problems(
    cycle: Cycle, display: str, at: dict[str, int | None], timezone: str | None
) -> list[Problem]:
    """A key that says another quarter than the dates, and a timezone krpulse would not use."""
    problems = []
    implied = implied_dates(cycle.key)
    if implied is not None:
        for field, given, meant in (
            ("start", cycle.start, implied[0]),
            ("end", cycle.end, implied[1]),
        ):
            if given != meant:
                problems.append(
                    Problem(
                        display,
                        at[field] or at["key"],
                        f"cycle key {cycle.key} stands for {implied[0]} .. {implied[1]}, but `{field}:` "
                        f"is {given}; fix the date, rename the cycle after its dates, or use a key that "
                        "is not a calendar quarter or month (e.g. FY27-Q1) when the dates are right",
                        code="cycle-key-dates",
                    )
                )
    if timezone and cycle.timezone and cycle.timezone != timezone:
        problems.append(
            Problem(
                display,
                at["timezone"] or at["key"],
                f"cycle {cycle.key} sets timezone {cycle.timezone}, but krpulse.yaml reports in "
                f"{timezone} and every day is cut in that timezone; remove `timezone:` from the cycle "
                "(it inherits krpulse.yaml's) or change `timezone:` in krpulse.yaml",
                code="cycle-timezone",
            )
        )
    return problems


def load_definitions(
    path: Path | str,
    *,
    known_metrics: dict[str, Any] | None = None,
    lint: bool = True,
    timezone: str | None = None,
) -> DefinitionSet:
    """Load every YAML file under `path` into one DefinitionSet, or raise DefinitionError.

    Files are parsed first, then references are checked across all of them (metric names,
    `where` columns, `aligns_to`, duplicate keys), then the OKR-method lint runs: its errors
    block like any other, its warnings are kept in `warnings`. `timezone` is krpulse.yaml's:
    a cycle without `timezone:` takes it, a cycle with another one is an error.
    """
    from kr_metrics.library import build_library

    path = Path(path)
    if not path.exists():
        raise DefinitionError([Problem(str(path), None, "no such file or folder")])
    files = definition_files(path)
    if not files:
        raise DefinitionError([Problem(str(path), None, "no .yaml definition files found")])

    collector = _Collector(timezone)
    result, problems = collector.result, collector.problems
    for file in files:
        display = str(file)
        parsed, raw, file_problems = _parse_file(file, display)
        problems.extend(p for p in file_problems if p.severity == "error")
        result.warnings.extend(p for p in file_problems if p.severity == "warning")
        if parsed is not None:
            collector.add_file(display, parsed, raw)

    library, library_problems = build_library(
        result.custom_metrics, result.locations, known_metrics
    )
    problems.extend(library_problems)
    result.library = library
    problems.extend(_check_references(result))
    # The lint needs every reference resolved; a cycle's dates or timezone do not stop it.
    blocking = [p for p in problems if p.code not in CYCLE_CODES]
    if lint and not blocking:
        from kr_metrics.lint import lint_definitions

        for problem in lint_definitions(result):
            (problems if problem.severity == "error" else result.warnings).append(problem)
    if problems:
        # Warnings go along, so a fix can address everything at once; in file and line order.
        found = [*problems, *result.warnings]
        raise DefinitionError(sorted(found, key=lambda p: (p.file, p.line or 0)))
    return result


def _check_references(result: DefinitionSet) -> list[Problem]:
    """Metric names, filter columns, bases and alignment, each reported at its own line."""
    problems: list[Problem] = []
    library = result.library

    def at(*key: str) -> tuple[str, int | None]:
        loc = result.locations.get(tuple(key)) or result.locations.get(tuple(key[:2]))
        return (loc.file, loc.line) if loc else ("?", None)

    def check(kind: str, key: str, metric: str, where: dict, basis: str) -> None:
        if metric not in library:
            known = ", ".join(sorted(library))
            problems.append(
                Problem(
                    *at(kind, key, "metric"),
                    f"unknown metric '{metric}'; known metrics: {known}",
                    code="unknown-metric",
                )
            )
            return
        allowed = library[metric].filter_columns
        for column in where:
            if column not in allowed:
                problems.append(
                    Problem(
                        *at(kind, key, "where", column),
                        f"metric '{metric}' cannot be filtered by '{column}'; "
                        f"filter columns: {', '.join(sorted(allowed))}",
                        code="bad-filter",
                    )
                )
        if basis == "amount" and metric != "win_rate":
            problems.append(
                Problem(
                    *at(kind, key, "basis"),
                    f"`basis: amount` only applies to win_rate, not '{metric}'",
                    code="bad-basis",
                )
            )

    for loaded, kr in result.key_results():
        key = f"{loaded.cycle.key}/{kr.key}"
        check("kr", key, kr.metric, kr.where, kr.basis)
        if kr.baseline == PREVIOUS_CYCLE and not isinstance(kr.target, str | float | int):
            continue  # pragma: no cover - model guarantees a target
        for milestone in kr.milestones:
            if not loaded.cycle.contains(milestone.date):
                problems.append(
                    Problem(
                        *at("kr", key, "milestones"),
                        f"milestone {milestone.date} of KR '{kr.key}' lies outside cycle "
                        f"{loaded.cycle.key} ({loaded.cycle.start} .. {loaded.cycle.end})",
                        code="milestone-outside",
                    )
                )
    for kpi in result.kpis:
        check("kpi", kpi.key, kpi.metric, kpi.where, kpi.basis)
    for loaded in result.objectives:
        target = loaded.objective.aligns_to
        okey = f"{loaded.cycle.key}/{loaded.objective.key}"
        if target and ("objective", f"{loaded.cycle.key}/{target}") not in result.locations:
            problems.append(
                Problem(
                    *at("objective", okey, "aligns_to"),
                    f"objective '{loaded.objective.key}' aligns_to '{target}', which is "
                    f"not an objective of cycle {loaded.cycle.key}",
                    code="bad-alignment",
                )
            )
        elif target == loaded.objective.key:
            problems.append(
                Problem(
                    *at("objective", okey, "aligns_to"),
                    f"objective '{target}' cannot align to itself",
                    code="bad-alignment",
                )
            )
    return problems

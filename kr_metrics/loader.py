"""Load definition YAML files into one DefinitionSet; every problem names its file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from kr_metrics.definitions import (
    PREVIOUS_CYCLE,
    DefinitionError,
    DefinitionSet,
    DefinitionsFile,
    LoadedObjective,
    Location,
    Problem,
)

SCHEMA_FILE = "krpulse-definitions.schema.json"


def line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
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


def _describe(error: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    # Discriminated unions add the tag (e.g. 'simple') to the location; drop it for humans.
    loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return loc, f"unknown key '{loc[-1]}' (check its spelling)"
    if error["type"] == "missing":
        return loc, f"missing required key '{loc[-1]}'"
    if error["type"] == "union_tag_invalid":
        message = f"{message}; a metric's `type` is simple, ratio or derived"
    return loc, message


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _parse_file(path: Path, display: str) -> tuple[DefinitionsFile | None, Any, list[Problem]]:
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        return None, None, [Problem(display, line, f"invalid YAML: {exc.problem}", code="yaml")]
    except YAMLError as exc:  # e.g. duplicate keys are reported without a mark in some versions
        return None, None, [Problem(display, None, f"invalid YAML: {exc}", code="yaml")]
    except UnicodeDecodeError:
        return None, None, [Problem(display, None, "not UTF-8 text", code="encoding")]
    if data is None:
        return None, None, [Problem(display, None, "file is empty", "warning", code="empty")]
    if not isinstance(data, CommentedMap):
        line = data.lc.line + 1 if hasattr(data, "lc") else 1
        return (
            None,
            None,
            [
                Problem(
                    display,
                    line,
                    "expected a mapping with `cycle`, `objectives`, `kpis`, `metrics`",
                    code="shape",
                )  # fmt: skip
            ],
        )
    try:
        return DefinitionsFile.model_validate(data), data, []
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc, message = _describe(err)
            field_loc = loc[:-1] if err["type"] in ("extra_forbidden", "missing") else loc
            text = f"{_where(field_loc)}: {message}" if field_loc else message
            # A wrong metric `type` is reported on the union; point at the `type:` line itself.
            line_loc = (
                (*err["loc"], "type") if err["type"] == "union_tag_invalid" else tuple(err["loc"])
            )
            problems.append(Problem(display, line_of(data, line_loc), text, code=err["type"]))
        return None, data, problems


def definition_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_definitions(
    path: Path | str, *, known_metrics: dict[str, Any] | None = None, lint: bool = True
) -> DefinitionSet:
    """Load every YAML file under `path` into one DefinitionSet, or raise DefinitionError.

    Files are parsed first, then references are checked across all of them (metric names,
    `where` columns, `aligns_to`, duplicate keys), then the OKR-method lint runs: its errors
    block like any other, its warnings are kept in `warnings`.
    """
    from kr_metrics.library import build_library

    path = Path(path)
    if not path.exists():
        raise DefinitionError([Problem(str(path), None, "no such file or folder")])
    files = definition_files(path)
    if not files:
        raise DefinitionError([Problem(str(path), None, "no .yaml definition files found")])

    problems: list[Problem] = []
    result = DefinitionSet()
    parsed_files: list[tuple[str, DefinitionsFile, Any]] = []
    for file in files:
        display = str(file)
        parsed, raw, file_problems = _parse_file(file, display)
        problems.extend(p for p in file_problems if p.severity == "error")
        result.warnings.extend(p for p in file_problems if p.severity == "warning")
        if parsed is not None:
            parsed_files.append((display, parsed, raw))

    def claim(
        kind: str, key: str, display: str, line: int | None, *sub: tuple[str, int | None]
    ) -> bool:
        existing = result.locations.get((kind, key))
        if existing is not None:
            problems.append(
                Problem(
                    display,
                    line,
                    f"duplicate {kind} key '{key}' (also defined at {existing.file}:{existing.line})",
                    code="duplicate",
                )  # fmt: skip
            )
            return False
        result.locations[(kind, key)] = Location(display, line)
        for name, sub_line in sub:
            result.locations[(kind, key, name)] = Location(display, sub_line)
        return True

    for display, parsed, raw in parsed_files:
        for i, metric in enumerate(parsed.metrics):
            loc = ("metrics", i)
            claim("metric", metric.name, display, line_of(raw, (*loc, "name")),
                  *[(f, line_of(raw, (*loc, f))) for f in ("expr", "filter", "numerator",
                                                           "denominator", "metrics", "type")])  # fmt: skip
            result.custom_metrics.append(metric)
        if parsed.cycle is not None:
            existing = result.cycles.get(parsed.cycle.key)
            if existing is not None and existing != parsed.cycle:
                problems.append(
                    Problem(
                        display,
                        line_of(raw, ("cycle",)),
                        f"cycle '{parsed.cycle.key}' is defined differently in another file",
                        code="cycle-conflict",
                    )  # fmt: skip
                )
            result.cycles[parsed.cycle.key] = parsed.cycle
            result.locations.setdefault(
                ("cycle", parsed.cycle.key), Location(display, line_of(raw, ("cycle",)))
            )
        for i, objective in enumerate(parsed.objectives):
            assert parsed.cycle is not None  # guaranteed by the model
            loc = ("objectives", i)
            okey = f"{parsed.cycle.key}/{objective.key}"
            claim("objective", okey, display, line_of(raw, (*loc, "key")),
                  ("aligns_to", line_of(raw, (*loc, "aligns_to"))),
                  ("key_results", line_of(raw, (*loc, "key_results"))))  # fmt: skip
            for j, kr in enumerate(objective.key_results):
                kr_loc = (*loc, "key_results", j)
                claim("kr", f"{parsed.cycle.key}/{kr.key}", display, line_of(raw, (*kr_loc, "key")),
                      *[(f, line_of(raw, (*kr_loc, f))) for f in
                        ("metric", "where", "baseline", "target", "basis", "window", "milestones")])  # fmt: skip
                for column in kr.where:
                    result.locations[("kr", f"{parsed.cycle.key}/{kr.key}", "where", column)] = (
                        Location(display, line_of(raw, (*kr_loc, "where", column)))
                    )
            result.objectives.append(LoadedObjective(parsed.cycle, objective, display))
        for i, kpi in enumerate(parsed.kpis):
            loc = ("kpis", i)
            claim("kpi", kpi.key, display, line_of(raw, (*loc, "key")),
                  *[(f, line_of(raw, (*loc, f))) for f in ("metric", "where", "healthy", "basis")])  # fmt: skip
            for column in kpi.where:
                result.locations[("kpi", kpi.key, "where", column)] = Location(
                    display, line_of(raw, (*loc, "where", column))
                )
            result.kpis.append(kpi)

    library, library_problems = build_library(
        result.custom_metrics, result.locations, known_metrics
    )
    problems.extend(library_problems)
    result.library = library
    problems.extend(_check_references(result))
    if lint and not problems:
        from kr_metrics.lint import lint_definitions

        for problem in lint_definitions(result):
            (problems if problem.severity == "error" else result.warnings).append(problem)
    if problems:
        raise DefinitionError(problems)
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
            problems.append(Problem(*at(kind, key, "metric"),
                                    f"unknown metric '{metric}'; known metrics: {known}", code="unknown-metric"))  # fmt: skip
            return
        allowed = library[metric].filter_columns
        for column in where:
            if column not in allowed:
                problems.append(Problem(*at(kind, key, "where", column),
                                        f"metric '{metric}' cannot be filtered by '{column}'; "
                                        f"filter columns: {', '.join(sorted(allowed))}", code="bad-filter"))  # fmt: skip
        if basis == "amount" and metric != "win_rate":
            problems.append(Problem(*at(kind, key, "basis"),
                                    f"`basis: amount` only applies to win_rate, not '{metric}'", code="bad-basis"))  # fmt: skip

    for loaded, kr in result.key_results():
        key = f"{loaded.cycle.key}/{kr.key}"
        check("kr", key, kr.metric, kr.where, kr.basis)
        if kr.baseline == PREVIOUS_CYCLE and not isinstance(kr.target, str | float | int):
            continue  # pragma: no cover - model guarantees a target
        for milestone in kr.milestones:
            if not loaded.cycle.contains(milestone.date):
                problems.append(Problem(*at("kr", key, "milestones"),
                                        f"milestone {milestone.date} of KR '{kr.key}' lies outside cycle "
                                        f"{loaded.cycle.key} ({loaded.cycle.start} .. {loaded.cycle.end})",
                                        code="milestone-outside"))  # fmt: skip
    for kpi in result.kpis:
        check("kpi", kpi.key, kpi.metric, kpi.where, kpi.basis)
    for loaded in result.objectives:
        target = loaded.objective.aligns_to
        okey = f"{loaded.cycle.key}/{loaded.objective.key}"
        if target and ("objective", f"{loaded.cycle.key}/{target}") not in result.locations:
            problems.append(Problem(*at("objective", okey, "aligns_to"),
                                    f"objective '{loaded.objective.key}' aligns_to '{target}', which is "
                                    f"not an objective of cycle {loaded.cycle.key}", code="bad-alignment"))  # fmt: skip
        elif target == loaded.objective.key:
            problems.append(Problem(*at("objective", okey, "aligns_to"),
                                    f"objective '{target}' cannot align to itself", code="bad-alignment"))  # fmt: skip
    return problems

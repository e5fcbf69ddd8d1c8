"""OKR-method lint: the method's rules checked on a whole definition set (errors block, warnings inform)."""

from __future__ import annotations

import difflib
import itertools
import re
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.canonical import METRIC_TABLES
from kr_metrics.definitions import (
    LARGEST_NUMBER,
    DefinitionSet,
    KeyResult,
    Kpi,
    Level,
    LoadedObjective,
    Problem,
    window_days,
)
from kr_metrics.metrics import LEVEL, PreparedData
from kr_metrics.scoring import key_result_kind, start_value

if TYPE_CHECKING:
    from kr_metrics.sql.engine import Staged

MAX_OBJECTIVES_PER_TEAM = 5
MAX_OBJECTIVES_FIRST_CYCLE = 3
MIN_KRS, MAX_KRS = 2, 4
# A target this many times its baseline is much more often an extra zero than an ambition.
SUSPICIOUS_FACTOR = 100
# Filter columns that say whose records a KR counts (docs: "Team KRs count the team's records").
TEAM_COLUMNS = ("team", "customer_team", "owner_id")
LEVEL_RANK = {Level.company: 0, Level.team: 1, Level.individual: 2}
RECORDS = {"deals": "deals", "nps_responses": "NPS responses", "customers": "customers"}
RECORD = {"deals": "deal", "customers": "customer", "nps_responses": "NPS response"}
_MAINTAIN_WORDS = re.compile(
    r"\b(maintain|keep|stay|remain|sustain|hold|no (?:less|lower) than)\b", re.I
)
_BINARY_WORDS = re.compile(
    r"\b(launch|launched|implement|introduce|roll ?out|go[- ]live|complete|yes/no)\b", re.I
)
# Numbers in an objective's title: a percentage, an amount of money, a count. Years (2026) and
# cycle names (Q4, H2) are not: "Win DACH in 2026" is still qualitative.
_QUANTITY = re.compile(
    r"(\d[\d,.]*\s*(%|percent|k\b|m\b|mio|eur|usd|gbp|chf|€|\$|£))|([€$£]\s*\d)"
    r"|(?<![\w/-])(?!(?:19|20)\d\d\b)\d[\d,.]*(?![\w/-])",
    re.I,
)

Report = Callable[[tuple[str, ...], str, str, str], None]


def lint_definitions(definitions: DefinitionSet) -> list[Problem]:
    problems: list[Problem] = []

    def at(*key: str) -> tuple[str, int | None]:
        return located(definitions, key)

    def report(key: tuple[str, ...], message: str, severity: str, code: str) -> None:
        problems.append(Problem(*at(*key), message, severity, code))

    for loaded, kr in definitions.key_results():
        kr_key = ("kr", f"{loaded.cycle.key}/{kr.key}")
        _lint_key_result(loaded, kr, kr_key, definitions, report)
        _lint_numbers(kr, kr_key, report)
        _lint_milestones(kr, kr_key, start_of(kr, definitions), report)
        _lint_window(loaded, kr, kr_key, report)
        _lint_filters(kr.where, kr_key, definitions, kr.metric, report)
        _lint_team_scope(loaded, kr, kr_key, definitions, report)
    for kpi in definitions.kpis:
        _lint_filters(kpi.where, ("kpi", kpi.key), definitions, kpi.metric, report)
        if kpi.team and not any(c in kpi.where for c in TEAM_COLUMNS):
            report(
                ("kpi", kpi.key),
                f"KPI '{kpi.key}' is team {kpi.team}'s but has no `team` in "
                "`where:`, so it watches every team's records; add `where: {team: "
                f"{kpi.team}}}`",
                "warning",
                "team-scope",
            )
    for metric in definitions.custom_metrics:
        _lint_filters(
            getattr(metric, "filter", {}),
            ("metric", metric.name),
            None,
            None,
            report,
            field="filter",
        )
    _lint_objectives(definitions, report)
    _lint_alignment(definitions, report)
    problems.extend(_overlapping_key_results(definitions, at))
    problems.extend(_kpi_conflicts(definitions, at))
    return problems


def located(definitions: DefinitionSet, key: tuple[str, ...]) -> tuple[str, int | None]:
    """File and line of `key`, else of the nearest thing it belongs to (a field's KR, ...)."""
    for length in range(len(key), 1, -1):
        loc = definitions.locations.get(key[:length])
        if loc is not None and loc.line:
            return loc.file, loc.line
    return "?", None


def start_of(kr: KeyResult, definitions: DefinitionSet) -> float | None:
    """Where the KR's progress bar starts, by the scoring's own rule; None while unknown
    (a level KR whose baseline is `previous_cycle`)."""
    spec = definitions.library.get(kr.metric)
    kind = key_result_kind(spec.kind if spec else LEVEL, rolling=window_days(kr.window) is not None)
    baseline = None if kr.baseline_is_computed else float(kr.baseline)
    return start_value(kind, baseline, kr.start)


# --- one key result -----------------------------------------------------------------------------


def _lint_key_result(loaded, kr: KeyResult, kr_key, definitions, report: Report) -> None:
    if kr.target is None:
        baseline = (
            "" if kr.baseline_is_computed else f" (its baseline is {float(kr.baseline):,.2f})"
        )
        report(
            (*kr_key, "target"),
            f"KR '{kr.key}' has no target yet{baseline}: set `target:` to an "
            "absolute number or a change like +20%",
            "error",
            "missing-target",
        )
        return
    if _relative_on_nonpositive(kr):
        return  # the only thing to say about such a target: _lint_numbers says it
    if not kr.baseline_is_computed and kr.target_value == float(kr.baseline):
        report(
            (*kr_key, "target"),
            f"target equals baseline for KR '{kr.key}'; a KR must move",
            "error",
            "target-equals-baseline",
        )
    baseline = None if kr.baseline_is_computed else float(kr.baseline)
    target = kr.target_value
    spec = definitions.library.get(kr.metric)
    if (
        baseline is not None
        and target is not None
        and {baseline, target} <= {0.0, 1.0}
        and (spec is None or spec.unit != "ratio")
    ):
        report(
            (*kr_key, "target"),
            f"KR '{kr.key}' goes from {baseline:g} to {target:g}: a binary "
            "(done / not done) KR; measure the outcome it should bring instead",
            "warning",
            "binary",
        )
    elif _BINARY_WORDS.search(kr.title) and target in (1.0, None) and baseline in (0.0, None):
        report(
            kr_key,
            f"KR '{kr.key}' reads like a task ('{kr.title}'); a KR measures an outcome",
            "warning",
            "binary",
        )
    if _MAINTAIN_WORDS.search(kr.title):
        report(
            kr_key,
            f"KR '{kr.key}' reads like keeping a level ('{kr.title}'); that is a health "
            "metric: define it as a KPI under `kpis:` instead",
            "warning",
            "maintain",
        )
    if spec is not None and target is not None:
        low, high = spec.valid_range
        if (low is not None and target < low) or (high is not None and target > high):
            report(
                (*kr_key, "target"),
                f"target {target:g} of KR '{kr.key}' is outside what "
                f"{kr.metric} can reach ({low if low is not None else '-∞'} .. "
                f"{high if high is not None else '∞'})",
                "error",
                "unreachable-target",
            )
    start = start_of(kr, definitions)
    if kr.start is not None and start is not None and target == start:
        report(
            (*kr_key, "start"),
            f"KR '{kr.key}' starts at {start:g} and targets {target:g}: "
            "progress cannot move; set `start:` to where the KR begins",
            "error",
            "target-equals-start",
        )


def _relative_on_nonpositive(kr: KeyResult) -> bool:
    return isinstance(kr.target, str) and not kr.baseline_is_computed and float(kr.baseline) <= 0


def _lint_numbers(kr: KeyResult, kr_key, report: Report) -> None:
    """Relative targets need a positive baseline; a huge jump is more likely a typo."""
    baseline = None if kr.baseline_is_computed else float(kr.baseline)
    if _relative_on_nonpositive(kr):
        report(
            (*kr_key, "target"),
            f"KR '{kr.key}': a relative target ({kr.target.strip()}) of "
            f"baseline {baseline:g} is {kr.target_value:g}, which says nothing; a change in % "
            "needs a positive baseline: write an absolute target such as `target: 5000`",
            "error",
            "relative-target-baseline",
        )
        return
    target = kr.target_value
    if target is None:
        return
    if abs(target) > LARGEST_NUMBER:
        report(
            (*kr_key, "target"),
            f"KR '{kr.key}': target {kr.target} of baseline {baseline:g} is "
            f"{target:.3g}, absurdly large; check the percentage",
            "error",
            "absurd-target",
        )
    elif baseline and abs(target) >= SUSPICIOUS_FACTOR * abs(baseline):
        report(
            (*kr_key, "target"),
            f"KR '{kr.key}': target {target:g} is {abs(target / baseline):,.0f}× "
            f"the baseline {baseline:g}; check for an extra zero or a percentage written as a "
            "whole number",
            "warning",
            "target-magnitude",
        )


def _lint_milestones(kr: KeyResult, kr_key, start: float | None, report: Report) -> None:
    """Milestones run from start to target: in between, and never backwards."""
    target = kr.target_value
    if start is None or target is None or target == start:
        return
    direction = 1.0 if target > start else -1.0
    previous = None
    for i, milestone in enumerate(kr.milestones):
        value, key = milestone.target, (*kr_key, "milestones", str(i))
        label = f"milestone {milestone.date} ({value:g}) of KR '{kr.key}'"
        if (value - start) * direction < 0:
            report(
                key,
                f"{label} lies on the wrong side of the start {start:g}: the KR runs from "
                f"{start:g} to {target:g}; set the milestone between them",
                "warning",
                "milestone",
            )
        elif (value - target) * direction > 0:
            report(
                key,
                f"{label} lies beyond the target {target:g}: the KR runs from {start:g} to "
                f"{target:g}; raise the target or lower the milestone",
                "warning",
                "milestone",
            )
        elif previous is not None and (value - previous.target) * direction < 0:
            report(
                key,
                f"{label} goes backwards from {previous.target:g} on {previous.date}: the "
                f"expected path runs from {start:g} to {target:g} and must not turn back; "
                "fix the order of the values",
                "error",
                "milestone-backwards",
            )
        else:
            previous = milestone


def _lint_window(loaded: LoadedObjective, kr: KeyResult, kr_key, report: Report) -> None:
    days = window_days(kr.window)
    if days and days > loaded.cycle.days:
        report(
            (*kr_key, "window"),
            f"KR '{kr.key}' uses {kr.window}, longer than cycle "
            f"{loaded.cycle.key} ({loaded.cycle.days} days): most of its number comes from "
            f"before the cycle, so the cycle's work barely moves it; use rolling_{loaded.cycle.days}d "
            "or shorter, or `window: cycle`",
            "warning",
            "window-longer-than-cycle",
        )


def _lint_filters(
    where: dict,
    key,
    definitions: DefinitionSet | None,
    metric: str | None,
    report: Report,
    field: str = "where",
) -> None:
    """Filters that match nothing (an empty list, or the metric's own filter contradicted)."""
    for column, condition in where.items():
        values, negated = _values(condition)
        if not values and not negated:
            report(
                (*key, field, column),
                f"{field}: {column}: [] matches no record, so the number "
                f"would always be 0 or missing; list at least one {column} or remove the line",
                "error",
                "empty-filter",
            )
        elif not values:
            report(
                (*key, field, column),
                f"{field}: {column}: {{not: []}} excludes nothing; "
                "remove the line or list what to exclude",
                "warning",
                "empty-filter",
            )
    spec = definitions.library.get(metric) if definitions and metric else None
    if spec is not None and spec.filters and not scopes_overlap(spec.filters, where):
        clash = sorted(spec.filters.keys() & where.keys())
        column = clash[0] if clash else next(iter(where), "")
        report(
            (*key, field, column),
            f"{field}: {column}: {_describe_condition(where.get(column))} "
            f"contradicts metric '{metric}''s own filter {column}: "
            f"{_describe_condition(spec.filters.get(column))}: no record can match both; "
            "change the filter or use another metric",
            "error",
            "contradictory-filter",
        )


def _lint_team_scope(
    loaded: LoadedObjective, kr: KeyResult, kr_key, definitions, report: Report
) -> None:
    """A team objective's KRs count the team's records only when `where:` says so (the engine
    filters by `where:` alone; the objective's `team:` labels the KR, it does not filter it)."""
    objective = loaded.objective
    if objective.level is Level.company or not objective.team:
        return
    scoped = [c for c in TEAM_COLUMNS if c in kr.where]
    if not scoped:
        spec = definitions.library.get(kr.metric)
        records = RECORDS.get(spec.entity, "records") if spec else "records"
        counted = (
            f"every team's {records} that match {_describe_where(kr.where)}"
            if kr.where
            else f"the whole company's {records}"
        )
        report(
            (*kr_key, "where") if kr.where else kr_key,
            f"KR '{kr.key}' belongs to team {objective.team}'s objective '{objective.key}' but has "
            f"no `team` in `where:`, so its number counts {counted}; add `team: {objective.team}` "
            "to its `where:`",
            "warning",
            "team-scope",
        )
        return
    team = kr.where.get("team", kr.where.get("customer_team"))
    if isinstance(team, str) and team != objective.team:
        column = "team" if "team" in kr.where else "customer_team"
        report(
            (*kr_key, "where", column),
            f"KR '{kr.key}' filters on {column} {team}, but its "
            f"objective '{objective.key}' belongs to team {objective.team}; filter on "
            f"{objective.team} or move the KR to {team}'s objective",
            "warning",
            "team-scope",
        )


# --- objectives ---------------------------------------------------------------------------------


def _lint_objectives(definitions: DefinitionSet, report: Report) -> None:
    objectives_by_team: dict[tuple[str, str], list[LoadedObjective]] = defaultdict(list)
    for loaded in definitions.objectives:
        objective = loaded.objective
        okey = ("objective", f"{loaded.cycle.key}/{objective.key}")
        count = len(objective.key_results)
        if count < MIN_KRS or count > MAX_KRS:
            report(
                (*okey, "key_results"),
                f"objective '{objective.key}' has {count} key result(s); the method asks for "
                f"{MIN_KRS} to {MAX_KRS} per objective",
                "warning",
                "kr-count",
            )
        if objective.level is not Level.company and not objective.aligns_to:
            report(
                okey,
                f"{objective.level.value} objective '{objective.key}' is aligned to nothing; "
                "set `aligns_to:` to the company objective it serves",
                "warning",
                "unaligned",
            )
        if number := _QUANTITY.search(objective.title):
            report(
                (*okey, "title"),
                f"objective '{objective.key}' has a number in its title "
                f"('{number.group(0).strip()}' in '{objective.title}'); an objective says what "
                "to achieve in words, its key results carry the numbers: move the number into "
                "a KR's target",
                "warning",
                "quantitative-objective",
            )
        if objective.team:
            objectives_by_team[(loaded.cycle.key, objective.team)].append(loaded)

    for (cycle_key, team), objectives in objectives_by_team.items():
        first = objectives[0]
        okey = ("objective", f"{cycle_key}/{first.objective.key}")
        earlier = [
            lo
            for lo in definitions.objectives
            if lo.objective.team == team and lo.cycle.start < first.cycle.start
        ]
        if len(objectives) > MAX_OBJECTIVES_PER_TEAM:
            report(
                okey,
                f"team '{team}' has {len(objectives)} objectives in cycle {cycle_key}; "
                f"keep it to {MAX_OBJECTIVES_PER_TEAM} at most",
                "warning",
                "too-many-objectives",
            )
        elif not earlier and len(objectives) > MAX_OBJECTIVES_FIRST_CYCLE:
            report(
                okey,
                f"team '{team}' starts with {len(objectives)} objectives in its first cycle "
                f"{cycle_key}; at most {MAX_OBJECTIVES_FIRST_CYCLE} are advised when starting",
                "warning",
                "first-cycle",
            )


def _lint_alignment(definitions: DefinitionSet, report: Report) -> None:
    """Alignment runs upward, from individual to team to company, and never in a circle."""
    in_loop: set[str] = set()
    for loaded in definitions.objectives:
        objective, cycle = loaded.objective, loaded.cycle.key
        by_key = _objectives_of(definitions, cycle)
        parent = by_key.get(objective.aligns_to or "")
        if parent is None or parent is loaded:
            continue
        okey = ("objective", f"{cycle}/{objective.key}", "aligns_to")
        chain = _alignment_chain(loaded, by_key)
        if chain[-1] == objective.key and len(chain) > 1:
            if objective.key not in in_loop:
                in_loop.update(chain)
                report(
                    okey,
                    f"objectives {' → '.join(chain)} align to each other in a loop; "
                    "alignment runs from team objectives up to a company objective: remove "
                    "one of these `aligns_to:`",
                    "error",
                    "alignment-loop",
                )
            continue
        _lint_alignment_direction(loaded, parent, okey, report)


def _lint_alignment_direction(loaded, parent, okey, report: Report) -> None:
    objective, target = loaded.objective, parent.objective
    if LEVEL_RANK[target.level] > LEVEL_RANK[objective.level]:
        report(
            okey,
            f"{objective.level.value} objective '{objective.key}' aligns_to "
            f"{target.level.value} objective '{target.key}'"
            + (f" of team {target.team}" if target.team else "")
            + f": alignment runs upward; remove `aligns_to:` here and set `aligns_to: "
            f"{objective.key}` on '{target.key}' instead",
            "error",
            "alignment-direction",
        )
    elif objective.team and target.team and objective.team != target.team:
        above = f" ('{target.aligns_to}')" if target.aligns_to else ""
        report(
            okey,
            f"{objective.level.value} objective '{objective.key}' of team {objective.team} "
            f"aligns_to '{target.key}' of another team ({target.team}); a team's objectives "
            f"align to the company objective they serve{above}, not to another team's",
            "warning",
            "alignment-other-team",
        )


def _objectives_of(definitions: DefinitionSet, cycle: str) -> dict[str, LoadedObjective]:
    return {lo.objective.key: lo for lo in definitions.objectives if lo.cycle.key == cycle}


def _alignment_chain(loaded: LoadedObjective, by_key: dict[str, LoadedObjective]) -> list[str]:
    """Keys from `loaded` up its aligns_to chain; ends with a repeated key when it loops."""
    chain = [loaded.objective.key]
    current = loaded.objective.aligns_to
    while current in by_key:
        chain.append(current)
        if chain.count(current) > 1:
            break
        current = by_key[current].objective.aligns_to
    if chain[-1] in chain[:-1]:
        return chain[chain.index(chain[-1]) :]
    return chain


# --- filters and overlaps -----------------------------------------------------------------------


def _values(condition) -> tuple[set[str], bool]:
    """(values, negated) of one `where` condition."""
    if isinstance(condition, dict):
        inner = condition["not"]
        return {str(v) for v in (inner if isinstance(inner, list) else [inner])}, True
    return {str(v) for v in (condition if isinstance(condition, list) else [condition])}, False


def _describe_condition(condition) -> str:
    if condition is None:
        return "(none)"
    values, negated = _values(condition)
    shown = ", ".join(sorted(values))
    shown = shown if len(values) == 1 else f"[{shown}]"
    return f"not {shown}" if negated else shown


def _describe_where(where: dict) -> str:
    if not where:
        return "no filter"
    return ", ".join(f"{column}: {_describe_condition(c)}" for column, c in where.items())


def scopes_overlap(a: dict, b: dict) -> bool:
    """Could some record match both filters? False only when a shared column rules it out."""
    for column in a.keys() & b.keys():
        values_a, not_a = _values(a[column])
        values_b, not_b = _values(b[column])
        if not not_a and not not_b and not values_a & values_b:
            return False
        if not_a and not not_b and values_b <= values_a:
            return False
        if not_b and not not_a and values_a <= values_b:
            return False
    return True


def _aligned(definitions: DefinitionSet, lo_a: LoadedObjective, lo_b: LoadedObjective) -> bool:
    """One objective cascades from the other (directly or through others): overlap is intended."""
    by_key = _objectives_of(definitions, lo_a.cycle.key)

    def ancestors(lo: LoadedObjective) -> set[str]:
        return set(_alignment_chain(lo, by_key)[1:]) - {lo.objective.key}

    return lo_a.objective.key in ancestors(lo_b) or lo_b.objective.key in ancestors(lo_a)


def _owner(loaded: LoadedObjective) -> str:
    return f"team {loaded.objective.team}" if loaded.objective.team else "the company"


def _overlap_message(definitions, lo_a, a: KeyResult, lo_b, b: KeyResult) -> str:
    spec = definitions.library.get(a.metric)
    records = RECORDS.get(spec.entity, "records") if spec else "records"
    scopes = f"'{a.key}': {_describe_where(a.where)}; '{b.key}': {_describe_where(b.where)}"
    if lo_a.objective.team == lo_b.objective.team:
        owner = _owner(lo_a)
        return (
            f"KRs '{a.key}' and '{b.key}' of {owner} both measure {a.metric} over overlapping "
            f"records ({scopes}), so the same {records} move both and {owner} counts them "
            "twice; give them disjoint `where:` filters or keep one of them"
        )
    return (
        f"KR '{a.key}' of {_owner(lo_a)} and KR '{b.key}' of {_owner(lo_b)} both measure "
        f"{a.metric} over overlapping records ({scopes}), so both would count the same "
        f"{records}; give each its own team filter (`where: {{team: ...}}`) or align one "
        "objective to the other"
    )


def _overlapping_key_results(definitions: DefinitionSet, at) -> list[Problem]:
    problems = []
    krs = list(definitions.key_results())
    for (lo_a, a), (lo_b, b) in itertools.combinations(krs, 2):
        if lo_a.cycle.key != lo_b.cycle.key or a.metric != b.metric or a.window != b.window:
            continue
        if _aligned(definitions, lo_a, lo_b):
            continue
        if scopes_overlap(a.where, b.where):
            problems.append(
                Problem(
                    *at("kr", f"{lo_a.cycle.key}/{a.key}", "where"),
                    _overlap_message(definitions, lo_a, a, lo_b, b),
                    "warning",
                    "overlap",
                )
            )
    return problems


def _kpi_conflicts(definitions: DefinitionSet, at) -> list[Problem]:
    problems = []
    for (loaded, kr), kpi in itertools.product(definitions.key_results(), definitions.kpis):
        if kr.metric != kpi.metric:
            continue
        kr_key = ("kr", f"{loaded.cycle.key}/{kr.key}")
        if _same_filters(kr.where, kpi.where) and kr.window == kpi.window:
            problems.append(
                Problem(
                    *at(*kr_key),
                    f"KR '{kr.key}' measures exactly what KPI '{kpi.key}' "
                    "watches; a KR should move something for one cycle, a KPI watches "
                    "health — drop one or narrow the KR",
                    "warning",
                    "kr-is-kpi",
                )
            )
        elif scopes_overlap(kr.where, kpi.where) and _outside_healthy(kr, kpi):
            problems.append(
                Problem(
                    *at(*kr_key, "target"),
                    f"KR '{kr.key}' targets {kr.target_value:g}, outside the healthy range "
                    f"of KPI '{kpi.key}' ({_range(kpi)}) over overlapping records: "
                    "the KR would push a standing KPI out of health",
                    "warning",
                    "kr-vs-kpi",
                )
            )
    return problems


def _same_filters(a: dict, b: dict) -> bool:
    return {k: _values(v) for k, v in a.items()} == {k: _values(v) for k, v in b.items()}


def _outside_healthy(kr: KeyResult, kpi: Kpi) -> bool:
    target = kr.target_value
    if target is None:
        return False
    low, high = kpi.healthy.min, kpi.healthy.max
    return (low is not None and target < low) or (high is not None and target > high)


def _range(kpi: Kpi) -> str:
    low = "-∞" if kpi.healthy.min is None else f"{kpi.healthy.min:g}"
    high = "∞" if kpi.healthy.max is None else f"{kpi.healthy.max:g}"
    return f"{low} .. {high}"


# --- against the staged data (preview and run) --------------------------------------------------


def check_against_data(
    definitions: DefinitionSet, data: PreparedData, staged: Staged | None = None
) -> list[Problem]:
    """Warnings only the staged data can tell: filter values no record has ever had, and
    relative targets whose `previous_cycle` baseline turns out to be zero or negative.

    Baselines come from the compiled engine over `staged` (default: the frames `data` was
    prepared from, on embedded DuckDB), the number the run will use; `data`'s prepared frames
    are only read for the values each filter column has."""
    return _unknown_filter_values(definitions, data) + _relative_targets_on_data(
        definitions, data, staged
    )


def _known_values(data: PreparedData, column: str) -> tuple[set[str], list[str]]:
    """Every value `column` has in the staged data, and the entities that have the column."""
    cache_key = ("known-values", column)
    if cache_key not in data.cache:
        values: set[str] = set()
        entities = []
        for entity in METRIC_TABLES:
            frame = data.frame(entity)
            if column in frame.columns:
                entities.append(entity)
                values.update(frame[column].dropna().astype("string").unique())
        data.cache[cache_key] = (values, entities)
    return data.cache[cache_key]


def _unknown_filter_values(definitions: DefinitionSet, data: PreparedData) -> list[Problem]:
    if all(data.frame(e).empty for e in METRIC_TABLES):
        return []  # nothing staged yet: every value would look unknown
    filters = [
        (("kr", f"{lo.cycle.key}/{kr.key}"), kr.where) for lo, kr in definitions.key_results()
    ]
    filters += [(("kpi", kpi.key), kpi.where) for kpi in definitions.kpis]
    problems = []
    for key, where in filters:
        for column, condition in where.items():
            known, entities = _known_values(data, column)
            if not entities:
                continue
            for value in sorted(_values(condition)[0] - known):
                problems.append(
                    Problem(
                        *located(definitions, (*key, "where", column)),
                        _unknown_value_message(column, value, known, entities),
                        "warning",
                        "unknown-filter-value",
                    )
                )
    return problems


def _unknown_value_message(column: str, value: str, known: set[str], entities: list[str]) -> str:
    nouns = [RECORD[e] for e in entities]
    nouns = " or ".join(nouns) if len(nouns) < 3 else f"{', '.join(nouns[:-1])} or {nouns[-1]}"
    listed = sorted(known)
    shown = ", ".join(listed[:12]) + (f" and {len(listed) - 12} more" if len(listed) > 12 else "")
    close = difflib.get_close_matches(value, listed, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return (
        f"where: {column}: {value} — no staged {nouns} has {column} '{value}'; known values: "
        f"{shown or 'none'}{hint}"
    )


def _relative_targets_on_data(
    definitions: DefinitionSet, data: PreparedData, staged: Staged | None
) -> list[Problem]:
    # The compiled engine's own baselines (one run for all of them), so the warning sees the
    # number the run will use.
    from kr_metrics.sql.engine import DuckDBStaged, computed_baselines

    relative = [
        (loaded, kr)
        for loaded, kr in definitions.key_results()
        if kr.baseline_is_computed
        and isinstance(kr.target, str)
        and definitions.library.get(kr.metric) is not None
    ]
    if not relative:
        return []
    baselines = computed_baselines(
        relative, definitions.library, staged or DuckDBStaged.from_prepared(data)
    )
    problems = []
    for loaded, kr in relative:
        baseline = baselines[(loaded.cycle.key, kr.key)]
        if baseline is not None and baseline <= 0:
            problems.append(
                Problem(
                    *located(definitions, ("kr", f"{loaded.cycle.key}/{kr.key}", "target")),
                    f"KR '{kr.key}': its previous_cycle baseline is {baseline:g}, so the relative "
                    f"target {kr.target.strip()} is {kr.target_for(baseline):g} and says nothing; "
                    "write an absolute target such as `target: 5000`",
                    "warning",
                    "relative-target-baseline",
                )
            )
    return problems

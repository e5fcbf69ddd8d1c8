"""OKR-method lint: the method's rules checked on a whole definition set (errors block, warnings inform)."""

from __future__ import annotations

import itertools
import re
from collections import defaultdict

from kr_metrics.definitions import DefinitionSet, KeyResult, Kpi, Level, LoadedObjective, Problem

MAX_OBJECTIVES_PER_TEAM = 5
MAX_OBJECTIVES_FIRST_CYCLE = 3
MIN_KRS, MAX_KRS = 2, 4
_MAINTAIN_WORDS = re.compile(
    r"\b(maintain|keep|stay|remain|sustain|hold|no (?:less|lower) than)\b", re.I
)
_BINARY_WORDS = re.compile(
    r"\b(launch|launched|implement|introduce|roll ?out|go[- ]live|complete|yes/no)\b", re.I
)


def lint_definitions(definitions: DefinitionSet) -> list[Problem]:
    problems: list[Problem] = []

    def at(*key: str) -> tuple[str, int | None]:
        loc = definitions.locations.get(tuple(key)) or definitions.locations.get(tuple(key[:2]))
        return (loc.file, loc.line) if loc else ("?", None)

    def report(key: tuple[str, ...], message: str, severity: str, code: str) -> None:
        problems.append(Problem(*at(*key), message, severity, code))

    for loaded, kr in definitions.key_results():
        kr_key = ("kr", f"{loaded.cycle.key}/{kr.key}")
        _lint_key_result(loaded, kr, kr_key, definitions, report)

    objectives_by_team: dict[tuple[str, str], list[LoadedObjective]] = defaultdict(list)
    for loaded in definitions.objectives:
        objective = loaded.objective
        okey = ("objective", f"{loaded.cycle.key}/{objective.key}")
        count = len(objective.key_results)
        if count < MIN_KRS or count > MAX_KRS:
            report((*okey, "key_results"),
                   f"objective '{objective.key}' has {count} key result(s); the method asks for "
                   f"{MIN_KRS} to {MAX_KRS} per objective", "warning", "kr-count")  # fmt: skip
        if objective.level is not Level.company and not objective.aligns_to:
            report(okey, f"{objective.level.value} objective '{objective.key}' is aligned to nothing; "
                   "set `aligns_to:` to the company objective it serves", "warning", "unaligned")  # fmt: skip
        if objective.team:
            objectives_by_team[(loaded.cycle.key, objective.team)].append(loaded)

    for (cycle_key, team), objectives in objectives_by_team.items():
        first = objectives[0]
        okey = ("objective", f"{cycle_key}/{first.objective.key}")
        earlier = [
            lo for lo in definitions.objectives
            if lo.objective.team == team and lo.cycle.start < first.cycle.start
        ]  # fmt: skip
        if len(objectives) > MAX_OBJECTIVES_PER_TEAM:
            report(okey, f"team '{team}' has {len(objectives)} objectives in cycle {cycle_key}; "
                   f"keep it to {MAX_OBJECTIVES_PER_TEAM} at most", "warning", "too-many-objectives")  # fmt: skip
        elif not earlier and len(objectives) > MAX_OBJECTIVES_FIRST_CYCLE:
            report(okey, f"team '{team}' starts with {len(objectives)} objectives in its first cycle "
                   f"{cycle_key}; at most {MAX_OBJECTIVES_FIRST_CYCLE} are advised when starting",
                   "warning", "first-cycle")  # fmt: skip

    problems.extend(_overlapping_key_results(definitions, at))
    problems.extend(_kpi_conflicts(definitions, at))
    return problems


def _lint_key_result(loaded, kr: KeyResult, kr_key, definitions, report) -> None:
    if kr.target is None:
        baseline = (
            "" if kr.baseline_is_computed else f" (its baseline is {float(kr.baseline):,.2f})"
        )
        report((*kr_key, "target"), f"KR '{kr.key}' has no target yet{baseline}: set `target:` to an "
               "absolute number or a change like +20%", "error", "missing-target")  # fmt: skip
        return
    if not kr.baseline_is_computed and kr.target_value == float(kr.baseline):
        report((*kr_key, "target"), f"target equals baseline for KR '{kr.key}'; a KR must move",
               "error", "target-equals-baseline")  # fmt: skip
    baseline = None if kr.baseline_is_computed else float(kr.baseline)
    target = kr.target_value
    spec = definitions.library.get(kr.metric)
    if (
        baseline is not None
        and target is not None
        and {baseline, target} <= {0.0, 1.0}
        and (spec is None or spec.unit != "ratio")
    ):
        report((*kr_key, "target"), f"KR '{kr.key}' goes from {baseline:g} to {target:g}: a binary "
               "(done / not done) KR; measure the outcome it should bring instead", "warning", "binary")  # fmt: skip
    elif _BINARY_WORDS.search(kr.title) and target in (1.0, None) and baseline in (0.0, None):
        report(kr_key, f"KR '{kr.key}' reads like a task ('{kr.title}'); a KR measures an outcome",
               "warning", "binary")  # fmt: skip
    if _MAINTAIN_WORDS.search(kr.title):
        report(kr_key, f"KR '{kr.key}' reads like keeping a level ('{kr.title}'); that is a health "
               "metric: define it as a KPI under `kpis:` instead", "warning", "maintain")  # fmt: skip
    if spec is not None and target is not None:
        low, high = spec.valid_range
        if (low is not None and target < low) or (high is not None and target > high):
            report((*kr_key, "target"), f"target {target:g} of KR '{kr.key}' is outside what "
                   f"{kr.metric} can reach ({low if low is not None else '-∞'} .. "
                   f"{high if high is not None else '∞'})", "error", "unreachable-target")  # fmt: skip
    for milestone in kr.milestones:
        if baseline is not None and target is not None:
            lo, hi = sorted((baseline, target))
            if not lo <= milestone.target <= hi:
                report((*kr_key, "milestones"), f"milestone target {milestone.target:g} of KR '{kr.key}' "
                       f"is not between baseline {baseline:g} and target {target:g}", "warning", "milestone")  # fmt: skip


def _values(condition) -> tuple[set[str], bool]:
    """(values, negated) of one `where` condition."""
    if isinstance(condition, dict):
        inner = condition["not"]
        return {str(v) for v in (inner if isinstance(inner, list) else [inner])}, True
    return {str(v) for v in (condition if isinstance(condition, list) else [condition])}, False


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
    by_key = {
        lo.objective.key: lo for lo in definitions.objectives if lo.cycle.key == lo_a.cycle.key
    }

    def ancestors(lo: LoadedObjective) -> set[str]:
        seen: set[str] = set()
        current = lo.objective.aligns_to
        while current and current not in seen and current in by_key:
            seen.add(current)
            current = by_key[current].objective.aligns_to
        return seen

    return lo_a.objective.key in ancestors(lo_b) or lo_b.objective.key in ancestors(lo_a)


def _overlapping_key_results(definitions: DefinitionSet, at) -> list[Problem]:
    problems = []
    krs = list(definitions.key_results())
    for (lo_a, a), (lo_b, b) in itertools.combinations(krs, 2):
        if lo_a.cycle.key != lo_b.cycle.key or a.metric != b.metric or a.window != b.window:
            continue
        if _aligned(definitions, lo_a, lo_b):
            continue
        if scopes_overlap(a.where, b.where):
            where_b = f"{lo_b.objective.key}/{b.key}"
            problems.append(Problem(
                *at("kr", f"{lo_a.cycle.key}/{a.key}", "where"),
                f"KRs '{a.key}' and '{b.key}' ({where_b}) both measure {a.metric} over overlapping "
                "records in this cycle, so two teams would count the same deals; give them disjoint "
                "`where:` filters (e.g. their own team) or align one objective to the other",
                "warning", "overlap"))  # fmt: skip
    return problems


def _kpi_conflicts(definitions: DefinitionSet, at) -> list[Problem]:
    problems = []
    for (loaded, kr), kpi in itertools.product(definitions.key_results(), definitions.kpis):
        if kr.metric != kpi.metric:
            continue
        kr_key = ("kr", f"{loaded.cycle.key}/{kr.key}")
        if _same_filters(kr.where, kpi.where) and kr.window == kpi.window:
            problems.append(Problem(*at(*kr_key), f"KR '{kr.key}' measures exactly what KPI '{kpi.key}' "
                                    "watches; a KR should move something for one cycle, a KPI watches "
                                    "health — drop one or narrow the KR", "warning", "kr-is-kpi"))  # fmt: skip
        elif scopes_overlap(kr.where, kpi.where) and _outside_healthy(kr, kpi):
            problems.append(Problem(*at(*kr_key, "target"),
                                    f"KR '{kr.key}' targets {kr.target_value:g}, outside the healthy range "
                                    f"of KPI '{kpi.key}' ({_range(kpi)}) over overlapping records: "
                                    "the KR would push a standing KPI out of health", "warning", "kr-vs-kpi"))  # fmt: skip
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

"""Imports point downstream only: every module's imports, read with `ast`, against the layer table.

The table is the one in CONVENTIONS.md ("Layers"); a test keeps the two in sync. Function-level
and TYPE_CHECKING imports count like any other: an import that only runs later still ties the
modules together.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "connectors", "kr_metrics", "validation", "okr_store", "dashboard", "pipelines")

# What each layer may import besides its own modules: whole packages, or single modules.
# Data flows connectors -> (staging, in okr_store) -> kr_metrics -> validation -> okr_store ->
# dashboard; every layer shares `core`; `pipelines` wires them all and sits on top.
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": (),
    "connectors": ("core",),
    "kr_metrics": ("core",),
    "validation": ("core", "kr_metrics"),
    "okr_store": ("core",),
    "dashboard": ("core", "okr_store", "kr_metrics.display"),
    "pipelines": ("core", "connectors", "kr_metrics", "validation", "okr_store", "dashboard"),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the krpulse module it imports
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} (line {self.line})"


def package_of(module: str) -> str:
    return module.split(".")[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def krpulse_sources() -> dict[str, str]:
    """Source text of every module of the five layers plus core and validation, by name."""
    return {
        module_name(path): path.read_text(encoding="utf-8")
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


def imports_in(sources: Mapping[str, str]) -> list[Import]:
    """Every import of one krpulse module by another, wherever in the file it stands."""
    found = []
    for module, source in sources.items():
        # A module with modules below it is a package (its __init__.py), for relative imports.
        is_package = any(m.startswith(module + ".") for m in sources)
        for node in ast.walk(ast.parse(source)):
            for name in _imported_names(node, module, is_package):
                target = _resolve(name, sources)
                if target and target != module:
                    found.append(Import(module, target, node.lineno))
    return found


def _imported_names(node: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: counted from the importing module's package
        anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join([*anchor, *([base] if base else [])])
    # `from pkg import submodule` imports the submodule; `from mod import name` imports mod.
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def _resolve(name: str, sources: Mapping[str, str]) -> str | None:
    """The krpulse module `name` is or lives in; None for third-party modules."""
    while name and name not in sources:
        name = name.rpartition(".")[0]
    return name or None


def _dedupe(imports: Iterable[Import]) -> list[Import]:
    """One Import per (module, target): `from pkg import sub` also names pkg, keep the deepest."""
    seen: dict[tuple[str, str], Import] = {}
    for item in imports:
        seen.setdefault((item.module, item.target), item)
    edges = set(seen)
    return [
        item
        for key, item in seen.items()
        # `from dashboard import views` names both `dashboard` and `dashboard.views`.
        if not any(other[0] == key[0] and other[1].startswith(key[1] + ".") for other in edges)
    ]


def upward_imports(imports: Iterable[Import], allowed: Mapping[str, Iterable[str]]) -> list[Import]:
    """Imports of another layer's module that the importing layer may not import."""
    bad = []
    for item in imports:
        here, there = package_of(item.module), package_of(item.target)
        if here == there:
            continue
        permitted = tuple(allowed.get(here, ()))
        if not any(item.target == p or item.target.startswith(p + ".") for p in permitted):
            bad.append(item)
    return bad


def cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """One circle of imports (module, ..., module) among `edges`, or None."""
    graph: dict[str, set[str]] = {}
    for module, target in edges:
        graph.setdefault(module, set()).add(target)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return _dedupe(imports_in(krpulse_sources()))


def test_no_layer_imports_a_layer_it_may_not(imports):
    bad = upward_imports(imports, ALLOWED)
    allowed = "\n".join(f"  {layer}: {', '.join(deps) or '-'}" for layer, deps in ALLOWED.items())
    assert not bad, (
        "imports against the layer table (CONVENTIONS.md, Layers):\n"
        + "\n".join(f"  {i}" for i in bad)
        + f"\nEach layer may import only:\n{allowed}"
    )


def test_no_module_imports_one_that_imports_it_back(imports):
    edges = {(i.module, i.target) for i in imports}
    found = cycle(edges)
    assert found is None, "circular imports: " + " -> ".join(found or [])


def test_the_layer_table_itself_points_one_way():
    edges = {(layer, package_of(dep)) for layer, deps in ALLOWED.items() for dep in deps}
    assert cycle(edges) is None
    assert set(ALLOWED) == set(PACKAGES)


def test_conventions_state_the_same_layer_table():
    conventions = (REPO / "CONVENTIONS.md").read_text(encoding="utf-8")
    for layer, deps in ALLOWED.items():
        line = f"| `{layer}` | {', '.join(f'`{d}`' for d in deps) or 'nothing'} |"
        assert line in conventions, f"CONVENTIONS.md lacks the row: {line}"


def test_only_pipelines_imports_dagster_and_great_expectations_only_when_validating():
    dagster, eager_gx = [], []
    for module, source in krpulse_sources().items():
        tree = ast.parse(source)
        lazy = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or _type_checking(node)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            roots = [package_of(name) for name in _imported_names(node, module, False)]
            if "dagster" in roots and package_of(module) != "pipelines":
                dagster.append(f"{module} (line {node.lineno})")
            if "great_expectations" in roots and id(node) not in lazy:
                eager_gx.append(f"{module} (line {node.lineno})")
    assert not dagster, f"Dagster outside pipelines/: {dagster}"
    assert not eager_gx, f"great_expectations imported at module level: {eager_gx}"


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


# --- The checker itself finds what it must -------------------------------------------------------


def _toy(**sources: str) -> list[Import]:
    return _dedupe(imports_in({name.replace("__", "."): text for name, text in sources.items()}))


def test_the_checker_sees_upward_imports_inside_functions():
    found = _toy(
        core="",
        connectors="",
        okr_store="",
        connectors__files="def sync():\n    from okr_store import staging\n",
        okr_store__staging="from core import canonical\n",
        core__canonical="",
    )
    assert [str(i) for i in upward_imports(found, ALLOWED)] == [
        "connectors.files imports okr_store.staging (line 2)"
    ]


def test_the_checker_sees_circles_through_package_and_relative_imports():
    found = _toy(
        kr_metrics="",
        kr_metrics__metrics="from kr_metrics import engine\n",
        kr_metrics__engine="def compute():\n    from .metrics import METRICS\n",
    )
    assert sorted(cycle((i.module, i.target) for i in found) or []) == [
        "kr_metrics.engine",
        "kr_metrics.metrics",
        "kr_metrics.metrics",
    ]


# --- One engine in production (issue #16) --------------------------------------------------------

# The pandas engine's evaluation is the compiled engine's test oracle, not a production path.
# Its orchestration (`evaluate_with`, `series_of`, `baseline_with`, `Series`, the windows), which
# the compiled engine runs on, and `prepare`, which only shapes the frames handed to DuckDB
# (`DuckDBStaged.from_prepared`) and read by the lint's filter-value check, are not evaluation.
PANDAS_EVALUATION: dict[str, frozenset[str]] = {
    "kr_metrics.engine": frozenset(
        {
            "PandasBackend",
            "evaluate",
            "evaluate_history",
            "metric_series",
            "metric_over_windows",
            "metric_value",
            "_baseline",
            "_additive_series",
            "_reduced_series",
            "explain_key_result",
        }
    ),
    "kr_metrics.explain": frozenset({"records_behind"}),
    "kr_metrics.metrics": frozenset({"scope_for"}),
}
# Modules outside tests/ and bench/ that may still call it: the pandas engine itself, and the
# explanation of a number — `krpulse definitions explain` and the KR page's drill-down (the
# records behind a number), which the `records` branch moves onto kr_metrics.sql.records.
PANDAS_EVALUATION_ALLOWED = frozenset(
    {
        "kr_metrics.engine",
        "kr_metrics.explain",
        "kr_metrics.metrics",
        "kr_metrics.pages",  # drilldown_row -> explain_key_result (records branch)
        "pipelines.cli.definitions",  # `definitions explain` -> explain_key_result (records branch)
    }
)


def production_sources() -> dict[str, str]:
    """Every Python file of the repository outside tests/ and bench/, by module name."""
    skipped = {"tests", "bench"}
    return {
        module_name(path): path.read_text(encoding="utf-8")
        for path in sorted(REPO.rglob("*.py"))
        if not (set(path.relative_to(REPO).parts[:-1]) & skipped)
        and not any(part.startswith(".") for part in path.relative_to(REPO).parts)
    }


def pandas_evaluation_calls(sources: Mapping[str, str]) -> list[str]:
    """Where a module imports or reaches one of PANDAS_EVALUATION's names: `from m import name`,
    or `m.name` / `alias.name` after `import m`, `import m as alias`, `from pkg import m`."""
    found = []
    for module, source in sources.items():
        tree = ast.parse(source)
        aliases: dict[str, str] = {}  # local name or dotted path -> evaluation module
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in PANDAS_EVALUATION:
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                for alias in node.names:
                    if node.module in PANDAS_EVALUATION:
                        if alias.name in PANDAS_EVALUATION[node.module]:
                            found.append(f"{module}:{node.lineno} {node.module}.{alias.name}")
                    elif f"{node.module}.{alias.name}" in PANDAS_EVALUATION:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                target = aliases.get(ast.unparse(node.value))
                if target and node.attr in PANDAS_EVALUATION[target]:
                    found.append(f"{module}:{node.lineno} {target}.{node.attr}")
    return found


def test_production_computes_only_through_the_compiled_engine():
    """One engine in production: outside tests/ and bench/, only the pandas engine itself and
    the explanation paths still listed above call the pandas engine's evaluation."""
    calls = [
        call
        for call in pandas_evaluation_calls(production_sources())
        if call.split(":")[0] not in PANDAS_EVALUATION_ALLOWED
    ]
    assert not calls, (
        "production code calls the pandas engine (the test oracle); compute through "
        "kr_metrics.sql.engine (DuckDBStaged / DatabaseStaged, evaluate_history, "
        "computed_baselines) instead:\n  " + "\n  ".join(calls)
    )


def test_the_checker_sees_every_way_to_reach_the_pandas_evaluation():
    found = pandas_evaluation_calls(
        {
            "a": "from kr_metrics.engine import evaluate_history, prepare\n",
            "b": "def f(d):\n    from kr_metrics import engine as e\n    return e.evaluate(d)\n",
            "c": "import kr_metrics.engine\nkr_metrics.engine.metric_value(1)\n",
            "d": "from kr_metrics.engine import evaluate_with, series_of, baseline_with\n",
            "e": "from kr_metrics import engine\nengine.prepare(1)\nengine.window_for(1)\n",
            "f": "from kr_metrics.metrics import scope_for, METRICS\n",
        }
    )
    assert found == [
        "a:1 kr_metrics.engine.evaluate_history",
        "b:3 kr_metrics.engine.evaluate",
        "c:2 kr_metrics.engine.metric_value",
        "f:1 kr_metrics.metrics.scope_for",
    ]

"""Declared dependencies match imports: what krpulse imports, pyproject.toml names."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "connectors", "kr_metrics", "validation", "okr_store", "dashboard", "pipelines")


def normalized(name: str) -> str:
    """A distribution name as packaging compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_dependencies() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        normalized(re.split(r"[\s\[<>=!~;@]", req, maxsplit=1)[0])
        for req in project["dependencies"]
    }


def third_party_imports() -> dict[str, list[str]]:
    """Top-level names of every non-stdlib, non-krpulse module imported, with where."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for root in {name.split(".")[0] for name in names}:
                    if root in sys.stdlib_module_names or root in PACKAGES or root == "__future__":
                        continue
                    found.setdefault(root, []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_every_imported_package_is_a_declared_dependency():
    distributions = importlib.metadata.packages_distributions()
    declared = declared_dependencies()
    undeclared = {}
    for root, places in third_party_imports().items():
        provided_by = {normalized(d) for d in distributions.get(root, [])}
        if not provided_by & declared:
            undeclared[root] = (sorted(provided_by) or ["no installed distribution"], places[:3])
    assert not undeclared, (
        "imported but not declared in pyproject.toml [project] dependencies "
        "(module: distributions providing it, where): " + repr(undeclared)
    )


def test_the_check_knows_a_few_imports_by_their_distribution():
    # Import and distribution names differ for these; the check must map, not compare names.
    distributions = importlib.metadata.packages_distributions()
    assert normalized("PyJWT") in {normalized(d) for d in distributions["jwt"]}
    assert normalized("ruamel.yaml") in {normalized(d) for d in distributions["ruamel"]}
    assert {"pyjwt", "ruamel-yaml", "markdown-it-py"} <= declared_dependencies()
    assert "hubspot" in third_party_imports()

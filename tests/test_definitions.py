"""Loading definitions: the demo's load cleanly; malformed files name file, line and problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import REPO

from kr_metrics.definitions import DefinitionError
from kr_metrics.loader import load_definitions
from kr_metrics.metrics import METRICS

GOOD = """\
cycle: {key: 2026-Q4, start: 2026-10-01, end: 2026-12-31, timezone: Europe/Berlin}
objectives:
  - key: grow
    title: Grow with our existing customers
    level: company
    key_results:
      - key: rev
        title: Revenue per existing customer +20 %
        metric: revenue_per_existing_customer
        baseline: 10000
        target: +20%
      - key: nps
        title: NPS from 50 to 70
        metric: nps
        baseline: 50
        target: 70
"""


def write(tmp_path: Path, text: str, name: str = "2026-Q4.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load_definitions(path, known_metrics=METRICS)
    return [str(p) for p in info.value.problems]


def test_the_repository_definitions_load():
    definitions = load_definitions(REPO / "definitions", known_metrics=METRICS)
    metrics = {kr.metric for _, kr in definitions.key_results()}
    assert metrics == {"revenue_per_existing_customer", "nps", "win_rate"}
    assert definitions.kpis, "the demo defines standing KPIs apart from KRs"


def test_relative_target_is_resolved_against_the_baseline(tmp_path):
    definitions = load_definitions(write(tmp_path, GOOD), known_metrics=METRICS)
    targets = {kr.key: kr.target_value for _, kr in definitions.key_results()}
    assert targets == {"rev": pytest.approx(12000.0), "nps": 70.0}


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, GOOD.replace("level: company", "level: [company"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:")
    assert "invalid YAML" in problem


def test_unknown_key_names_its_line(tmp_path):
    path = write(tmp_path, GOOD.replace("        target: 70", "        traget: 70"))
    problems = problems_of(path)
    assert any(
        p.startswith(
            f"{path}:16: error: key result 'nps': unknown key 'traget' (check its spelling"
        )
        for p in problems
    )
    assert any("missing required key 'target'" in p for p in problems)


def test_target_equal_to_baseline_is_an_error_with_its_line(tmp_path):
    path = write(tmp_path, GOOD.replace("target: 70", "target: 50"))
    assert problems_of(path) == [
        f"{path}:16: error: target equals baseline for KR 'nps'; a KR must move"
    ]


def test_unknown_metric_lists_the_known_ones(tmp_path):
    path = write(tmp_path, GOOD.replace("metric: nps", "metric: net_promoter"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:14: error: unknown metric 'net_promoter'")
    assert "win_rate" in problem


def test_filter_on_a_column_the_metric_cannot_see(tmp_path):
    path = write(
        tmp_path, GOOD.replace("metric: nps\n", "metric: nps\n        where: {pipeline: x}\n")
    )
    (problem,) = problems_of(path)
    assert "cannot be filtered by 'pipeline'" in problem and ":15:" in problem


def test_team_objective_needs_a_team(tmp_path):
    path = write(tmp_path, GOOD.replace("level: company", "level: team"))
    (problem,) = problems_of(path)
    assert f"{path}:3:" in problem and "needs a `team`" in problem


def test_aligns_to_must_exist(tmp_path):
    path = write(
        tmp_path, GOOD.replace("level: company", "level: team\n    team: x\n    aligns_to: nope")
    )
    (problem,) = problems_of(path)
    assert "aligns_to 'nope'" in problem


def test_duplicate_keys_across_files_point_at_both(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    problems = problems_of(tmp_path)
    assert any("duplicate objective key '2026-Q4/grow'" in p and "a.yaml:3" in p for p in problems)


def test_bad_relative_target(tmp_path):
    path = write(tmp_path, GOOD.replace("+20%", "+twenty percent"))
    (problem,) = problems_of(path)
    assert ":11:" in problem and "relative change like '+20%'" in problem


def test_bad_timezone_and_dates(tmp_path):
    path = write(
        tmp_path,
        GOOD.replace("Europe/Berlin", "Mars/Olympus").replace("end: 2026-12-31", "end: 2026-09-01"),
    )
    problems = problems_of(path)
    assert any("unknown timezone 'Mars/Olympus'" in p for p in problems)


def test_the_committed_json_schema_is_up_to_date():
    from kr_metrics.schema import SCHEMA_FILE, schema_json

    assert (REPO / "definitions" / SCHEMA_FILE).read_text() == schema_json(), (
        "run: uv run krpulse definitions schema --write definitions/krpulse-definitions.schema.json"
    )


def test_every_definitions_file_points_editors_at_the_schema():
    from kr_metrics.schema import MODELINE

    for path in (REPO / "definitions").glob("*.yaml"):
        assert path.read_text().startswith(MODELINE), path


def test_docs_metrics_md_is_generated_from_the_library():
    from kr_metrics.docs import metrics_markdown

    assert (REPO / "docs" / "metrics.md").read_text() == metrics_markdown(), (
        "run: uv run krpulse definitions metrics --format md > docs/metrics.md"
    )

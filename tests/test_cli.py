"""The krpulse command line, driven through click's runner in this process."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipelines.cli import cli

KR_KEYS = {
    "cycle",
    "objective",
    "kr",
    "title",
    "team",
    "metric",
    "value",
    "baseline",
    "target",
    "progress",
    "grade",
    "expected_progress",
    "status",
}
KPI_KEYS = {"kpi", "title", "team", "metric", "value", "health"}


@pytest.fixture
def krpulse(demo_project):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["--config", str(demo_project / "krpulse.yaml"), *args])

    return invoke


def test_demo_prints_a_progress_table_whose_numbers_move(krpulse):
    result = krpulse("demo")
    assert result.exit_code == 0, result.output
    assert "How the KRs moved from 2026-10-01 to 2026-11-25" in result.output
    assert "NPS from 50 to 70" in result.output
    assert "as of 2026-11-25" in result.output
    assert "quarantined" in result.output

    first = json.loads(krpulse("status", "--as-of", "2026-10-01", "--format", "json").output)
    last = json.loads(krpulse("status", "--format", "json").output)
    assert last["as_of"] == "2026-11-25"
    values_first = {k["kr"]: k["value"] for k in first["key_results"]}
    values_last = {k["kr"]: k["value"] for k in last["key_results"]}
    assert values_first.keys() == values_last.keys()
    assert all(values_first[kr] != values_last[kr] for kr in values_last)


def test_preview_json_is_the_documented_object(krpulse):
    assert krpulse("sync").exit_code == 0
    result = krpulse("preview", "--as-of", "2026-11-25", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["as_of"] == "2026-11-25"
    assert len(report["key_results"]) == 8 and len(report["kpis"]) == 3
    for kr in report["key_results"]:
        assert kr.keys() >= KR_KEYS
        for field in ("value", "baseline", "target", "progress", "grade", "expected_progress"):
            assert kr[field] is None or isinstance(kr[field], int | float)
    for kpi in report["kpis"]:
        assert kpi.keys() >= KPI_KEYS
    nps = next(k for k in report["key_results"] if k["kr"] == "nps-company")
    assert nps["baseline"] == 50 and nps["target"] == 70 and nps["sample_size"] == 131
    assert nps["start"] == 50 and nps["metric_kind"] == "level"
    revenue = next(k for k in report["key_results"] if k["kr"] == "revenue-per-existing-customer")
    assert revenue["start"] == 0 and revenue["metric_kind"] == "accumulating"
    assert 0 < revenue["progress"] < 1.5 and revenue["expected_value"] > 0
    for kr in report["key_results"]:
        assert isinstance(kr["status_reason"], str) and kr["status_reason"]
        for field in ("start", "expected_value"):
            assert kr[field] is None or isinstance(kr[field], int | float)


def test_explain_lists_the_records_that_add_most_from_the_compiled_engine(krpulse):
    """`definitions explain` shows the number `preview` computes, its inputs, and the records
    that add most to it (the full count beside the top ones)."""
    assert krpulse("sync").exit_code == 0
    preview = json.loads(krpulse("preview", "--as-of", "2026-11-25", "--format", "json").output)
    computed = {k["kr"]: k for k in preview["key_results"]}
    result = krpulse(
        "definitions",
        "explain",
        "revenue-per-existing-customer-dach",
        "--cycle",
        "2026-Q4",
        "--as-of",
        "2026-11-25",
        "--top",
        "5",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    explained = json.loads(result.output)
    kr = computed["revenue-per-existing-customer-dach"]
    assert explained["value"] == pytest.approx(kr["value"])
    assert explained["sample_size"] == kr["sample_size"] and explained["reason"] is None
    assert len(explained["records"]) == 5 < explained["total"]
    adds = [r["contribution"] for r in explained["records"]]
    assert adds == sorted(adds, reverse=True) and adds[0] > 0
    assert all(r["customer_name"] and r["team"] == "sales-dach" for r in explained["records"])
    text = krpulse(
        "definitions",
        "explain",
        "nps-uk",
        "--cycle",
        "2026-Q4",
        "--as-of",
        "2026-11-25",
        "--top",
        "3",
    )
    assert text.exit_code == 0, text.output
    assert "top 3 of 33" in text.output and "denominator 33.00" in text.output


def test_preview_pushes_nothing(krpulse):
    krpulse("sync")
    krpulse("preview", "--as-of", "2026-11-25")
    result = krpulse("status")
    assert result.exit_code == 1
    assert "the OKR store is empty" in result.output


def test_run_a_range_then_status_by_team(krpulse):
    krpulse("sync")
    result = krpulse("run", "--from", "2026-11-01", "--to", "2026-11-03")
    assert result.exit_code == 0, result.output
    status = json.loads(krpulse("status", "--team", "sales-uk", "--format", "json").output)
    assert status["as_of"] == "2026-11-03"
    assert {k["kr"] for k in status["key_results"]} == {"nps-uk", "win-rate-uk"}


def test_first_day_without_closed_deals_has_no_data_not_zero(krpulse):
    krpulse("sync")
    report = json.loads(krpulse("preview", "--as-of", "2026-10-01", "--format", "json").output)
    win_rate_uk = next(k for k in report["key_results"] if k["kr"] == "win-rate-uk")
    assert win_rate_uk["value"] is None and win_rate_uk["status"] == "no_data"


def test_sync_reports_quarantined_records(krpulse):
    report = json.loads(krpulse("sync", "--format", "json").output)
    quarantined = {r["object"]: r["quarantined"] for r in report["sync"]}
    assert quarantined["deals"] == 3 and quarantined["nps_responses"] == 1


def test_definitions_check(krpulse, tmp_path):
    ok = krpulse("definitions", "check")
    assert ok.exit_code == 0 and "16 key result(s)" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("cycle: {key: Q, start: 2026-01-01, end: 2026-03-31}\nobjectives: 3\n")
    result = krpulse("definitions", "check", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:2: error: `objectives` is the number 3; write a list" in result.output


def test_a_malformed_definitions_file_stops_a_run_with_file_and_problem(krpulse, demo_project):
    (demo_project / "definitions" / "2026-Q4.yaml").write_text(
        "objectives:\n  - key: x\n    title: X\n    level: company\n"
        "    key_results: [{key: k, title: K, metric: nps, baseline: 1, target: 2}]\n"
    )
    result = krpulse("run", "--as-of", "2026-11-01")
    assert result.exit_code == 1
    assert "2026-Q4.yaml" in result.output and "objectives need a `cycle:` section" in result.output


def test_a_missing_config_file_says_how_to_fix_it(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.yaml"), "status"])
    assert result.exit_code == 1
    assert "not found" in result.output and "--config" in result.output


def test_mixing_as_of_and_a_range_is_a_usage_error(krpulse):
    result = krpulse("run", "--as-of", "2026-11-01", "--from", "2026-11-01")
    assert result.exit_code == 2

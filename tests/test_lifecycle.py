"""The end of a cycle: verdicts by ambition, the grace period, the review report, the roll-over."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from click.testing import CliRunner
from conftest import copy_demo_project, make_demo_project

from kr_metrics.definitions import Cycle
from kr_metrics.lifecycle import ACHIEVED, MISSED, PARTIALLY_ACHIEVED, is_closed, verdict
from kr_metrics.scoring import ScoringPolicy
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.cli import cli
from pipelines.settings import load_settings


@pytest.mark.parametrize(
    ("grade", "ambition", "expected"),
    [
        (1.0, "roofshot", ACHIEVED),
        (0.99, "roofshot", PARTIALLY_ACHIEVED),
        (0.4, "roofshot", PARTIALLY_ACHIEVED),
        (0.39, "roofshot", MISSED),
        (0.7, "moonshot", ACHIEVED),
        (0.69, "moonshot", PARTIALLY_ACHIEVED),
        (0.0, "moonshot", MISSED),
        (None, "roofshot", None),
    ],
)
def test_verdict_by_ambition(grade, ambition, expected):
    assert verdict(grade, ambition) == expected


def test_a_moonshot_success_of_sixty_percent_is_configurable():
    assert verdict(0.62, "moonshot", ScoringPolicy(moonshot_success=0.6)) == ACHIEVED


def test_grades_are_final_only_after_the_grace_period():
    cycle = Cycle(key="2026-Q3")
    policy = ScoringPolicy(grace_days=7)
    assert not is_closed(cycle, dt.date(2026, 9, 30), policy)
    assert not is_closed(cycle, dt.date(2026, 10, 7), policy)  # late CRM updates still count
    assert is_closed(cycle, dt.date(2026, 10, 8), policy)


def drop_september_deals(project):
    """A late CRM change: every deal closed in September 2026 disappears from the export."""
    deals = (project / "demo-data" / "deals.csv").read_text().splitlines()
    kept = [line for line in deals if ",2026-09-" not in line]
    assert len(kept) < len(deals) - 50
    (project / "demo-data" / "deals.csv").write_text("\n".join(kept) + "\n")


@pytest.fixture(scope="module")
def q3_computed(tmp_path_factory, demo_data):
    """The demo's Q3 cycle computed into a store once per module (the whole closed quarter)."""
    project = make_demo_project(tmp_path_factory.mktemp("q3") / "project", demo_data)
    settings = load_settings(project / "krpulse.yaml")
    engine, _, _ = flow.upgrade_database(settings)
    flow.sync_sources(settings, engine)
    flow.run_days(settings, engine, flow.date_range(dt.date(2026, 7, 1), dt.date(2026, 9, 30)))
    engine.dispose()
    return project


@pytest.fixture
def demo_run(q3_computed, tmp_path):
    """A test's own copy of the computed Q3 project: tests may change its data and store."""
    project = copy_demo_project(q3_computed, tmp_path / "project")
    engine, _, _ = flow.upgrade_database(load_settings(project / "krpulse.yaml"))
    return project, OkrStore(engine)


def test_review_of_a_closed_demo_cycle_matches_the_stored_progress(demo_run):
    project, store = demo_run
    result = CliRunner().invoke(
        cli, ["--config", str(project / "krpulse.yaml"), "review", "2026-Q3", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    stored = store.latest_cycle_progress("2026-Q3").set_index("kr")
    krs = [kr for objective in report["objectives"] for kr in objective["key_results"]]
    assert len(krs) == 8
    for kr in krs:
        assert kr["final_grade"] == pytest.approx(stored.loc[kr["kr"], "grade"])
        assert kr["final_value"] == pytest.approx(stored.loc[kr["kr"], "value"])
        assert kr["last_day"] == "2026-09-30"
    assert (
        report["summary"]["achieved"]
        + report["summary"]["partially_achieved"]
        + report["summary"]["missed"]
        == 8
    )
    assert {k["kpi"] for k in report["kpis"]} == {
        "nps-90d",
        "win-rate-90d",
        "revenue-per-existing-customer-90d",
    }
    markdown = (
        CliRunner()
        .invoke(cli, ["--config", str(project / "krpulse.yaml"), "review", "2026-Q3"])
        .output
    )
    assert "# Review of 2026-Q3" in markdown and "KPIs over the same period" in markdown


def test_review_html_escapes_titles(demo_run):
    project, _ = demo_run
    result = CliRunner().invoke(
        cli, ["--config", str(project / "krpulse.yaml"), "review", "2026-Q3", "--format", "html"]
    )
    assert result.exit_code == 0 and result.output.startswith("<!doctype html>")
    assert "<script" not in result.output


def test_new_cycle_writes_next_definitions_that_pass_check_once_targets_are_set(demo_run):
    project, store = demo_run
    runner = CliRunner()
    config = ["--config", str(project / "krpulse.yaml")]
    result = runner.invoke(cli, [*config, "new-cycle", "2026-Q4-next", "--from", "2026-Q3"])
    assert result.exit_code == 0, result.output
    written = project / "definitions" / "2026-Q4-next.yaml"
    text = written.read_text()
    assert "has no target yet" in result.output
    stored = store.latest_cycle_progress("2026-Q3").set_index("kr")
    assert f"baseline: {round(stored.loc['nps-company', 'value'], 4)}" in text
    assert runner.invoke(cli, [*config, "definitions", "check"]).exit_code == 1
    written.write_text(re.sub(r"target:\s*#.*", "target: +5%", text))
    check = runner.invoke(cli, [*config, "definitions", "check"])
    assert check.exit_code == 0, check.output


def test_a_closed_cycles_final_grades_are_frozen(demo_run, monkeypatch):
    project, store = demo_run
    settings = load_settings(project / "krpulse.yaml")
    before = store.cycle_history("2026-Q3")
    # A late CRM change after the grace period: rerunning the quarter must not regrade it.
    drop_september_deals(project)
    engine = flow.open_database(settings)
    flow.sync_sources(settings, engine)
    monkeypatch.setattr(type(settings), "today", lambda self: dt.date(2026, 10, 8))
    flow.run_days(settings, engine, flow.date_range(dt.date(2026, 9, 1), dt.date(2026, 9, 30)))
    after = store.cycle_history("2026-Q3")
    assert after["value"].tolist() == before["value"].tolist()
    assert after["run_id"].tolist() == before["run_id"].tolist()


def test_within_the_grace_period_a_rerun_still_updates_the_cycle(demo_run, monkeypatch):
    project, store = demo_run
    settings = load_settings(project / "krpulse.yaml")
    before = store.cycle_history("2026-Q3", kr="win-rate-dach")
    drop_september_deals(project)
    engine = flow.open_database(settings)
    flow.sync_sources(settings, engine)
    monkeypatch.setattr(type(settings), "today", lambda self: dt.date(2026, 10, 7))
    flow.run_days(settings, engine, [dt.date(2026, 9, 30)])
    after = store.cycle_history("2026-Q3", kr="win-rate-dach")
    assert after["value"].iloc[-1] != before["value"].iloc[-1]


def test_a_target_change_mid_cycle_keeps_history_and_is_recorded(demo_project):
    settings = load_settings(demo_project / "krpulse.yaml")
    engine, _, _ = flow.upgrade_database(settings)
    flow.sync_sources(settings, engine)
    flow.run_days(settings, engine, flow.date_range(dt.date(2026, 10, 1), dt.date(2026, 10, 20)))
    q4 = demo_project / "definitions" / "2026-Q4.yaml"
    # After the weekly check-in sales ops lower the NPS target from 70 to 65.
    q4.write_text(q4.read_text().replace("        target: 70\n", "        target: 65\n", 1))
    flow.run_days(settings, engine, flow.date_range(dt.date(2026, 10, 21), dt.date(2026, 10, 31)))
    store = OkrStore(engine)
    history = store.cycle_history("2026-Q4", kr="nps-company").set_index("as_of")
    assert history.loc[dt.date(2026, 10, 20), "target"] == 70
    assert history.loc[dt.date(2026, 10, 21), "target"] == 65
    assert history["definition_version"].nunique() == 2
    (change,) = store.definition_changes("2026-Q4").to_dict("records")
    assert change["kr"] == "nps-company"
    assert change["effective_from"] == dt.date(2026, 10, 21)
    assert (change["old_target"], change["new_target"]) == (70, 65)
    assert change["old_baseline"] == change["new_baseline"] == 50
    report = json.loads(
        CliRunner()
        .invoke(
            cli,
            [
                "--config",
                str(demo_project / "krpulse.yaml"),
                "review",
                "2026-Q4",
                "--format",
                "json",
            ],
        )
        .output
    )
    nps = next(
        k for o in report["objectives"] for k in o["key_results"] if k["kr"] == "nps-company"
    )
    assert nps["target_changes"][0]["new_target"] == 65


def test_review_and_new_cycle_show_check_ins_notes_and_the_retrospectives_quick_wins(demo_run):
    from core.checkins import make_check_in
    from okr_store.checkins import CheckInStore
    from pipelines.demo_checkins import seed_demo_check_ins, seed_demo_retro

    project, store = demo_run
    assert seed_demo_check_ins(store.engine, ["2026-Q3"], dt.date(2026, 9, 30)) > 0
    seed_demo_retro(store.engine, "2026-Q3")
    last_day = dt.date(2026, 9, 30)
    hostile = "<script>alert(1)</script> | [x](javascript:alert(1))"
    CheckInStore(store.engine).record(
        make_check_in(
            cycle="2026-Q3",
            kr="nps-uk",
            day=last_day,
            today=last_day,
            confidence=1,
            problems=hostile,
            author="Olivia Hughes",
        ),
        on_day=last_day,
    )
    runner = CliRunner()
    config = ["--config", str(project / "krpulse.yaml")]
    report = json.loads(
        runner.invoke(cli, [*config, "review", "2026-Q3", "--format", "json"]).output
    )
    krs = {kr["kr"]: kr for o in report["objectives"] for kr in o["key_results"]}
    assert all(kr["check_ins"] for kr in krs.values())
    assert krs["nps-uk"]["last_notes"]["problems"] == hostile
    assert report["quick_wins"] == [
        "Hold the weekly check-in on Monday morning, before pipeline calls",
        "One named owner per KR instead of per objective",
        "Post the digest in each team's channel, not by email",
    ]
    markdown = runner.invoke(cli, [*config, "review", "2026-Q3"]).output
    assert "## Check-ins: confidence week by week" in markdown
    assert (
        "Quick wins for the next cycle:" in markdown and "1. Hold the weekly check-in" in markdown
    )
    html = runner.invoke(cli, [*config, "review", "2026-Q3", "--format", "html"]).output
    assert "<script>" not in html and 'href="javascript' not in html
    rolled = runner.invoke(cli, [*config, "new-cycle", "2026-Q4-next", "--from", "2026-Q3"])
    assert "Quick wins from the 2026-Q3 retrospective" in rolled.output
    assert "1. Hold the weekly check-in on Monday morning" in rolled.output

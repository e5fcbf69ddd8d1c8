"""`krpulse definitions check` in this process: never a traceback, every problem with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, canonical

from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.lint import check_against_data
from kr_metrics.loader import load_definitions
from kr_metrics.sql.engine import DuckDBStaged
from pipelines.cli import cli

GOOD = """\
cycle: {key: 2026-Q4, start: 2026-10-01, end: 2026-12-31}
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


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "krpulse.yaml"
    path.write_text("timezone: Europe/Berlin\ndefinitions: definitions/\n")
    return path


def check(config: Path, path: Path):
    result = CliRunner().invoke(cli, ["--config", str(config), "definitions", "check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def write(tmp_path: Path, text: str, name: str = "2026-Q4.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_an_impossible_date_is_a_problem_with_its_line_not_a_traceback(tmp_path, config):
    path = write(tmp_path, GOOD.replace("end: 2026-12-31", "end: 2026-02-30"))
    result = check(config, path)
    assert result.exit_code == 1
    assert (
        f"{path}:1: error: '2026-02-30' is not a date in the calendar: February 2026 has 28 days"
        in (result.output)
    )


# --- the cycle's timezone is krpulse.yaml's -------------------------------------------------------


def test_a_cycle_without_timezone_reports_in_krpulse_yaml_timezone(tmp_path):
    definitions = load_definitions(write(tmp_path, GOOD), timezone="America/New_York")
    assert definitions.cycles["2026-Q4"].timezone == "America/New_York"
    (loaded, _), *_ = definitions.key_results()
    assert loaded.cycle.timezone == "America/New_York"


def test_a_cycle_timezone_other_than_krpulse_yaml_is_an_error_naming_the_fix(tmp_path, config):
    text = GOOD.replace(
        "cycle: {key: 2026-Q4, start: 2026-10-01, end: 2026-12-31}",
        "cycle:\n  key: 2026-Q4\n  timezone: America/New_York",
    )
    path = write(tmp_path, text)
    result = check(config, path)
    assert result.exit_code == 1
    assert (
        f"{path}:3: error: cycle 2026-Q4 sets timezone America/New_York, but krpulse.yaml reports "
        "in Europe/Berlin" in result.output
    )
    assert "remove `timezone:` from the cycle" in result.output


def test_a_cycle_timezone_equal_to_krpulse_yaml_is_fine(tmp_path, config):
    path = write(
        tmp_path, GOOD.replace("end: 2026-12-31}", "end: 2026-12-31, timezone: Europe/Berlin}")
    )
    result = check(config, path)
    assert result.exit_code == 0, result.output


def test_a_lone_file_is_checked_without_krpulse_yaml(tmp_path):
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "absent.yaml"), "definitions", "check", str(path)]
    )
    assert result.exit_code == 0, result.output


# --- what only the staged data can tell --------------------------------------------------------

TEAM_OBJECTIVE = """\
  - key: dach
    title: Win more of the deals we work on in DACH
    level: team
    team: sales-dach
    aligns_to: grow
    key_results:
      - key: wr-dach
        title: Win rate DACH
        metric: win_rate
        where: {team: sales-dach, region: DACHH}
        baseline: 0.2
        target: 0.3
      - key: rev-dach
        title: Revenue per existing customer DACH
        metric: revenue_per_existing_customer
        where: {team: sales-dach}
        baseline: previous_cycle
        target: +10%
"""


def staged(deals=(), customers=()):
    return DuckDBStaged(
        canonical(DEALS, list(deals)),
        canonical(CUSTOMERS, list(customers)),
        canonical(NPS_RESPONSES, []),
        timezone="Europe/Berlin",
    )


def deal(deal_id, customer, team="sales-dach", won=None, close=None, amount=1000.0):
    return {
        "deal_id": deal_id,
        "customer_id": customer,
        "team": team,
        "is_closed": str(won is not None).lower(),
        "is_won": str(bool(won)).lower(),
        "amount": amount,
        "currency": "EUR",
        "amount_home": amount,
        "created_at": "2025-01-01T00:00:00Z",
        "close_date": close,
        "is_deleted": "false",
    }


def customer(customer_id, region):
    return {"customer_id": customer_id, "region": region, "segment": "SMB", "team": "sales-dach"}


def test_a_filter_value_no_staged_record_has_is_a_warning_with_the_known_values(tmp_path):
    path = write(tmp_path, GOOD + TEAM_OBJECTIVE)
    definitions = load_definitions(path)
    data = staged(
        deals=[deal("d1", "A", won=True, close="2026-08-01")],
        customers=[customer("A", "DACH"), customer("B", "UK"), customer("C", "US")],
    )
    warnings = [str(p) for p in check_against_data(definitions, data)]
    assert (
        f"{path}:26: warning: where: region: DACHH — no staged deal, customer or NPS response has "
        "region 'DACHH'; known values: DACH, UK, US; did you mean DACH?"
    ) in warnings


def test_nothing_staged_yet_is_no_reason_to_call_a_value_unknown(tmp_path):
    definitions = load_definitions(write(tmp_path, GOOD + TEAM_OBJECTIVE))
    assert check_against_data(definitions, staged()) == []


def test_a_relative_target_on_a_previous_cycle_of_zero_is_a_warning_at_run_time(tmp_path):
    path = write(tmp_path, GOOD + TEAM_OBJECTIVE)
    definitions = load_definitions(path)
    # Customer A is existing (won before Q3) but bought nothing in Q3: the baseline is 0.
    data = staged(
        deals=[deal("d1", "A", won=True, close="2026-01-15")], customers=[customer("A", "DACH")]
    )
    warnings = [str(p) for p in check_against_data(definitions, data)]
    assert (
        f"{path}:34: warning: KR 'rev-dach': its previous_cycle baseline is 0, so the relative "
        "target +10% is 0 and says nothing; write an absolute target such as `target: 5000`"
    ) in warnings


@pytest.fixture
def demo_cli(demo_project):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["--config", str(demo_project / "krpulse.yaml"), *args])

    assert invoke("sync").exit_code == 0
    q4 = demo_project / "definitions" / "2026-Q4.yaml"
    q4.write_text(
        q4.read_text().replace(
            "where: {team: sales-dach}\n        baseline: 0.30",
            "where: {team: sales-dach, region: DACHH}\n        baseline: 0.30",
        )
    )
    return invoke, q4


def test_preview_and_run_warn_about_a_filter_value_the_data_never_had(demo_cli):
    invoke, q4 = demo_cli
    line = q4.read_text().splitlines().index("        where: {team: sales-dach, region: DACHH}") + 1
    expected = f"{q4}:{line}: warning: where: region: DACHH — no staged deal, customer or NPS"
    for command in ("preview", "run"):
        result = invoke(command, "--as-of", "2026-11-25", "--format", "json")
        assert result.exit_code == 0, result.output
        assert expected in result.stderr, result.stderr
        assert "did you mean DACH?" in result.stderr


def test_the_readme_example_is_what_definitions_check_prints(tmp_path, config):
    readme = (REPO / "README.md").read_text()
    start = readme.index("# definitions/2026-Q4.yaml ")
    broken = readme[start : readme.index("```", start)]
    command = "$ uv run krpulse definitions check\n"
    shown = readme[readme.index(command) + len(command) :]
    shown = shown[: shown.index("```")]
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "2026-Q4.yaml").write_text(broken)
    result = CliRunner().invoke(cli, ["--config", str(config), "definitions", "check"])
    assert result.exit_code == 1
    assert result.stderr.replace(f"{tmp_path}/", "") == shown

"""`krpulse definitions check` in this process: never a traceback, every problem with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

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

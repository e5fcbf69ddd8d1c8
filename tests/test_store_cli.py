"""`krpulse export` of progress and KPI history (CSV and Parquet), through the CLI."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import cli


@pytest.fixture
def krpulse(demo_project):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["--config", str(demo_project / "krpulse.yaml"), *args])

    assert invoke("sync").exit_code == 0
    assert invoke("run", "--from", "2026-11-01", "--to", "2026-11-03").exit_code == 0
    return invoke


def test_export_writes_progress_and_kpi_history_as_csv_and_parquet(krpulse, tmp_path):
    result = krpulse("export", "--format", "parquet", "--output", str(tmp_path / "pq"))
    assert result.exit_code == 0, result.output
    progress = pd.read_parquet(tmp_path / "pq" / "kr_progress.parquet")
    kpis = pd.read_parquet(tmp_path / "pq" / "kpi_values.parquet")
    assert len(progress) == 8 * 3 and len(kpis) == 3 * 3
    assert progress.groupby(["cycle", "kr", "as_of"]).size().max() == 1
    assert {"value", "status", "definition_version", "run_id", "data_synced_at"} <= set(progress)
    assert "kr" not in kpis and str(progress["computed_at"].dt.tz) == "UTC"

    result = krpulse(
        "export",
        "--format",
        "csv",
        "--output",
        str(tmp_path / "csv"),
        "--from",
        "2026-11-02",
        "--team",
        "sales-uk",
    )
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(tmp_path / "csv" / "kr_progress.csv")
    assert set(csv["kr"]) == {"nps-uk", "win-rate-uk"}
    assert sorted(set(csv["as_of"])) == ["2026-11-02", "2026-11-03"]
    assert (tmp_path / "csv" / "kpi_values.csv").exists()
    merged = csv.merge(progress.assign(as_of=progress["as_of"].astype(str)), on=["kr", "as_of"])
    assert (merged["value_x"].round(9) == merged["value_y"].round(9)).all()
    assert dt.date.fromisoformat(csv["as_of"].min()) == dt.date(2026, 11, 2)

"""One daily flow: a day computed through Dagster (`dg.materialize` of the daily assets) and the
same day through `krpulse run` write the same store rows, whether every source is healthy, one
failed to sync, or the gate blocks the day. Only the run's id, its origin and the moments of
writing differ."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import REPO
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.canonical import DEALS
from okr_store.db import create_engine
from okr_store.repository import OkrStore
from okr_store.schema import upgrade
from okr_store.staging import merge_changes, read_staged, sync_state_table
from pipelines import flow, source_health
from pipelines.cli import cli
from pipelines.definitions import build_definitions
from pipelines.names import KR_PROGRESS, STAGED_SOURCES
from pipelines.settings import load_settings

# Every table a computed day writes, with the columns that legitimately differ between two
# runs of it: the run's id (cli-… or Dagster's), its origin, its process, and when rows were written.
DAY_TABLES: dict[str, set[str]] = {
    "kr_progress": {"run_id", "computed_at"},
    "kpi_values": {"run_id", "computed_at"},
    "run_days": {"run_id", "recorded_at"},
    "runs": {"run_id", "origin", "started_at", "finished_at", "heartbeat_at", "pid", "host"},
    "key_results": {"first_run_id", "recorded_at"},
    "kpis": {"first_run_id", "recorded_at"},
    "cycles": {"recorded_at"},
    "objectives": {"recorded_at"},
    "push_state": set(),
    "kr_charts": {"run_id", "computed_at"},
    "kr_drilldowns": {"run_id", "computed_at"},
}
# The last good sync of every source, pinned so the days around it are stable whatever today is.
LAST_GOOD_SYNC = dt.datetime(2026, 11, 12, 5, 0, tzinfo=dt.UTC)  # 06:00 in Berlin
BEFORE = dt.date(2026, 11, 4)  # pushed in the template: what stale KRs carry forward
DAYS = [dt.date(2026, 11, d) for d in (5, 11, 12, 20)]
CASES = ["healthy", "failing", "blocked"]  # before and after the last good sync
# A KPI over the demo source only: it stays when the other source fails; the others are left out.
DEMO_ONLY_KPI = """\
  - {key: win-rate-demo-90d, title: Win rate of the demo org, metric: win_rate,
     window: rolling_90d, where: {source: demo}, healthy: {min: 0.2}}
"""


def _template(root: Path, demo_data: Path, case: str) -> Path:
    """Two files sources synced (the second a slice of the demo org), BEFORE pushed; then, by
    `case`: `failing`, the second source's newest sync failed after its last good one;
    `blocked`, a sync staged a deal with a negative amount (the data gate blocks every day)."""
    shutil.copytree(REPO / "definitions", root / "definitions")
    with (root / "definitions" / "kpis.yaml").open("a") as kpis:
        kpis.write(DEMO_ONLY_KPI)
    shutil.copytree(demo_data, root / "demo-data")
    (root / "extra-data").mkdir()
    for name in ("deals", "customers", "nps_responses"):
        frame = pd.read_csv(demo_data / f"{name}.csv", dtype=str)
        frame.head(200).to_csv(root / "extra-data" / f"{name}.csv", index=False)
    (root / "krpulse.yaml").write_text(
        "timezone: Europe/Berlin\nreporting_currency: EUR\n"
        f"database_url: sqlite:///{root / 'krpulse.db'}\ndefinitions: definitions/\n"
        "sources:\n  - {name: demo, type: files, path: demo-data}\n"
        "  - {name: extra, type: files, path: extra-data}\n"
    )
    settings = load_settings(root / "krpulse.yaml")
    engine = create_engine(settings.effective_database_url)
    upgrade(engine)
    flow.sync_sources(settings, engine)
    with engine.begin() as conn:
        conn.execute(sa.update(sync_state_table).values(last_synced_at=LAST_GOOD_SYNC))
    [before] = flow.run_days(settings, engine, [BEFORE], run_id="template")
    assert not before.blocked
    if case == "failing":
        shutil.rmtree(root / "extra-data")  # the source goes away: its sync fails
        with pytest.raises(Exception, match="extra-data"):
            flow.sync_sources(settings, engine, only="extra")
        states = source_health.source_states(settings, engine).set_index("source")
        assert states.loc["extra", "status"] == "failing"
    if case == "blocked":
        deals = read_staged(engine, DEALS, sources=["extra"]).head(3)
        deals.loc[0, "amount"] = -500.0
        with engine.begin() as conn:
            merge_changes(
                conn,
                DEALS,
                deals,
                source="extra",
                cursor=None,
                quarantined=pd.DataFrame(columns=["reason"]),
            )
    engine.dispose()
    return root


@pytest.fixture(scope="module")
def templates(tmp_path_factory, demo_data) -> dict[str, Path]:
    return {case: _template(tmp_path_factory.mktemp(case), demo_data, case) for case in CASES}


def _copy(template: Path, to: Path) -> str:
    shutil.copytree(template, to)
    config = to / "krpulse.yaml"
    config.write_text(config.read_text().replace(str(template), str(to)))
    return str(config)


def through_the_cli(config: str, day: dt.date, case: str) -> str:
    result = CliRunner().invoke(cli, ["--config", config, "run", "--as-of", day.isoformat()])
    assert result.exit_code == (1 if case == "blocked" else 0), result.output
    return result.output


def through_dagster(config: str, day: dt.date, case: str) -> str:
    defs = build_definitions(config)  # the daily assets come with the `krpulse` resource
    result = dg.materialize(
        [defs.resolve_assets_def(STAGED_SOURCES), defs.resolve_assets_def(KR_PROGRESS)],
        partition_key=day.isoformat(),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    checks = result.get_asset_check_evaluations()
    blocking = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    assert checks and bool(blocking) == (case == "blocked")  # warnings only warn
    assert result.success or case == "blocked"
    return result.run_id


def stored_rows(config: str) -> dict[str, list[str]]:
    """Each day table's rows without the columns that name the run or the moment, as the exact
    text of their stored values, in a stable order."""
    engine = create_engine(load_settings(config).effective_database_url)
    rows = {}
    with engine.connect() as conn:
        for name, differing in DAY_TABLES.items():
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            columns = [c for c in table.c if c.name not in differing]
            found = conn.execute(sa.select(*columns)).all()
            rows[name] = sorted(repr(tuple(row)) for row in found)
    engine.dispose()
    return rows


@pytest.mark.parametrize("case", CASES)
@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(day=st.sampled_from(DAYS))
@example(day=LAST_GOOD_SYNC.date() + dt.timedelta(days=8))  # a failure makes this day stale
@example(day=LAST_GOOD_SYNC.date() - dt.timedelta(days=7))  # complete before the failure
def test_a_day_through_dagster_and_through_krpulse_run_writes_identical_rows(
    templates, tmp_path_factory, day, case
):
    work = tmp_path_factory.mktemp("same-day")
    cli_config = _copy(templates[case], work / "cli")
    dagster_config = _copy(templates[case], work / "dagster")

    said = through_the_cli(cli_config, day, case)
    run_id = through_dagster(dagster_config, day, case)

    by_cli, by_dagster = stored_rows(cli_config), stored_rows(dagster_config)
    for table in DAY_TABLES:
        assert by_cli[table] == by_dagster[table], table
    # The day was written by that run in both stores, and the failure shows where it should.
    store = OkrStore(create_engine(load_settings(dagster_config).effective_database_url))
    progress = store.progress(as_of=day, on_day_only=True)
    assert len(progress) == 8 and set(progress["run_id"]) == {run_id}
    stale = progress["status"] == "stale"
    kpis = set(store.kpi_values(as_of=day).query("as_of == @day")["kpi"])
    if case == "blocked":
        assert stale.all() and progress["stale_reason"].str.contains("amounts not negative").all()
        assert not kpis  # nothing of a blocked day is pushed
    elif case == "failing" and day >= LAST_GOOD_SYNC.date():
        assert stale.all()  # every KR reads both sources
        assert (progress["stale_reason"] == "source extra failed to sync").all()
        assert kpis == {"win-rate-demo-90d"}  # KPIs over the failing source are left out
        assert "source extra failed to sync; 8 KRs that read it are marked stale" in said
    else:
        assert not stale.any()
        assert "win-rate-demo-90d" in kpis and len(kpis) == 4

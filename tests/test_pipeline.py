"""The Dagster project: loads, materialises the daily job on demo data, and the gate blocks bad numbers."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.definitions import build_definitions
from pipelines.names import (
    DAILY_JOB,
    DAILY_SCHEDULE,
    KR_PROGRESS,
    KR_VALUES,
    SYNC_JOB,
    VALUES_CHECK,
)
from pipelines.schedules import DAY_TAG
from pipelines.settings import load_settings

DAY = "2026-11-20"


@pytest.fixture
def defs(demo_project) -> dg.Definitions:
    return build_definitions(str(demo_project / "krpulse.yaml"))


def materialize_day(defs: dg.Definitions, partition: str = DAY) -> dg.ExecuteInProcessResult:
    """What the schedule and its sensor do: sync the sources, then compute the day."""
    instance = dg.DagsterInstance.ephemeral()
    synced = defs.resolve_job_def(SYNC_JOB).execute_in_process(
        instance=instance, tags={DAY_TAG: partition}
    )
    assert synced.success
    return defs.resolve_job_def(DAILY_JOB).execute_in_process(
        partition_key=partition, instance=instance, raise_on_error=False
    )


def test_definitions_load_with_partitions_in_the_org_timezone(defs):
    dg.Definitions.validate_loadable(defs)
    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE)
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.cron_schedule == "0 6 * * *"
    partitions = defs.resolve_assets_def(KR_VALUES).partitions_def
    assert partitions.get_first_partition_key() == "2026-07-01"  # the 2026-Q3 cycle


def test_the_daily_job_materialises_a_day_on_demo_data(defs, demo_project):
    result = materialize_day(defs)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    settings = load_settings(demo_project / "krpulse.yaml")
    store = OkrStore(flow.open_database(settings))
    progress = store.progress(as_of=dt.date(2026, 11, 20), on_day_only=True)
    assert len(progress) == 8
    assert progress["value"].notna().all()
    assert set(progress["status"]) <= {"on_track", "at_risk", "off_track"}
    assert store.kpi_values(as_of=dt.date(2026, 11, 20))["kpi"].tolist() == [
        "nps-90d",
        "revenue-per-existing-customer-90d",
        "win-rate-90d",
    ]
    assert progress["run_id"].unique().tolist() == [result.run_id]

    # Rerunning the day replaces its rows: still exactly one per KR.
    assert materialize_day(defs).success
    assert store.count_progress_rows(dt.date(2026, 11, 20)) == 8


def test_the_dagster_job_and_the_cli_flow_agree(defs, demo_project):
    assert materialize_day(defs).success
    settings = load_settings(demo_project / "krpulse.yaml")
    engine = flow.open_database(settings)
    stored = OkrStore(engine).progress(as_of=dt.date(2026, 11, 20)).set_index("kr")["value"]
    _, computed, _ = flow.compute_day(
        settings,
        flow.load_definition_set(settings),
        flow.staged_data(settings, engine),
        dt.date(2026, 11, 20),
    )
    pd.testing.assert_series_equal(
        computed.set_index("kr")["value"].sort_index(), stored.sort_index(), check_names=False
    )


def test_a_failing_gate_blocks_the_push_and_keeps_the_previous_day(defs, demo_project, monkeypatch):
    assert materialize_day(defs, "2026-11-19").success
    real_compute = flow.compute_days

    def broken_compute(*args, **kwargs):
        computed = real_compute(*args, **kwargs)
        for values, _, _ in computed.values():
            values.loc[values["metric"] == "nps", "value"] = 140.0  # impossible NPS
        return computed

    monkeypatch.setattr(flow, "compute_days", broken_compute)
    result = materialize_day(defs)
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert failed and failed[0].check_name == VALUES_CHECK
    assert failed[0].severity == dg.AssetCheckSeverity.ERROR
    assert "140" in str(failed[0].metadata)
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert KR_PROGRESS not in materialized

    store = OkrStore(flow.open_database(load_settings(demo_project / "krpulse.yaml")))
    # Nothing of the day is pushed: the failing check marked its KRs stale instead, each
    # carrying the previous day's value; the previous day is untouched.
    blocked = store.progress(as_of=dt.date(2026, 11, 20), on_day_only=True)
    assert len(blocked) == 8 and (blocked["status"] == "stale").all()
    assert blocked["stale_reason"].str.contains("nps outside -100..100").all()
    before = store.progress(as_of=dt.date(2026, 11, 19), on_day_only=True)
    assert len(before) == 8 and "stale" not in set(before["status"])

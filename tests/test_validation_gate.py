"""The validation gate end to end: each failure mode blocks or warns as designed; a blocked day
pushes nothing, leaves the days before untouched and marks its KRs stale with the reason."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from core.canonical import DEALS, NPS_RESPONSES
from okr_store.db import create_engine
from okr_store.repository import OkrStore
from okr_store.schema import upgrade
from okr_store.staging import latest_syncs, merge_changes, read_staged
from pipelines import flow, gate
from pipelines.cli import cli
from pipelines.definitions import build_definitions
from pipelines.names import DATA_CHECK, KR_PROGRESS, KR_VALUES, VALUES_CHECK
from pipelines.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
BEFORE = dt.date(2026, 11, 19)  # the last good day, pushed in the template
DAY = dt.date(2026, 11, 20)  # the day each test runs through the gate
NOW = pd.Timestamp.now(tz="UTC")


@pytest.fixture(scope="module")
def template(tmp_path_factory, demo_data) -> Path:
    """The demo org synced, and BEFORE pushed: built once, copied for every test."""
    root = tmp_path_factory.mktemp("gate-template")
    shutil.copytree(REPO / "definitions", root / "definitions")
    shutil.copytree(demo_data, root / "demo-data")
    (root / "krpulse.yaml").write_text(
        "timezone: Europe/Berlin\nreporting_currency: EUR\ndatabase_url: sqlite:///krpulse.db\n"
        "definitions: definitions/\nsources:\n  - {name: demo, type: files, path: demo-data}\n"
    )
    settings = load_settings(root / "krpulse.yaml")
    engine = create_engine(settings.effective_database_url)
    upgrade(engine)
    flow.sync_sources(settings, engine)
    [good] = flow.run_days(settings, engine, [BEFORE])
    assert not good.blocked and not good.validation_warnings, good.validation_failures
    engine.dispose()
    return root


@pytest.fixture
def project(template, tmp_path) -> Path:
    shutil.copytree(template, tmp_path / "project")
    return tmp_path / "project"


def settings_of(project: Path, extra: str = "") -> Settings:
    if extra:
        config = project / "krpulse.yaml"
        config.write_text(config.read_text() + extra)
    return load_settings(project / "krpulse.yaml")


def staged(settings: Settings, table: str, rows: int) -> pd.DataFrame:
    frame = read_staged(flow.open_database(settings), table, sources=["demo"])
    return frame[~frame["is_deleted"].astype(bool)].head(rows).reset_index(drop=True)


def stage(
    settings: Settings,
    table: str,
    changed: pd.DataFrame,
    *,
    quarantined: pd.DataFrame | None = None,
    deleted_ids: list[str] = (),
) -> None:
    """Merge rows as a CRM connector would (the files source quarantines many of these
    before they reach staging; an API connector or a future one might not)."""
    if quarantined is None:
        quarantined = pd.DataFrame(columns=["reason"])
    with flow.open_database(settings).begin() as conn:
        merge_changes(
            conn,
            table,
            changed,
            source="demo",
            quarantined=quarantined,
            cursor=None,
            deleted_ids=deleted_ids,
        )


def run_day(settings: Settings) -> flow.DayResult:
    return flow.run_days(settings, flow.open_database(settings), [DAY])[0]


def assert_blocked(settings: Settings, result: flow.DayResult, words: str) -> None:
    """Blocked: nothing pushed, the day before untouched, every KR of the day stale with why."""
    assert result.blocked, result.validation_warnings
    store = OkrStore(flow.open_database(settings))
    before = store.progress(as_of=BEFORE, on_day_only=True)
    assert len(before) == 8 and set(before["status"]) <= {"on_track", "at_risk", "off_track"}
    assert before["run_id"].nunique() == 1 and before["stale_reason"].isna().all()
    day = store.progress(as_of=DAY, on_day_only=True).set_index(["cycle", "kr"]).sort_index()
    assert len(day) == 8 and (day["status"] == "stale").all()
    assert day["stale_reason"].str.contains(words, regex=False).all(), day["stale_reason"].iloc[0]
    # Each stale KR carries its last good value forward, never a zero.
    carried = before.set_index(["cycle", "kr"]).sort_index()
    pd.testing.assert_series_equal(day["value"], carried["value"])
    assert store.kpi_values(as_of=DAY)["as_of"].max() == BEFORE  # no KPI pushed for the day


def assert_warned(settings: Settings, result: flow.DayResult, words: str) -> None:
    """Warned: pushed as usual, the warning reported."""
    assert not result.blocked, result.validation_failures
    assert any(words in line for line in result.validation_warnings), result.validation_warnings
    day = OkrStore(flow.open_database(settings)).progress(as_of=DAY, on_day_only=True)
    assert len(day) == 8 and "stale" not in set(day["status"])


# --- Data suites: one test per failure mode ----------------------------------------------------


def _deal_with(**changes) -> Callable[[Settings], None]:
    def inject(settings: Settings) -> None:
        deals = staged(settings, DEALS, 3)
        for column, value in changes.items():
            deals.loc[0, column] = value
        stage(settings, DEALS, deals)

    return inject


def _response_with(**changes) -> Callable[[Settings], None]:
    def inject(settings: Settings) -> None:
        responses = staged(settings, NPS_RESPONSES, 3)
        for column, value in changes.items():
            responses[column] = responses[column].astype(object)
            responses.loc[0, column] = value
        stage(settings, NPS_RESPONSES, responses)

    return inject


DATA_ERRORS = {
    "negative amount": (_deal_with(amount=-500.0), "amounts not negative"),
    "infinite amount": (_deal_with(amount_home=math.inf), "amounts finite"),
    "unknown currency": (_deal_with(currency="XYZ"), "currencies known"),
    "amount not convertible": (_deal_with(amount_home=math.nan), "currencies convertible"),
    "close date decades off": (
        _deal_with(close_date=pd.Timestamp("1961-04-12")),
        "close dates plausible",
    ),
    "closed deal closing in the future": (
        _deal_with(
            is_closed=True, close_date=(NOW + pd.Timedelta(days=60)).tz_localize(None).normalize()
        ),
        "closed deals not closed in the future",
    ),
    "NPS response submitted in the future": (
        _response_with(submitted_at=NOW + pd.Timedelta(days=10)),
        "submission times plausible",
    ),
    "NPS score 11": (_response_with(score=11), "NPS scores integers 0–10"),
}


@pytest.mark.parametrize("mode", list(DATA_ERRORS))
def test_bad_staged_rows_block_the_day_and_mark_its_krs_stale(project, mode):
    settings = settings_of(project)
    inject, words = DATA_ERRORS[mode]
    inject(settings)
    result = run_day(settings)
    assert_blocked(settings, result, "blocked by the data gate: demo/")
    assert_blocked(settings, result, words)


def test_a_mass_deletion_blocks_the_day(project):
    settings = settings_of(project)
    deals = staged(settings, DEALS, 1200)  # 40 % of the staged deals vanish in one sync
    stage(settings, DEALS, deals.iloc[0:0], deleted_ids=deals["deal_id"].tolist())
    assert_blocked(settings, run_day(settings), "no mass deletion")


def test_a_high_share_of_quarantined_records_blocks_the_day(project):
    settings = settings_of(project)
    deals = staged(settings, DEALS, 60)
    bad = deals.astype("string").assign(reason="amount is not a number")
    stage(settings, DEALS, deals.head(10), quarantined=bad.tail(50))
    assert_blocked(settings, run_day(settings), "quarantined share")


def test_a_deal_pointing_at_a_missing_customer_warns_and_pushes(project):
    settings = settings_of(project)
    _deal_with(customer_id="C-does-not-exist")(settings)
    assert_warned(settings, run_day(settings), "deals point at customers that exist")


def test_an_empty_sync_where_hundreds_of_changes_are_usual_warns_and_pushes(project):
    settings = settings_of(project)
    deals = staged(settings, DEALS, 150)
    for _ in range(3):  # recent history: 150 changes per sync
        stage(settings, DEALS, deals)
    stage(settings, DEALS, deals.iloc[0:0])  # and now nothing at all
    assert_warned(settings, run_day(settings), "empty sync")


def test_small_syncs_are_not_judged_by_shares_or_history(project):
    settings = settings_of(project)
    stage(settings, DEALS, staged(settings, DEALS, 5))
    result = run_day(settings)
    assert not result.blocked and not result.validation_warnings


def test_the_verdict_on_a_sync_is_recorded_once(project):
    settings = settings_of(project)
    _deal_with(amount=-1.0)(settings)
    engine = flow.open_database(settings)
    first = gate.data_gate(settings, engine)
    newest = latest_syncs(engine, ["demo"]).set_index("object")
    assert newest.loc[DEALS, "validation_status"] == "failed"
    assert (newest.drop(index=DEALS)["validation_status"] == "passed").all()
    assert [v.report for v in gate.data_gate(settings, engine)] == [v.report for v in first]


# --- Number suites ------------------------------------------------------------------------------


def _patch_values(monkeypatch, change: Callable[[pd.DataFrame], None]) -> None:
    real = flow.compute_days

    def patched(*args, **kwargs):
        out = real(*args, **kwargs)
        if DAY in out:
            values, progress, kpis = out[DAY]
            values = values.copy()
            change(values)
            out[DAY] = (values, progress, kpis)
        return out

    monkeypatch.setattr(flow, "compute_days", patched)


def _set(metric: str, value: float, *, as_metric: str | None = None):
    def change(values: pd.DataFrame) -> None:
        row = values.index[(values["metric"] == metric) & (values["kind"] == "kr")][0]
        values.loc[row, "value"] = value
        if as_metric:
            values.loc[row, "metric"] = as_metric

    return change


NUMBER_ERRORS = {
    "NPS outside -100..100": (_set("nps", 140.0), "nps outside -100..100"),
    "infinite value": (_set("win_rate", math.inf), "infinite value"),
    "null where the metric never lacks one": (
        _set("nps", math.nan, as_metric="won_deals"),
        "no value where the metric never lacks one",
    ),
    "win rate above 1": (_set("win_rate", 1.2), "win_rate outside 0..1"),
}


@pytest.mark.parametrize("mode", list(NUMBER_ERRORS))
def test_impossible_numbers_block_the_day_and_mark_its_krs_stale(project, monkeypatch, mode):
    change, words = NUMBER_ERRORS[mode]
    _patch_values(monkeypatch, change)
    settings = settings_of(project)
    result = run_day(settings)
    assert_blocked(settings, result, "blocked by the number gate")
    assert_blocked(settings, result, words)


def test_a_day_over_day_jump_warns_and_pushes(project, monkeypatch):
    _patch_values(monkeypatch, _set("win_rate", 0.95))  # from about 0.3 the day before
    settings = settings_of(project)
    assert_warned(settings, run_day(settings), "[warning] expect_daily_change_within_limit")


def test_a_day_over_day_jump_blocks_when_configured_as_error(project, monkeypatch):
    _patch_values(monkeypatch, _set("win_rate", 0.95))
    settings = settings_of(
        project,
        "validation:\n  numbers:\n    metrics:\n"
        "      win_rate: {max_daily_change: 0.3, severity: error}\n",
    )
    assert_blocked(settings, run_day(settings), "day-over-day change above max_daily_change")


def test_a_custom_metric_outside_its_declared_range_blocks_the_day(project):
    (project / "definitions" / "custom.yaml").write_text(
        "metrics:\n"
        "  - {name: average_deal_eur, type: simple, entity: deals, agg: average,\n"
        "     expr: amount_home, unit: currency, min: 0, max: 1000}\n"
        "kpis:\n"
        "  - {key: average-deal, title: Average deal, metric: average_deal_eur, window: rolling_90d,\n"
        "     healthy: {min: 0}}\n"
    )
    settings = settings_of(project)
    assert_blocked(settings, run_day(settings), "average_deal_eur outside 0..1000")


# --- What users see -----------------------------------------------------------------------------


def test_status_shows_the_stale_reason_after_a_blocked_run(project):
    settings = settings_of(project)
    _deal_with(amount=-500.0)(settings)
    runner = CliRunner()
    config = ["--config", str(project / "krpulse.yaml")]
    blocked = runner.invoke(cli, [*config, "run", "--as-of", DAY.isoformat()])
    assert blocked.exit_code == 1
    assert "blocked" in blocked.output and "amounts not negative" in blocked.output
    status = runner.invoke(cli, [*config, "status", "--as-of", DAY.isoformat(), "--format", "json"])
    krs = pd.DataFrame(__import__("json").loads(status.output)["key_results"])
    assert (krs["status"] == "stale").all()
    assert krs["stale_reason"].str.contains("amounts not negative").all()


def test_validate_prints_failures_with_examples_and_exits_1_on_errors(project):
    settings = settings_of(project)
    _deal_with(amount=-500.0, customer_id="C-nowhere")(settings)
    runner = CliRunner()
    config = ["--config", str(project / "krpulse.yaml")]
    result = runner.invoke(cli, [*config, "validate", "--source", "demo"])
    assert result.exit_code == 1, result.output
    assert "demo/deals" in result.output and "failed" in result.output
    assert "expect_column_values_to_be_between(amount, 0..) [amounts not negative]" in result.output
    assert '"amount": -500.0' in result.output  # the example record
    assert "warning demo/deals" in result.output  # the missing customer only warns

    as_json = runner.invoke(
        cli, [*config, "validate", "--as-of", DAY.isoformat(), "--format", "json"]
    )
    payload = __import__("json").loads(as_json.output)
    suites = {s["suite"]: s for s in payload["suites"]}
    assert suites["demo/deals"]["status"] == "failed"
    assert suites["demo/customers"]["status"] == "passed"
    assert suites[f"numbers {DAY}"]["status"] == "passed"
    failure = suites["demo/deals"]["failures"][0]
    assert failure["severity"] == "error" and failure["unexpected_count"] == 1
    assert failure["examples"][0]["amount"] == -500.0


def test_validate_passes_on_clean_data(project):
    result = CliRunner().invoke(
        cli, ["--config", str(project / "krpulse.yaml"), "validate", "--as-of", DAY.isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert "failed" not in result.output


# --- Dagster: the checks block in the same run, and the check marks the KRs stale --------------


def dagster_run(project: Path, *, with_sync: bool = True) -> dg.ExecuteInProcessResult:
    """Every asset and check for DAY in one run, like a daily run that syncs first (or, without
    the sync, like a daily run after a sync job of its own)."""
    defs = build_definitions(str(project / "krpulse.yaml"))
    partitions = defs.resolve_assets_def(KR_VALUES).partitions_def
    selection = dg.AssetSelection.all()
    if not with_sync:
        selection = selection - dg.AssetSelection.key_prefixes(["staging"])
    job = dg.define_asset_job("gate_test_job", selection=selection, partitions_def=partitions)
    job_def = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)
    return job_def.execute_in_process(
        partition_key=DAY.isoformat(),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_dagster_data_gate_error_blocks_the_push_in_the_same_run_and_marks_krs_stale(project):
    settings = settings_of(project)
    deals = pd.read_csv(project / "demo-data" / "deals.csv", dtype=str)
    deals.iloc[: len(deals) * 6 // 10].to_csv(project / "demo-data" / "deals.csv", index=False)
    result = dagster_run(project)

    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [(c.asset_key.to_user_string(), c.check_name) for c in failed] == [
        ("staging/demo/deals", DATA_CHECK)
    ]
    assert failed[0].severity == dg.AssetCheckSeverity.ERROR
    failure = failed[0].metadata["failure_1"].value
    assert "no mass deletion" in failure["expectation"] and failure["unexpected_count"] == 1
    assert failure["examples"][0]["deleted_since"] > 1000  # since the last state that passed
    assert failed[0].metadata["marked_stale"].value == 8
    assert KR_VALUES not in materialized(result) and KR_PROGRESS not in materialized(result)
    assert_blocked(settings, flow.DayResult(DAY, *[pd.DataFrame()] * 3, ["x"]), "no mass deletion")


def test_dagster_number_gate_error_blocks_the_push_and_marks_krs_stale(project, monkeypatch):
    _patch_values(monkeypatch, _set("nps", 140.0))
    settings = settings_of(project)
    result = dagster_run(project)
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [(c.asset_key.to_user_string(), c.check_name) for c in failed] == [
        (KR_VALUES, VALUES_CHECK)
    ]
    assert failed[0].severity == dg.AssetCheckSeverity.ERROR
    failure = failed[0].metadata["failure_1"].value
    assert failure["expectation"].endswith("[nps]") and failure["examples"][0]["value"] == 140.0
    assert KR_VALUES in materialized(result) and KR_PROGRESS not in materialized(result)
    assert_blocked(
        settings, flow.DayResult(DAY, *[pd.DataFrame()] * 3, ["x"]), "nps outside -100..100"
    )


def test_dagster_warnings_are_shown_and_block_nothing(project, monkeypatch):
    _patch_values(monkeypatch, _set("win_rate", 0.95))
    result = dagster_run(project)
    [warned] = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert (warned.check_name, warned.severity) == (VALUES_CHECK, dg.AssetCheckSeverity.WARN)
    assert warned.metadata["failure_1"].value["severity"] == "warning"
    assert "marked_stale" not in warned.metadata
    # Not blocked: the push step runs (whatever it then does is the progress asset's business).
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert KR_PROGRESS in started


def test_dagster_number_gate_refuses_staged_data_that_a_separate_sync_left_bad(project):
    settings = settings_of(project)
    _deal_with(amount=-500.0)(settings)  # synced outside this run, never judged yet
    result = dagster_run(project, with_sync=False)
    failed = {
        c.asset_key.to_user_string(): c
        for c in result.get_asset_check_evaluations()
        if not c.passed
    }
    assert set(failed) == {KR_VALUES, "kpi_values"}
    assert all(c.severity == dg.AssetCheckSeverity.ERROR for c in failed.values())
    assert "amounts not negative" in failed[KR_VALUES].metadata["stale_reason"].value
    assert KR_PROGRESS not in materialized(result)
    assert_blocked(
        settings, flow.DayResult(DAY, *[pd.DataFrame()] * 3, ["x"]), "amounts not negative"
    )


def test_validation_thresholds_are_checked_when_krpulse_yaml_is_read(tmp_path):
    from pipelines.settings import ConfigError

    config = tmp_path / "krpulse.yaml"
    config.write_text(
        "validation:\n  numbers:\n    metrics:\n      nps: {max_daily_change: 0.2, severity: fatal}\n"
    )
    with pytest.raises(ConfigError, match="validation.numbers.metrics.nps.severity"):
        load_settings(config)
    config.write_text("validation:\n  data: {max_deleted_share: 0.1}\n")
    settings = load_settings(config)
    assert settings.validation.data.thresholds().max_deleted_share == 0.1
    assert settings.validation.numbers.thresholds().limit("nps").max_change == 0.5

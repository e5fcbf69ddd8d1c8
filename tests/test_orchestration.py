"""Operating the Dagster project: the daily schedule across DST, the sensors, single-run backfills,
failure notifications, and the instance on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import POSTGRES_ENV, REPO
from fakes.notifications import smtp_relay, webhook

from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.cli import cli
from pipelines.definitions import build_definitions
from pipelines.names import (
    AFTER_FAILED_SYNC_SENSOR,
    AFTER_SYNC_SENSOR,
    DAILY_JOB,
    DAILY_SCHEDULE,
    DEFINITIONS_SENSOR,
    KPI_VALUES,
    KR_PROGRESS,
    KR_VALUES,
    MISSED_RETRY_SENSOR,
    RUN_FAILURE_SENSOR,
    SYNC_JOB,
)
from pipelines.schedules import DAY_TAG
from pipelines.settings import load_settings

BERLIN = ZoneInfo("Europe/Berlin")
RANGE_START, RANGE_END = "2026-10-01", "2026-10-30"
# Columns that name the run or the moment of writing; everything else must match row for row.
AUDIT_COLUMNS = ["run_id", "computed_at", "data_synced_at"]


def configure(project, extra: str) -> str:
    config = project / "krpulse.yaml"
    config.write_text(config.read_text() + extra)
    return str(config)


def sync(defs: dg.Definitions, instance: dg.DagsterInstance, day: str) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(SYNC_JOB).execute_in_process(
        instance=instance, tags={DAY_TAG: day}, raise_on_error=False
    )


def compute(defs: dg.Definitions, instance: dg.DagsterInstance, **kwargs):
    return defs.resolve_job_def(DAILY_JOB).execute_in_process(
        instance=instance, raise_on_error=False, **kwargs
    )


def sensor_context_for(instance: dg.DagsterInstance, run_id: str, sensor_name: str, defs):
    """What the daemon hands a run status sensor when `run_id` has finished."""
    run = instance.get_run_by_id(run_id)
    status_event = (
        dg.DagsterEventType.RUN_SUCCESS
        if run.status == dg.DagsterRunStatus.SUCCESS
        else dg.DagsterEventType.RUN_FAILURE
    )
    records = instance.get_records_for_run(run_id, of_type=status_event).records
    return dg.build_run_status_sensor_context(
        sensor_name=sensor_name,
        dagster_event=records[-1].event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        repository_def=defs.get_repository_def(),
    )


# --- the daily schedule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_tick", "expected_day"),
    [
        # Spring forward in Berlin: 2026-03-29 has 23 hours (02:00 -> 03:00).
        (dt.datetime(2026, 3, 28, 6, 0), "2026-03-27"),
        (dt.datetime(2026, 3, 29, 6, 0), "2026-03-28"),
        (dt.datetime(2026, 3, 30, 6, 0), "2026-03-29"),
        # Fall back: 2026-10-25 has 25 hours (03:00 -> 02:00).
        (dt.datetime(2026, 10, 25, 6, 0), "2026-10-24"),
        (dt.datetime(2026, 10, 26, 6, 0), "2026-10-25"),
    ],
)
def test_the_daily_schedule_computes_the_previous_local_day_across_dst(
    demo_project, local_tick, expected_day
):
    defs = build_definitions(configure(demo_project, "partitions_start: 2026-01-01\n"))
    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE)
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"
    # The daemon passes the tick time in UTC: 05:00 UTC in winter, 04:00 UTC in summer.
    tick = local_tick.replace(tzinfo=BERLIN).astimezone(dt.UTC)
    data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick))
    [request] = data.run_requests
    assert request.job_name in (None, SYNC_JOB)
    assert request.tags[DAY_TAG] == expected_day

    # The sync run's day becomes the partition the sensor computes, and that partition exists.
    instance = dg.DagsterInstance.ephemeral()
    synced = defs.resolve_job_def(SYNC_JOB).execute_in_process(
        instance=instance, tags=dict(request.tags)
    )
    sensor = defs.resolve_sensor_def(AFTER_SYNC_SENSOR)
    follow_up = sensor(sensor_context_for(instance, synced.run_id, AFTER_SYNC_SENSOR, defs))
    assert follow_up.partition_key == expected_day
    partitions = defs.resolve_assets_def(KR_VALUES).partitions_def
    assert expected_day in partitions.get_partition_keys(current_time=tick)


@pytest.mark.parametrize(
    ("local_tick", "expected_day"),
    [
        # 00:30 local is still the previous day in UTC: the day must come from local time.
        (dt.datetime(2026, 3, 29, 0, 30), "2026-03-28"),
        (dt.datetime(2026, 3, 30, 0, 30), "2026-03-29"),
        (dt.datetime(2026, 10, 25, 0, 30), "2026-10-24"),
        # 02:30 happens twice on 2026-10-25; both ticks compute the 24th.
        (dt.datetime(2026, 10, 25, 2, 30, fold=0), "2026-10-24"),
        (dt.datetime(2026, 10, 25, 2, 30, fold=1), "2026-10-24"),
    ],
)
def test_a_schedule_near_midnight_or_inside_the_dst_hour_still_names_the_local_day(
    demo_project, local_tick, expected_day
):
    config = configure(
        demo_project, "partitions_start: 2026-01-01\nschedule: {hour: 0, minute: 30}\n"
    )
    schedule = build_definitions(config).resolve_schedule_def(DAILY_SCHEDULE)
    tick = local_tick.replace(tzinfo=BERLIN).astimezone(dt.UTC)
    data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick))
    assert [r.tags[DAY_TAG] for r in data.run_requests] == [expected_day]


# --- the definitions sensor ----------------------------------------------------------------------


def test_the_definitions_sensor_fires_on_a_changed_file_and_not_otherwise(demo_project):
    defs = build_definitions(str(demo_project / "krpulse.yaml"))
    sensor = defs.resolve_sensor_def(DEFINITIONS_SENSOR)
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor):
        return sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        )

    first = tick(None)
    assert not first.run_requests and first.cursor  # the baseline
    unchanged = tick(first.cursor)
    assert not unchanged.run_requests and "unchanged" in unchanged.skip_message

    cycle_file = demo_project / "definitions" / "2026-Q4.yaml"
    text = cycle_file.read_text()
    cycle_file.write_text(text)  # touched, same content: nothing to recompute
    os.utime(cycle_file, (1, 1))
    assert not tick(first.cursor).run_requests

    edited = text.replace("target: 70", "target: 72", 1)
    assert edited != text
    cycle_file.write_text(edited)
    fired = tick(first.cursor)
    [request] = fired.run_requests
    assert request.partition_key == load_settings(demo_project / "krpulse.yaml").today().isoformat()
    assert request.job_name in (None, DAILY_JOB)
    assert fired.cursor != first.cursor
    assert not tick(fired.cursor).run_requests  # once per edit

    # A broken edit does not run (the tick says why) and keeps the cursor, so the fix fires.
    cycle_file.write_text(edited.replace("metric: nps", "metric: nps_typo", 1))
    broken = tick(fired.cursor)
    assert not broken.run_requests and "errors" in broken.skip_message
    assert broken.cursor in (None, fired.cursor)
    (demo_project / "definitions" / "2026-Q4.yaml").write_text(edited.replace("72", "74", 1))
    assert tick(fired.cursor).run_requests


# --- backfills ------------------------------------------------------------------------------------


def _stored(engine: sa.Engine, days: list[dt.date]) -> tuple[pd.DataFrame, pd.DataFrame]:
    with engine.connect() as conn:
        progress = pd.read_sql(sa.text("SELECT * FROM kr_progress"), conn)
        kpis = pd.read_sql(sa.text("SELECT * FROM kpi_values"), conn)
    progress["as_of"] = pd.to_datetime(progress["as_of"]).dt.date
    kpis["as_of"] = pd.to_datetime(kpis["as_of"]).dt.date
    progress = progress[progress["as_of"].isin(days)].sort_values(["as_of", "cycle", "kr"])
    kpis = kpis[kpis["as_of"].isin(days)].sort_values(["as_of", "kpi"])
    return progress.reset_index(drop=True), kpis.reset_index(drop=True)


def test_a_30_day_backfill_equals_30_single_day_runs_row_for_row(demo_project, monkeypatch):
    config = str(demo_project / "krpulse.yaml")
    defs = build_definitions(config)
    for key in (KR_VALUES, KPI_VALUES, KR_PROGRESS):
        assert defs.resolve_assets_def(key).backfill_policy == dg.BackfillPolicy.single_run()
    instance = dg.DagsterInstance.ephemeral()
    assert sync(defs, instance, RANGE_END).success
    days = flow.date_range(dt.date.fromisoformat(RANGE_START), dt.date.fromisoformat(RANGE_END))
    assert len(days) == 30
    engine = flow.open_database(load_settings(config))

    for day in days:
        assert compute(defs, instance, partition_key=day.isoformat()).success
    one_by_one, kpis_one_by_one = _stored(engine, days)
    assert len(one_by_one) == 30 * 8 and one_by_one["value"].notna().any()

    passes = []
    real_history = flow.compiled_history
    monkeypatch.setattr(
        flow, "compiled_history", lambda *a, **k: passes.append(a[2:4]) or real_history(*a, **k)
    )
    backfill = compute(
        defs,
        instance,
        tags={
            "dagster/asset_partition_range_start": RANGE_START,
            "dagster/asset_partition_range_end": RANGE_END,
        },
    )
    assert backfill.success
    assert len(passes) == 1  # one engine pass (history mode) for the whole range
    backfilled, kpis_backfilled = _stored(engine, days)

    # Every row was rewritten by the backfill's single run ...
    assert set(backfilled["run_id"]) == {backfill.run_id}
    assert set(kpis_backfilled["run_id"]) == {backfill.run_id}
    # ... and holds exactly what the 30 single-day runs wrote.
    pd.testing.assert_frame_equal(
        one_by_one.drop(columns=AUDIT_COLUMNS), backfilled.drop(columns=AUDIT_COLUMNS)
    )
    pd.testing.assert_frame_equal(
        kpis_one_by_one.drop(columns=AUDIT_COLUMNS), kpis_backfilled.drop(columns=AUDIT_COLUMNS)
    )
    store = OkrStore(engine)
    audited = store.run_days(run_id=backfill.run_id)
    assert sorted(set(audited["as_of"])) == days


# --- failure notifications -------------------------------------------------------------------------


def _failing_sync(demo_project, extra: str):
    """A sync run that fails: the demo folder is gone. No step retries, so the test is quick."""
    config = configure(demo_project, "orchestration: {sync_retries: 0}\n" + extra)
    shutil.rmtree(demo_project / "demo-data")
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    result = sync(defs, instance, "2026-11-20")
    assert not result.success
    return defs, instance, result


def test_the_failure_sensor_posts_a_slack_payload_to_the_configured_webhook(
    demo_project, monkeypatch
):
    with webhook() as inbox:
        monkeypatch.setenv("KRPULSE_ALERT_WEBHOOK", inbox.url)
        defs, instance, failed = _failing_sync(
            demo_project,
            "notifications:\n  webhook_url_env: KRPULSE_ALERT_WEBHOOK\n"
            "  dagster_url: https://dagster.acme.internal\n",
        )
        sensor = defs.resolve_sensor_def(RUN_FAILURE_SENSOR)
        context = sensor_context_for(instance, failed.run_id, RUN_FAILURE_SENSOR, defs)
        sensor(context.for_run_failure())

    [payload] = inbox.posts
    assert inbox.paths == ["/services/T000/B000/fake"]
    text = payload["text"]
    assert f"run of {SYNC_JOB} for 2026-11-20 failed" in text
    assert "sync_demo" in text and "demo-data" in text  # the failed step and why
    assert f"https://dagster.acme.internal/runs/{failed.run_id}" in text
    assert payload["blocks"][0]["text"]["type"] == "mrkdwn"
    assert payload["krpulse"]["failed_steps"].keys() == {"sync_demo"}
    assert inbox.url not in json.dumps(payload)  # the webhook's secret URL is not echoed


def test_the_failure_sensor_mails_the_configured_recipients(demo_project):
    with smtp_relay() as relay:
        defs, instance, failed = _failing_sync(
            demo_project,
            "notifications:\n  email: {smtp_host: 127.0.0.1, smtp_port: "
            f"{relay.port}, starttls: false, sender: krpulse@acme.example, "
            "recipients: [data-eng@acme.example, ops@acme.example]}\n",
        )
        sensor = defs.resolve_sensor_def(RUN_FAILURE_SENSOR)
        sensor(
            sensor_context_for(instance, failed.run_id, RUN_FAILURE_SENSOR, defs).for_run_failure()
        )

    [(sender, recipients, mail)] = relay.mails
    assert sender == "krpulse@acme.example"
    assert recipients == ["data-eng@acme.example", "ops@acme.example"]
    assert f"Subject: krpulse: run of {SYNC_JOB} for 2026-11-20 failed" in mail
    assert "sync_demo" in mail and failed.run_id in mail


def test_a_failed_run_whose_retry_never_starts_is_reported_once(demo_project, monkeypatch):
    """The failure sensor is quiet about a run Dagster will retry; when the daemon never starts
    the retry (dagster-io/dagster#33741), the missed-retry sensor reports it, once."""
    with webhook() as inbox:
        monkeypatch.setenv("KRPULSE_ALERT_WEBHOOK", inbox.url)
        defs, instance, failed = _failing_sync(
            demo_project,
            "notifications:\n  webhook_url_env: KRPULSE_ALERT_WEBHOOK\n  missed_retry_minutes: 0\n",
        )
        instance.add_run_tags(failed.run_id, {"dagster/will_retry": "true"})
        failure_sensor = defs.resolve_sensor_def(RUN_FAILURE_SENSOR)
        failure_sensor(
            sensor_context_for(instance, failed.run_id, RUN_FAILURE_SENSOR, defs).for_run_failure()
        )
        assert inbox.posts == []  # promised a retry: not reported as failed

        missed = defs.resolve_sensor_def(MISSED_RETRY_SENSOR)
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        missed(context)
        [payload] = inbox.posts
        assert f"run of {SYNC_JOB} for 2026-11-20 failed" in payload["text"]
        assert "no retry had started 0 minutes later" in payload["text"]
        assert payload["krpulse"]["failed_steps"].keys() == {"sync_demo"}  # and why

        again = dg.build_sensor_context(instance=instance, definitions=defs, cursor=context.cursor)
        result = missed(again)
        assert isinstance(result, dg.SkipReason) and len(inbox.posts) == 1  # once only

        # A failed run whose retry did start is the retry's to report.
        _, _, retried = _failing_sync_again(defs, instance)
        instance.add_run_tags(retried.run_id, {"dagster/will_retry": "true"})
        instance.add_run(
            dg.DagsterRun(
                job_name=SYNC_JOB,
                run_id=str(uuid.uuid4()),
                tags={"dagster/parent_run_id": retried.run_id},
            )
        )
        missed(dg.build_sensor_context(instance=instance, definitions=defs, cursor=again.cursor))
        assert len(inbox.posts) == 1


def _failing_sync_again(defs, instance):
    result = sync(defs, instance, "2026-11-21")
    assert not result.success
    return defs, instance, result


def test_a_failed_sync_run_still_computes_its_day(demo_project):
    defs, instance, failed = _failing_sync(demo_project, "")
    sensor = defs.resolve_sensor_def(AFTER_FAILED_SYNC_SENSOR)
    request = sensor(
        sensor_context_for(
            instance, failed.run_id, AFTER_FAILED_SYNC_SENSOR, defs
        ).for_run_failure()
    )
    assert request.partition_key == "2026-11-20"
    assert request.run_key == f"after-sync-{failed.run_id}"


def test_a_failing_sync_is_retried_with_backoff_unless_retrying_cannot_help(demo_project):
    config = configure(
        demo_project, "orchestration: {sync_retries: 2, sync_retry_delay_seconds: 0.01}\n"
    )
    defs = build_definitions(config)
    policy = defs.resolve_assets_def(dg.AssetKey(["staging", "demo", "deals"])).op.retry_policy
    assert policy.max_retries == 2 and policy.backoff == dg.Backoff.EXPONENTIAL

    def attempts(result: dg.ExecuteInProcessResult) -> int:
        return 1 + sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)

    # An unreachable source (here: its folder is gone) may come back: tried three times.
    shutil.move(demo_project / "demo-data", demo_project / "elsewhere")
    gone = sync(defs, dg.DagsterInstance.ephemeral(), "2026-11-20")
    assert not gone.success and attempts(gone) == 3
    # A database whose schema is behind will not fix itself: it fails at once, saying why.
    shutil.move(demo_project / "elsewhere", demo_project / "demo-data")
    (demo_project / "krpulse.db").unlink()
    behind = sync(defs, dg.DagsterInstance.ephemeral(), "2026-11-20")
    assert not behind.success and attempts(behind) == 1
    [failure] = [e for e in behind.all_events if e.is_step_failure]
    assert "krpulse db upgrade" in str(failure.event_specific_data.error.message)


# --- configuration --------------------------------------------------------------------------------


def test_config_check_names_missing_secrets_without_showing_values(tmp_path, monkeypatch):
    (tmp_path / "definitions").mkdir()
    (tmp_path / "krpulse.yaml").write_text(
        "timezone: Europe/Berlin\n"
        "sources:\n"
        "  - {name: hubspot, type: hubspot, access_token_env: HUBSPOT_TOKEN}\n"
        "  - name: sf-main\n    type: salesforce\n    instance_url: https://acme.my.salesforce.com\n"
        "    auth: {method: jwt, username: ops@acme.com, consumer_key_env: SF_CONSUMER_KEY,"
        " private_key_env: SF_PRIVATE_KEY}\n"
        "notifications: {webhook_url_env: KRPULSE_ALERT_WEBHOOK}\n"
    )
    monkeypatch.setenv("HUBSPOT_TOKEN", "pat-eu1-very-secret-value")
    monkeypatch.setenv("SF_CONSUMER_KEY", "3MVG9-also-secret")
    monkeypatch.delenv("SF_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("KRPULSE_ALERT_WEBHOOK", raising=False)
    config = str(tmp_path / "krpulse.yaml")
    result = CliRunner().invoke(cli, ["--config", config, "config", "check", "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert status["sources.hubspot.access_token_env"] == "ok"  # noqa: S105 - a status, not a secret
    assert status["sources.sf-main.auth.consumer_key_env"] == "ok"
    assert status["sources.sf-main.auth.private_key_env"] == "missing"
    assert status["notifications.webhook_url_env"] == "missing"
    assert report["ok"] is False
    assert "very-secret" not in result.output and "also-secret" not in result.output

    monkeypatch.setenv("SF_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----")
    monkeypatch.setenv("KRPULSE_ALERT_WEBHOOK", "https://hooks.slack.com/services/secret")
    result = CliRunner().invoke(cli, ["--config", config, "config", "check"])
    assert result.exit_code == 0, result.output
    assert "PRIVATE KEY" not in result.output and "hooks.slack.com" not in result.output


def test_config_check_rejects_an_invalid_file_with_its_line(tmp_path):
    (tmp_path / "krpulse.yaml").write_text("timezone: Europe/Berlin\nschedule: {hour: 25}\n")
    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "krpulse.yaml"), "config", "check"]
    )
    assert result.exit_code == 1
    assert "schedule.hour" in result.output


# --- the instance on PostgreSQL ---------------------------------------------------------------------


@pytest.mark.postgres
def test_the_definitions_load_and_run_with_the_instance_on_postgres(
    demo_project, tmp_path, monkeypatch
):
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set on CI")
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL for the Dagster instance here")
    # A schema of its own, so Dagster's tables never meet the store tests' ones.
    schema = f"dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        psycopg2_url = (
            sa.make_url(url).set(drivername="postgresql+psycopg2").render_as_string(False)
        )
        monkeypatch.setenv("DAGSTER_PG_URL", f"{psycopg2_url}?options=-csearch_path%3D{schema}")
        home = tmp_path / "dagster-home"
        home.mkdir()
        # The documented production instance file, as shipped.
        shutil.copy(REPO / "dagster.postgres.yaml", home / "dagster.yaml")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert instance.get_concurrency_config().pool_config.default_pool_limit == 4
            assert instance.run_retries_enabled
            defs = build_definitions(str(demo_project / "krpulse.yaml"))
            dg.Definitions.validate_loadable(defs)
            assert sync(defs, instance, "2026-11-20").success
            result = compute(defs, instance, partition_key="2026-11-20")
            assert result.success
            stored = instance.get_latest_materialization_event(dg.AssetKey(KR_PROGRESS))
            assert stored is not None and stored.run_id == result.run_id
        with admin.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            ).scalar_one()
        assert tables > 5  # Dagster's runs, event logs, schedules live in the schema
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

"""Sensors: compute a day once its sync has finished, recompute today when the definitions change,
and notify on failed runs (Slack-compatible webhook or email)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg

from kr_metrics.definitions import DefinitionError
from kr_metrics.loader import definition_files
from pipelines import flow
from pipelines.names import (
    AFTER_FAILED_SYNC_SENSOR,
    AFTER_SYNC_SENSOR,
    DEFINITIONS_SENSOR,
    MISSED_RETRY_SENSOR,
    RUN_FAILURE_SENSOR,
)
from pipelines.notify import RunFailure, notify
from pipelines.schedules import DAY_TAG
from pipelines.settings import Settings

PARTITION_TAG = "dagster/partition"
WILL_RETRY_TAG = "dagster/will_retry"
PARENT_RUN_TAG = "dagster/parent_run_id"  # on a retry run: the run it retries
AUTO_RETRY_TAG = "dagster/auto_retry_run_id"  # on a failed run: its retry, once launched
# How far back the missed-retry sensor looks, and how many reported runs its cursor remembers.
MISSED_RETRY_LOOKBACK = dt.timedelta(days=2)
MISSED_RETRY_MEMORY = 500


def _day_after_sync(run: dg.DagsterRun, settings: Settings) -> dg.RunRequest:
    # The schedule names the last complete day; a sync launched by hand computes today.
    day = run.tags.get(DAY_TAG) or settings.today().isoformat()
    # One computation per finished sync run; a retried sync (a new run) computes the day again.
    return dg.RunRequest(
        run_key=f"after-sync-{run.run_id}",
        partition_key=day,
        tags={"krpulse/after_sync_run": run.run_id},
    )


def build_after_sync_sensors(
    sync_job: dg.UnresolvedAssetJobDefinition,
    daily_job: dg.UnresolvedAssetJobDefinition,
    settings: Settings,
) -> list[dg.SensorDefinition]:
    """Compute the synced day whether its sync succeeded or failed.

    Dagster abandons every step downstream of a failed one in the same run, so the syncs run on
    their own and the day is computed in a run of its own: a failing source then leaves the
    other sources' numbers computed and its own KRs marked stale, instead of stopping the day.
    """

    @dg.run_status_sensor(
        name=AFTER_SYNC_SENSOR,
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[sync_job],
        request_job=daily_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Computes the day of a sync run that succeeded.",
    )
    def kr_days_after_sync(context: dg.RunStatusSensorContext):
        return _day_after_sync(context.dagster_run, settings)

    @dg.run_failure_sensor(
        name=AFTER_FAILED_SYNC_SENSOR,
        monitored_jobs=[sync_job],
        request_job=daily_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Computes the day of a sync run that failed: the failing sources' KRs are "
        "marked stale, the others computed from their fresh data.",
    )
    def kr_days_after_failed_sync(context: dg.RunFailureSensorContext):
        return _day_after_sync(context.dagster_run, settings)

    return [kr_days_after_sync, kr_days_after_failed_sync]


def definitions_fingerprint(path: Path) -> str:
    """A hash of every definitions file's name and content: it changes when a file is edited,
    added or removed, and not when one is merely touched or checked out again."""
    digest = hashlib.sha256()
    for file in definition_files(path):  # the files the loader reads, no others
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def build_definitions_sensor(
    daily_job: dg.UnresolvedAssetJobDefinition, settings: Settings
) -> dg.SensorDefinition:
    @dg.sensor(
        name=DEFINITIONS_SENSOR,
        job=daily_job,
        minimum_interval_seconds=settings.orchestration.definitions_poll_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Recomputes today when a file under definitions/ changes, so sales ops see "
        "their edit within minutes; definitions with errors are not run (the tick says why).",
    )
    def definitions_changed(context: dg.SensorEvaluationContext):
        fingerprint = definitions_fingerprint(settings.definitions_path)
        if context.cursor is None:
            context.update_cursor(fingerprint)
            return dg.SkipReason("first evaluation: the current definitions are the baseline")
        if fingerprint == context.cursor:
            return dg.SkipReason("definitions unchanged")
        try:
            flow.load_definition_set(settings)
        except DefinitionError as exc:
            # The cursor stays: once the file is fixed, the next tick runs the day.
            return dg.SkipReason(f"definitions changed but have errors: {exc}"[:1000])
        context.update_cursor(fingerprint)
        today = settings.today().isoformat()
        context.log.info(f"definitions changed ({fingerprint[:12]}): recomputing {today}")
        return dg.RunRequest(partition_key=today, tags={"krpulse/definitions": fingerprint[:12]})

    return definitions_changed


def _root_cause(error) -> str:  # noqa: ANN001 - dagster's SerializableErrorInfo
    """The innermost error: the SourceError, not Dagster's "Exceeded max_retries" around it."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _failure(run: dg.DagsterRun, message: str, step_failures) -> RunFailure:
    steps = {
        event.step_key or "run": _root_cause(event.event_specific_data.error)[:400]
        for event in step_failures
        if event.event_specific_data is not None and event.event_specific_data.error is not None
    }
    return RunFailure(
        job=run.job_name,
        run_id=run.run_id,
        message=message[:600],
        partition=run.tags.get(PARTITION_TAG) or run.tags.get(DAY_TAG),
        failed_steps=steps,
    )


def run_failure(context: dg.RunFailureSensorContext) -> RunFailure:
    return _failure(
        context.dagster_run,
        context.failure_event.message or "",
        context.get_step_failure_events(),
    )


def build_failure_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Posts a failed run (job, day, failed steps, link) to the webhook named by "
        "notifications.webhook_url_env and/or mails notifications.email.",
    )
    def notify_on_run_failure(context: dg.RunFailureSensorContext):
        if not settings.notifications.configured:
            return dg.SkipReason("no notifications configured in krpulse.yaml (notifications:)")
        if context.dagster_run.tags.get(WILL_RETRY_TAG) == "true":
            return dg.SkipReason(f"run {context.dagster_run.run_id} will be retried")
        sent = notify(settings.notifications, run_failure(context))
        context.log.info(f"run {context.dagster_run.run_id} failed: notified by {sent}")

    return notify_on_run_failure


def build_missed_retry_sensor(settings: Settings) -> dg.SensorDefinition:
    """Reports a failed run that was marked for a retry when no retry has started in time.

    notify_on_run_failure stays quiet about a run Dagster will retry (the retry reports its own
    failure), but the daemon can fail to launch the retry at all (dagster-io/dagster#33741): the
    run then failed and nobody hears of it. This sensor closes that gap: a failed run tagged
    `dagster/will_retry` with no run naming it as parent `missed_retry_minutes` after it
    failed is reported once (its id is kept in the cursor)."""
    notifications = settings.notifications

    @dg.sensor(
        name=MISSED_RETRY_SENSOR,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reports a failed run whose promised retry never started (see "
        "notifications.missed_retry_minutes).",
    )
    def notify_on_missed_retry(context: dg.SensorEvaluationContext):
        if not notifications.configured:
            return dg.SkipReason("no notifications configured in krpulse.yaml (notifications:)")
        reported = json.loads(context.cursor) if context.cursor else []
        now = dt.datetime.now(dt.UTC)
        waited = dt.timedelta(minutes=notifications.missed_retry_minutes)
        instance = context.instance
        records = instance.get_run_records(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.FAILURE],
                tags={WILL_RETRY_TAG: "true"},
                updated_after=now - MISSED_RETRY_LOOKBACK,
                updated_before=now - waited,
            )
        )
        sent = []
        for record in records:
            run = record.dagster_run
            if run.run_id in reported or run.tags.get(AUTO_RETRY_TAG):
                continue
            if instance.get_run_records(
                filters=dg.RunsFilter(tags={PARENT_RUN_TAG: run.run_id}), limit=1
            ):
                continue  # the retry started; it reports its own failure
            step_failures = [
                entry.event_log_entry.dagster_event
                for entry in instance.get_records_for_run(
                    run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
                ).records
            ]
            minutes = f"{notifications.missed_retry_minutes:g}"
            failure = _failure(
                run,
                f"The run failed and was to be retried, but no retry had started {minutes} "
                "minutes later: check the Dagster daemon, then re-execute the run.",
                step_failures,
            )
            channels = notify(notifications, failure)
            context.log.info(f"run {run.run_id} failed without its retry: notified by {channels}")
            reported.append(run.run_id)
            sent.append(run.run_id)
        context.update_cursor(json.dumps(reported[-MISSED_RETRY_MEMORY:]))
        if not sent:
            return dg.SkipReason("no failed run is waiting for a retry that never started")
        return None

    return notify_on_missed_retry

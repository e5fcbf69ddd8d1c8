"""Sensors: compute a day once its sync has finished, recompute today when the definitions change,
and notify on failed runs (Slack-compatible webhook or email)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg

from kr_metrics.definitions import DefinitionError
from kr_metrics.loader import definition_files
from pipelines import flow
from pipelines.names import (
    AFTER_FAILED_SYNC_SENSOR,
    AFTER_SYNC_SENSOR,
    DEFINITIONS_SENSOR,
    RUN_FAILURE_SENSOR,
)
from pipelines.notify import RunFailure, notify
from pipelines.schedules import DAY_TAG
from pipelines.settings import Settings

PARTITION_TAG = "dagster/partition"
WILL_RETRY_TAG = "dagster/will_retry"


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


def run_failure(context: dg.RunFailureSensorContext) -> RunFailure:
    run = context.dagster_run
    steps = {
        event.step_key or "run": _root_cause(event.event_specific_data.error)[:400]
        for event in context.get_step_failure_events()
        if event.event_specific_data is not None and event.event_specific_data.error is not None
    }
    return RunFailure(
        job=run.job_name,
        run_id=run.run_id,
        message=(context.failure_event.message or "")[:600],
        partition=run.tags.get(PARTITION_TAG) or run.tags.get(DAY_TAG),
        failed_steps=steps,
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

"""The jobs and the daily schedule, at a configured local time in the organisation's timezone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from pipelines.names import (
    DAILY_JOB,
    DAILY_SCHEDULE,
    EXTRACT_GROUP,
    METRICS_GROUP,
    PROGRESS_GROUP,
    PUBLISH_GROUP,
    STAGING_GROUP,
    SYNC_JOB,
)
from pipelines.settings import Settings

# The sync assets are not partitioned (a sync is incremental, not per day), so the sync run
# carries the day it syncs for as a tag; the sensors turn it into the day's partition key.
DAY_TAG = "krpulse/day"


def build_sync_job() -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        SYNC_JOB,
        selection=dg.AssetSelection.groups(EXTRACT_GROUP),
        description="Sync every configured source into the staging tables, each source in its "
        "own step (retried with backoff); one failing source does not stop the others. The "
        f"day to compute afterwards travels in the `{DAY_TAG}` tag.",
    )


def build_daily_job(partitions: dg.PartitionsDefinition) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.groups(
            STAGING_GROUP, METRICS_GROUP, PROGRESS_GROUP, PUBLISH_GROUP
        ),
        partitions_def=partitions,
        description="Compute a day's KR and KPI values from the staged data, gate them, write "
        "progress (KRs of failing sources marked stale) and push to the OKR tools. A backfill "
        "of a date range is one run: one engine pass over the whole range.",
    )


def day_to_compute(scheduled: dt.datetime, timezone: str) -> dt.date:
    """The last complete day in the organisation's timezone at `scheduled`: at 06:00 on the 25th
    it is the 24th, whatever the UTC offset is that day (DST changes included)."""
    return scheduled.astimezone(ZoneInfo(timezone)).date() - dt.timedelta(days=1)


def build_daily_schedule(
    job: dg.UnresolvedAssetJobDefinition, settings: Settings, first_day: dt.date
) -> dg.ScheduleDefinition:
    """Every day at schedule.hour:minute local time, sync the sources for the previous day; the
    sensors then compute that day's partition (see pipelines/sensors.py)."""
    timezone = settings.timezone
    cron = f"{settings.schedule.minute} {settings.schedule.hour} * * *"

    @dg.schedule(
        name=DAILY_SCHEDULE,
        cron_schedule=cron,
        execution_timezone=timezone,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Daily at {settings.schedule.hour:02d}:{settings.schedule.minute:02d} "
        f"{timezone}: sync every source for the last complete day, then compute that day.",
    )
    def daily_kr_schedule(context: dg.ScheduleEvaluationContext):
        day = day_to_compute(context.scheduled_execution_time, timezone)
        if day < first_day:
            return dg.SkipReason(f"{day} is before the first partition ({first_day})")
        # The run key makes a tick evaluated twice (daemon restart) launch one run only.
        return dg.RunRequest(run_key=f"daily-{day.isoformat()}", tags={DAY_TAG: day.isoformat()})

    return daily_kr_schedule

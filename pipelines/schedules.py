"""The daily job and its schedule, at a configured local time in the organisation's timezone."""

from __future__ import annotations

import dagster as dg

from pipelines.names import DAILY_JOB, DAILY_SCHEDULE
from pipelines.settings import Settings


def build_daily_job(partitions: dg.PartitionsDefinition) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.all(),
        partitions_def=partitions,
        description="Sync every source, compute the day's KR and KPI values, gate them, push progress.",
    )


def build_daily_schedule(
    job: dg.UnresolvedAssetJobDefinition, settings: Settings
) -> dg.ScheduleDefinition:
    # A partitioned schedule runs the last *complete* day: at 06:00 on the 25th it computes
    # the 24th, so every number covers a whole day of CRM activity.
    return dg.build_schedule_from_partitioned_job(
        job,
        name=DAILY_SCHEDULE,
        hour_of_day=settings.schedule.hour,
        minute_of_hour=settings.schedule.minute,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )

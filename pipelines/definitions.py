"""The Dagster code location: `dagster dev` and `dg dev` in the repo root load `defs` from here."""

from __future__ import annotations

import contextlib
import datetime as dt
import os

import dagster as dg

from okr_store import schema
from okr_store.db import create_engine, sqlite_file
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.assets import (
    build_daily_assets,
    build_publish_asset,
    build_staged_sources_asset,
    build_sync_assets,
)
from pipelines.checks import build_data_checks
from pipelines.resources import KrpulseResource, source_resource_key, source_resources
from pipelines.schedules import build_daily_job, build_daily_schedule, build_sync_job
from pipelines.sensors import (
    build_after_sync_sensors,
    build_definitions_sensor,
    build_failure_sensor,
    build_missed_retry_sensor,
)
from pipelines.settings import CONFIG_ENV, DATABASE_URL_ENV, DEFAULT_CONFIG, Settings, load_settings


def partitions_start(settings: Settings) -> dt.date:
    """The first daily partition: `partitions_start` in krpulse.yaml, else the earliest cycle
    start the definitions or the OKR store know.

    The store remembers every cycle a run recorded, so a broken definitions file (or a cycle
    removed from it) never moves the partitions: the day's run then fails with the file and
    line, instead of Dagster refusing a partition "before the partitions definition start".
    """
    if settings.partitions_start:
        return settings.partitions_start
    starts = [start for start in (_recorded_start(settings),) if start]
    # Broken definitions must not stop the UI from loading: the run reports them.
    with contextlib.suppress(Exception):
        starts += [c.start for c in flow.load_definition_set(settings).cycles.values()]
    return min(starts, default=settings.today().replace(day=1))


def _recorded_start(settings: Settings) -> dt.date | None:
    """The earliest cycle start recorded in the OKR store; None without a store to ask."""
    try:
        engine = create_engine(settings.effective_database_url)
        database = sqlite_file(engine)
        if database is not None and not database.exists():
            return None  # do not create an empty SQLite file just to look
        if not schema.schema_status(engine).up_to_date:
            return None
        cycles = OkrStore(engine).definitions("cycles")
        engine.dispose()
    except Exception:  # noqa: BLE001 - an unreachable store must not stop the UI from loading
        return None
    return min(cycles["start"]) if len(cycles) else None


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """One partition per day in the organisation's timezone, today included (end_offset=1):
    the schedule computes the last complete day, a definitions edit recomputes today."""
    return dg.DailyPartitionsDefinition(
        start_date=partitions_start(settings).isoformat(), timezone=settings.timezone, end_offset=1
    )


# Each step of a run is a process forked from a server that has imported this code location once,
# instead of a fresh interpreter importing Dagster, pandas and the project again per step (10-15 s
# each on a small pod). Steps still run in processes of their own, in parallel where they can.
EXECUTOR = dg.multiprocess_executor.configured({"start_method": {"forkserver": {}}})


def build_definitions(config_path: str | None = None) -> dg.Definitions:
    config_path = config_path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    settings = load_settings(config_path)
    partitions = daily_partitions(settings)
    sync_job = build_sync_job()
    daily_job = build_daily_job(partitions)
    resource = KrpulseResource(
        config_path=str(config_path),
        database_url=dg.EnvVar(DATABASE_URL_ENV) if os.environ.get(DATABASE_URL_ENV) else "",
    )
    secret_holders = source_resources(settings)
    return dg.Definitions(
        assets=[
            *(
                build_sync_assets(
                    s.name,
                    s.type,
                    flow.source_for(settings, s).objects,
                    source_resource_key(s.name)
                    if source_resource_key(s.name) in secret_holders
                    else None,
                    settings,
                )
                for s in settings.sources
            ),
            build_staged_sources_asset(partitions, settings),
            build_daily_assets(partitions, settings),
            build_publish_asset(partitions),
        ],
        asset_checks=build_data_checks(settings),
        jobs=[sync_job, daily_job],
        executor=EXECUTOR,
        schedules=[build_daily_schedule(sync_job, settings, partitions_start(settings))],
        sensors=[
            *build_after_sync_sensors(sync_job, daily_job, settings),
            build_definitions_sensor(daily_job, settings),
            build_failure_sensor(settings),
            build_missed_retry_sensor(settings),
        ],
        resources={
            "krpulse": resource,
            **secret_holders,
        },
    )


defs = build_definitions()

"""The Dagster code location: `dagster dev` and `dg dev` in the repo root load `defs` from here."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from pipelines import flow
from pipelines.assets import build_progress_asset, build_sync_assets, build_value_assets
from pipelines.checks import build_gate_checks
from pipelines.resources import KrpulseResource, source_resource_key, source_resources
from pipelines.schedules import build_daily_job, build_daily_schedule
from pipelines.settings import CONFIG_ENV, DATABASE_URL_ENV, DEFAULT_CONFIG, Settings, load_settings


def partitions_start(settings: Settings) -> dt.date:
    if settings.partitions_start:
        return settings.partitions_start
    try:
        cycles = flow.load_definition_set(settings).cycles.values()
        return min(c.start for c in cycles)
    except Exception:  # noqa: BLE001 - broken definitions must not stop the UI from loading
        return settings.today().replace(day=1)


def build_definitions(config_path: str | None = None) -> dg.Definitions:
    config_path = config_path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    settings = load_settings(config_path)
    partitions = dg.DailyPartitionsDefinition(
        start_date=partitions_start(settings).isoformat(), timezone=settings.timezone
    )
    job = build_daily_job(partitions)
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
                )
                for s in settings.sources
            ),
            build_value_assets(partitions, settings),
            build_progress_asset(partitions),
        ],
        asset_checks=build_gate_checks(partitions),
        jobs=[job],
        schedules=[build_daily_schedule(job, settings)],
        resources={"krpulse": resource, **secret_holders},
    )


defs = build_definitions()

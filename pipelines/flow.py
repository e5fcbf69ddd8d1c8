"""The daily flow in plain Python: sync, compute, validate, push. Dagster assets and the CLI call it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa

from connectors.base import Source
from connectors.files import FilesSource
from connectors.schema import CUSTOMERS, DEALS, NPS_RESPONSES
from connectors.staging import SyncReport, last_synced, read_staged
from kr_metrics.definitions import DefinitionSet, load_definitions
from kr_metrics.engine import evaluate, prepare
from kr_metrics.metrics import METRICS, PreparedData
from kr_metrics.scoring import kpi_health, score_key_results
from okr_store.db import create_engine, create_schema
from okr_store.repository import OkrStore
from pipelines.settings import ConfigError, FilesSourceSettings, Settings, SourceSettings


def open_database(settings: Settings) -> sa.Engine:
    engine = create_engine(settings.effective_database_url)
    create_schema(engine)
    return engine


def load_definition_set(settings: Settings, path=None) -> DefinitionSet:
    return load_definitions(path or settings.definitions_path, known_metrics=METRICS)


def _files_source(settings: Settings, source: FilesSourceSettings) -> Source:
    return FilesSource(source.name, settings.resolve(source.path))


# One factory per `type:` in krpulse.yaml's `sources:`; a new connector registers here.
SOURCE_FACTORIES: dict[str, Callable[[Settings, Any], Source]] = {
    "files": _files_source,
}


def source_for(settings: Settings, source: SourceSettings) -> Source:
    try:
        factory = SOURCE_FACTORIES[source.type]
    except KeyError:  # pragma: no cover - settings validation knows the same types
        raise ConfigError(
            f"source '{source.name}': type '{source.type}' is not supported"
        ) from None
    return factory(settings, source)


def sync_sources(
    settings: Settings, engine: sa.Engine, *, only: str | None = None
) -> list[SyncReport]:
    """Extract every configured source (or `only` that one) into the staging tables."""
    sources = [settings.source(only)] if only else list(settings.sources)
    if not sources:
        raise ConfigError("no sources configured in krpulse.yaml (`sources:`)")
    reports: list[SyncReport] = []
    for source in sources:
        reports.extend(
            source_for(settings, source).sync(engine, home_currency=settings.reporting_currency)
        )
    return reports


def load_prepared(settings: Settings, engine: sa.Engine) -> PreparedData:
    """Staged canonical data of the configured sources, prepared once for every metric."""
    names = [s.name for s in settings.sources]
    with engine.connect() as conn:
        frames = {t: read_staged(conn, t, sources=names) for t in (DEALS, CUSTOMERS, NPS_RESPONSES)}
    return prepare(
        frames[DEALS], frames[CUSTOMERS], frames[NPS_RESPONSES], timezone=settings.timezone
    )


@dataclass
class DayResult:
    """Everything computed for one as-of date, before it is pushed."""

    as_of: dt.date
    values: pd.DataFrame  # engine output: KR and KPI rows
    progress: pd.DataFrame  # KR rows scored, in the store's shape
    kpis: pd.DataFrame  # KPI rows with health, in the store's shape
    validation_failures: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return bool(self.validation_failures)


def compute_day(
    settings: Settings, definitions: DefinitionSet, data: PreparedData, as_of: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(values, progress, kpis) for `as_of`; pure computation, nothing written."""
    values = evaluate(definitions, data, as_of)
    krs = score_key_results(values[values["kind"] == "kr"], settings.scoring.policy())
    progress = krs.rename(columns={"key": "kr"})
    kpis = values[values["kind"] == "kpi"].rename(columns={"key": "kpi"})
    kpis = kpis.assign(health=kpi_health(kpis))
    return values, progress.reset_index(drop=True), kpis.reset_index(drop=True)


def validate_values(values: pd.DataFrame) -> list[str]:
    """Run the Great Expectations gate on a day's values; return failure descriptions."""
    from kr_metrics.validation import validate_metric_values

    report = validate_metric_values(
        values,
        {name: spec.valid_range for name, spec in METRICS.items()},
        nullable_metrics=[name for name, spec in METRICS.items() if spec.nullable],
    )
    return [] if report.success else report.summary().splitlines()


def push_day(
    store: OkrStore,
    as_of: dt.date,
    progress: pd.DataFrame,
    kpis: pd.DataFrame,
    *,
    run_id: str,
    data_synced_at: dt.datetime | None,
) -> None:
    stamp = {
        "run_id": run_id,
        "data_synced_at": data_synced_at,
        "computed_at": dt.datetime.now(dt.UTC),
    }
    store.write_day(as_of, progress.assign(**stamp), kpis.assign(**stamp))


def data_freshness(settings: Settings, engine: sa.Engine) -> dt.datetime | None:
    """When the stalest configured source last synced: how fresh the numbers can be."""
    synced = last_synced(engine, [s.name for s in settings.sources])
    if len(synced) < len(settings.sources):
        return None
    return min(synced.values())


def run_days(
    settings: Settings,
    engine: sa.Engine,
    days: Iterable[dt.date],
    *,
    definitions: DefinitionSet | None = None,
    validate: bool = True,
    run_id: str | None = None,
    progress_callback: Callable[[DayResult], None] | None = None,
) -> list[DayResult]:
    """Compute, validate and push each day; a day the gate blocks writes nothing."""
    definitions = definitions or load_definition_set(settings)
    data = load_prepared(settings, engine)
    store = OkrStore(engine)
    synced_at = data_freshness(settings, engine)
    run_id = run_id or f"cli-{uuid.uuid4().hex[:12]}"
    results = []
    for as_of in days:
        values, progress, kpis = compute_day(settings, definitions, data, as_of)
        result = DayResult(as_of, values, progress, kpis)
        if validate:
            result.validation_failures = validate_values(values)
        if not result.blocked:
            push_day(store, as_of, progress, kpis, run_id=run_id, data_synced_at=synced_at)
        results.append(result)
        if progress_callback:
            progress_callback(result)
    return results


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]

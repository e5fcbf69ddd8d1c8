"""The daily flow in plain Python: sync, compute, validate, push. Dagster assets and the CLI call it."""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa

from connectors.base import Source
from connectors.files import FilesSource
from connectors.hubspot import HubSpotSource, HubSpotSourceSettings
from connectors.salesforce import SalesforceSource, SalesforceSourceSettings
from core.calendar import each_day
from core.canonical import CUSTOMERS, DEALS, METRIC_TABLES, NPS_RESPONSES
from core.sync import SyncReport
from kr_metrics import pages
from kr_metrics.definitions import DefinitionSet
from kr_metrics.engine import prepare
from kr_metrics.forecast import add_forecasts
from kr_metrics.loader import load_definitions
from kr_metrics.metrics import METRICS, PreparedData
from kr_metrics.scoring import kpi_health, score_key_results
from kr_metrics.sql.engine import DatabaseStaged, DuckDBStaged, Staged
from kr_metrics.sql.engine import evaluate_history as compiled_history
from kr_metrics.versions import definition_records
from okr_store import schema
from okr_store.db import (
    DatabaseVanishedError,
    check_database_identity,
    create_engine,
    database_identity,
)
from okr_store.repository import FAILED, PARTIAL, SUCCEEDED, OkrStore
from okr_store.sinks import FAILED as PUSH_FAILED
from okr_store.sinks import (
    PerdooSink,
    PushOutcome,
    RetryPolicy,
    Sink,
    WebhookSink,
    WeekdoneSink,
    push_current_progress,
)
from okr_store.staging import last_synced, read_staged, refresh_statistics, stage
from pipelines import gate, source_health
from pipelines.settings import ConfigError, FilesSourceSettings, Settings, SourceSettings
from validation.numbers import validate_metric_values
from validation.report import ValidationReport
from validation.verdicts import DayVerdict, number_rules

log = logging.getLogger(__name__)


def open_database(settings: Settings, *, migrate: bool = False) -> sa.Engine:
    """The configured database, refusing one whose schema is not the code's (SchemaOutOfDateError
    names `krpulse db upgrade`); `migrate=True` upgrades it first (the demo sets itself up)."""
    if migrate:
        return upgrade_database(settings)[0]
    engine = create_engine(settings.effective_database_url)
    schema.ensure_current(engine)
    return engine


def upgrade_database(
    settings: Settings, revision: str = "head"
) -> tuple[sa.Engine, str | None, str | None]:
    """Migrate the configured database; returns the engine and the revisions before and after."""
    engine = create_engine(settings.effective_database_url)
    before, after = schema.upgrade(engine, revision)
    return engine, before, after


def load_definition_set(settings: Settings, path=None) -> DefinitionSet:
    """The definitions, each cycle in krpulse.yaml's timezone (another one is an error)."""
    return load_definitions(
        path or settings.definitions_path, known_metrics=METRICS, timezone=settings.timezone
    )


def _files_source(settings: Settings, source: FilesSourceSettings) -> Source:
    return FilesSource(source.name, settings.resolve(source.path))


def _salesforce_source(settings: Settings, source: SalesforceSourceSettings) -> Source:
    # Secrets are read from the environment at sync time (or handed over by SalesforceResource).
    return SalesforceSource(source.name, source, base_path=settings.root)


def _hubspot_source(settings: Settings, source: HubSpotSourceSettings) -> Source:
    # The token is read from the environment at sync time (or handed over by HubSpotResource).
    return HubSpotSource(source.name, source, timezone=settings.timezone)


# One factory per `type:` in krpulse.yaml's `sources:`; a new connector registers here.
SOURCE_FACTORIES: dict[str, Callable[[Settings, Any], Source]] = {
    "files": _files_source,
    "salesforce": _salesforce_source,
    "hubspot": _hubspot_source,
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
            stage(source_for(settings, source), engine, home_currency=settings.reporting_currency)
        )
    return reports


def load_prepared(settings: Settings, engine: sa.Engine) -> PreparedData:
    """Staged canonical data of the configured sources, prepared once for every metric."""
    names = [s.name for s in settings.sources]
    with engine.connect() as conn:
        frames = {t: read_staged(conn, t, sources=names) for t in METRIC_TABLES}
    return prepare(
        frames[DEALS], frames[CUSTOMERS], frames[NPS_RESPONSES], timezone=settings.timezone
    )


def computes_in_database(settings: Settings, engine: sa.Engine) -> bool:
    """Whether the compiled engine runs in the store's database (`engine.compute` in
    krpulse.yaml): `auto` does on PostgreSQL, never on SQLite."""
    postgres = engine.dialect.name == "postgresql"
    mode = settings.engine.compute
    if mode == "database" and not postgres:
        raise ConfigError(
            f"engine.compute: database needs the store on PostgreSQL, not {engine.dialect.name}; "
            "use `auto` or `duckdb`"
        )
    return mode == "database" or (mode == "auto" and postgres)


def staged_data(settings: Settings, engine: sa.Engine, data: PreparedData | None = None) -> Staged:
    """The staged rows of the configured sources, where the compiled engine computes over them:
    the store's staging tables (PostgreSQL: compute next to the data, nothing loaded here), or
    embedded DuckDB over the frames `load_prepared` reads (`data`, when already read). The
    database plans on the staging tables' statistics: stale ones are refreshed first."""
    if computes_in_database(settings, engine):
        refresh_statistics(engine, METRIC_TABLES)
        return DatabaseStaged(
            engine, timezone=settings.timezone, sources=[s.name for s in settings.sources]
        )
    return DuckDBStaged.from_prepared(data if data is not None else load_prepared(settings, engine))


@dataclass
class DayResult:
    """Everything computed for one as-of date, and what the flow did with it."""

    as_of: dt.date
    values: pd.DataFrame  # engine output: KR and KPI rows
    progress: pd.DataFrame  # KR rows scored, in the store's shape
    kpis: pd.DataFrame  # KPI rows with health, in the store's shape
    validation_failures: list[str] = field(default_factory=list)
    validation_warnings: list[str] = field(default_factory=list)
    stale_reason: str | None = None  # set when blocked: what the stale KRs show
    # Records in quarantine (not counted), per source/object: "demo/deals: 3 quarantined, 1 of
    # them an update whose earlier good row is kept".
    quarantine: list[str] = field(default_factory=list)
    reports: list[ValidationReport] = field(default_factory=list)  # the gate's suites, for metadata
    failing_sources: list[str] = field(default_factory=list)  # sources that failed to sync
    stale_key_results: list[tuple[str, str]] = field(default_factory=list)  # failing sources'
    marked_stale: int = 0  # KR rows marked stale on the day (blocked, or failing sources)

    @property
    def blocked(self) -> bool:
        return bool(self.validation_failures)


def staged_for(data: PreparedData | Staged) -> Staged:
    """What the compiled engine computes over: a Staged object as it is (DuckDBStaged,
    DatabaseStaged), or the staged frames a PreparedData was made from, in embedded DuckDB."""
    return data if hasattr(data, "run") else DuckDBStaged.from_prepared(data)


def compute_days(
    settings: Settings,
    definitions: DefinitionSet,
    staged: Staged | PreparedData,
    days: Iterable[dt.date],
) -> dict[dt.date, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """(values, progress, kpis) for each of `days` from one history-mode pass over `staged`
    (see staged_for); nothing written.

    The pass starts at the earliest start of the cycles involved, so every KR's forecast sees
    its whole series, and a backfill of a range costs about as much as a single day.
    """
    days = sorted(set(days))
    starts = [
        c.start for c in definitions.cycles.values() if c.start <= days[-1] and c.end >= days[0]
    ]
    # The compiled engine (set-based SQL, on PostgreSQL or embedded DuckDB) computes; the pandas
    # engine is only the test oracle.
    history = compiled_history(
        definitions,
        staged_for(staged),
        min([days[0], *starts]),
        days[-1],
        kpis_from=days[0],
    )
    history = add_forecasts(history, definitions.library)
    wanted = history[history["as_of"].isin(days)]
    policy = settings.scoring.policy()
    out = {}
    for as_of, values in wanted.groupby("as_of", sort=True):  # one group per day
        values = values.reset_index(drop=True)
        krs = score_key_results(values[values["kind"] == "kr"], policy)
        progress = krs.rename(columns={"key": "kr"})
        kpis = values[values["kind"] == "kpi"].rename(columns={"key": "kpi"})
        kpis = kpis.assign(health=kpi_health(kpis))
        out[as_of] = (values, progress.reset_index(drop=True), kpis.reset_index(drop=True))
    empty = history.iloc[0:0]
    for as_of in days:  # days with nothing defined still get (empty) results
        out.setdefault(
            as_of,
            (empty, empty.rename(columns={"key": "kr"}), empty.rename(columns={"key": "kpi"})),
        )
    return out


def compute_day(
    settings: Settings, definitions: DefinitionSet, staged: Staged | PreparedData, as_of: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(values, progress, kpis) for `as_of`; pure computation, nothing written."""
    return compute_days(settings, definitions, staged, [as_of])[as_of]


def validate_values(values: pd.DataFrame, definitions: DefinitionSet | None = None) -> list[str]:
    """Run the Great Expectations number gate on a day's values; return its ERROR failures."""
    ranges, nullable = number_rules(definitions)
    report = validate_metric_values(values, ranges, nullable_metrics=nullable)
    return report.summary().splitlines() if report.blocked else []


def push_day(
    store: OkrStore,
    as_of: dt.date,
    progress: pd.DataFrame,
    kpis: pd.DataFrame,
    *,
    run_id: str,
    data_synced_at: dt.datetime | None,
    frozen_cycles: Iterable[str] = (),
) -> None:
    """Write one day to the OKR store in one transaction, recording the run and the definition
    versions and data freshness the rows were computed with. Rows of `frozen_cycles` are left
    out and kept exactly as stored (a closed cycle's grades are final)."""
    frozen = set(frozen_cycles)
    if frozen and not progress.empty:
        progress = progress[~progress["cycle"].isin(frozen)].reset_index(drop=True)
    stamp = {
        "run_id": run_id,
        "data_synced_at": data_synced_at,
        "computed_at": dt.datetime.now(dt.UTC),
    }
    store.write_day(as_of, progress.assign(**stamp), kpis.assign(**stamp), frozen_cycles=frozen)


def frozen_cycles(settings: Settings, definitions: DefinitionSet, store: OkrStore) -> set[str]:
    """Cycles whose grades are final: ended more than the grace period ago, last day stored."""
    from kr_metrics.lifecycle import is_closed

    policy = settings.scoring.policy()
    today = settings.today()
    frozen = set()
    for cycle in definitions.cycles.values():
        if is_closed(cycle, today, policy):
            final_rows = store.progress(as_of=cycle.end, on_day_only=True)
            if (final_rows["cycle"] == cycle.key).any():
                frozen.add(cycle.key)
    return frozen


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
    data: PreparedData | None = None,
    validate: bool = True,
    run_id: str | None = None,
    origin: str = "cli",
    publish: bool = True,
    progress_callback: Callable[[DayResult], None] | None = None,
) -> list[DayResult]:
    """THE daily flow: compute, gate, score and write each day; `krpulse run`, the Dagster
    daily assets and the tests all call this, so a day is the same whoever computes it.

    A day the gate blocks pushes nothing and marks its KRs stale with the reason (each keeps
    its last good value). On a day a source is failing (its newest sync attempt failed after
    its last good sync, as recorded in the store), the KRs depending on it are marked stale and
    the KPIs depending on it are left out. The run is audited in the store (runs, run_days);
    after the store has committed, the configured OKR tools receive what changed unless
    `publish=False` (Dagster pushes in an asset of its own).

    Where the numbers and the drill-downs are computed is `staged_data`'s choice: on PostgreSQL
    the compiled statements run on the staging tables and the staged rows are not read into
    this process; on SQLite, in embedded DuckDB over `data` or the frames `load_prepared` reads.
    """
    days = list(days)
    definitions = definitions or load_definition_set(settings)
    # One staged object for the numbers and the records behind them (the KR pages), so the two
    # are computed from the same rows by the same compiled filters.
    staged = staged_data(settings, engine, data)
    store = OkrStore(engine)
    synced_at = data_freshness(settings, engine)
    run_id = run_id or f"cli-{uuid.uuid4().hex[:12]}"
    database = database_identity(engine)
    store.start_run(run_id, origin=origin, days_requested=len(days), data_synced_at=synced_at)
    results = []
    try:
        computed = compute_days(settings, definitions, staged, days) if days else {}
        frozen = frozen_cycles(settings, definitions, store)
        # Staged data that failed its data suites blocks every day computed from it.
        verdicts = gate.data_gate(settings, engine) if validate else []
        quarantine = gate.quarantine_notes(settings, engine)
        failing_by_day = source_health.failing_sources(settings, engine, days)
        deps = source_health.dependencies(definitions, [s.name for s in settings.sources])
        for as_of in days:
            values, progress, kpis = computed[as_of]
            verdict = (
                gate.judge_day(values, as_of, settings, definitions, store, verdicts)
                if validate
                else DayVerdict()
            )
            result = DayResult(
                as_of,
                values,
                progress,
                kpis,
                validation_failures=verdict.failures,
                validation_warnings=verdict.warnings,
                stale_reason=verdict.stale_reason,
                quarantine=quarantine,
                reports=verdict.reports,
                failing_sources=failing_by_day.get(as_of, []),
            )
            write_day(
                store,
                definitions,
                result,
                deps,
                run_id=run_id,
                data_synced_at=synced_at,
                frozen_cycles=frozen,
            )
            results.append(result)
            store.heartbeat(run_id)
            if progress_callback:
                progress_callback(result)
        write_kr_pages(settings, store, definitions, staged, results, frozen=frozen, run_id=run_id)
        check_database_identity(engine, database)
    except DatabaseVanishedError:
        raise  # recording it would write into a new, empty file: the error says what happened
    except BaseException as exc:
        record_failure(store, run_id, exc)
        raise
    status, message = run_outcome(results)
    store.finish_run(run_id, status=status, message=message)
    check_database_identity(engine, database)
    store.record_definitions(**definition_records(definitions))
    if publish:
        push_to_okr_tools(settings, store)
    return results


def record_failure(store: OkrStore, run_id: str, exc: BaseException) -> None:
    """Record the run as failed with the reason; when even that fails (the database is what
    failed), say so on the original error instead of hiding it behind a second one."""
    try:
        store.finish_run(run_id, status=FAILED, message=f"{type(exc).__name__}: {exc}"[:2000])
    except Exception as second:  # noqa: BLE001 - the first error is the one to report
        log.error("run %s could not be recorded as failed: %s", run_id, second)
        exc.add_note(
            f"The run {run_id} could not be recorded as failed either ({type(second).__name__}); "
            "the next run marks it failed when it starts (krpulse runs)."
        )


def write_day(
    store: OkrStore,
    definitions: DefinitionSet,
    result: DayResult,
    deps: pd.DataFrame,
    *,
    run_id: str,
    data_synced_at: dt.datetime | None,
    frozen_cycles: set[str],
) -> None:
    """Write one computed day as the gate and the sources' health allow; a closed cycle's stored
    grades are final, so reruns and backfills keep them."""
    as_of = result.as_of
    if result.blocked:
        # Nothing of the day is pushed: its KRs keep their last good value, as stale.
        result.marked_stale = gate.mark_blocked(
            store,
            definitions,
            [as_of],
            result.stale_reason or "blocked",
            run_id,
            frozen_cycles=frozen_cycles,
        )
        return
    kpis = result.kpis
    failing = result.failing_sources
    if failing:
        # A KPI has no stale status: one computed from partial data is left out that day.
        gone = source_health.depending_on(deps, failing, "kpi")
        kpis = kpis[~kpis["kpi"].isin(gone["key"])].reset_index(drop=True)
    push_day(
        store,
        as_of,
        result.progress,
        kpis,
        run_id=run_id,
        data_synced_at=data_synced_at,
        frozen_cycles=frozen_cycles,
    )
    if failing:
        keys = source_health.depending_on(deps, failing, "kr")
        keys = keys[~keys["cycle"].isin(frozen_cycles)]
        result.stale_key_results = store.mark_stale(
            as_of,
            zip(keys["cycle"], keys["key"], strict=True),
            source_health.STALE_REASON.format(sources=", ".join(failing)),
            run_id,
        )
        result.marked_stale = len(result.stale_key_results)


def write_kr_pages(
    settings: Settings,
    store: OkrStore,
    definitions: DefinitionSet,
    staged: Staged,
    results: list[DayResult],
    *,
    frozen: set[str],
    run_id: str,
) -> None:
    """What the dashboard's KR pages show besides the daily rows: each KR's chart basis, and the
    records behind its number on the last day this run wrote for it (not for a blocked day, a
    KR marked stale or a closed cycle: their numbers were not computed here), selected by the
    compiled engine over the same `staged` rows the numbers were computed from."""
    written = [r for r in results if not r.blocked]
    if not written:
        return
    cycles = {
        c.key for c in definitions.cycles.values() if any(c.contains(r.as_of) for r in written)
    }
    charts = pages.chart_rows(definitions, settings.scoring.policy(), cycles)
    requests = []
    for loaded, kr in definitions.key_results():
        if loaded.cycle.key in frozen:
            continue
        key = (loaded.cycle.key, kr.key)
        days = [
            r.as_of
            for r in written
            if loaded.cycle.contains(r.as_of) and key not in set(r.stale_key_results)
        ]
        if days:
            requests.append((loaded, kr, days[-1]))
    drilldowns = pages.drilldown_rows(definitions, requests, staged) if requests else []
    store.write_kr_pages(cycles, charts, drilldowns, run_id=run_id)


def run_outcome(results: list[DayResult]) -> tuple[str, str | None]:
    """The run's status and message for its audit row."""
    blocked = [r.as_of.isoformat() for r in results if r.blocked]
    stale = [r for r in results if r.stale_key_results]
    messages = []
    if blocked:
        messages.append(f"blocked by validation: {', '.join(blocked)}")
    if stale:
        days = "; ".join(f"{r.as_of}: {len(r.stale_key_results)} KRs" for r in stale)
        messages.append(f"stale (failing sources): {days}")
    return (PARTIAL if messages else SUCCEEDED), "; ".join(messages) or None


def okr_tool_sinks(settings: Settings) -> list[Sink]:
    """The sinks configured under `sinks:` in krpulse.yaml, with secrets from the environment."""
    config = settings.sinks

    def secret(env: str, what: str) -> str:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"sinks.{what}: environment variable {env} is not set")
        return value

    sinks: list[Sink] = []
    if config.perdoo:
        sinks.append(
            PerdooSink(
                dict(config.perdoo.key_results),
                url=config.perdoo.url,
                token=secret(config.perdoo.token_env, "perdoo.token_env"),
            )
        )
    if config.weekdone:
        targets = {
            ref: f"{t.objective}/{t.result}" for ref, t in config.weekdone.key_results.items()
        }
        sinks.append(
            WeekdoneSink(
                targets,
                url=config.weekdone.url,
                token=secret(config.weekdone.token_env, "weekdone.token_env"),
            )
        )
    for hook in config.webhooks:
        sinks.append(
            WebhookSink(
                hook.name,
                dict(hook.key_results),
                url=hook.url,
                secret=secret(hook.secret_env, f"webhooks.{hook.name}.secret_env"),
            )
        )
    return sinks


def push_to_okr_tools(settings: Settings, store: OkrStore) -> list[PushOutcome]:
    """Push each configured KR's current value to its OKR tools; call after the store committed.

    Unchanged values are skipped; failures are recorded in push_state (never in the progress
    rows) and retried on the next run. A failed push does not fail the run.
    """
    if not settings.sinks.configured:
        return []
    retry = settings.sinks.retry
    outcomes = push_current_progress(
        store,
        okr_tool_sinks(settings),
        policy=RetryPolicy(retry.attempts, retry.initial_wait, retry.max_wait, retry.timeout),
    )
    for outcome in outcomes:
        if outcome.outcome == PUSH_FAILED:
            log.warning(
                "push to %s failed for %s/%s: %s",
                outcome.sink,
                outcome.cycle,
                outcome.kr,
                outcome.error,
            )
    return outcomes


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    return each_day(start, end)

"""Dagster assets: per-source sync (extract), staged sources (staging), daily KR/KPI values from one
engine pass (metrics), KR progress in the OKR store (progress), pushes to OKR tools (publish)."""

import datetime as dt

import dagster as dg
import pandas as pd

from connectors.base import CredentialsRejected, SourceLimitReached
from kr_metrics.versions import definition_records
from okr_store.repository import PARTIAL, SUCCEEDED
from okr_store.schema import SchemaOutOfDateError
from okr_store.staging import stage
from pipelines import flow, source_health
from pipelines.io_managers import partition_days
from pipelines.names import (
    EXTRACT_GROUP,
    FRAMES_IO_MANAGER,
    KPI_VALUES,
    KR_PROGRESS,
    KR_VALUES,
    METRICS_GROUP,
    OKR_TOOL_PUSHES,
    OWNERS,
    PROGRESS_GROUP,
    PUBLISH_GROUP,
    STAGED_SOURCES,
    STAGING_GROUP,
    sync_asset_key,
)
from pipelines.resources import KrpulseResource
from pipelines.settings import ConfigError, Settings

ENGINEERING_OWNERS = ["team:data-engineering"]
# CRM sources change all day and are expected fresh each morning; a files folder is a snapshot
# somebody drops in, so it gets no freshness policy.
CRM_SOURCE_TYPES = frozenset({"salesforce", "hubspot"})
# One computation covers a whole backfill range (the engine's history mode), so a backfill of
# these assets is one run, not one per day.
SINGLE_RUN = dg.BackfillPolicy.single_run()
# Retrying cannot cure these; a rejected credential (401) retried used to cost six minutes.
NOT_WORTH_RETRYING = (ConfigError, SchemaOutOfDateError, SourceLimitReached, CredentialsRejected)


def _markdown_table(frame: pd.DataFrame, columns: list[str], limit: int = 20) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame[columns].head(limit).to_markdown(index=False, floatfmt=".3g"))


def _day_range(days: list[dt.date]) -> str:
    return days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]}"


def sync_retry_policy(settings: Settings) -> dg.RetryPolicy | None:
    """Retries of a failed sync step: exponential backoff with jitter, so a CRM that is briefly
    down or rate-limited is tried again a few minutes later, not hammered."""
    orchestration = settings.orchestration
    if orchestration.sync_retries == 0:
        return None
    return dg.RetryPolicy(
        max_retries=orchestration.sync_retries,
        delay=orchestration.sync_retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def build_sync_assets(
    source_name: str,
    source_type: str,
    objects: tuple[str, ...],
    resource_key: str | None = None,
    settings: Settings | None = None,
) -> dg.AssetsDefinition:
    """One asset per (source, object), materialised together by one sync of the source.

    Each source is its own step: one that fails (after its retries) leaves the others
    materialised. With `resource_key`, that resource (e.g. HubSpotResource, holding the token
    from dg.EnvVar) builds the source instead of the plain flow.
    """
    settings = settings or Settings()
    freshness = (
        dg.FreshnessPolicy.time_window(
            fail_window=dt.timedelta(hours=settings.orchestration.sync_freshness_hours)
        )
        if source_type in CRM_SOURCE_TYPES
        else None
    )

    @dg.multi_asset(
        name=f"sync_{source_name.replace('-', '_')}",
        specs=[
            dg.AssetSpec(
                key=sync_asset_key(source_name, obj),
                group_name=EXTRACT_GROUP,
                kinds={source_type, "sqlalchemy"},
                owners=ENGINEERING_OWNERS,
                tags={"krpulse/source": source_name},
                freshness_policy=freshness,
                description=f"Canonical {obj} of source '{source_name}' ({source_type}) merged "
                "into the staging tables; bad records quarantined with their reason.",
            )
            for obj in objects
        ],
        can_subset=False,
        required_resource_keys={"krpulse", *([resource_key] if resource_key else [])},
        retry_policy=sync_retry_policy(settings),
        pool=settings.orchestration.database_pool,
    )
    def sync_source(context: dg.AssetExecutionContext):
        krpulse: KrpulseResource = context.resources.krpulse
        settings = krpulse.settings()
        try:
            if resource_key:
                source = getattr(context.resources, resource_key).source(
                    settings, settings.source(source_name)
                )
                reports = stage(source, krpulse.engine(), home_currency=settings.reporting_currency)
            else:
                reports = flow.sync_sources(settings, krpulse.engine(), only=source_name)
        except Exception as exc:
            # Recorded on every object before the step fails, so the metrics know this source
            # is failing (its KRs go stale) even in a later run.
            for obj in objects:
                context.log_event(
                    source_health.sync_failure_observation(
                        dg.AssetKey(sync_asset_key(source_name, obj)), exc, context.retry_number + 1
                    )
                )
            if isinstance(exc, NOT_WORTH_RETRYING):
                # Retrying cannot cure a wrong setting, an old schema or a spent API budget.
                raise dg.Failure(description=str(exc), allow_retries=False) from exc
            raise
        for report in reports:
            context.log.info(
                f"{source_name}/{report.object}: {report.fetched} fetched, {report.changed} changed, "
                f"{report.deleted} deleted, {report.quarantined} quarantined, "
                f"{report.api_calls} API calls"
            )
            yield dg.MaterializeResult(
                asset_key=sync_asset_key(source_name, report.object),
                metadata={
                    "rows_fetched": report.fetched,
                    "rows_changed": report.changed,
                    "rows_deleted": report.deleted,
                    "rows_quarantined": report.quarantined,
                    # Quarantined updates of good staged rows: those rows stay in effect.
                    "rows_shadowing": report.shadowed,
                    "quarantine_reasons": dg.MetadataValue.json(report.quarantine_reasons),
                    "api_calls": report.api_calls,
                    "cursor": report.cursor or "",
                    **{k: v for k, v in report.details.items() if isinstance(v, int | float | str)},
                },
            )

    return sync_source


def sync_asset_keys(settings: Settings) -> list[dg.AssetKey]:
    return [
        dg.AssetKey(sync_asset_key(s.name, obj))
        for s in settings.sources
        for obj in flow.source_for(settings, s).objects
    ]


def build_staged_sources_asset(
    partitions: dg.PartitionsDefinition, settings: Settings
) -> dg.AssetsDefinition:
    @dg.asset(
        name=STAGED_SOURCES,
        group_name=STAGING_GROUP,
        kinds={"sqlalchemy", "pandas"},
        owners=ENGINEERING_OWNERS,
        deps=sync_asset_keys(settings),
        partitions_def=partitions,
        backfill_policy=SINGLE_RUN,
        io_manager_key=FRAMES_IO_MANAGER,
        description="What the day's numbers are computed from: per source, the rows staged, its "
        "last good sync, and whether its latest sync failed (its KRs are then marked stale).",
    )
    def staged_sources(context: dg.AssetExecutionContext, krpulse: KrpulseResource):
        settings = krpulse.settings()
        days = partition_days(context)
        states = source_health.source_states(context.instance, settings)
        counts = source_health.staged_counts(krpulse.engine(), [s.name for s in settings.sources])
        frame = source_health.staged_sources_frame(states, counts, days, settings.timezone)
        failing = states[states["status"] == "failing"]
        for row in failing.itertuples():  # only the failing sources, a handful at most
            context.log.warning(f"source {row.source} is failing: {row.reason}")
        return dg.Output(
            frame,
            metadata={
                "days": _day_range(days),
                "sources": len(states),
                "failing_sources": ", ".join(failing["source"]) or "none",
                "staged": _markdown_table(
                    frame[frame["as_of"] == days[-1]],
                    ["source", "type", "status", "deals", "customers", "nps_responses"],
                ),
            },
        )

    return staged_sources


def build_value_assets(
    partitions: dg.PartitionsDefinition, settings: Settings | None = None
) -> dg.AssetsDefinition:
    @dg.multi_asset(
        outs={
            KR_VALUES: dg.AssetOut(
                group_name=METRICS_GROUP,
                kinds={"pandas"},
                owners=OWNERS,
                io_manager_key=FRAMES_IO_MANAGER,
                description="Each key result's metric value on the partition's day, with its "
                "sample size, numerator and denominator.",
            ),
            KPI_VALUES: dg.AssetOut(
                group_name=METRICS_GROUP,
                kinds={"pandas"},
                owners=OWNERS,
                io_manager_key=FRAMES_IO_MANAGER,
                description="Each standing KPI's value on the partition's day (kept apart from KRs).",
            ),
        },
        deps=[STAGED_SOURCES],
        partitions_def=partitions,
        backfill_policy=SINGLE_RUN,
        can_subset=False,
    )
    def metric_values(context: dg.AssetExecutionContext, krpulse: KrpulseResource):
        """One engine pass computes KRs and KPIs together, for the one day of a daily run or for
        every day of a backfill's range (history mode: one computation, not one per day)."""
        settings = krpulse.settings()
        days = partition_days(context)
        definitions = flow.load_definition_set(settings)
        data = flow.load_prepared(settings, krpulse.engine())
        computed = flow.compute_days(settings, definitions, data, days)
        values = pd.concat([computed[day][0] for day in days], ignore_index=True)
        krs = values[values["kind"] == "kr"].reset_index(drop=True)
        kpis = values[values["kind"] == "kpi"].reset_index(drop=True)
        last = krs[krs["as_of"] == days[-1]]
        yield dg.Output(
            krs,
            output_name=KR_VALUES,
            metadata={
                "as_of": _day_range(days),
                "days": len(days),
                "key_results": int(last["key"].nunique()),
                "null_values": int(krs["value"].isna().sum()),
                "preview": _markdown_table(last, ["key", "metric", "value", "sample_size"]),
            },
        )
        yield dg.Output(
            kpis,
            output_name=KPI_VALUES,
            metadata={
                "as_of": _day_range(days),
                "days": len(days),
                "kpis": int(kpis["key"].nunique()),
                "preview": _markdown_table(
                    kpis[kpis["as_of"] == days[-1]], ["key", "metric", "value", "sample_size"]
                ),
            },
        )

    return metric_values


def score_days(
    settings: Settings, kr_values: pd.DataFrame, kpi_values: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """KR rows scored and KPI rows with health, in the store's shape, for all their days."""
    from kr_metrics.scoring import kpi_health, score_key_results

    progress = (
        score_key_results(kr_values, settings.scoring.policy())
        if len(kr_values)
        else kr_values.assign(progress=[], grade=[], expected_progress=[], status=[])
    ).rename(columns={"key": "kr"})
    kpis = kpi_values.rename(columns={"key": "kpi"})
    kpis = kpis.assign(health=kpi_health(kpis) if len(kpis) else [])
    return progress, kpis


def build_progress_asset(partitions: dg.PartitionsDefinition, settings: Settings | None = None):
    settings = settings or Settings()

    @dg.asset(
        name=KR_PROGRESS,
        group_name=PROGRESS_GROUP,
        kinds={"sqlalchemy"},
        owners=OWNERS,
        partitions_def=partitions,
        backfill_policy=SINGLE_RUN,
        pool=settings.orchestration.database_pool,
        description="KR progress (grade, expected progress, status) and KPI health for the "
        "partition's day, written to the OKR store; rerunning a day replaces its rows. KRs that "
        "depend on a failing source are marked stale (last good value carried forward).",
    )
    def kr_progress(
        context: dg.AssetExecutionContext,
        krpulse: KrpulseResource,
        kr_values: pd.DataFrame,
        kpi_values: pd.DataFrame,
        staged_sources: pd.DataFrame,
    ) -> dg.MaterializeResult:
        settings = krpulse.settings()
        engine = krpulse.engine()
        days = partition_days(context)
        definitions = flow.load_definition_set(settings)
        progress, kpis = score_days(settings, kr_values, kpi_values)
        failing_by_day = source_health.failing_sources_by_day(staged_sources)
        deps = source_health.dependencies(definitions, [s.name for s in settings.sources])
        store = flow.OkrStore(engine)
        frozen = flow.frozen_cycles(settings, definitions, store)
        synced_at = flow.data_freshness(settings, engine)
        stale: dict[str, list[str]] = {}
        for as_of in days:  # one transaction per day, as the CLI writes them
            failing = failing_by_day.get(as_of, [])
            day_kpis = kpis[kpis["as_of"] == as_of]
            if failing:
                # A KPI has no stale status: one computed from partial data is left out that day.
                gone = source_health.depending_on(deps, failing, "kpi")
                day_kpis = day_kpis[~day_kpis["kpi"].isin(gone["key"])]
            flow.push_day(store, as_of, progress[progress["as_of"] == as_of].reset_index(drop=True),
                          day_kpis.reset_index(drop=True), run_id=context.run_id,
                          data_synced_at=synced_at, frozen_cycles=frozen)  # fmt: skip
            if failing:
                keys = source_health.depending_on(deps, failing, "kr")
                keys = keys[~keys["cycle"].isin(frozen)]
                marked = store.mark_stale(
                    as_of,
                    zip(keys["cycle"], keys["key"], strict=True),
                    source_health.STALE_REASON.format(sources=", ".join(failing)),
                    context.run_id,
                )
                stale[as_of.isoformat()] = [f"{cycle}/{kr}" for cycle, kr in marked]
        message = (
            f"stale (failing sources): {'; '.join(f'{d}: {len(k)} KRs' for d, k in stale.items())}"
            if stale
            else None
        )
        store.finish_run(
            context.run_id,
            status=PARTIAL if stale else SUCCEEDED,
            message=message,
            origin="dagster",
        )
        store.record_definitions(**definition_records(definitions))
        last = progress[progress["as_of"] == days[-1]]
        statuses = last["status"].value_counts().to_dict()
        return dg.MaterializeResult(
            metadata={
                "as_of": _day_range(days),
                "days_written": len(days),
                "rows_written": len(progress) + len(kpis),
                **{f"status_{k}": int(v) for k, v in statuses.items()},
                "stale_key_results": dg.MetadataValue.json(stale),
                "progress": _markdown_table(
                    last, ["kr", "value", "target", "grade", "expected_progress", "status"]
                ),
            }
        )

    return kr_progress


def build_publish_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=OKR_TOOL_PUSHES,
        group_name=PUBLISH_GROUP,
        kinds={"perdoo", "weekdone", "webhook"},
        owners=OWNERS,
        deps=[KR_PROGRESS],
        partitions_def=partitions,
        backfill_policy=SINGLE_RUN,
        description="Each configured KR's current value pushed to the OKR tools (Perdoo, "
        "Weekdone, signed webhooks) once the store has committed; unchanged values are skipped, "
        "failures recorded in push_state and retried on the next run.",
    )
    def okr_tool_pushes(krpulse: KrpulseResource) -> dg.MaterializeResult:
        settings = krpulse.settings()
        outcomes = flow.push_to_okr_tools(settings, krpulse.store())
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        return dg.MaterializeResult(
            metadata={
                "sinks_configured": settings.sinks.configured,
                **{f"pushes_{k}": v for k, v in counts.items()},
            }
        )

    return okr_tool_pushes

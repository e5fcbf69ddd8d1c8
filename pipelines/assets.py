"""Dagster assets: per-source sync (extract), staged sources (staging), daily KR/KPI values from one
engine pass (metrics), KR progress in the OKR store (progress), pushes to OKR tools (publish)."""

import datetime as dt

import dagster as dg
import pandas as pd

from connectors.base import SourceAuthError, SourceLimitReached
from core.canonical import METRIC_TABLES
from okr_store.schema import SchemaOutOfDateError
from okr_store.staging import stage
from pipelines import flow, source_health
from pipelines.checks import failure_metadata
from pipelines.names import (
    EXTRACT_GROUP,
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
    VALUES_CHECK,
    sync_asset_key,
)
from pipelines.partitions import partition_days
from pipelines.resources import KrpulseResource
from pipelines.settings import ConfigError, Settings
from validation.report import ERROR, ExpectationFailure, ValidationReport

ENGINEERING_OWNERS = ["team:data-engineering"]
# CRM sources change all day and are expected fresh each morning; a files folder is a snapshot
# somebody drops in, so it gets no freshness policy.
CRM_SOURCE_TYPES = frozenset({"salesforce", "hubspot"})
# One computation covers a whole backfill range (the engine's history mode), so a backfill of
# these assets is one run, not one per day.
SINGLE_RUN = dg.BackfillPolicy.single_run()
# Retrying cannot cure these; a rejected credential (401) retried used to cost six minutes.
NOT_WORTH_RETRYING = (ConfigError, SchemaOutOfDateError, SourceLimitReached, SourceAuthError)


def _markdown_table(frame: pd.DataFrame, columns: list[str], limit: int = 20) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame[columns].head(limit).to_markdown(index=False, floatfmt=".3g"))


def _day_range(days: list[dt.date]) -> str:
    return days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]}"


def sync_failure_observation(key: dg.AssetKey, error: BaseException, attempt: int):
    """What a failing sync step shows on each of its assets before it raises (the store's
    sync_failures row, written by `stage`, is what the daily flow reads)."""
    return dg.AssetObservation(
        asset_key=key,
        metadata={
            "sync_status": "failed",
            # The connectors' errors name settings and env var names, never secret values.
            "error": f"{type(error).__name__}: {error}"[:500],
            "attempt": attempt,
        },
    )


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
                    sync_failure_observation(
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
        description="What the day's numbers are computed from: per source, the rows staged, its "
        "last good sync, and whether its latest sync failed (its KRs are then marked stale). "
        "Read from the store, as the daily flow reads it.",
    )
    def staged_sources(
        context: dg.AssetExecutionContext, krpulse: KrpulseResource
    ) -> dg.MaterializeResult:
        settings = krpulse.settings()
        engine = krpulse.engine()
        days = partition_days(context)
        states = source_health.source_states(settings, engine)
        counts = source_health.staged_counts(engine, [s.name for s in settings.sources])
        frame = source_health.staged_sources_frame(states, counts, days, settings.timezone)
        failing = states[states["status"] == "failing"]
        for row in failing.itertuples():  # only the failing sources, a handful at most
            context.log.warning(f"source {row.source} is failing: {row.reason}")
        return dg.MaterializeResult(
            metadata={
                "days": _day_range(days),
                "sources": len(states),
                "failing_sources": ", ".join(failing["source"]) or "none",
                "staged": _markdown_table(
                    frame[frame["as_of"] == days[-1]],
                    ["source", "type", "status", *METRIC_TABLES],
                ),
            },
        )

    return staged_sources


def build_daily_assets(
    partitions: dg.PartitionsDefinition, settings: Settings | None = None
) -> dg.AssetsDefinition:
    """KR values, KPI values and KR progress of the partition's days: one call of the daily
    flow (`flow.run_days`, as `krpulse run`), its results mapped onto materializations, the
    gate's check results and metadata. Nothing passes between steps but the store."""
    settings = settings or Settings()

    @dg.multi_asset(
        # The step is named after what it writes: the day's progress in the OKR store.
        name=KR_PROGRESS,
        specs=[
            dg.AssetSpec(
                KR_VALUES,
                group_name=METRICS_GROUP,
                kinds={"pandas"},
                owners=OWNERS,
                deps=[STAGED_SOURCES],
                description="Each key result's metric value on the partition's day, with its "
                "sample size, numerator and denominator.",
            ),
            dg.AssetSpec(
                KPI_VALUES,
                group_name=METRICS_GROUP,
                kinds={"pandas"},
                owners=OWNERS,
                deps=[STAGED_SOURCES],
                description="Each standing KPI's value on the partition's day (kept apart from KRs).",
            ),
            dg.AssetSpec(
                KR_PROGRESS,
                group_name=PROGRESS_GROUP,
                kinds={"sqlalchemy"},
                owners=OWNERS,
                deps=[KR_VALUES, KPI_VALUES],
                skippable=True,  # not materialised when the gate blocks a day
                description="KR progress (grade, expected progress, status) and KPI health for "
                "the partition's day, written to the OKR store; rerunning a day replaces its "
                "rows. KRs that depend on a failing source are marked stale (last good value "
                "carried forward).",
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                VALUES_CHECK, asset=KR_VALUES, blocking=True, description=VALUES_CHECK_DESCRIPTION
            ),
            dg.AssetCheckSpec(
                VALUES_CHECK,
                asset=KPI_VALUES,
                blocking=True,
                description="The same Great Expectations gate, on the day's KPI values.",
            ),
        ],
        partitions_def=partitions,
        backfill_policy=SINGLE_RUN,
        can_subset=False,
        pool=settings.orchestration.database_pool,
    )
    def kr_progress(context: dg.AssetExecutionContext, krpulse: KrpulseResource):
        """One engine pass computes KRs and KPIs together, for the one day of a daily run or for
        every day of a backfill's range (history mode: one computation, not one per day)."""
        settings = krpulse.settings()
        days = partition_days(context)
        results = flow.run_days(
            settings,
            krpulse.engine(),
            days,
            run_id=context.run_id,
            origin="dagster",
            publish=False,
        )
        yield from daily_outputs(context, days, results)

    return kr_progress


VALUES_CHECK_DESCRIPTION = (
    "Great Expectations: keys present and unique; values finite, inside the metric's valid "
    "range, null only where the metric allows 'no data'; day-over-day change within "
    "`validation.numbers` (warning unless configured as error). Also fails while the staged "
    "data's newest syncs fail their data suites."
)


def daily_outputs(
    context: dg.AssetExecutionContext, days: list[dt.date], results: list[flow.DayResult]
):
    """The flow's results as Dagster sees them: values, the gate's verdicts, progress."""
    values = pd.concat([r.values for r in results], ignore_index=True)
    krs = values[values["kind"] == "kr"] if len(values) else values
    kpis = values[values["kind"] == "kpi"] if len(values) else values
    last_krs = krs[krs["as_of"] == days[-1]] if len(krs) else krs
    yield dg.MaterializeResult(
        asset_key=KR_VALUES,
        metadata={
            "as_of": _day_range(days),
            "days": len(days),
            "key_results": int(last_krs["key"].nunique()) if len(last_krs) else 0,
            "null_values": int(krs["value"].isna().sum()) if len(krs) else 0,
            "preview": _markdown_table(last_krs, ["key", "metric", "value", "sample_size"]),
        },
    )
    yield dg.MaterializeResult(
        asset_key=KPI_VALUES,
        metadata={
            "as_of": _day_range(days),
            "days": len(days),
            "kpis": int(kpis["key"].nunique()) if len(kpis) else 0,
            "preview": _markdown_table(
                kpis[kpis["as_of"] == days[-1]] if len(kpis) else kpis,
                ["key", "metric", "value", "sample_size"],
            ),
        },
    )
    blocked = [r for r in results if r.blocked]
    for asset, kind in ((KR_VALUES, "kr"), (KPI_VALUES, "kpi")):
        yield gate_check_result(asset, kind, results)
    if blocked:
        context.log.warning(
            "validation gate blocked " + ", ".join(f"{r.as_of} ({r.stale_reason})" for r in blocked)
        )
        return  # nothing of a blocked day is pushed: progress is not materialised
    progress = pd.concat([r.progress for r in results], ignore_index=True)
    last = progress[progress["as_of"] == days[-1]] if len(progress) else progress
    statuses = last["status"].value_counts().to_dict() if len(last) else {}
    stale = {
        r.as_of.isoformat(): [f"{cycle}/{kr}" for cycle, kr in r.stale_key_results]
        for r in results
        if r.stale_key_results
    }
    yield dg.MaterializeResult(
        asset_key=KR_PROGRESS,
        metadata={
            "as_of": _day_range(days),
            "days_written": len(days),
            "rows_written": len(progress) + sum(len(r.kpis) for r in results),
            **{f"status_{k}": int(v) for k, v in statuses.items()},
            "stale_key_results": dg.MetadataValue.json(stale),
            "failing_sources": ", ".join(sorted({s for r in results for s in r.failing_sources}))
            or "none",
            "progress": _markdown_table(
                last, ["kr", "value", "target", "grade", "expected_progress", "status"]
            ),
        },
    )


def gate_check_result(asset: str, kind: str, results: list[flow.DayResult]) -> dg.AssetCheckResult:
    """The gate's verdicts on the run's days as the check on `asset`, the values of `kind`
    (kr or kpi): the staged data's failures count for both, a number's only for its kind."""
    failures: dict[tuple[str, str, str], tuple[str, ExpectationFailure]] = {}
    for result in results:
        for report in result.reports:
            for failure in report.failures:
                kinds = {example.get("kind") for example in failure.examples} - {None}
                if kinds and kind not in kinds:
                    continue
                mine = ExpectationFailure(
                    failure.expectation,
                    failure.column,
                    failure.unexpected_count,
                    [e for e in failure.examples if e.get("kind", kind) == kind],
                    failure.severity,
                    failure.rule,
                )
                # Every day shares the syncs' reports: each failure is shown once.
                failures.setdefault(
                    (report.suite, failure.expectation, failure.rule), (report.suite, mine)
                )
    reports = [
        ValidationReport(suite, success=False, evaluated_rows=0, failures=[failure])
        for suite, failure in failures.values()
    ]
    metadata = failure_metadata(reports)
    blocked = [r for r in results if r.blocked]
    errors = any(f.severity == ERROR for _, f in failures.values())
    if blocked and errors:
        metadata["marked_stale"] = sum(r.marked_stale for r in blocked)
        metadata["stale_reason"] = blocked[0].stale_reason or "blocked"
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=VALUES_CHECK,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
        description="\n".join(
            [f"{r.as_of}: {r.stale_reason}" for r in blocked if errors]
            + [f"{suite}: {f.short}" for suite, f in failures.values() if f.severity != ERROR]
        )
        or "passed",
        metadata=metadata,
    )


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

"""Dagster assets: per-source sync, daily KR/KPI values from one engine pass, daily KR progress."""

import datetime as dt

import dagster as dg
import pandas as pd

from pipelines import flow
from pipelines.names import (
    EXTRACT_GROUP,
    KPI_VALUES,
    KR_PROGRESS,
    KR_VALUES,
    METRICS_GROUP,
    OWNERS,
    PROGRESS_GROUP,
    sync_asset_key,
)
from pipelines.resources import KrpulseResource
from pipelines.settings import Settings


def partition_date(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _markdown_table(frame: pd.DataFrame, columns: list[str], limit: int = 20) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame[columns].head(limit).to_markdown(index=False, floatfmt=".3g"))


def build_sync_assets(
    source_name: str, source_type: str, objects: tuple[str, ...], resource_key: str | None = None
) -> dg.AssetsDefinition:
    """One asset per (source, object), materialised together by one sync of the source.

    With `resource_key`, that resource (e.g. HubSpotResource, holding the token from dg.EnvVar)
    builds the source instead of the plain flow.
    """

    @dg.multi_asset(
        name=f"sync_{source_name.replace('-', '_')}",
        specs=[
            dg.AssetSpec(
                key=sync_asset_key(source_name, obj),
                group_name=EXTRACT_GROUP,
                kinds={source_type, "sqlalchemy"},
                owners=OWNERS,
                description=f"Canonical {obj} of source '{source_name}' merged into the staging "
                "tables; bad records quarantined with their reason.",
            )
            for obj in objects
        ],
        can_subset=False,
        required_resource_keys={"krpulse", *([resource_key] if resource_key else [])},
    )
    def sync_source(context: dg.AssetExecutionContext):
        krpulse: KrpulseResource = context.resources.krpulse
        settings = krpulse.settings()
        if resource_key:
            source = getattr(context.resources, resource_key).source(
                settings, settings.source(source_name)
            )
            reports = source.sync(krpulse.engine(), home_currency=settings.reporting_currency)
        else:
            reports = flow.sync_sources(settings, krpulse.engine(), only=source_name)
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
                    "quarantine_reasons": dg.MetadataValue.json(report.quarantine_reasons),
                    "api_calls": report.api_calls,
                    "cursor": report.cursor or "",
                    **{k: v for k, v in report.details.items() if isinstance(v, int | float | str)},
                },
            )

    return sync_source


def build_value_assets(
    partitions: dg.PartitionsDefinition, settings: Settings
) -> dg.AssetsDefinition:
    sync_keys = [
        dg.AssetKey(sync_asset_key(s.name, obj))
        for s in settings.sources
        for obj in flow.source_for(settings, s).objects
    ]

    @dg.multi_asset(
        outs={
            KR_VALUES: dg.AssetOut(
                group_name=METRICS_GROUP,
                kinds={"pandas"},
                owners=OWNERS,
                description="Each key result's metric value on the partition's day, with its "
                "sample size, numerator and denominator.",
            ),
            KPI_VALUES: dg.AssetOut(
                group_name=METRICS_GROUP,
                kinds={"pandas"},
                owners=OWNERS,
                description="Each standing KPI's value on the partition's day (kept apart from KRs).",
            ),
        },
        deps=sync_keys,
        partitions_def=partitions,
        can_subset=False,
    )
    def metric_values(context: dg.AssetExecutionContext, krpulse: KrpulseResource):
        """One engine pass computes KRs and KPIs together, sharing filters and prepared frames."""
        settings = krpulse.settings()
        as_of = partition_date(context)
        definitions = flow.load_definition_set(settings)
        data = flow.load_prepared(settings, krpulse.engine())
        values, _, _ = flow.compute_day(settings, definitions, data, as_of)
        krs = values[values["kind"] == "kr"].reset_index(drop=True)
        kpis = values[values["kind"] == "kpi"].reset_index(drop=True)
        yield dg.Output(
            krs,
            output_name=KR_VALUES,
            metadata={
                "as_of": as_of.isoformat(),
                "key_results": len(krs),
                "null_values": int(krs["value"].isna().sum()),
                "preview": _markdown_table(krs, ["key", "metric", "value", "sample_size"]),
            },
        )
        yield dg.Output(
            kpis,
            output_name=KPI_VALUES,
            metadata={
                "as_of": as_of.isoformat(),
                "kpis": len(kpis),
                "preview": _markdown_table(kpis, ["key", "metric", "value", "sample_size"]),
            },
        )

    return metric_values


def build_progress_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=KR_PROGRESS,
        group_name=PROGRESS_GROUP,
        kinds={"sqlalchemy"},
        owners=OWNERS,
        partitions_def=partitions,
        description="KR progress (grade, expected progress, status) and KPI health for the "
        "partition's day, written to the OKR store; rerunning a day replaces its rows.",
    )
    def kr_progress(
        context: dg.AssetExecutionContext,
        krpulse: KrpulseResource,
        kr_values: pd.DataFrame,
        kpi_values: pd.DataFrame,
    ) -> dg.MaterializeResult:
        settings = krpulse.settings()
        engine = krpulse.engine()
        as_of = partition_date(context)
        values = pd.concat([kr_values, kpi_values], ignore_index=True)
        from kr_metrics.scoring import kpi_health, score_key_results

        progress = score_key_results(kr_values, settings.scoring.policy()).rename(
            columns={"key": "kr"}
        )
        kpis = kpi_values.rename(columns={"key": "kpi"})
        kpis = kpis.assign(health=kpi_health(kpis))
        store = flow.OkrStore(engine)
        flow.push_day(
            store,
            as_of,
            progress,
            kpis,
            run_id=context.run_id,
            data_synced_at=flow.data_freshness(settings, engine),
        )
        # Pushes to OKR tools happen after the store committed; a failed one is recorded and
        # retried next run, it does not fail this materialisation.
        pushes = flow.after_partition_push(settings, store, context.run_id)
        statuses = progress["status"].value_counts().to_dict()
        return dg.MaterializeResult(
            metadata={
                "as_of": as_of.isoformat(),
                "rows_written": len(values),
                **{f"status_{k}": int(v) for k, v in statuses.items()},
                **{f"okr_tool_pushes_{k}": v for k, v in pushes.items()},
                "progress": _markdown_table(
                    progress, ["kr", "value", "target", "grade", "expected_progress", "status"]
                ),
            }
        )

    return kr_progress

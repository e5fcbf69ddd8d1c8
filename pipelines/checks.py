"""Asset checks: the Great Expectations gate on each sync's rows and on each day's numbers.

An ERROR result is blocking: the assets below it do not run in the same run, so nothing of the
day is pushed. The skipped `kr_progress` step cannot record why, so the failing check itself
marks the day's KRs `stale` with the reason (each keeps its last good value). WARN results are
shown and block nothing. Staged data judged bad in an earlier run (a sync job of its own) still
blocks: the number gate reads the data gate's recorded verdicts before it passes a day.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from core.calendar import each_day
from pipelines import flow, gate
from pipelines.names import DATA_CHECK, KPI_VALUES, KR_VALUES, VALUES_CHECK, sync_asset_key
from pipelines.resources import KrpulseResource
from pipelines.settings import Settings
from validation.verdicts import data_block_reason

MAX_FAILURES_IN_METADATA = 10


def run_days(context: dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The days the run computes: its partition, or a single-run backfill's range; none when
    the run is not partitioned (e.g. a sync of its own outside the daily job)."""
    if context.has_partition_key_range:
        window = context.partition_key_range
        start, end = dt.date.fromisoformat(window.start), dt.date.fromisoformat(window.end)
    elif context.has_partition_key:
        start = end = dt.date.fromisoformat(context.partition_key)
    else:
        return []
    return each_day(start, end)


def failure_metadata(reports: list) -> dict:
    """Each failing expectation with its suite, severity, unexpected count and a few records."""
    failures = [(report.suite, f) for report in reports for f in report.failures]
    metadata: dict = {
        "evaluated_rows": sum(r.evaluated_rows for r in reports),
        "failed_expectations": len(failures),
        "errors": sum(len(r.errors) for r in reports),
        "warnings": sum(len(r.warnings) for r in reports),
    }
    for i, (suite, failure) in enumerate(failures[:MAX_FAILURES_IN_METADATA]):
        metadata[f"failure_{i + 1}"] = dg.MetadataValue.json(
            {
                "suite": suite,
                "expectation": failure.expectation,
                "severity": failure.severity,
                "unexpected_count": failure.unexpected_count,
                "examples": failure.examples,
            }
        )
    return metadata


def _block(
    context: dg.AssetCheckExecutionContext,
    settings: Settings,
    store: flow.OkrStore,
    reason: str,
) -> int:
    """Mark the KRs of the run's days stale: the push below this check will not run."""
    days = run_days(context)
    if not days:
        return 0
    definitions = flow.load_definition_set(settings)
    frozen = flow.frozen_cycles(settings, definitions, store)
    marked = gate.mark_blocked(store, definitions, days, reason, context.run.run_id, frozen_cycles=frozen)  # fmt: skip
    context.log.warning(f"validation gate blocked {days[0]}..{days[-1]}: {marked} KR rows stale")
    return marked


def values_gate(
    context: dg.AssetCheckExecutionContext, krpulse: KrpulseResource, values: pd.DataFrame
) -> dg.AssetCheckResult:
    """The number suites on the run's values, after the data gate's verdicts on staged data."""
    settings = krpulse.settings()
    engine = krpulse.engine()
    store = flow.OkrStore(engine)
    data = gate.data_gate(settings, engine)
    data_reason = data_block_reason(data)
    days = run_days(context)
    previous = gate.previous_values(store, days[0]) if days else None
    definitions = flow.load_definition_set(settings)
    report = gate.check_numbers(settings, definitions, values, previous)
    reason = data_reason or (
        "blocked by the number gate: " + report.reason(250) if report.blocked else None
    )
    metadata = failure_metadata([*(v.report for v in data if v.blocked), report])
    if reason:
        metadata["marked_stale"] = _block(context, settings, store, reason)
        metadata["stale_reason"] = reason
    description = "\n".join([data_reason or "staged data: OK", report.summary()])
    return dg.AssetCheckResult(
        passed=report.success and not data_reason,
        severity=dg.AssetCheckSeverity.ERROR if reason else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


def build_gate_checks(partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """The number gate on the day's KR values and on its KPI values, partitioned like them."""

    @dg.asset_check(
        asset=KR_VALUES,
        name=VALUES_CHECK,
        blocking=True,
        partitions_def=partitions,
        description="Great Expectations: keys present and unique; values finite, inside the "
        "metric's valid range, null only where the metric allows 'no data'; day-over-day "
        "change within `validation.numbers` (warning unless configured as error). Also fails "
        "while the staged data's newest syncs fail their data suites.",
    )
    def kr_values_gate(
        context: dg.AssetCheckExecutionContext, krpulse: KrpulseResource, kr_values: pd.DataFrame
    ) -> dg.AssetCheckResult:
        return values_gate(context, krpulse, kr_values)

    @dg.asset_check(
        asset=KPI_VALUES,
        name=VALUES_CHECK,
        blocking=True,
        partitions_def=partitions,
        description="The same Great Expectations gate, on the day's KPI values.",
    )
    def kpi_values_gate(
        context: dg.AssetCheckExecutionContext, krpulse: KrpulseResource, kpi_values: pd.DataFrame
    ) -> dg.AssetCheckResult:
        return values_gate(context, krpulse, kpi_values)

    return [kr_values_gate, kpi_values_gate]


def build_data_checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    """Per source, the data suites on the rows its newest sync changed, one check per object."""
    return [
        _data_check(source.name, flow.source_for(settings, source).objects)
        for source in settings.sources
    ]


def _data_check(source_name: str, objects: tuple[str, ...]) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        name=f"{source_name.replace('-', '_')}_data_gate",
        specs=[
            dg.AssetCheckSpec(
                DATA_CHECK,
                asset=dg.AssetKey(sync_asset_key(source_name, obj)),
                blocking=True,
                description="Great Expectations on the staged state against the last state that "
                "passed (or was accepted): on every row written since, ids present and "
                "unique; amounts finite, not negative; currencies known and convertible; close "
                "dates and submission times plausible; NPS scores 0–10; deals' customers exist "
                "(warning); no mass deletion or quarantine share since then above `validation.data` "
                "(error); no empty sync where hundreds of changes are usual (warning).",
            )
            for obj in objects
        ],
    )
    def data_gate(context: dg.AssetCheckExecutionContext, krpulse: KrpulseResource):
        settings = krpulse.settings()
        engine = krpulse.engine()
        verdicts = {v.object: v for v in gate.data_gate(settings, engine, only=source_name)}
        reason = data_block_reason(verdicts.values())
        marked = _block(context, settings, flow.OkrStore(engine), reason) if reason else 0
        for obj in objects:
            verdict = verdicts.get(obj)
            if verdict is None:  # this object has never been synced: nothing to judge
                yield dg.AssetCheckResult(
                    asset_key=dg.AssetKey(sync_asset_key(source_name, obj)),
                    check_name=DATA_CHECK,
                    passed=True,
                    description="no sync recorded yet",
                )
                continue
            report = verdict.report
            metadata = {"sync_id": verdict.sync_id, **failure_metadata([report])}
            description = report.summary()
            if verdict.blocked:
                metadata["marked_stale"] = marked
                metadata["stale_reason"] = reason
            if verdict.accepted:  # an operator's `krpulse validate --accept`: shown, not blocking
                metadata["accepted"] = verdict.accepted
                description = f"sync {verdict.sync_id} {verdict.accepted}\n{description}"
            yield dg.AssetCheckResult(
                asset_key=dg.AssetKey(sync_asset_key(source_name, obj)),
                check_name=DATA_CHECK,
                passed=report.success,
                severity=dg.AssetCheckSeverity.ERROR
                if verdict.blocked
                else dg.AssetCheckSeverity.WARN,
                description=description,
                metadata=metadata,
            )

    return data_gate

"""Asset checks: the Great Expectations gate on each sync's rows.

An ERROR result is blocking: the daily assets below it do not run in the same run, so nothing
of the day is pushed. The skipped daily step cannot record why, so the failing check itself
marks the day's KRs `stale` with the reason (each keeps its last good value). WARN results are
shown and block nothing. The gate on each day's numbers is part of the daily flow itself; the
daily assets report its verdict as their `values_pass_validation_gate` checks (assets.py).
"""

import dagster as dg

from pipelines import flow, gate
from pipelines.names import DATA_CHECK, sync_asset_key
from pipelines.partitions import partition_days
from pipelines.resources import KrpulseResource
from pipelines.settings import Settings
from validation.verdicts import data_block_reason

MAX_FAILURES_IN_METADATA = 10


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
    days = partition_days(context)
    if not days:
        return 0
    definitions = flow.load_definition_set(settings)
    frozen = flow.frozen_cycles(settings, definitions, store)
    marked = gate.mark_blocked(
        store, definitions, days, reason, context.run.run_id, frozen_cycles=frozen
    )
    context.log.warning(f"validation gate blocked {days[0]}..{days[-1]}: {marked} KR rows stale")
    return marked


def build_data_checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    """Per source, the data suites on its staged state since the last pass, one check per object."""
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

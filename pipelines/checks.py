"""Asset checks: the Great Expectations gate that blocks a day's push when its numbers are wrong."""

import dagster as dg
import pandas as pd

from kr_metrics.metrics import METRICS
from pipelines.names import KPI_VALUES, KR_VALUES, VALUES_CHECK


def gate_result(values: pd.DataFrame) -> dg.AssetCheckResult:
    """Validate a day's values with GE; ERROR severity so the push below it does not run."""
    # Imported here: the validation module imports great_expectations lazily, but keeping the
    # whole gate out of module import keeps `dagster definitions validate` fast.
    from kr_metrics.validation import validate_metric_values

    report = validate_metric_values(
        values,
        {name: spec.valid_range for name, spec in METRICS.items()},
        nullable_metrics=[name for name, spec in METRICS.items() if spec.nullable],
    )
    metadata: dict = {
        "evaluated_rows": report.evaluated_rows,
        "failed_expectations": len(report.failures),
    }
    for i, failure in enumerate(report.failures[:10]):
        metadata[f"failure_{i + 1}"] = dg.MetadataValue.json(
            {
                "expectation": failure.expectation,
                "unexpected_count": failure.unexpected_count,
                "examples": failure.examples,
            }
        )
    return dg.AssetCheckResult(
        passed=report.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=report.summary(),
        metadata=metadata,
    )


def build_gate_checks(partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """The gate on the day's KR values and on its KPI values, partitioned like the assets."""

    @dg.asset_check(
        asset=KR_VALUES,
        name=VALUES_CHECK,
        blocking=True,
        partitions_def=partitions,
        description="Great Expectations: keys present and unique; values finite, inside the "
        "metric's valid range, and null only where the metric allows 'no data'.",
    )
    def kr_values_gate(kr_values: pd.DataFrame) -> dg.AssetCheckResult:
        return gate_result(kr_values)

    @dg.asset_check(
        asset=KPI_VALUES,
        name=VALUES_CHECK,
        blocking=True,
        partitions_def=partitions,
        description="The same Great Expectations gate, on the day's KPI values.",
    )
    def kpi_values_gate(kpi_values: pd.DataFrame) -> dg.AssetCheckResult:
        return gate_result(kpi_values)

    return [kr_values_gate, kpi_values_gate]

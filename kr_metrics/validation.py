"""Great Expectations checks on measured key-result / KPI values before they are published."""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    # Only for type checkers: importing great_expectations costs seconds, and the Dagster
    # definitions and the CLI import this module without ever validating anything.
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import AbstractDataContext

SUITE_NAME = "kr_values"
REQUIRED_COLUMNS = ("key", "metric", "value")
MAX_EXAMPLES = 5

# Fixed names inside our private GE context; looked up before being created, so repeated
# calls in one process reuse them instead of failing with "already exists".
_DATASOURCE_NAME = "krpulse_validation"
_ASSET_NAME = "kr_values_frame"
_BATCH_DEFINITION_NAME = "whole_dataframe"

# COMPLETE is what gives unexpected_index_list (index labels of the offending rows) for
# pandas; our frames are a few dozen rows, so the full lists cost nothing.
_RESULT_FORMAT = {"result_format": "COMPLETE"}

_context: AbstractDataContext | None = None
# Creating the context is guarded so two threads never build two contexts.
_context_lock = threading.Lock()
# The pandas execution engine is shared per data source and keeps the loaded batch as state,
# so concurrent validations (e.g. Dagster's in-process executor with threads) are serialised.
_validate_lock = threading.Lock()


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed expectation, with a few offending records from the caller's frame."""

    expectation: str
    column: str | None
    unexpected_count: int
    examples: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating one frame of metric values against the `kr_values` suite."""

    suite: str
    success: bool
    evaluated_rows: int
    failures: list[ExpectationFailure] = field(default_factory=list)

    def summary(self) -> str:
        """Human-readable report: a header line, then one line per failed expectation."""
        if self.success:
            return f"{self.suite}: OK ({self.evaluated_rows} rows)"
        lines = [
            f"{self.suite}: FAILED ({len(self.failures)} failing expectation(s), "
            f"{self.evaluated_rows} rows)"
        ]
        for failure in self.failures:
            line = f"  - {failure.expectation}: {failure.unexpected_count} unexpected"
            if failure.examples:
                line += ", e.g. " + "; ".join(_describe_example(ex) for ex in failure.examples)
            lines.append(line)
        return "\n".join(lines)


def validate_metric_values(
    values: pd.DataFrame,
    ranges: Mapping[str, tuple[float | None, float | None]],
    *,
    nullable_metrics: Collection[str] = (),
) -> ValidationReport:
    """Validate one as-of date's metric values (columns key, metric, value) with GE.

    Checks: `key` not null and unique; `value` never +/-inf; `value` not null outside
    `nullable_metrics`; and each metric's non-null values within its `ranges` bounds
    (either bound may be None for open-ended).
    """
    # Nothing to check, and no reason to pay for importing GE.
    if len(values) == 0:
        return ValidationReport(suite=SUITE_NAME, success=True, evaluated_rows=0, failures=[])

    missing = [c for c in REQUIRED_COLUMNS if c not in values.columns]
    if missing:
        raise ValueError(f"values frame is missing column(s): {', '.join(missing)}")
    for metric, (lower, upper) in ranges.items():
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"range for metric {metric!r} has lower {lower} > upper {upper}")

    # Positional labels make GE's unexpected_index_list map back to exactly one original
    # row, even if the caller's index has duplicate or non-integer labels.
    original = values.reset_index(drop=True)
    frame = original.copy()
    # Non-numeric garbage is an upstream bug, not a data-quality finding: fail loudly here.
    # None/pd.NA become NaN, which the null checks below treat as "no value".
    frame["value"] = pd.to_numeric(frame["value"], errors="raise").astype("float64")

    gx = _import_gx()
    expectations = gx.expectations
    # One suite per row subset: each subset is a separate GE batch. Within a suite every
    # expectation has a distinct (type, column), which is how results map back to labels.
    # Each entry: (subset frame, [(expectation, failure label), ...]), in reporting order.
    plan: list[tuple[pd.DataFrame, list[tuple[Any, str]]]] = [
        (
            frame,
            [
                (
                    expectations.ExpectColumnValuesToNotBeNull(column="key"),
                    "expect_column_values_to_not_be_null(key)",
                ),
                (
                    expectations.ExpectColumnValuesToBeUnique(column="key"),
                    "expect_column_values_to_be_unique(key)",
                ),
                (
                    # GE has no "finite" expectation; NaN counts as missing and is ignored
                    # by this one, so it catches exactly +/-inf.
                    expectations.ExpectColumnValuesToNotBeInSet(
                        column="value", value_set=[math.inf, -math.inf]
                    ),
                    "expect_column_values_to_not_be_in_set(value, {inf, -inf})",
                ),
            ],
        )
    ]

    # Nullable metrics mean "no data -> null" (e.g. NPS with no responses), so only the
    # other rows must carry a value.
    required = frame[~frame["metric"].isin(set(nullable_metrics))]
    if len(required):
        plan.append(
            (
                required,
                [
                    (
                        expectations.ExpectColumnValuesToNotBeNull(column="value"),
                        "expect_column_values_to_not_be_null(value) [non-nullable metrics]",
                    )
                ],
            )
        )

    for metric, (lower, upper) in ranges.items():
        if lower is None and upper is None:
            continue  # GE rejects a between-expectation without bounds; nothing to check
        subset = frame[(frame["metric"] == metric) & frame["value"].notna()]
        if subset.empty:
            continue
        bounds = _bounds(lower, upper)
        plan.append(
            (
                subset,
                [
                    (
                        expectations.ExpectColumnValuesToBeBetween(
                            column="value", min_value=lower, max_value=upper
                        ),
                        f"expect_column_values_to_be_between(value, {bounds}) [{metric}]",
                    )
                ],
            )
        )

    failures: list[ExpectationFailure] = []
    batch_definition = _batch_definition()
    with _validate_lock:
        for subset, entries in plan:
            # Built per call and never saved to the context, so nothing accumulates there.
            suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=[e for e, _ in entries])
            batch = batch_definition.get_batch(batch_parameters={"dataframe": subset})
            suite_result = batch.validate(suite, result_format=_RESULT_FORMAT)
            by_key = {
                (r.expectation_config.type, r.expectation_config.kwargs.get("column")): r
                for r in suite_result.results
            }
            # Walk our own list so failures come out in plan order, whatever GE's order.
            for expectation, label in entries:
                result = by_key[(expectation.expectation_type, expectation.column)]
                if not result.success:
                    failures.append(_to_failure(result, label, expectation.column, original))

    return ValidationReport(
        suite=SUITE_NAME,
        success=not failures,
        evaluated_rows=len(original),
        failures=failures,
    )


def _import_gx() -> ModuleType:
    """Import great_expectations lazily (seconds of import time) with analytics off."""
    # Must be set before GE is first imported: older 1.x releases (our range allows >=1.5)
    # read it when their analytics client initialises. GE 1.24 no longer ships an analytics
    # client at all, so there it is inert, but it keeps the "no network" promise portable.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _get_context() -> AbstractDataContext:
    """Process-wide ephemeral GE context, created on first use."""
    global _context
    if _context is not None:
        return _context
    with _context_lock:
        if _context is None:
            gx = _import_gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            # Belt and braces with the env var set in _import_gx (GE disables analytics if
            # either is False); ephemeral contexts take it as a runtime variable.
            context.variables.analytics_enabled = False
            # tqdm bars on stderr would clutter Dagster logs and CLI output.
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _context = context
    return _context


def _batch_definition() -> BatchDefinition:
    """Get-or-create the whole-dataframe batch definition in the shared context."""
    context = _get_context()
    with _context_lock:
        try:
            datasource = context.data_sources.get(_DATASOURCE_NAME)
        except KeyError:
            datasource = context.data_sources.add_pandas(name=_DATASOURCE_NAME)
        try:
            asset = datasource.get_asset(_ASSET_NAME)
        except LookupError:
            asset = datasource.add_dataframe_asset(name=_ASSET_NAME)
        try:
            return asset.get_batch_definition(_BATCH_DEFINITION_NAME)
        except KeyError:
            return asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION_NAME)


def _to_failure(
    result: Any, label: str, column: str | None, original: pd.DataFrame
) -> ExpectationFailure:
    """Turn a failed ExpectationValidationResult into our report type."""
    # A raising expectation also comes back as success=False; keep its message visible
    # instead of reporting a bare "0 unexpected".
    error = _exception_message(result.exception_info)
    if error:
        label = f"{label} raised: {error}"
    details = result.result or {}
    indexes = details.get("unexpected_index_list") or []
    examples = []
    for label_or_row in indexes[:MAX_EXAMPLES]:
        # Without unexpected_index_column_names GE returns plain index labels for pandas.
        index = label_or_row if not isinstance(label_or_row, dict) else None
        if index is not None and index in original.index:
            examples.append(_json_safe_record(original.loc[index]))
    return ExpectationFailure(
        expectation=label,
        column=column,
        unexpected_count=int(details.get("unexpected_count") or 0),
        examples=examples,
    )


def _exception_message(info: Any) -> str | None:
    """GE puts either one exception dict or a dict of them (keyed by metric) here."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    for nested in info.values():
        message = _exception_message(nested)
        if message:
            return message
    return None


def _json_safe_record(row: pd.Series) -> dict:
    return {str(name): _json_safe(value) for name, value in row.items()}


def _json_safe(value: Any) -> Any:
    """Make one cell JSON-serialisable without losing what made the row fail."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64 | np.timedelta64):
        # .item() would turn nanosecond values into bare ints; go through pandas instead.
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        if value is pd.NaT:
            return None
    elif isinstance(value, np.generic):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            # JSON has no infinity; a string keeps it distinguishable from null.
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):  # includes pd.Timestamp
        return value.isoformat()
    if isinstance(value, dt.timedelta):  # includes pd.Timedelta
        return str(value)
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return str(value)


def _bounds(lower: float | None, upper: float | None) -> str:
    low = "" if lower is None else f"{lower:g}"
    high = "" if upper is None else f"{upper:g}"
    return f"{low}..{high}"


def _describe_example(example: dict) -> str:
    shown = {k: example[k] for k in REQUIRED_COLUMNS if k in example} or example
    return " ".join(f"{k}={v}" for k, v in shown.items())

"""The Great Expectations adapter: run a list of checks as GE suites, get failures back.

Importing great_expectations costs seconds (minutes on slow machines), and the Dagster
definitions and the CLI import the suites without ever validating anything: GE is imported
only inside `import_gx`, when a suite runs.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from validation.report import ERROR, ExpectationFailure

if TYPE_CHECKING:
    # Only for type checkers: importing great_expectations costs seconds.
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import AbstractDataContext

MAX_EXAMPLES = 5

# Fixed names inside our private GE context; looked up before being created, so repeated
# calls in one process reuse them instead of failing with "already exists".
_DATASOURCE_NAME = "krpulse_validation"
_ASSET_NAME = "kr_values_frame"
_BATCH_DEFINITION_NAME = "whole_dataframe"
# Our own label travels with each expectation, so results map back whatever GE's order.
_LABEL = "krpulse_label"

# COMPLETE is what gives unexpected_index_list (index labels of the offending rows) for
# pandas; the frames are the rows of one sync or one day, so the lists stay affordable.
_RESULT_FORMAT = {"result_format": "COMPLETE"}

_context: AbstractDataContext | None = None
# Creating the context is guarded so two threads never build two contexts.
_context_lock = threading.Lock()
# The pandas execution engine is shared per data source and keeps the loaded batch as state,
# so concurrent validations (e.g. Dagster's in-process executor with threads) are serialised.
_validate_lock = threading.Lock()


@dataclass(frozen=True)
class Check:
    """One expectation on a subset of the rows (index labels are positions in the frame)."""

    rows: pd.DataFrame
    expectation: Any
    label: str
    column: str | None
    severity: str = ERROR
    # Where examples come from; defaults to the caller's original frame.
    examples: pd.DataFrame | None = None
    # In words; defaults to the bracketed part of the label.
    rule: str = ""


def run_checks(
    gx: ModuleType, suite_name: str, original: pd.DataFrame, checks: list[Check]
) -> list[ExpectationFailure]:
    """Run the checks batch by batch (one batch per distinct row subset); failures in order."""
    batches: dict[int, tuple[pd.DataFrame, list[Check]]] = {}
    for check in checks:
        batches.setdefault(id(check.rows), (check.rows, []))[1].append(check)
    found: dict[str, ExpectationFailure] = {}
    batch_definition = _batch_definition()
    with _validate_lock:
        for rows, group in batches.values():
            for check in group:
                check.expectation.meta = {_LABEL: check.label}
            # Built per call and never saved to the context, so nothing accumulates there.
            suite = gx.ExpectationSuite(
                name=suite_name, expectations=[c.expectation for c in group]
            )
            batch = batch_definition.get_batch(batch_parameters={"dataframe": rows})
            results = batch.validate(suite, result_format=_RESULT_FORMAT).results
            by_label = {r.expectation_config.meta.get(_LABEL): r for r in results}
            for check in group:
                result = by_label[check.label]
                if not result.success:
                    source = original if check.examples is None else check.examples
                    found[check.label] = _to_failure(result, check, source)
    # Walk our own list so failures come out in check order, whatever GE's order.
    return [found[c.label] for c in checks if c.label in found]


def import_gx() -> ModuleType:
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
            gx = import_gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            # Belt and braces with the env var set in import_gx (GE disables analytics if
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


def _to_failure(result: Any, check: Check, original: pd.DataFrame) -> ExpectationFailure:
    """Turn a failed ExpectationValidationResult into our report type."""
    label = check.label
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
        column=check.column,
        unexpected_count=int(details.get("unexpected_count") or 0),
        examples=examples,
        severity=check.severity,
        rule=check.rule or _bracketed(check.label),
    )


def _bracketed(label: str) -> str:
    match = re.search(r"\[([^\]]+)\]$", label)
    return match.group(1) if match else ""


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

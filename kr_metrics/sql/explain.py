"""A KR's number explained by the compiled engine: its formula inputs (numerator, denominator,
sample size) and the records behind it, listed with the same compiled filters and measures.

What the KR page's drill-down and `krpulse definitions explain` show. Any number of KRs are
explained with one run of statements (one DuckDB connection, or one database round of
queries): one compiled pass for every KR's inputs, and one records statement per KR, each
ordered, limited and joined with the records' display columns in SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from core.numbers import optional_float
from kr_metrics.definitions import DefinitionSet
from kr_metrics.engine import _cycle_windows, series_of
from kr_metrics.metrics import METRICS, MetricSpec, Window
from kr_metrics.sql.compiler import Compiler
from kr_metrics.sql.engine import Staged, _Collecting, _Computed
from kr_metrics.sql.records import (
    EXPLAINED_COLUMNS,
    RECORD_COLUMNS,
    listed_records_statement,
    no_records_reason,
)
from kr_metrics.sql.views import VIEW_KINDS, Views


@dataclass(frozen=True)
class Request:
    """Explain `kr` (of `loaded`'s cycle) as of `as_of`."""

    loaded: object
    kr: object
    as_of: dt.date


def kr_window(loaded, kr, as_of: dt.date) -> Window:
    """The window of the KR's number on `as_of` (clamped into its cycle), as the engine uses."""
    cycle = loaded.cycle
    day = min(max(as_of, cycle.start), cycle.end)
    (window,) = _cycle_windows(kr, cycle.start, cycle.end, [day])
    return window


def explain_key_results(
    definitions: DefinitionSet,
    requests: Sequence[Request],
    staged: Staged,
    *,
    order: str = "newest",
    limit: int | None = None,
) -> list[dict]:
    """For each request: the KR's window, value, numerator, denominator and sample size from the
    compiled engine, and `records` (a frame of EXPLAINED_COLUMNS + RECORD_COLUMNS, the first
    `limit` in `order`) with `total`, the number of records behind the value; a metric without
    records to list has `reason` instead (and no records)."""
    library = definitions.library or METRICS
    collecting = _Collecting()
    plans: list[tuple[Request, MetricSpec, Window]] = []
    for request in requests:
        spec = library[request.kr.metric]
        window = kr_window(request.loaded, request.kr, request.as_of)
        series_of(
            spec,
            library,
            collecting,
            collecting.scope(request.kr.where),
            [window],
            basis=request.kr.basis,
        )
        plans.append((request, spec, window))
    compiler = Compiler(Views(staged.tables, staged.timezone))
    for leaf in collecting.leaves:
        compiler.add(leaf)
    statements = compiler.statements()
    for i, (request, spec, window) in enumerate(plans):
        if no_records_reason(spec) is None:
            statements[("records", i)] = listed_records_statement(
                spec,
                Views(staged.tables, staged.timezone),
                dict(request.kr.where),
                window,
                request.kr.basis,
                order=order,
                limit=limit,
            )
    results = staged.run(statements) if statements else {}
    computed = _Computed(compiler.read(results))
    out = []
    for i, (request, spec, window) in enumerate(plans):
        kr = request.kr
        (series,) = [
            series_of(spec, library, computed, computed.scope(kr.where), [window], basis=kr.basis)
        ]
        explained = {
            "cycle": request.loaded.cycle.key,
            "kr": kr.key,
            "metric": kr.metric,
            "formula": spec.formula,
            "filters": dict(kr.where),
            "entity": None,
            "window_start": window.start,
            "window_end": window.end,
            "value": optional_float(series.value[0]),
            "numerator": optional_float(series.numerator[0]),
            "denominator": optional_float(series.denominator[0]),
            "sample_size": int(series.sample[0]),
            "reason": no_records_reason(spec),
            "total": 0,
            "records": pd.DataFrame(columns=EXPLAINED_COLUMNS),
        }
        if ("records", i) in results:
            records, total = _shown(spec.entity, results[("records", i)])
            explained.update(entity=spec.entity, records=records, total=total)
        out.append(explained)
    return out


def explain_key_result(
    definitions: DefinitionSet,
    loaded,
    kr,
    staged: Staged,
    as_of: dt.date,
    *,
    order: str = "largest",
    limit: int | None = None,
) -> dict:
    """Everything `krpulse definitions explain` shows for one KR (see explain_key_results)."""
    (explained,) = explain_key_results(
        definitions, [Request(loaded, kr, as_of)], staged, order=order, limit=limit
    )
    return explained


def _shown(entity: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A records statement's result as the frame a reader sees: the entity and record id first,
    days and dates as timestamps (UTC for instants), whole columns converted, no row loop."""
    frame = frame.rename_axis("day").reset_index()
    total = int(frame["total"].iloc[0]) if len(frame) else 0
    frame["day"] = pd.to_datetime(frame["day"])
    kinds = VIEW_KINDS[entity]
    for column in RECORD_COLUMNS[entity]:
        if kinds.get(column) == "date":
            frame[column] = pd.to_datetime(frame[column])
        elif kinds.get(column) == "timestamp":
            frame[column] = pd.to_datetime(frame[column], utc=True)
    frame.insert(0, "entity", entity)
    frame["customer_name"] = (
        frame["customer_name"].astype(object).where(frame["customer_name"].notna(), None)
    )
    ordered = ["entity", "record_id", *RECORD_COLUMNS[entity]]
    ordered += [c for c in EXPLAINED_COLUMNS if c not in ordered]
    return frame[ordered].reset_index(drop=True), total

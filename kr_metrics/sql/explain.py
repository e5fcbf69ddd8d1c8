"""A KR's number explained by the compiled engine: its formula inputs (numerator, denominator,
sample size) and the records behind it, listed with the same compiled filters and measures.

What the KR page's drill-down and `krpulse definitions explain` show. Any number of KRs are
explained with one run of statements (one DuckDB connection, or one database connection):
one compiled pass for every KR's inputs, and one records statement per entity for every KR's
records — over prepared views computed once, ordered, limited and joined with the records'
display columns and customer names in SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from core.numbers import optional_float
from kr_metrics.definitions import DefinitionSet
from kr_metrics.engine import _cycle_windows, series_of
from kr_metrics.metrics import METRICS, MetricSpec, Window
from kr_metrics.sql.compiler import Compiler
from kr_metrics.sql.engine import Staged, _Collecting, _Computed
from kr_metrics.sql.records import (
    EXPLAINED_COLUMNS,
    RECORD_COLUMNS,
    Listing,
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
    listings = {
        i: Listing(spec, dict(request.kr.where), window, request.kr.basis)
        for i, (request, spec, window) in enumerate(plans)
        if no_records_reason(spec) is None
    }
    listed = records_statements(listings, staged, order=order, limit=limit)
    statements.update(listed)
    results = staged.run(statements) if statements else {}
    computed = _Computed(compiler.read(results))
    records_of = split_records(listings, results)
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
        if i in records_of:
            records, total = records_of[i]
            explained.update(entity=spec.entity, records=records, total=total)
        out.append(explained)
    return out


def records_statements(
    listings: dict[int, Listing], staged: Staged, *, order: str, limit: int | None
) -> dict[tuple, sa.Select]:
    """One records statement per entity, for every listing of that entity's records."""
    by_entity: dict[str, list[int]] = {}
    for i, listing in listings.items():
        by_entity.setdefault(listing.spec.entity, []).append(i)
    return {
        ("records", entity, tuple(keys)): listed_records_statement(
            [listings[i] for i in keys], staged.tables, staged.timezone, order=order, limit=limit
        )
        for entity, keys in by_entity.items()
    }


def split_records(
    listings: dict[int, Listing], results: dict[tuple, pd.DataFrame]
) -> dict[int, tuple[pd.DataFrame, int]]:
    """Each listing's (records, total) from the records statements' results."""
    out = {}
    for key, frame in results.items():
        if key[0] != "records":
            continue
        _, entity, keys = key
        parts = dict(iter(frame.groupby(frame["request"].astype("int64"), sort=False)))
        for n, i in enumerate(keys):
            out[i] = _shown(entity, parts.get(n, frame.iloc[0:0]))
    return out


def list_records(
    listings: Sequence[Listing], staged: Staged, *, order: str = "newest", limit: int | None = None
) -> list[tuple[pd.DataFrame, int]]:
    """The (records, total) behind each listing's value, as a reader sees them (_shown)."""
    numbered = dict(enumerate(listings))
    results = staged.run(records_statements(numbered, staged, order=order, limit=limit))
    records = split_records(numbered, results)
    return [records[i] for i in range(len(listings))]


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

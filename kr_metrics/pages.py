"""What the dashboard's KR page shows besides the daily rows, computed where the engine runs:
the chart's expected path and the drill-down into the records behind a number (selected by the
compiled engine, kr_metrics.sql.explain). The daily flow writes both to the store, so the
dashboard reads them and never runs the engine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from core.numbers import json_value, number
from kr_metrics.definitions import DefinitionSet
from kr_metrics.metrics import METRICS
from kr_metrics.scoring import ScoringPolicy, expected_progress
from kr_metrics.sql.engine import Staged
from kr_metrics.sql.explain import Request, explain_key_results

# The drill-down keeps this many records (newest first); the count is always the full one.
STORED_RECORDS = 1000


def chart_rows(definitions: DefinitionSet, policy: ScoringPolicy, cycles: set[str]) -> list[dict]:
    """One row per KR of `cycles`: its cycle dates, objective, definition, metric unit and
    formula, and the linear expected path (elapsed share × success grade) for every day of the
    cycle; the chart draws stored days with the expected progress they were scored with."""
    library = definitions.library or METRICS
    rows = []
    for loaded, kr in definitions.key_results():
        cycle = loaded.cycle
        if cycle.key not in cycles:
            continue
        days = pd.Series(pd.date_range(cycle.start, cycle.end, freq="D"))
        success = policy.success_grade(str(loaded.objective.ambition))
        path = expected_progress(
            pd.Series(pd.Timestamp(cycle.start), index=days.index),
            pd.Series(pd.Timestamp(cycle.end), index=days.index),
            days,
            pd.Series(success, index=days.index),
        )
        spec = library.get(kr.metric)
        rows.append(
            {
                "cycle": cycle.key,
                "kr": kr.key,
                "objective": loaded.objective.key,
                "objective_title": loaded.objective.title,
                "objective_owner": getattr(loaded.objective, "owner", None),
                "cycle_start": cycle.start,
                "cycle_end": cycle.end,
                "success_grade": success,
                "unit": spec.unit if spec else "",
                "formula": (spec.formula or spec.description or "") if spec else "",
                "definition": kr.model_dump(mode="json"),
                "expected_path": [number(share) for share in path],
            }
        )
    return rows


def drilldown_rows(
    definitions: DefinitionSet, requests: Sequence[tuple], staged: Staged
) -> list[dict]:
    """The records behind each KR's number, for (loaded, kr, as_of) `requests`: selected by the
    compiled engine's own filters and measures over the staged rows the numbers were computed
    from (`staged`: DuckDBStaged or DatabaseStaged), so a number and its records cannot
    disagree. The newest STORED_RECORDS of each are kept, with the full count; all KRs are
    explained with one run of statements."""
    explained = explain_key_results(
        definitions,
        [Request(loaded, kr, as_of) for loaded, kr, as_of in requests],
        staged,
        order="newest",
        limit=STORED_RECORDS,
    )
    return [
        _drilldown(loaded, kr, as_of, row)
        for (loaded, kr, as_of), row in zip(requests, explained, strict=True)
    ]


def drilldown_row(definitions: DefinitionSet, loaded, kr, staged: Staged, as_of: dt.date) -> dict:
    """The records behind one KR's number on `as_of` (see drilldown_rows)."""
    return drilldown_rows(definitions, [(loaded, kr, as_of)], staged)[0]


def _drilldown(loaded, kr, as_of: dt.date, explained: dict) -> dict:
    row = {
        "cycle": loaded.cycle.key,
        "kr": kr.key,
        "as_of": as_of,
        "entity": None,
        "window_start": None,
        "window_end": None,
        "value": None,
        "sample_size": None,
        "total": 0,
        "reason": None,
        "records": [],
    }
    if explained["reason"]:
        return {**row, "reason": explained["reason"]}
    records = explained["records"]
    return {
        **row,
        "entity": explained["entity"],
        "window_start": explained["window_start"],
        "window_end": explained["window_end"],
        "value": number(explained["value"]),
        "sample_size": int(explained["sample_size"] or 0),
        "total": explained["total"],
        "records": [
            {key: json_value(value) for key, value in record.items()}
            for record in records.to_dict("records")
        ],
    }

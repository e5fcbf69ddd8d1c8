"""What the dashboard's KR page shows besides the daily rows, computed where the engine runs:
the chart's expected path and the drill-down into the records behind a number. The daily flow
writes both to the store, so the dashboard reads them and never runs the engine."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from core.numbers import json_value, number
from kr_metrics.definitions import DefinitionSet
from kr_metrics.engine import explain_key_result
from kr_metrics.metrics import METRICS, PreparedData
from kr_metrics.scoring import ScoringPolicy, expected_progress

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


def drilldown_row(
    definitions: DefinitionSet, loaded, kr, data: PreparedData, as_of: dt.date
) -> dict:
    """The records behind the KR's number on `as_of`, from the engine's own explanation: the
    same window, filters and events as the number, so the two cannot disagree."""
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
    spec = (definitions.library or METRICS).get(kr.metric)
    if spec is None or spec.events is None or spec.reduce:
        return {**row, "reason": f"metric '{kr.metric}' has no record-level breakdown"}
    explained = explain_key_result(definitions, loaded, kr, data, as_of)
    records = explained["records"]
    if not records.empty:
        records = records.sort_values(["day", "record_id"], ascending=[False, True], kind="stable")
    kept = records.head(STORED_RECORDS)
    return {
        **row,
        "entity": spec.entity,
        "window_start": explained["window_start"],
        "window_end": explained["window_end"],
        "value": number(explained["value"]),
        "sample_size": int(explained["sample_size"] or 0),
        "total": len(records),
        "records": [
            {key: json_value(value) for key, value in record.items()}
            for record in kept.to_dict("records")
        ],
    }

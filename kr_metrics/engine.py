"""The engine: every KR and KPI of the definitions, for one as-of date, from canonical frames."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd

from kr_metrics.definitions import DefinitionSet, definition_version
from kr_metrics.metrics import METRICS, PreparedData, Scope, Window, scope_for

VALUE_COLUMNS = [
    "kind", "cycle", "objective", "key", "title", "team", "level", "ambition", "metric",
    "value", "numerator", "denominator", "sample_size", "baseline", "target", "unit",
    "healthy_min", "healthy_max", "cycle_start", "cycle_end", "window_start", "window_end",
    "definition_version",
]  # fmt: skip


def prepare(
    deals: pd.DataFrame,
    customers: pd.DataFrame,
    nps_responses: pd.DataFrame,
    *,
    timezone: str,
) -> PreparedData:
    """Drop deleted rows and join customer attributes once, for all metrics of a run."""
    deals = deals[~deals["is_deleted"].fillna(False)]
    customers = customers[~customers["is_deleted"].fillna(False)].reset_index(drop=True)
    responses = nps_responses[~nps_responses["is_deleted"].fillna(False)]

    attributes = customers[
        ["source", "customer_id", "segment", "region", "industry", "team", "owner_id"]
    ]
    deal_view = deals.merge(
        attributes.rename(columns={"team": "customer_team", "owner_id": "customer_owner_id"}),
        on=["source", "customer_id"],
        how="left",
    )
    response_view = responses.merge(attributes, on=["source", "customer_id"], how="left")
    # NPS windows are reporting-timezone days: a response at 23:30 UTC on 31 Dec is already
    # January in Berlin.
    response_view["submitted_date"] = (
        response_view["submitted_at"].dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    )
    return PreparedData(
        deals=deal_view.reset_index(drop=True),
        customers=customers,
        nps_responses=response_view.reset_index(drop=True),
        timezone=timezone,
    )


def window_for(start: dt.date, end: dt.date, as_of: dt.date) -> Window:
    """The one time-window function: [start, min(as_of, end)] with the cycle start it belongs to."""
    return Window(start=start, end=min(as_of, end), cycle_start=start)


def evaluate(definitions: DefinitionSet, data: PreparedData, as_of: dt.date) -> pd.DataFrame:
    """One row per KR of every cycle running on `as_of`, and one per KPI; see VALUE_COLUMNS."""
    scopes: dict[str, Scope] = {}

    def scope(where: dict) -> Scope:
        # Several KRs usually share a filter (a team, a region): evaluate each filter once.
        cache_key = json.dumps(where, sort_keys=True, default=str)
        if cache_key not in scopes:
            scopes[cache_key] = scope_for(data, where)
        return scopes[cache_key]

    rows = []
    for loaded, kr in definitions.key_results():
        cycle, objective = loaded.cycle, loaded.objective
        if not cycle.contains(as_of):
            continue
        window = window_for(cycle.start, cycle.end, as_of)
        result = METRICS[kr.metric].compute(data, window, scope(kr.where))
        rows.append(
            {
                "kind": "kr", "cycle": cycle.key, "objective": objective.key, "key": kr.key,
                "title": kr.title, "team": objective.team or kr.where.get("team"),
                "level": objective.level.value, "ambition": objective.ambition.value,
                "metric": kr.metric, "value": result.value, "numerator": result.numerator,
                "denominator": result.denominator, "sample_size": result.sample_size,
                "baseline": kr.baseline, "target": kr.target_value, "unit": kr.unit,
                "healthy_min": None, "healthy_max": None,
                "cycle_start": cycle.start, "cycle_end": cycle.end,
                "window_start": window.start, "window_end": window.end,
                "definition_version": definition_version(cycle, objective.model_copy(
                    update={"key_results": [kr]})),
            }
        )  # fmt: skip
    for kpi in definitions.kpis:
        start = as_of - dt.timedelta(days=kpi.window_days - 1)
        window = window_for(start, as_of, as_of)
        result = METRICS[kpi.metric].compute(data, window, scope(kpi.where))
        rows.append(
            {
                "kind": "kpi", "cycle": None, "objective": None, "key": kpi.key,
                "title": kpi.title, "team": kpi.team, "level": None, "ambition": None,
                "metric": kpi.metric, "value": result.value, "numerator": result.numerator,
                "denominator": result.denominator, "sample_size": result.sample_size,
                "baseline": None, "target": None, "unit": None,
                "healthy_min": kpi.healthy.min, "healthy_max": kpi.healthy.max,
                "cycle_start": None, "cycle_end": None,
                "window_start": window.start, "window_end": window.end,
                "definition_version": definition_version(kpi),
            }
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=VALUE_COLUMNS)
    for col in (
        "value",
        "numerator",
        "denominator",
        "baseline",
        "target",
        "healthy_min",
        "healthy_max",
    ):
        frame[col] = pd.to_numeric(frame[col]).astype("float64")
    frame["sample_size"] = frame["sample_size"].astype("int64")
    return frame

"""What the pages and the API show, assembled from the OKR store, the definitions and staging."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from kr_metrics.definitions import DefinitionSet
from kr_metrics.display import (  # noqa: F401 - format_* re-exported for templates
    format_percent,
    format_value,
    label,
    number,
    pace_text,
    shown_status,
    value_with_margin,
)
from kr_metrics.engine import explain_key_result
from kr_metrics.metrics import METRICS, PreparedData
from kr_metrics.scoring import SHOWN_DECIMALS, expected_progress, is_uncertain
from okr_store.repository import OkrStore

STATUS_ORDER = ["off_track", "at_risk", "stale", "low_sample", "no_data", "on_track"]
status_label = label  # one wording of statuses and verdicts (kr_metrics.display)


COMPANY = "Company"
DRILLDOWN_LIMIT = 200


@dataclass
class DashboardData:
    """Everything the dashboard reads; the loaders are cached by whoever builds this."""

    store: OkrStore
    definitions: Callable[[], DefinitionSet | None] = lambda: None
    prepared: Callable[[], PreparedData | None] = lambda: None
    record_links: dict[str, dict[str, str]] = field(default_factory=dict)
    stale_after: dt.timedelta = dt.timedelta(hours=36)
    moonshot_success: float = 0.7
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    # The organisation's timezone (which day it is for a check-in), team display names from
    # dashboard.team_names, and the public address links in the digest point at.
    timezone: str = "UTC"
    team_names: dict[str, str] = field(default_factory=dict)
    public_url: str | None = None


class NotFound(LookupError):
    """A cycle or KR the store does not know."""


# --- formatting ---------------------------------------------------------------------------------


def team_label(team: Any) -> str:
    return COMPANY if team is None or (isinstance(team, float) and math.isnan(team)) else str(team)


def _timestamp(value: Any) -> dt.datetime | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        return None
    return (
        stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    ).to_pydatetime()


def age_text(then: dt.datetime | None, now: dt.datetime) -> str:
    if then is None:
        return "never synced"
    seconds = max((now - then).total_seconds(), 0)
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


# --- cycles and definitions ---------------------------------------------------------------------


def cycles(data: DashboardData) -> list[dict]:
    frame = data.store.cycles()
    return [
        {"cycle": r.cycle, "first_day": r.first_day, "last_day": r.last_day,
         "key_results": int(r.key_results)}
        for r in frame.itertuples()
    ]  # fmt: skip


def pick_cycle(data: DashboardData, cycle: str | None) -> tuple[str, list[dict]]:
    """The requested cycle, or the one with the newest data; NotFound when the store has none."""
    known = cycles(data)
    if not known:
        raise NotFound("the OKR store is empty: run `krpulse run` (or `krpulse demo`) first")
    if cycle is None:
        return known[0]["cycle"], known
    if cycle not in {c["cycle"] for c in known}:
        raise NotFound(f"no cycle '{cycle}' in the OKR store")
    return cycle, known


def _definitions(data: DashboardData) -> DefinitionSet | None:
    try:
        return data.definitions()
    except Exception:  # noqa: BLE001 - a broken definitions folder must not take the dashboard down
        return None


def cycle_dates(data: DashboardData, cycle: str) -> tuple[dt.date, dt.date] | None:
    definitions = _definitions(data)
    if definitions is None or cycle not in definitions.cycles:
        return None
    found = definitions.cycles[cycle]
    return found.start, found.end


def _find_kr(definitions: DefinitionSet | None, cycle: str, kr: str):  # noqa: ANN202
    if definitions is None:
        return None, None
    for loaded, key_result in definitions.key_results():
        if loaded.cycle.key == cycle and key_result.key == kr:
            return loaded, key_result
    return None, None


def objective_titles(data: DashboardData, cycle: str) -> dict[str, dict]:
    definitions = _definitions(data)
    if definitions is None:
        return {}
    return {
        loaded.objective.key: {"title": loaded.objective.title, "owner": loaded.objective.owner}
        for loaded in definitions.objectives
        if loaded.cycle.key == cycle
    }


# --- key results --------------------------------------------------------------------------------


def _kr_records(
    frame: pd.DataFrame, data: DashboardData, cycle_last_day: dt.date | None
) -> list[dict]:
    now = data.now()
    out = []
    for row in frame.to_dict("records"):
        synced = _timestamp(row.get("data_synced_at"))
        reasons = []
        if row.get("status") == "stale" and row.get("stale_reason"):
            reasons.append(str(row["stale_reason"]))
        if synced is None or now - synced > data.stale_after:
            reasons.append(f"source data synced {age_text(synced, now)}")
        if cycle_last_day is not None and row["as_of"] < cycle_last_day:
            reasons.append(f"not updated since {row['as_of']}")
        metric, unit = row["metric"], row.get("unit")
        unit = None if unit is None or (isinstance(unit, float) and math.isnan(unit)) else unit
        grade, expected = number(row.get("grade")), number(row.get("expected_progress"))
        shown = shown_status(row)
        reason = row.get("status_reason") if isinstance(row.get("status_reason"), str) else None
        out.append(
            {
                "cycle": row["cycle"], "objective": row["objective"], "kr": row["kr"],
                "title": row["title"], "team": None if team_label(row.get("team")) == COMPANY else row["team"],
                "level": row["level"], "ambition": row["ambition"], "metric": metric, "unit": unit,
                "value": number(row.get("value")), "baseline": number(row.get("baseline")),
                "target": number(row.get("target")), "progress": number(row.get("progress")),
                "grade": grade, "expected_progress": expected, "status": row["status"],
                "sample_size": int(row.get("sample_size") or 0), "as_of": row["as_of"],
                "data_synced_at": synced, "stale": bool(reasons), "stale_reasons": reasons,
                "definition_version": row.get("definition_version"),
                "forecast_value": number(row.get("forecast_value")),
                "forecast_grade": number(row.get("forecast_grade")),
                "margin_of_error": number(row.get("margin_of_error")),
                "start_value": number(row.get("start_value")),
                "expected_value": number(row.get("expected_value")),
                "metric_kind": row.get("metric_kind"), "verdict": row.get("verdict") or None,
                "shown_status": shown, "status_reason": reason, "uncertain": is_uncertain(reason),
                # Display strings and bar geometry, so templates hold no arithmetic.
                "value_text": value_with_margin(row | {"unit": unit}),
                "start_text": format_value(row.get("start_value"), metric, unit),
                "expected_value_text": format_value(row.get("expected_value"), metric, unit),
                "pace_text": pace_text(row | {"unit": unit}),
                "forecast_text": format_value(row.get("forecast_value"), metric, unit),
                "baseline_text": format_value(row.get("baseline"), metric, unit),
                "target_text": format_value(row.get("target"), metric, unit),
                "progress_text": format_percent(row.get("progress")),
                "expected_text": format_percent(expected),
                "status_label": status_label(shown),
                "freshness_text": age_text(synced, now),
                "bar_fill": round(100 * (grade or 0.0), 1),
                "bar_expected": round(100 * min(max(expected or 0.0, 0.0), 1.0), 1),
            }
        )  # fmt: skip
    return out


def overview(data: DashboardData, cycle: str | None = None, team: str | None = None) -> dict:
    """The cycle's objectives and KRs grouped by team (company first), and the KPIs apart."""
    cycle, known = pick_cycle(data, cycle)
    latest = data.store.latest_cycle_progress(cycle, team=team)
    last_day = max(latest["as_of"]) if not latest.empty else None
    krs = _kr_records(latest, data, last_day)
    titles = objective_titles(data, cycle)
    teams: dict[str, dict] = {}
    for kr in krs:
        label = team_label(kr["team"])
        section = teams.setdefault(label, {"team": kr["team"], "label": label, "objectives": {},
                                           "counts": dict.fromkeys(STATUS_ORDER, 0)})  # fmt: skip
        objective = section["objectives"].setdefault(
            kr["objective"],
            {"objective": kr["objective"], "ambition": kr["ambition"], "level": kr["level"],
             "title": titles.get(kr["objective"], {}).get("title") or kr["objective"],
             "owner": titles.get(kr["objective"], {}).get("owner"), "key_results": []},
        )  # fmt: skip
        objective["key_results"].append(kr)
        section["counts"][kr["shown_status"]] = section["counts"].get(kr["shown_status"], 0) + 1
    ordered = sorted(teams.values(), key=lambda s: (s["team"] is not None, s["label"]))
    for section in ordered:
        section["objectives"] = list(section["objectives"].values())
    kpis = data.store.kpi_values(as_of=last_day, team=team)
    return {
        "cycle": cycle, "cycles": known, "team": team, "as_of": last_day,
        "dates": cycle_dates(data, cycle), "teams": ordered, "kpis": _kpi_records(kpis, data),
        "key_result_count": len(krs),
    }  # fmt: skip


def _kpi_records(kpis: pd.DataFrame, data: DashboardData) -> list[dict]:
    now = data.now()
    out = []
    for row in kpis.to_dict("records"):
        synced = _timestamp(row.get("data_synced_at"))
        low, high = number(row.get("healthy_min")), number(row.get("healthy_max"))
        out.append(
            {
                "kpi": row["kpi"], "title": row["title"], "team": row.get("team"),
                "metric": row["metric"], "value": number(row.get("value")),
                "healthy_min": low, "healthy_max": high, "health": row["health"],
                "sample_size": int(row.get("sample_size") or 0), "as_of": row["as_of"],
                "data_synced_at": synced,
                "value_text": format_value(row.get("value"), row["metric"]),
                "range_text": f"{format_value(low, row['metric']) if low is not None else ''} – "
                              f"{format_value(high, row['metric']) if high is not None else ''}",
                "health_label": status_label(row["health"]),
                "freshness_text": age_text(synced, now),
            }
        )  # fmt: skip
    return out


def kr_detail(
    data: DashboardData, cycle: str, kr: str, *, known: list[dict] | None = None,
    history: pd.DataFrame | None = None,
) -> dict:  # fmt: skip
    """One KR: its latest numbers, daily history, expected path, forecast and definition.

    `known` (cycles()) and `history` may be passed in when the caller already read them.
    """
    history = data.store.cycle_history(cycle, kr=kr) if history is None else history
    if history.empty:
        raise NotFound(f"no key result '{kr}' in cycle '{cycle}'")
    known = cycles(data) if known is None else known
    cycle_last = next((c["last_day"] for c in known if c["cycle"] == cycle), None)
    latest = _kr_records(history.tail(1), data, cycle_last)[0]
    definitions = _definitions(data)
    loaded, definition = _find_kr(definitions, cycle, kr)
    dates = cycle_dates(data, cycle)
    start = dates[0] if dates else history["as_of"].min()
    end = dates[1] if dates else history["as_of"].max()
    chart = _chart(data, history, latest, start, end)
    return {
        "kr": latest, "cycle": cycle, "start": start, "end": end, "chart": chart,
        "objective_title": loaded.objective.title if loaded else latest["objective"],
        "definition": _definition(definition, latest),
        "history": [
            {"as_of": r["as_of"], "value": number(r["value"]),
             "value_text": format_value(r["value"], latest["metric"], latest["unit"]),
             "progress_text": format_percent(r["progress"]),
             "expected_text": format_percent(r["expected_progress"]), "status": r["status"],
             "status_label": status_label(r["status"])}
            for r in history.to_dict("records")
        ],
        "forecast": chart["forecast_summary"],
    }  # fmt: skip


def _chart(data: DashboardData, history: pd.DataFrame, latest: dict, start: dt.date,
           end: dt.date) -> dict:  # fmt: skip
    """Aligned daily series for the chart: value, expected path, forecast (null where none)."""
    days = pd.date_range(start, end, freq="D")
    values = (
        history.assign(day=pd.to_datetime(history["as_of"])).set_index("day")["value"].reindex(days)
    )
    baseline, target = latest["baseline"], latest["target"]
    start_at = latest["start_value"] if latest["start_value"] is not None else baseline
    success = data.moonshot_success if latest["ambition"] == "moonshot" else 1.0
    expected_share = pd.Series(
        history.assign(day=pd.to_datetime(history["as_of"]))
        .set_index("day")["expected_progress"]
        .reindex(days)
    )
    # Stored days keep the expected progress they were scored with (milestones included); the
    # days still ahead follow the scoring's linear path to the cycle end.
    linear = expected_progress(
        pd.Series(pd.Timestamp(start), index=days), pd.Series(pd.Timestamp(end), index=days),
        pd.Series(days, index=days), pd.Series(success, index=days),
    )  # fmt: skip
    expected_share = expected_share.fillna(linear)
    expected_values = (
        start_at + expected_share * (target - start_at)
        if start_at is not None and target is not None
        else None
    )
    # The forecast is the one kr_metrics.forecast stored with the row (recent pace for
    # cumulative KRs, the cycle-to-date value for rates, a trend line for levels); the chart
    # draws it as a straight line from the latest value to the cycle end.
    forecast_values = pd.Series(np.nan, index=days)
    summary = None
    projected = number(latest.get("forecast_value"))
    last_value = history[history["value"].notna()].tail(1)
    if projected is not None and not last_value.empty:
        last_day = pd.Timestamp(last_value["as_of"].iloc[0])
        ahead = days >= last_day
        span_days = max((pd.Timestamp(end) - last_day).days, 1)
        step = (projected - float(last_value["value"].iloc[0])) / span_days
        forecast_values[ahead] = (
            float(last_value["value"].iloc[0]) + step * (days[ahead] - last_day).days
        )
        # The stored forecast grade, judged like the status: on the precision that is shown.
        progress = number(latest.get("forecast_grade"))
        summary = {
            "projected_value": projected,
            "projected_text": format_value(projected, latest["metric"], latest["unit"]),
            "projected_progress": progress, "projected_progress_text": format_percent(progress),
            "reaches_success": progress is not None and round(progress, SHOWN_DECIMALS) >= success,
        }  # fmt: skip

    def series(s: pd.Series | None) -> list[float | None]:
        if s is None:
            return [None] * len(days)
        return [number(v) for v in s.to_numpy()]

    return {
        "x": [int(d.timestamp()) for d in days],
        "value": series(values), "expected": series(expected_values),
        "forecast": series(forecast_values), "target": target, "baseline": baseline,
        "metric": latest["metric"], "unit": METRICS[latest["metric"]].unit
        if latest["metric"] in METRICS else "", "title": latest["title"],
        "forecast_summary": summary, "start": start_at,
    }  # fmt: skip


def _definition(definition: Any, latest: dict) -> dict:
    spec = METRICS.get(latest["metric"])
    formula = (getattr(spec, "formula", "") or getattr(spec, "description", "")) if spec else ""
    result = {
        "metric": latest["metric"], "formula": formula, "filters": {}, "window": "cycle",
        "baseline_text": latest["baseline_text"], "target_text": latest["target_text"],
        "target_expression": None, "milestones": [], "current": definition is not None,
        "version": latest["definition_version"],
    }  # fmt: skip
    if definition is not None:
        result["filters"] = dict(definition.where)
        result["window"] = getattr(definition, "window", "cycle")
        if isinstance(definition.target, str):
            result["target_expression"] = definition.target
        result["milestones"] = [
            {
                "date": m.date,
                "target_text": format_value(m.target, latest["metric"], latest["unit"]),
            }
            for m in getattr(definition, "milestones", [])
        ]
    return result


# --- drill-down ---------------------------------------------------------------------------------


def drilldown(
    data: DashboardData, cycle: str, kr: str, *, limit: int = DRILLDOWN_LIMIT,
    history: pd.DataFrame | None = None,
) -> dict:  # fmt: skip
    """The staged records behind the KR's latest stored number, with links into their CRM."""
    history = data.store.cycle_history(cycle, kr=kr) if history is None else history
    if history.empty:
        raise NotFound(f"no key result '{kr}' in cycle '{cycle}'")
    row = history.iloc[-1]
    definitions = _definitions(data)
    loaded, definition = _find_kr(definitions, cycle, kr)
    empty = {"available": False, "as_of": row["as_of"], "records": [], "total": 0,
             "shown": 0, "entity": None}  # fmt: skip
    if definition is None:
        return {**empty, "reason": "this KR is no longer in the definitions"}
    spec = (getattr(definitions, "library", None) or METRICS).get(definition.metric)
    if spec is None or spec.events is None or spec.reduce:
        return {**empty, "reason": f"metric '{definition.metric}' has no record-level breakdown"}
    prepared = data.prepared()
    if prepared is None:
        return {**empty, "reason": "no staged data to show records from"}
    # The engine's own explanation: same window, filters and events as the stored number.
    explained = explain_key_result(definitions, loaded, definition, prepared, row["as_of"])
    records = explained["records"]
    if not records.empty:
        records = records.sort_values(["day", "record_id"], ascending=[False, True], kind="stable")
    shown = records.head(limit)
    value, stored = number(explained["value"]), number(row["value"])
    matches = (value is None and stored is None) or (
        value is not None and stored is not None and math.isclose(value, stored, rel_tol=1e-6)
    )
    return {
        "available": True, "as_of": row["as_of"], "entity": spec.entity,
        "window_start": explained["window_start"], "window_end": explained["window_end"],
        "total": len(records), "shown": len(shown),
        "value_text": format_value(value, spec.name, row.get("unit")),
        "matches_stored": matches, "sample_size": explained["sample_size"],
        "records": _record_rows(shown, data.record_links),
    }  # fmt: skip


def _record_rows(records: pd.DataFrame, links: dict[str, dict[str, str]]) -> list[dict]:
    out = []
    for record in records.to_dict("records"):
        entity = record["entity"]
        template = links.get(str(record["source"]), {}).get(entity)
        customer_template = links.get(str(record["source"]), {}).get("customers")
        customer_id = record.get("customer_id")
        has_customer = customer_id is not None and not pd.isna(customer_id)
        out.append(
            {
                **{k: _plain(v) for k, v in record.items()},
                "url": template.replace("{id}", quote(str(record["record_id"]), safe=""))
                if template else None,
                "customer_url": customer_template.replace("{id}", quote(str(customer_id), safe=""))
                if customer_template and has_customer else None,
            }
        )  # fmt: skip
    return out


def _plain(value: Any) -> Any:
    """JSON-friendly scalars: dates as ISO strings, missing as None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp | np.datetime64):
        stamp = pd.Timestamp(value)
        return (
            stamp.date().isoformat()
            if stamp == stamp.normalize() and stamp.tzinfo is None
            else stamp.isoformat()
        )
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return number(value)
    return value

"""The team's week on the dashboard: check-ins, what moved since last week, sparklines, alignment."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from core.checkins import (
    CONFIDENCE_LABELS,
    confidence_label,
    week_end,
    week_label,
    week_start,
)
from dashboard import views
from kr_metrics.display import format_percent, format_value, number
from okr_store.checkins import CheckInStore
from okr_store.staging import read_staged
from okr_store.weekly import values_on_days, weekly_days

SPARK_WIDTH, SPARK_HEIGHT = 100.0, 24.0
LEVEL_ORDER = {"company": 0, "team": 1, "individual": 2}


def org_today(data: views.DashboardData) -> dt.date:
    """Today in the organisation's timezone: the day a check-in made now belongs to."""
    return data.now().astimezone(ZoneInfo(data.timezone)).date()


def team_name(data: views.DashboardData, team: Any) -> str:
    """A team's display name from dashboard.team_names, else its key; the company for none."""
    label = views.team_label(team)
    return data.team_names.get(label, label)


def check_ins(data: views.DashboardData) -> CheckInStore:
    return CheckInStore(data.store.engine)


# --- owners ----------------------------------------------------------------------------------


def owner_names(data: views.DashboardData) -> dict[str, str]:
    """CRM owner ids to names from the staged owners, so `O-06` reads as the person."""
    try:
        owners = read_staged(data.store.engine, "owners", columns=["owner_id", "name"])
    except Exception:  # noqa: BLE001 - a store without staging still shows owners as written
        return {}
    owners = owners.dropna()
    return dict(zip(owners["owner_id"].astype(str), owners["name"].astype(str), strict=True))


def owner_text(owner: Any, names: dict[str, str]) -> str | None:
    if owner is None or (isinstance(owner, float) and math.isnan(owner)) or owner == "":
        return None
    return names.get(str(owner), str(owner))


# --- check-ins -------------------------------------------------------------------------------


def _check_in_record(row: dict, metric: str | None = None, unit: str | None = None) -> dict:
    week = row["week"]
    value = number(row.get("value"))
    return {
        "week": week, "week_label": week_label(week), "week_end": week_end(week),
        "confidence": int(row["confidence"]),
        "confidence_text": confidence_label(int(row["confidence"])),
        "progress": row.get("progress") or "", "problems": row.get("problems") or "",
        "next_steps": row.get("next_steps") or "", "author": row.get("author"),
        "value": value, "value_as_of": row.get("value_as_of"),
        "value_text": format_value(value, metric, unit) if metric else (
            "—" if value is None else f"{value:,.2f}"),
        "revision": int(row.get("revision") or 1), "updated_at": row.get("updated_at"),
    }  # fmt: skip


def confidence_options() -> list[dict]:
    return [{"value": k, "label": f"{k} · {v}"} for k, v in CONFIDENCE_LABELS.items()]


def kr_check_ins(data: views.DashboardData, cycle: str, kr: dict) -> dict:
    """A KR's check-in history (newest first), this week's for the form, and the chart markers."""
    rows = check_ins(data).check_ins(cycle=cycle, kr=kr["kr"])
    history = [_check_in_record(r, kr["metric"], kr.get("unit")) for r in rows.to_dict("records")][
        ::-1
    ]
    today = org_today(data)
    this_week = next((c for c in history if c["week"] == week_start(today)), None)
    return {
        "history": history,
        "this_week": this_week,
        "week_label": week_label(today),
        "week_end": week_end(today),
        "today": today,
        "options": confidence_options(),
        # Marker per check-in on the chart: the day its value was measured.
        "markers": [
            {
                "x": int(pd.Timestamp(c["value_as_of"]).timestamp()),
                "value": c["value"],
                "label": f"{c['week_label']}: confidence {c['confidence_text']}",
            }
            for c in history
            if c["value_as_of"] is not None and c["value"] is not None
        ],  # fmt: skip
    }


# --- the overview ----------------------------------------------------------------------------


def sparkline(values: list[float | None]) -> str:
    """SVG polyline points for a day-by-day series (gaps skipped), scaled to its own range."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return ""
    low = min(v for _, v in known)
    high = max(v for _, v in known)
    span = (high - low) or 1.0
    last = max(len(values) - 1, 1)
    return " ".join(
        f"{SPARK_WIDTH * i / last:.1f},{SPARK_HEIGHT - 2 - (SPARK_HEIGHT - 4) * (v - low) / span:.1f}"
        for i, v in known
    )


def change_text(now: float | None, before: float | None, metric: str, unit: str | None) -> str:
    if now is None or before is None:
        return "—"
    delta = now - before
    if metric in ("win_rate",) or format_value(1, metric).endswith("%"):
        points = 100 * delta
        return "±0 pts" if round(points, 1) == 0 else f"{points:+.1f} pts"
    text = format_value(abs(delta), metric, unit)
    return "±0" if text.strip("0., ") == "" else ("+" if delta > 0 else "−") + text


def weekly_changes(history: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Per KR: its value on `as_of` and on the same weekday exactly a week earlier (None when
    that day is not stored: a missed run shows as no change, never as a made-up one)."""
    columns = ["kr", "value_now", "value_week_ago"]
    if history.empty:
        return pd.DataFrame(columns=columns)
    now = history[history["as_of"] == as_of][["kr", "value"]]
    before = history[history["as_of"] == as_of - dt.timedelta(days=7)][["kr", "value"]]
    return now.merge(before, on="kr", how="left", suffixes=("_now", "_week_ago"))[columns]


def enrich_overview(data: views.DashboardData, model: dict) -> dict:
    """Add the week to views.overview's model: change since the same day last week, sparkline,
    forecast beside the value, owner names, team display names, the latest check-in's confidence
    and a marker on KRs without a check-in this week; KPIs of the filtered team and the company."""
    cycle, as_of = model["cycle"], model["as_of"]
    today = org_today(data)
    this_week = week_start(today)
    latest = check_ins(data).latest_check_ins(cycle)
    latest_by_kr = {r["kr"]: r for r in latest.to_dict("records")}
    history = pd.DataFrame(columns=["kr", "as_of", "value"])
    if as_of:
        first_day = (model["dates"] or (None,))[0] or min(
            c["first_day"] for c in model["cycles"] if c["cycle"] == cycle
        )
        # One point a week (the same weekday as the newest day) draws the cycle so far and
        # gives the change since the same day last week, in one indexed read.
        history = values_on_days(data.store.engine, cycle, weekly_days(first_day, as_of),
                                 team=model["team"], with_company=True)  # fmt: skip
    changes = weekly_changes(history, as_of).set_index("kr") if as_of else pd.DataFrame()
    series = {
        kr: list(rows["value"].map(number)) for kr, rows in history.groupby("kr")
    } if not history.empty else {}  # fmt: skip
    names = owner_names(data)
    missing = 0
    for section in model["teams"]:
        section["label"] = team_name(data, section["team"])
        for objective in section["objectives"]:
            objective["owner"] = owner_text(objective.get("owner"), names)
            for kr in objective["key_results"]:
                missing += _enrich_kr(kr, latest_by_kr, changes, series, this_week)
        section["missing_check_ins"] = sum(
            1 for o in section["objectives"] for k in o["key_results"] if not k["checked_in"]
        )
    model["teams"].sort(key=lambda s: (s["team"] is not None, s["label"]))
    model["week_label"] = week_label(today)
    model["missing_check_ins"] = missing
    model["team_label"] = team_name(data, model["team"]) if model["team"] else None
    model["teams_known"] = _teams_known(data, cycle)
    if model["team"]:
        kpis = data.store.kpi_values(as_of=as_of)
        kpis = kpis[kpis["team"].isna() | (kpis["team"] == model["team"])]
        model["kpis"] = views._kpi_records(kpis, data)
    return model


def _enrich_kr(kr: dict, latest: dict, changes: pd.DataFrame, series: dict, this_week) -> int:
    check_in = latest.get(kr["kr"])
    kr["check_in"] = _check_in_record(check_in, kr["metric"], kr["unit"]) if check_in else None
    kr["checked_in"] = bool(check_in) and check_in["week"] == this_week
    change = changes.loc[kr["kr"]] if kr["kr"] in changes.index else None
    before = None if change is None else number(change["value_week_ago"])
    kr["value_week_ago"] = before
    kr["change_text"] = change_text(kr["value"], before, kr["metric"], kr["unit"])
    kr["change_direction"] = (
        "none" if before is None or kr["value"] is None or kr["value"] == before
        else ("up" if kr["value"] > before else "down")
    )  # fmt: skip
    kr["sparkline"] = sparkline(series.get(kr["kr"], []))
    margin = kr.get("margin_of_error")
    kr["forecast_margin_text"] = (
        f"{kr['forecast_text']} ±{format_value(margin, kr['metric'])}"
        if margin is not None and kr.get("forecast_value") is not None
        else kr["forecast_text"]
    )
    return 0 if kr["checked_in"] else 1


def _teams_known(data: views.DashboardData, cycle: str) -> list[dict]:
    latest = data.store.latest_cycle_progress(cycle)
    teams = sorted({t for t in latest["team"].dropna()}) if not latest.empty else []
    return [{"team": t, "label": team_name(data, t)} for t in teams]


# --- the team's check-in form ----------------------------------------------------------------


def team_check_in(data: views.DashboardData, cycle: str | None, team: str | None) -> dict:
    """Every KR of `team` (the company's when None) with this week's check-in, for one form."""
    cycle, known = views.pick_cycle(data, cycle)
    latest = data.store.latest_cycle_progress(cycle)
    latest = latest[latest["team"] == team] if team else latest[latest["team"].isna()]
    if latest.empty:
        raise views.NotFound(f"no key results of team '{team or 'Company'}' in cycle '{cycle}'")
    krs = views._kr_records(latest, data, max(latest["as_of"]))
    today = org_today(data)
    rows = check_ins(data).check_ins(cycle=cycle, start=week_start(today) - dt.timedelta(days=7))
    by_kr: dict[str, dict] = {}
    for row in rows.to_dict("records"):
        by_kr.setdefault(row["kr"], {})[row["week"]] = row
    for kr in krs:
        weeks = by_kr.get(kr["kr"], {})
        current = weeks.get(week_start(today))
        previous = weeks.get(week_start(today) - dt.timedelta(days=7))
        kr["this_week"] = _check_in_record(current, kr["metric"], kr["unit"]) if current else None
        kr["last_week"] = _check_in_record(previous, kr["metric"], kr["unit"]) if previous else None
    return {
        "cycle": cycle, "cycles": known, "team": team, "team_label": team_name(data, team),
        "week_label": week_label(today), "week_end": week_end(today), "today": today,
        "key_results": krs, "options": confidence_options(),
        "teams_known": _teams_known(data, cycle),
    }  # fmt: skip


# --- alignment -------------------------------------------------------------------------------


def alignment(data: views.DashboardData, cycle: str | None) -> dict:
    """Company objectives with the team and individual objectives aligned to them (`aligns_to`),
    each with its average progress and its KRs, so a lead sees how the team's work adds up."""
    cycle, known = views.pick_cycle(data, cycle)
    latest = data.store.latest_cycle_progress(cycle)
    krs = views._kr_records(latest, data, max(latest["as_of"]) if not latest.empty else None)
    objectives = data.store.definitions("objectives")
    objectives = objectives[objectives["cycle"] == cycle]
    # The newest recorded version of each objective says what it aligns to.
    newest = (
        objectives.sort_values("recorded_at").groupby("key").tail(1).set_index("key")
        if not objectives.empty
        else pd.DataFrame(columns=["title", "level", "team", "aligns_to", "ambition"])
    )
    names = owner_names(data)
    titles = views.objective_titles(data, cycle)
    nodes: dict[str, dict] = {}
    for kr in krs:
        key = kr["objective"]
        node = nodes.setdefault(key, _objective_node(data, key, kr, newest, titles, names))
        node["key_results"].append(kr)
    for node in nodes.values():
        grades = [k["grade"] for k in node["key_results"] if k["grade"] is not None]
        node["progress"] = sum(grades) / len(grades) if grades else None
        node["progress_text"] = format_percent(node["progress"])
        node["bar_fill"] = round(100 * (node["progress"] or 0.0), 1)
    roots, orphans = [], []
    for node in sorted(nodes.values(), key=lambda n: (LEVEL_ORDER.get(n["level"], 9), n["label"])):
        parent = nodes.get(node["aligns_to"]) if node["aligns_to"] else None
        if parent is not None and parent is not node:
            parent["children"].append(node)
        elif node["level"] == "company" or node["aligns_to"] is None:
            roots.append(node)
        else:
            orphans.append(node)  # aligns to an objective this cycle does not have
    return {"cycle": cycle, "cycles": known, "roots": roots, "orphans": orphans}


def _objective_node(data, key, kr, newest, titles, names) -> dict:  # noqa: ANN001
    recorded = newest.loc[key] if key in newest.index else None
    aligns = None if recorded is None else recorded.get("aligns_to")
    aligns = (
        None if aligns is None or (isinstance(aligns, float) and math.isnan(aligns)) else aligns
    )
    return {
        "objective": key,
        "title": titles.get(key, {}).get("title") or (recorded["title"] if recorded is not None else key),
        "owner": owner_text(titles.get(key, {}).get("owner"), names),
        "level": kr["level"], "team": kr["team"], "team_label": team_name(data, kr["team"]),
        "ambition": kr["ambition"], "aligns_to": aligns, "label": f"{team_name(data, kr['team'])} {key}",
        "key_results": [], "children": [],
    }  # fmt: skip

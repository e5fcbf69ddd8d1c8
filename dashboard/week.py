"""The team's week on the dashboard: check-ins, what moved since last week, sparklines, alignment."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
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
from okr_store.weekly import store_version, values_on_days, weekly_days

log = logging.getLogger(__name__)
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
        "week": week,
        "week_label": week_label(week),
        "week_end": week_end(week),
        "confidence": int(row["confidence"]),
        "confidence_text": confidence_label(int(row["confidence"])),
        "progress": row.get("progress") or "",
        "problems": row.get("problems") or "",
        "next_steps": row.get("next_steps") or "",
        "author": row.get("author"),
        "value": value,
        "value_as_of": row.get("value_as_of"),
        "value_text": format_value(value, metric, unit)
        if metric
        else ("—" if value is None else f"{value:,.2f}"),
        "revision": int(row.get("revision") or 1),
        "updated_at": row.get("updated_at"),
    }


def confidence_options() -> list[dict]:
    return [{"value": k, "label": f"{k} · {v}"} for k, v in CONFIDENCE_LABELS.items()]


def kr_check_in_history(
    data: views.DashboardData,
    cycle: str,
    kr: dict,
    cycle_dates: tuple[dt.date, dt.date] | None | bool = False,
) -> dict:
    """A KR's check-in history (newest first) and its chart markers: what the store alone
    decides (`cycle_dates`: views.cycle_dates when the caller already has them)."""
    rows = check_ins(data).check_ins(cycle=cycle, kr=kr["kr"])
    history = [_check_in_record(r, kr["metric"], kr.get("unit")) for r in rows.to_dict("records")][
        ::-1
    ]
    return {
        "history": history,
        "cycle_dates": views.cycle_dates(data, cycle) if cycle_dates is False else cycle_dates,
        # Marker per check-in on the chart: the day its value was measured.
        "markers": [
            {
                "x": int(pd.Timestamp(c["value_as_of"]).timestamp()),
                "value": c["value"],
                "label": f"{c['week_label']}: confidence {c['confidence_text']}",
            }
            for c in history
            if c["value_as_of"] is not None and c["value"] is not None
        ],
    }


def kr_check_ins_today(data: views.DashboardData, cycle: str, stored: dict) -> dict:
    """kr_check_in_history plus what depends on today: this week's check-in, the form's week
    and whether the cycle still takes check-ins."""
    today = org_today(data)
    this_week = week_start(today)
    history, dates = stored["history"], stored["cycle_dates"]
    return {
        **stored,
        "open": dates is None or this_week <= dates[1],
        "this_week": next((c for c in history if c["week"] == this_week), None),
        "week_label": week_label(today),
        "week_end": week_end(today),
        "today": today,
        "options": confidence_options(),
    }


# --- the KR page -----------------------------------------------------------------------------

KR_PAGE_CACHE_SIZE = 256
_kr_page_cache: OrderedDict[tuple, dict] = OrderedDict()
_kr_page_lock = threading.Lock()


_kr_basis: OrderedDict[tuple, tuple] = OrderedDict()
_warming: dict[tuple, bool] = {}


def _cycle_basis(data: views.DashboardData, version: tuple, cycle: str) -> tuple:
    """(cycles(), the cycle's kr_charts) read once per store change for all its KR pages."""
    key = (version, cycle, id(data))
    with _kr_page_lock:
        found = _kr_basis.get(key)
    if found is None:
        found = (views.cycles(data), data.store.kr_charts(cycle))
        with _kr_page_lock:
            _kr_basis[key] = found
            while len(_kr_basis) > 8:
                _kr_basis.popitem(last=False)
    return found


def _build_kr_page(data: views.DashboardData, cycle: str, kr: str, key: tuple) -> dict:
    known, pages = _cycle_basis(data, key[0], cycle)
    history = data.store.cycle_history(cycle, kr=kr)
    detail = views.kr_detail(data, cycle, kr, known=known, history=history, pages=pages)
    dates = None if pages.empty else (pages["cycle_start"].iloc[0], pages["cycle_end"].iloc[0])
    page = pages[pages["kr"] == kr]
    definition = page["definition"].iloc[0] if not page.empty else None
    basis = (definition.get("basis") or "count") if isinstance(definition, dict) else "count"
    return {
        "key": key,
        "cycles": known,
        "detail": detail,
        "records": views.drilldown(
            data, cycle, kr, history=history, basis=basis, owner_names=owner_names(data)
        ),
        "check_ins": kr_check_in_history(data, cycle, detail["kr"], dates),
        "cycle_last": next((c["last_day"] for c in known if c["cycle"] == cycle), None),
        # The app's renderings of this model (dashboard/app.py): the page's HTML per way of
        # showing it, and this week's check-in form per day; kept as long as the model.
        "html": {},
        "forms": {},
    }


def warm_kr_pages(
    data: views.DashboardData,
    cycle: str,
    version: tuple,
    render: Callable[[dict], None] | None = None,
) -> int:
    """Build every KR page of `cycle` the store has under `version` (the first view of one
    after a store change starts this in a thread when data.warm_kr_pages is set, as `krpulse
    serve` does): so each page is computed once per store change, not on its first view.
    `render` (the app's, given a stored model) renders its default view's HTML too, so the
    first view of a page only fills in what depends on the clock.
    Stops when the store changes meanwhile; returns the pages built."""
    built = 0
    for kr in _cycle_basis(data, version, cycle)[1]["kr"]:
        key = (version, cycle, kr, id(data))
        with _kr_page_lock:
            model = _kr_page_cache.get(key)
        if store_version(data.store.engine) != version:
            break
        try:
            if model is None:
                model = _build_kr_page(data, cycle, kr, key)
                with _kr_page_lock:
                    model = _kr_page_cache.setdefault(key, model)
                    while len(_kr_page_cache) > KR_PAGE_CACHE_SIZE:
                        _kr_page_cache.popitem(last=False)
                built += 1
            if render is not None:
                render(model)
        except views.NotFound:
            continue
        except Exception:  # the page is then built by its first request, which shows the error
            log.exception("building the KR page %s/%s in the background failed", cycle, kr)
            break
    return built


def cached_kr_page(
    data: views.DashboardData,
    cycle: str,
    kr: str,
    render: Callable[[dict], None] | None = None,
) -> dict:
    """The KR page's model — detail and chart, drill-down, check-in history — built once per
    store change (kept under the store's version, like cached_overview) and completed per
    request with what depends on the clock: the KR's freshness and this week's check-in.
    "stored" is the model as built, without those (what the page's cached HTML is made of).
    `render` is handed to the background warming (warm_kr_pages).

    The key is read before the store, so a model is never older than its key. Raises
    views.NotFound as kr_detail does (not cached: the next write may add the KR).
    """
    version = store_version(data.store.engine)
    key = (version, cycle, kr, id(data))
    with _kr_page_lock:
        stored = _kr_page_cache.get(key)
        if stored is not None:
            _kr_page_cache.move_to_end(key)
    if stored is None:
        stored = _build_kr_page(data, cycle, kr, key)
        with _kr_page_lock:
            _kr_page_cache[key] = stored
            while len(_kr_page_cache) > KR_PAGE_CACHE_SIZE:
                _kr_page_cache.popitem(last=False)
            start_warming = data.warm_kr_pages and (version, cycle, id(data)) not in _warming
            if start_warming:
                _warming[(version, cycle, id(data))] = True
                while len(_warming) > 16:
                    _warming.pop(next(iter(_warming)))
        if start_warming:
            threading.Thread(
                target=warm_kr_pages,
                args=(data, cycle, version, render),
                daemon=True,
                name=f"krpulse-warm-{cycle}",
            ).start()
    detail = stored["detail"]
    return {
        **stored,
        "detail": {**detail, "kr": views.refresh_kr(detail["kr"], data, stored["cycle_last"])},
        "check_ins": kr_check_ins_today(data, cycle, stored["check_ins"]),
        "stored": stored,
    }


# --- the overview ----------------------------------------------------------------------------

OVERVIEW_CACHE_SIZE = 64
_overview_cache: OrderedDict[tuple, dict] = OrderedDict()
_overview_lock = threading.Lock()


def cached_overview(data: views.DashboardData, cycle: str | None, team: str | None) -> dict:
    """The overview with its week (views.overview + enrich_overview), built once per store
    change: kept under the store's version, the definitions loaded, the page's filters and the
    minute (freshness reads "synced 3 h ago"), so a request between writes only renders."""
    key = (
        store_version(data.store.engine),
        cycle,
        team,
        data.now().replace(second=0, microsecond=0),
        id(data),
    )
    with _overview_lock:
        if key in _overview_cache:
            _overview_cache.move_to_end(key)
            return _overview_cache[key]
    model = enrich_overview(data, views.overview(data, cycle, team))
    with _overview_lock:
        _overview_cache[key] = model
        while len(_overview_cache) > OVERVIEW_CACHE_SIZE:
            _overview_cache.popitem(last=False)
    return model


def sparkline(values: np.ndarray) -> str:
    """SVG polyline points for an evenly spaced series (NaN gaps skipped), scaled to its range."""
    known = np.flatnonzero(~np.isnan(values))
    if len(known) < 2:
        return ""
    points = values[known]
    low, high = points.min(), points.max()
    span = (high - low) or 1.0
    xs = SPARK_WIDTH * known / max(len(values) - 1, 1)
    ys = SPARK_HEIGHT - 2 - (SPARK_HEIGHT - 4) * (points - low) / span
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))


def series_by_kr(history: pd.DataFrame, days: list[dt.date]) -> dict[str, np.ndarray]:
    """Each KR's values on `days` (NaN where not stored), in one pass over the frame."""
    if history.empty:
        return {}
    column = {day: i for i, day in enumerate(days)}
    krs = history["kr"].to_numpy()
    cols = history["as_of"].map(column).to_numpy()
    values = pd.to_numeric(history["value"], errors="coerce").to_numpy(dtype=float)
    names, rows = np.unique(krs, return_inverse=True)
    grid = np.full((len(names), len(days)), np.nan)
    known = ~pd.isna(cols)
    grid[rows[known], cols[known].astype(int)] = values[known]
    return dict(zip(names, grid, strict=True))


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
    history, days = pd.DataFrame(columns=["kr", "as_of", "value"]), []
    if as_of:
        first_day = (model["dates"] or (None,))[0] or min(
            c["first_day"] for c in model["cycles"] if c["cycle"] == cycle
        )
        # A point a week or so (the same weekday as the newest day) draws the cycle so far;
        # with the day a week ago it gives the change since then, in one indexed read.
        days = weekly_days(first_day, as_of)
        wanted = sorted(set(days) | {as_of - dt.timedelta(days=7)})
        history = values_on_days(
            data.store.engine, cycle, wanted, team=model["team"], with_company=True
        )
    changes = (
        dict(
            zip(*weekly_changes(history, as_of)[["kr", "value_week_ago"]].T.to_numpy(), strict=True)
        )
        if as_of
        else {}
    )
    series = series_by_kr(history[history["as_of"].isin(days)], days)
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
    model["teams_known"] = (
        _teams_known(data, cycle)
        if model["team"]
        else [{"team": s["team"], "label": s["label"]} for s in model["teams"] if s["team"]]
    )
    if model["team"]:
        kpis = data.store.kpi_values(as_of=as_of)
        kpis = kpis[kpis["team"].isna() | (kpis["team"] == model["team"])]
        model["kpis"] = views._kpi_records(kpis, data)
    return model


def _enrich_kr(kr: dict, latest: dict, changes: dict, series: dict, this_week) -> int:
    check_in = latest.get(kr["kr"])
    kr["check_in"] = _check_in_record(check_in, kr["metric"], kr["unit"]) if check_in else None
    kr["checked_in"] = bool(check_in) and check_in["week"] == this_week
    before = number(changes.get(kr["kr"]))
    kr["value_week_ago"] = before
    kr["change_text"] = change_text(kr["value"], before, kr["metric"], kr["unit"])
    kr["change_direction"] = (
        "none"
        if before is None or kr["value"] is None or kr["value"] == before
        else ("up" if kr["value"] > before else "down")
    )
    kr["sparkline"] = sparkline(series[kr["kr"]]) if kr["kr"] in series else ""
    # The ± is the value's own margin of error (shown with the value); the forecast beside it
    # is the stored end-of-cycle projection.
    kr["forecast_margin_text"] = (
        "too early" if kr.get("forecast_value") is None else kr["forecast_text"]
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
        "cycle": cycle,
        "cycles": known,
        "team": team,
        "team_label": team_name(data, team),
        "week_label": week_label(today),
        "week_end": week_end(today),
        "today": today,
        "key_results": krs,
        "options": confidence_options(),
        "teams_known": _teams_known(data, cycle),
    }


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
        "title": titles.get(key, {}).get("title")
        or (recorded["title"] if recorded is not None else key),
        "owner": owner_text(titles.get(key, {}).get("owner"), names),
        "level": kr["level"],
        "team": kr["team"],
        "team_label": team_name(data, kr["team"]),
        "ambition": kr["ambition"],
        "aligns_to": aligns,
        "label": f"{team_name(data, kr['team'])} {key}",
        "key_results": [],
        "children": [],
    }

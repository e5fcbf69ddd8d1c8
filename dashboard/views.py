"""What the pages and the API show, read from the OKR store only: the daily rows, and what the
daily flow precomputed for the KR pages (chart basis, drill-down records). No engine runs here."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from core.numbers import is_missing, json_value
from kr_metrics.display import (  # noqa: F401 - format_* re-exported for templates
    SHOWN_DECIMALS,
    format_percent,
    format_value,
    is_uncertain,
    label,
    number,
    numbers_in_words,
    pace_text,
    shown_status,
    value_with_margin,
)
from okr_store.repository import OkrStore

STATUS_ORDER = ["off_track", "at_risk", "stale", "low_sample", "no_data", "on_track"]
status_label = label  # one wording of statuses and verdicts (kr_metrics.display)


COMPANY = "Company"


@dataclass
class DashboardData:
    """Everything the dashboard reads: the OKR store, and settings of how to show it."""

    store: OkrStore
    record_links: dict[str, dict[str, str]] = field(default_factory=dict)
    stale_after: dt.timedelta = dt.timedelta(hours=36)
    moonshot_success: float = 0.7
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    # The organisation's timezone (which day it is for a check-in), team display names from
    # dashboard.team_names, and the public address links in the digest point at.
    timezone: str = "UTC"
    team_names: dict[str, str] = field(default_factory=dict)
    public_url: str | None = None
    # Build all of a cycle's KR pages in a background thread after a store change, on the
    # first view of one (dashboard.week.warm_kr_pages); `krpulse serve` sets it.
    warm_kr_pages: bool = False
    # The currency records' home amounts are in (the drill-down's "Amount (EUR)").
    reporting_currency: str | None = None


class NotFound(LookupError):
    """A cycle or KR the store does not know."""


# --- formatting ---------------------------------------------------------------------------------


def team_label(team: Any) -> str:
    return COMPANY if is_missing(team) else str(team)


def _timestamp(value: Any) -> dt.datetime | None:
    if is_missing(value):
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
        {
            "cycle": r.cycle,
            "first_day": r.first_day,
            "last_day": r.last_day,
            "key_results": int(r.key_results),
        }
        for r in frame.itertuples()
    ]


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


def _pages(data: DashboardData, cycle: str) -> pd.DataFrame:
    """The KR pages the daily flow stored for `cycle` (kr_charts), one row per KR."""
    return data.store.kr_charts(cycle)


def cycle_dates(data: DashboardData, cycle: str) -> tuple[dt.date, dt.date] | None:
    pages = _pages(data, cycle)
    if pages.empty:
        return None
    return pages["cycle_start"].iloc[0], pages["cycle_end"].iloc[0]


def _page(
    data: DashboardData, cycle: str, kr: str, pages: pd.DataFrame | None = None
) -> dict | None:
    pages = _pages(data, cycle) if pages is None else pages
    found = pages[pages["kr"] == kr]
    return found.iloc[0].to_dict() if len(found) else None


def objective_titles(data: DashboardData, cycle: str) -> dict[str, dict]:
    pages = _pages(data, cycle).drop_duplicates("objective")
    return {
        row.objective: {"title": row.objective_title, "owner": json_value(row.objective_owner)}
        for row in pages.itertuples()
    }


# --- key results --------------------------------------------------------------------------------


def _kr_records(
    frame: pd.DataFrame, data: DashboardData, cycle_last_day: dt.date | None
) -> list[dict]:
    now = data.now()
    out = []
    for row in frame.to_dict("records"):
        synced = _timestamp(row.get("data_synced_at"))
        reasons = _stale_reasons(row, synced, now, data.stale_after, cycle_last_day)
        metric, unit = row["metric"], row.get("unit")
        unit = None if is_missing(unit) else unit
        grade, expected = number(row.get("grade")), number(row.get("expected_progress"))
        shown = shown_status(row)
        reason = row.get("status_reason") if isinstance(row.get("status_reason"), str) else None
        out.append(
            {
                "cycle": row["cycle"],
                "objective": row["objective"],
                "kr": row["kr"],
                "title": row["title"],
                "team": None if team_label(row.get("team")) == COMPANY else row["team"],
                "level": row["level"],
                "ambition": row["ambition"],
                "metric": metric,
                "unit": unit,
                "value": number(row.get("value")),
                "baseline": number(row.get("baseline")),
                "target": number(row.get("target")),
                "progress": number(row.get("progress")),
                "grade": grade,
                "expected_progress": expected,
                "status": row["status"],
                "sample_size": int(row.get("sample_size") or 0),
                "as_of": row["as_of"],
                "data_synced_at": synced,
                "stale": bool(reasons),
                "stale_reasons": reasons,
                "stale_reason": row["stale_reason"]
                if isinstance(row.get("stale_reason"), str)
                else None,
                "definition_version": row.get("definition_version"),
                "forecast_value": number(row.get("forecast_value")),
                "forecast_grade": number(row.get("forecast_grade")),
                "margin_of_error": number(row.get("margin_of_error")),
                "start_value": number(row.get("start_value")),
                "expected_value": number(row.get("expected_value")),
                "metric_kind": row.get("metric_kind"),
                "verdict": row.get("verdict") or None,
                "shown_status": shown,
                "status_reason": reason,
                "uncertain": is_uncertain(reason),
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
        )
    return out


def _stale_reasons(
    row: dict,
    synced: dt.datetime | None,
    now: dt.datetime,
    stale_after: dt.timedelta,
    cycle_last_day: dt.date | None,
) -> list[str]:
    reasons = []
    if row.get("status") == "stale" and row.get("stale_reason"):
        reasons.append(str(row["stale_reason"]))
    if synced is None or now - synced > stale_after:
        reasons.append(f"source data synced {age_text(synced, now)}")
    if cycle_last_day is not None and row["as_of"] < cycle_last_day:
        # How long, not only since when: "as of 2026-11-25" beside "since 2026-11-25" would
        # otherwise read as the same, fresh day.
        days = (cycle_last_day - row["as_of"]).days
        which = "today" if cycle_last_day >= now.date() else "the cycle's last day"
        reasons.append(
            f"no numbers since {row['as_of']} ({days} day{'s' * (days != 1)} "
            f"before {cycle_last_day}, {which})"
        )
    return reasons


def refresh_kr(kr: dict, data: DashboardData, cycle_last_day: dt.date | None) -> dict:
    """`kr` (a _kr_records row) with what depends on the clock recomputed: its freshness and
    stale reasons. What a cached page shows "now" without rebuilding it."""
    now = data.now()
    synced = kr["data_synced_at"]
    reasons = _stale_reasons(kr, synced, now, data.stale_after, cycle_last_day)
    return {
        **kr,
        "stale": bool(reasons),
        "stale_reasons": reasons,
        "freshness_text": age_text(synced, now),
    }


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
        section = teams.setdefault(
            label,
            {
                "team": kr["team"],
                "label": label,
                "objectives": {},
                "counts": dict.fromkeys(STATUS_ORDER, 0),
            },
        )
        objective = section["objectives"].setdefault(
            kr["objective"],
            {
                "objective": kr["objective"],
                "ambition": kr["ambition"],
                "level": kr["level"],
                "title": titles.get(kr["objective"], {}).get("title") or kr["objective"],
                "owner": titles.get(kr["objective"], {}).get("owner"),
                "key_results": [],
            },
        )
        objective["key_results"].append(kr)
        section["counts"][kr["shown_status"]] = section["counts"].get(kr["shown_status"], 0) + 1
    ordered = sorted(teams.values(), key=lambda s: (s["team"] is not None, s["label"]))
    for section in ordered:
        section["objectives"] = list(section["objectives"].values())
    kpis = data.store.kpi_values(as_of=last_day, team=team)
    return {
        "cycle": cycle,
        "cycles": known,
        "team": team,
        "as_of": last_day,
        "dates": cycle_dates(data, cycle),
        "teams": ordered,
        "kpis": _kpi_records(kpis, data),
        "key_result_count": len(krs),
    }


def _kpi_records(kpis: pd.DataFrame, data: DashboardData) -> list[dict]:
    now = data.now()
    out = []
    for row in kpis.to_dict("records"):
        synced = _timestamp(row.get("data_synced_at"))
        low, high = number(row.get("healthy_min")), number(row.get("healthy_max"))
        out.append(
            {
                "kpi": row["kpi"],
                "title": row["title"],
                "team": row.get("team"),
                "metric": row["metric"],
                "value": number(row.get("value")),
                "healthy_min": low,
                "healthy_max": high,
                "health": row["health"],
                "sample_size": int(row.get("sample_size") or 0),
                "as_of": row["as_of"],
                "data_synced_at": synced,
                "value_text": format_value(row.get("value"), row["metric"]),
                "range_text": f"{format_value(low, row['metric']) if low is not None else ''} – "
                f"{format_value(high, row['metric']) if high is not None else ''}",
                "health_label": status_label(row["health"]),
                "freshness_text": age_text(synced, now),
            }
        )
    return out


def kr_detail(
    data: DashboardData,
    cycle: str,
    kr: str,
    *,
    known: list[dict] | None = None,
    history: pd.DataFrame | None = None,
    pages: pd.DataFrame | None = None,
) -> dict:
    """One KR: its latest numbers, daily history, expected path, forecast and definition.

    `known` (cycles()), `history` and `pages` (the cycle's kr_charts) may be passed in when the
    caller already read them.
    """
    history = data.store.cycle_history(cycle, kr=kr) if history is None else history
    if history.empty:
        raise NotFound(f"no key result '{kr}' in cycle '{cycle}'")
    known = cycles(data) if known is None else known
    cycle_last = next((c["last_day"] for c in known if c["cycle"] == cycle), None)
    latest = _kr_records(history.tail(1), data, cycle_last)[0]
    page = _page(data, cycle, kr, pages)
    start = page["cycle_start"] if page else history["as_of"].min()
    end = page["cycle_end"] if page else history["as_of"].max()
    chart = _chart(data, history, latest, start, end, page)
    return {
        "kr": latest,
        "cycle": cycle,
        "start": start,
        "end": end,
        "chart": chart,
        "objective_title": page["objective_title"] if page else latest["objective"],
        "definition": _definition(page, latest),
        "history": [
            {
                "as_of": r["as_of"],
                "value": number(r["value"]),
                "value_text": format_value(r["value"], latest["metric"], latest["unit"]),
                "progress_text": format_percent(r["progress"]),
                "expected_text": format_percent(r["expected_progress"]),
                "status": r["status"],
                "status_label": status_label(r["status"]),
            }
            for r in history.to_dict("records")
        ],
        "forecast": chart["forecast_summary"],
    }


def _chart(
    data: DashboardData,
    history: pd.DataFrame,
    latest: dict,
    start: dt.date,
    end: dt.date,
    page: dict | None,
) -> dict:
    """Aligned daily series for the chart: value, expected path, forecast (null where none)."""
    days = pd.date_range(start, end, freq="D")
    values = (
        history.assign(day=pd.to_datetime(history["as_of"])).set_index("day")["value"].reindex(days)
    )
    baseline, target = latest["baseline"], latest["target"]
    start_at = latest["start_value"] if latest["start_value"] is not None else baseline
    success = (
        page["success_grade"]
        if page
        else (data.moonshot_success if latest["ambition"] == "moonshot" else 1.0)
    )
    expected_share = pd.Series(
        history.assign(day=pd.to_datetime(history["as_of"]))
        .set_index("day")["expected_progress"]
        .reindex(days)
    )
    # Stored days keep the expected progress they were scored with (milestones included); the
    # days still ahead follow the scoring's linear path to the cycle end (stored by the flow).
    if page and len(page["expected_path"]) == len(days):
        linear = pd.Series(page["expected_path"], index=days, dtype="float64")
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
            "projected_progress": progress,
            "projected_progress_text": format_percent(progress),
            "reaches_success": progress is not None and round(progress, SHOWN_DECIMALS) >= success,
        }

    def series(s: pd.Series | None) -> list[float | None]:
        if s is None:
            return [None] * len(days)
        return [number(v) for v in s.to_numpy()]

    return {
        "x": [int(d.timestamp()) for d in days],
        "value": series(values),
        "expected": series(expected_values),
        "forecast": series(forecast_values),
        "target": target,
        "baseline": baseline,
        "metric": latest["metric"],
        "unit": (page or {}).get("unit") or "",
        "title": latest["title"],
        "forecast_summary": summary,
        "start": start_at,
    }


def _definition(page: dict | None, latest: dict) -> dict:
    """The KR's definition as the flow stored it with its page (None: no longer defined)."""
    result = {
        "metric": latest["metric"],
        "formula": (page or {}).get("formula") or "",
        "filters": {},
        "window": "cycle",
        "baseline_text": latest["baseline_text"],
        "target_text": latest["target_text"],
        "target_expression": None,
        "milestones": [],
        "current": page is not None,
        "version": latest["definition_version"],
    }
    if page is not None:
        definition = page["definition"]
        result["filters"] = dict(definition.get("where") or {})
        result["window"] = definition.get("window", "cycle")
        if isinstance(definition.get("target"), str):
            result["target_expression"] = definition["target"]
        result["milestones"] = [
            {
                "date": dt.date.fromisoformat(m["date"]),
                "target_text": format_value(m["target"], latest["metric"], latest["unit"]),
            }
            for m in definition.get("milestones") or []
        ]
    return result


# --- drill-down ---------------------------------------------------------------------------------


def drilldown(
    data: DashboardData,
    cycle: str,
    kr: str,
    *,
    limit: int | None = None,
    history: pd.DataFrame | None = None,
    owner_names: dict[str, str] | None = None,
    basis: str = "count",
) -> dict:
    """The staged records behind the KR's latest stored number, with links into their CRM, the
    owners' names (`owner_names`: ids to names) and the formula's inputs in words; every stored
    record, or the newest `limit`."""
    history = data.store.cycle_history(cycle, kr=kr) if history is None else history
    if history.empty:
        raise NotFound(f"no key result '{kr}' in cycle '{cycle}'")
    row = history.iloc[-1]
    empty = {
        "available": False,
        "as_of": row["as_of"],
        "records": [],
        "total": 0,
        "shown": 0,
        "entity": None,
    }
    stored = data.store.drilldown(cycle, kr, as_of=row["as_of"])
    if stored is None:
        return {
            **empty,
            "reason": "no records stored for this KR yet: the next `krpulse run` stores them",
        }
    if stored["reason"]:
        return {**empty, "reason": stored["reason"]}
    # The flow stored the records from the engine's own explanation of the number: the same
    # window, filters and events, so the records and the number cannot disagree.
    records = stored["records"]
    shown = records if limit is None else records[:limit]
    value, number_stored = number(stored["value"]), number(row["value"])
    matches = (value is None and number_stored is None) or (
        value is not None
        and number_stored is not None
        and math.isclose(value, number_stored, rel_tol=1e-6)
    )
    unit = row.get("unit")
    return {
        "available": True,
        "as_of": row["as_of"],
        "entity": stored["entity"],
        "window_start": stored["window_start"],
        "window_end": stored["window_end"],
        "total": int(stored["total"]),
        "shown": len(shown),
        "currency": data.reporting_currency or unit,
        "value_text": format_value(value, row["metric"], unit),
        # The stored number's own inputs (its progress row), said in words.
        "numbers_text": numbers_in_words(
            row["metric"], row.get("numerator"), row.get("denominator"), unit, basis=basis
        ),
        "matches_stored": matches,
        "sample_size": stored["sample_size"],
        "records": _record_rows(pd.DataFrame(shown), data.record_links, owner_names or {}),
    }


# The drill-down table's columns per entity: (sort key, plain header, numeric). The page sorts
# and pages the stored records on the server, through links (no script: the CSP allows none
# inline, and the page works without any).
RECORD_TABLE_COLUMNS = {
    "deals": [
        ("deal", "Deal", False),
        ("name", "Name", False),
        ("customer", "Customer", False),
        ("owner", "Owner", False),
        ("outcome", "Outcome", False),
        ("amount", "Amount", True),
        ("day", "Counts on", False),
        ("adds", "Adds to the number", True),
    ],
    "nps_responses": [
        ("response", "Response", False),
        ("customer", "Customer", False),
        ("score", "Score", True),
        ("day", "Submitted", False),
        ("comment", "Comment", False),
    ],
}
RECORDS_PER_PAGE = 25
# The stored order (newest first) is the default; numbers and days sort largest/newest first.
DEFAULT_RECORD_SORT = ("day", "desc")


def _sort_value(record: dict, key: str) -> Any:
    if key in ("deal", "response"):
        return str(record["record_id"])
    if key == "customer":
        text = record.get("customer_name") or record.get("customer_id")
        return None if text is None else str(text).lower()
    if key == "owner":
        return None if record.get("owner") is None else str(record["owner"]).lower()
    if key in ("name", "comment", "outcome"):
        text = record.get(key)
        return None if not text else str(text).lower()
    return {
        "amount": record.get("amount_home"),
        "adds": record.get("contribution"),
        "score": record.get("score"),
        "day": record.get("day"),
    }.get(key)


def parse_record_view(entity: str | None, sort: Any, order: Any, page: Any) -> tuple[str, str, int]:
    """The drill-down's (sort, order, page) from query parameters: anything unknown falls back
    to the default, so the key a page is cached under only takes known values."""
    keys = [c[0] for c in RECORD_TABLE_COLUMNS.get(entity or "", [])]
    sort = sort if sort in keys else DEFAULT_RECORD_SORT[0]
    if order not in ("asc", "desc"):
        order = _default_order(entity, sort)
    try:
        number_page = max(1, int(str(page)))
    except ValueError:
        number_page = 1
    return sort, order, number_page


def _default_order(entity: str | None, sort: str) -> str:
    numeric = {c[0]: c[2] for c in RECORD_TABLE_COLUMNS.get(entity or "", [])}
    return "desc" if numeric.get(sort) or sort == "day" else "asc"


def records_page(
    drill: dict, sort: str, order: str, page: int, per_page: int = RECORDS_PER_PAGE
) -> dict:
    """One page of `per_page` of the drill-down's records sorted by `sort` (`order`; records
    without a value last either way), with the header links and the pager."""
    records = drill["records"]
    present = [r for r in records if _sort_value(r, sort) is not None]
    missing = [r for r in records if _sort_value(r, sort) is None]
    # The stored order (newest first, then by id) breaks ties: sorted() is stable.
    present.sort(key=lambda r: _sort_value(r, sort), reverse=order == "desc")
    ordered = present + missing
    per_page = max(1, per_page)
    pages = max(1, math.ceil(len(ordered) / per_page))
    page = min(page, pages)
    first = (page - 1) * per_page
    columns = [
        {
            "key": key,
            "header": header
            + (f" ({drill['currency']})" if key == "amount" and drill.get("currency") else ""),
            "numeric": numeric,
            "sorted": order if key == sort else None,
            "next_order": ("asc" if order == "desc" else "desc")
            if key == sort
            else _default_order(drill["entity"], key),
        }
        for key, header, numeric in RECORD_TABLE_COLUMNS.get(drill["entity"] or "", [])
    ]
    return {
        "rows": ordered[first : first + per_page],
        "columns": columns,
        "sort": sort,
        "order": order,
        "page": page,
        "pages": pages,
        "first": first + 1 if ordered else 0,
        "last": min(first + per_page, len(ordered)),
        "count": len(ordered),
    }


def _record_rows(
    records: pd.DataFrame, links: dict[str, dict[str, str]], owner_names: dict[str, str]
) -> list[dict]:
    out = []
    for record in records.to_dict("records"):
        entity = record["entity"]
        template = links.get(str(record["source"]), {}).get(entity)
        customer_template = links.get(str(record["source"]), {}).get("customers")
        customer_id = record.get("customer_id")
        has_customer = customer_id is not None and not pd.isna(customer_id)
        out.append(
            {
                **{k: json_value(v) for k, v in record.items()},
                "url": template.replace("{id}", quote(str(record["record_id"]), safe=""))
                if template
                else None,
                "customer_url": customer_template.replace("{id}", quote(str(customer_id), safe=""))
                if customer_template and has_customer
                else None,
                # The owner's name from the staged owners (`O-06` reads as the person).
                "owner": _owner(record.get("owner_id"), owner_names),
                "outcome": _outcome(record),
            }
        )
    return out


def _owner(owner_id: Any, names: dict[str, str]) -> str | None:
    if owner_id is None or is_missing(owner_id) or owner_id == "":
        return None
    return names.get(str(owner_id), str(owner_id))


def _outcome(record: dict) -> str | None:
    won = record.get("is_won")
    if won is not None and not is_missing(won):
        return "won" if won else "lost"
    stage = record.get("stage")
    return None if stage is None or is_missing(stage) else f"open ({stage})"

"""The demo org's weekly check-ins: what its team leads said each week, from the stored numbers.

Each week of each demo cycle up to the demo's today, every KR gets a check-in on the Wednesday
(or the cycle's first day) from its team's lead, unless the lead skipped it that week (about one
in eight, so the dashboard shows the "no check-in" marker on real data). Confidence follows the
stored status and forecast; the notes quote the week's actual movement.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from core.checkins import make_check_in, make_retro_item, week_start
from kr_metrics.display import format_value
from okr_store.checkins import CheckInStore
from okr_store.repository import OkrStore

# Who runs each team's weekly meeting in the demo org (owners from connectors.demo_org).
DEMO_LEADS = {
    None: "Head of Sales",
    "sales-dach": "Lena Hoffmann",
    "sales-uk": "Olivia Hughes",
    "sales-us": "Emily Carter",
}
CHECK_IN_WEEKDAY = 2  # Wednesday: the demo teams meet mid-week
SKIP_SHARE = 0.12

# What a sales team lead says, by the kind of KR and how it is going.
_PROBLEMS = {
    ("win_rate", "off_track"): [
        "Two late-stage deals slipped to next quarter.",
        "Lost a reference deal to a competitor on price.",
    ],
    ("win_rate", "at_risk"): [
        "Procurement cycles are running long at two accounts.",
        "Too many deals stall after the demo.",
    ],
    ("nps", "off_track"): [
        "Detractors cite slow support responses.",
        "The onboarding backlog shows up in the scores.",
    ],
    ("nps", "at_risk"): [
        "Fewer survey responses than usual this week.",
        "Two detractors from the same account.",
    ],
    ("revenue", "off_track"): [
        "Renewals are coming in below list price.",
        "Upsell pipeline for the segment is thin.",
    ],
    ("revenue", "at_risk"): [
        "Two expansion deals wait for budget approval.",
        "One rep out sick; follow-ups are behind.",
    ],
}
_NEXT = {
    ("win_rate", "bad"): "Weekly deal review of every late-stage deal; adjust discount guidelines.",
    ("win_rate", "good"): "Keep qualifying hard; share the two wins' playbook in Monday's call.",
    ("nps", "bad"): "Call every detractor this week; agree a fix with customer success.",
    ("nps", "good"): "Ask this month's promoters for references.",
    ("revenue", "bad"): "Book QBRs with the top ten accounts before month end.",
    ("revenue", "good"): "Line up next month's renewals early.",
}


def _family(metric: str) -> str:
    return metric if metric in ("win_rate", "nps") else "revenue"


def _problems(pick: float, metric: str, status: str) -> str:
    options = _PROBLEMS.get((_family(metric), status))
    return options[int(pick * len(options))] if options else ""


def _next_steps(metric: str, status: str) -> str:
    return _NEXT[(_family(metric), "bad" if status in ("off_track", "at_risk") else "good")]


def _confidence(row: dict) -> int:
    status = row["status"]
    forecast = row.get("forecast_grade")
    if status == "on_track":
        return 5 if forecast is not None and not pd.isna(forecast) and forecast >= 1.1 else 4
    if status == "at_risk":
        return 3
    if status == "off_track":
        return 1 if (row.get("progress") or 0) < 0 else 2
    return 3


def _progress_note(row: dict, before: dict | None) -> str:
    metric, unit = row["metric"], row.get("unit")
    now = format_value(row["value"], metric, unit)
    if before is None or before.get("value") is None or pd.isna(before.get("value")):
        return f"Starting the cycle at {now}."
    was = format_value(before["value"], metric, unit)
    if now == was:
        return f"Flat at {now} this week."
    return f"From {was} to {now} since last week."


def seed_demo_check_ins(engine, cycles: list[str], today: dt.date, *, seed: int = 7) -> int:  # noqa: ANN001
    """Write the demo's check-ins for `cycles` up to `today`'s week; returns how many it wrote
    (none for a week and KR that already has one)."""
    store, check_ins = OkrStore(engine), CheckInStore(engine)
    rng = np.random.default_rng(seed)
    written = 0
    for cycle in cycles:
        history = store.cycle_history(cycle, end=today)
        if history.empty:
            continue
        first, last = min(history["as_of"]), max(history["as_of"])
        # A rerun of the demo leaves the check-ins it already wrote as they are (no new
        # versions in the audit trail).
        existing = check_ins.check_ins(cycle=cycle)
        done = set(zip(existing["kr"], existing["week"], strict=True))
        monday = week_start(first)
        previous_rows: dict[str, dict] = {}
        while monday <= last:
            day = max(first, min(monday + dt.timedelta(days=CHECK_IN_WEEKDAY), last))
            rows = history[history["as_of"] == day].to_dict("records")
            for row in rows:
                # Both draws happen for every row, so a rerun makes the same choices.
                skip, pick = rng.random(), rng.random()
                if skip < SKIP_SHARE and previous_rows:
                    continue
                if (row["kr"], week_start(day)) in done:
                    continue
                status = row["status"]
                made = make_check_in(
                    cycle=cycle,
                    kr=row["kr"],
                    day=day,
                    today=day,
                    confidence=_confidence(row),
                    progress=_progress_note(row, previous_rows.get(row["kr"])),
                    problems=_problems(pick, row["metric"], status),
                    next_steps=_next_steps(row["metric"], status),
                    author=DEMO_LEADS.get(
                        None if pd.isna(row.get("team")) else row["team"], "Head of Sales"
                    ),
                )
                at = dt.datetime.combine(day, dt.time(9, 30), dt.UTC)
                check_ins.record(made, on_day=day, now=at)
                written += 1
            previous_rows.update({r["kr"]: r for r in rows})
            monday += dt.timedelta(days=7)
    return written


# The demo's closed cycle had its retrospective: what the teams want to change in the process.
DEMO_RETRO = (
    ("Hold the weekly check-in on Monday morning, before pipeline calls", 4, 1),
    ("One named owner per KR instead of per objective", 4, 2),
    ("Post the digest in each team's channel, not by email", 3, 1),
    ("Agree NPS survey timing with customer success before the cycle", 3, 2),
    ("Rebuild the CRM stage model", 4, 5),
    ("Quarterly offsite to set KRs together", 2, 4),
)


def seed_demo_retro(engine, cycle: str) -> int:  # noqa: ANN001
    """The demo's retrospective of `cycle`, once (a rerun of the demo adds nothing)."""
    store = CheckInStore(engine)
    if store.retro_items(cycle):
        return 0
    for text, benefit, effort in DEMO_RETRO:
        store.add_retro_item(
            make_retro_item(
                cycle=cycle, text=text, benefit=benefit, effort=effort, author="Head of Sales"
            )
        )
    return len(DEMO_RETRO)

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

_PROBLEMS = {
    "off_track": [
        "Two late-stage deals slipped to next quarter.",
        "Pipeline for the segment is thinner than planned.",
        "Lost a reference customer to a competitor on price.",
    ],
    "at_risk": [
        "Procurement cycles are running long at two accounts.",
        "Fewer survey responses than usual this week.",
        "One rep out sick; follow-ups are behind.",
    ],
    "on_track": ["", "", "Nothing blocking."],
}
_NEXT = {
    "off_track": [
        "Escalate the two stalled deals with the sponsor; weekly deal review with finance.",
        "Re-run the win/loss analysis and adjust discount guidelines.",
    ],
    "at_risk": [
        "Book QBRs with the top ten accounts before month end.",
        "Chase detractors from last month's survey personally.",
    ],
    "on_track": [
        "Keep the cadence; share the renewal playbook with the team.",
        "Line up next month's renewals early.",
    ],
}


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
    """Write the demo's check-ins for `cycles` up to `today`'s week; returns how many."""
    store, check_ins = OkrStore(engine), CheckInStore(engine)
    rng = np.random.default_rng(seed)
    written = 0
    for cycle in cycles:
        history = store.cycle_history(cycle, end=today)
        if history.empty:
            continue
        first, last = min(history["as_of"]), max(history["as_of"])
        monday = week_start(first)
        previous_rows: dict[str, dict] = {}
        while monday <= last:
            day = max(first, min(monday + dt.timedelta(days=CHECK_IN_WEEKDAY), last))
            rows = history[history["as_of"] == day].to_dict("records")
            for row in rows:
                if rng.random() < SKIP_SHARE and previous_rows:
                    continue
                status = row["status"] if row["status"] in _PROBLEMS else "at_risk"
                made = make_check_in(
                    cycle=cycle, kr=row["kr"], day=day, today=day,
                    confidence=_confidence(row),
                    progress=_progress_note(row, previous_rows.get(row["kr"])),
                    problems=str(rng.choice(_PROBLEMS[status])),
                    next_steps=str(rng.choice(_NEXT[status])),
                    author=DEMO_LEADS.get(None if pd.isna(row.get("team")) else row["team"],
                                          "Head of Sales"),
                )  # fmt: skip
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
            make_retro_item(cycle=cycle, text=text, benefit=benefit, effort=effort,
                            author="Head of Sales")
        )  # fmt: skip
    return len(DEMO_RETRO)

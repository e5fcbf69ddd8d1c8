"""The cycle's end: verdicts, the review report, and rolling definitions over into the next cycle."""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from core.checkins import confidence_label, week_label
from core.numbers import optional_float
from kr_metrics.definitions import _MONTH_KEY, _QUARTER_KEY, Cycle, DefinitionSet
from kr_metrics.display import format_percent, format_value
from kr_metrics.scoring import ACHIEVED, MISSED, PARTIALLY_ACHIEVED, ScoringPolicy, verdict


def is_closed(cycle: Cycle, today: dt.date, policy: ScoringPolicy = ScoringPolicy()) -> bool:
    """Final once the cycle has ended and its grace period for late CRM updates has passed."""
    return today > cycle.end + dt.timedelta(days=policy.grace_days)


def review(
    definitions: DefinitionSet,
    cycle_key: str,
    history: pd.DataFrame,
    kpi_history: pd.DataFrame,
    *,
    today: dt.date,
    policy: ScoringPolicy = ScoringPolicy(),
    changes: pd.DataFrame | None = None,
    check_ins: pd.DataFrame | None = None,
    retrospective: list[dict] | None = None,
) -> dict[str, Any]:
    """The review of one cycle from its stored daily rows: one dict, rendered by `render_review`.

    With `check_ins` (the store's weekly check-ins of the cycle) each KR carries its confidence
    week by week and the notes of its last check-in: why it ended where it did, in its owner's
    words. With `retrospective` (items ranked by core.checkins.quick_win_order) the report ends
    with the process changes and the quick wins the next cycle starts from.

    Per objective and KR: the final value, grade and verdict (the stored row of the cycle's last
    stored day, so the report matches the store), how the value moved (start, middle, end, low,
    high), whether it ever moved, and how far the mid-cycle forecast was off. KPIs over the same
    period come in their own section.
    """
    cycle = definitions.cycles.get(cycle_key)
    if cycle is None:
        known = ", ".join(sorted(definitions.cycles)) or "none"
        raise KeyError(f"no cycle '{cycle_key}' in the definitions (cycles: {known})")
    history = history.copy()
    history["as_of"] = pd.to_datetime(history["as_of"]).dt.date
    history = history[history["as_of"] <= cycle.end].sort_values(["kr", "as_of"])
    middle = cycle.start + dt.timedelta(days=(cycle.days - 1) // 2)
    objectives = []
    for loaded in (lo for lo in definitions.objectives if lo.cycle.key == cycle_key):
        objective = loaded.objective
        krs = []
        for kr in objective.key_results:
            rows = history[history["kr"] == kr.key]
            review_row = _kr_review(kr, rows, objective.ambition.value, middle, policy, changes)
            krs.append(review_row | _kr_check_ins(kr.key, check_ins))
        objectives.append(
            {
                "objective": objective.key,
                "title": objective.title,
                "level": objective.level.value,
                "team": objective.team,
                "ambition": objective.ambition.value,
                "owner": objective.owner,
                "key_results": krs,
                "average_grade": _mean([k["final_grade"] for k in krs]),
            }
        )
    errors = [k["forecast_error_pct"] for o in objectives for k in o["key_results"]]
    verdicts = [k["verdict"] for o in objectives for k in o["key_results"] if k["verdict"]]
    return {
        "cycle": cycle.key,
        "start": cycle.start.isoformat(),
        "end": cycle.end.isoformat(),
        "final": is_closed(cycle, today, policy),
        "grace_days": policy.grace_days,
        "objectives": objectives,
        "summary": {
            "key_results": sum(len(o["key_results"]) for o in objectives),
            ACHIEVED: verdicts.count(ACHIEVED),
            PARTIALLY_ACHIEVED: verdicts.count(PARTIALLY_ACHIEVED),
            MISSED: verdicts.count(MISSED),
            "never_moved": [
                k["kr"] for o in objectives for k in o["key_results"] if k["never_moved"]
            ],
            "forecast_error_pct_mid_cycle": _mean(errors),
        },
        "kpis": _kpi_review(kpi_history, cycle),
        "retrospective": list(retrospective or []),
        "quick_wins": [i["text"] for i in retrospective or [] if i.get("quick_win")],
    }


def _mean(values: list) -> float | None:
    numbers = [v for v in values if v is not None]
    return float(np.mean(numbers)) if numbers else None


def _kr_review(
    kr,
    rows: pd.DataFrame,
    ambition: str,
    middle: dt.date,
    policy: ScoringPolicy,
    changes: pd.DataFrame | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"kr": kr.key, "title": kr.title, "metric": kr.metric, "unit": kr.unit}
    if rows.empty:
        return out | {
            "final_value": None,
            "final_grade": None,
            "verdict": None,
            "baseline": None,
            "target": None,
            "start": None,
            "first_value": None,
            "mid_value": None,
            "low": None,
            "high": None,
            "never_moved": True,
            "forecast_mid_cycle": None,
            "forecast_error_pct": None,
            "days": 0,
            "last_day": None,
            "target_changes": [],
        }
    last = rows.iloc[-1]
    valued = rows[rows["value"].notna()]
    mid = rows[rows["as_of"] <= middle].tail(1)
    final_value = optional_float(last["value"])
    forecast = (
        optional_float(mid["forecast_value"].iloc[0])
        if "forecast_value" in rows and len(mid)
        else None
    )
    error = (
        abs(forecast - final_value) / abs(final_value)
        if forecast is not None and final_value not in (None, 0.0)
        else None
    )
    grades = rows["grade"].fillna(0.0)
    never_moved = bool(valued.empty or valued["value"].nunique() == 1 or (grades <= 0).all())
    kr_changes = []
    if changes is not None and not changes.empty:
        mine = changes[changes["kr"] == kr.key]
        kr_changes = json.loads(mine.to_json(orient="records", date_format="iso"))
    return out | {
        "baseline": optional_float(last["baseline"]),
        "target": optional_float(last["target"]),
        "final_value": final_value,
        "final_grade": optional_float(last["grade"]),
        "verdict": verdict(optional_float(last["grade"]), ambition, policy),
        "start": optional_float(last.get("start_value")),
        "first_value": optional_float(valued["value"].iloc[0]) if len(valued) else None,
        "mid_value": optional_float(mid["value"].iloc[0]) if len(mid) else None,
        "low": optional_float(valued["value"].min()) if len(valued) else None,
        "high": optional_float(valued["value"].max()) if len(valued) else None,
        "never_moved": never_moved,
        "forecast_mid_cycle": forecast,
        "forecast_error_pct": error,
        "days": int(len(rows)),
        "last_day": last["as_of"].isoformat(),
        "status": last.get("status"),
        "target_changes": kr_changes,
    }


def _kr_check_ins(kr: str, check_ins: pd.DataFrame | None) -> dict[str, Any]:
    """The KR's weekly check-ins, oldest first, and the last one's notes (why it ended there)."""
    if check_ins is None or check_ins.empty:
        return {"check_ins": [], "last_notes": None}
    mine = check_ins[check_ins["kr"] == kr].sort_values("week")
    rows = [
        {
            "week": week_label(r["week"]),
            "confidence": int(r["confidence"]),
            "confidence_text": confidence_label(int(r["confidence"])),
            "value": optional_float(r["value"]),
            "progress": r["progress"] or "",
            "problems": r["problems"] or "",
            "next_steps": r["next_steps"] or "",
            "author": r["author"],
        }
        for r in mine.to_dict("records")
    ]
    with_notes = [r for r in rows if r["progress"] or r["problems"] or r["next_steps"]]
    return {"check_ins": rows, "last_notes": with_notes[-1] if with_notes else None}


def _kpi_review(kpi_history: pd.DataFrame, cycle: Cycle) -> list[dict[str, Any]]:
    if kpi_history.empty:
        return []
    frame = kpi_history.copy()
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    frame = frame[(frame["as_of"] >= cycle.start) & (frame["as_of"] <= cycle.end)].sort_values(
        "as_of"
    )
    out = []
    for kpi, rows in frame.groupby("kpi", sort=True):  # one group per KPI
        valued = rows[rows["value"].notna()]
        out.append(
            {
                "kpi": kpi,
                "title": rows["title"].iloc[-1],
                "team": rows["team"].iloc[-1],
                "metric": rows["metric"].iloc[-1],
                "start_value": optional_float(valued["value"].iloc[0]) if len(valued) else None,
                "end_value": optional_float(valued["value"].iloc[-1]) if len(valued) else None,
                "low": optional_float(valued["value"].min()) if len(valued) else None,
                "high": optional_float(valued["value"].max()) if len(valued) else None,
                "unhealthy_days": int((rows["health"] == "unhealthy").sum()),
                "days": int(len(rows)),
            }
        )
    return out


# --- rendering ---------------------------------------------------------------------------------

VERDICT_LABEL = {
    ACHIEVED: "achieved",
    PARTIALLY_ACHIEVED: "partially achieved",
    MISSED: "missed",
    None: "—",
}


def _fmt(value: Any, metric: str | None = None) -> str:
    return format_value(value, metric or "")


_pct = format_percent


def review_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Review of {report['cycle']} ({report['start']} – {report['end']})", ""]
    if not report["final"]:
        lines += [
            f"> Provisional: the cycle is not closed yet (it closes {report['grace_days']} days "
            "after its end, once late CRM updates are in).",
            "",
        ]
    s = report["summary"]
    lines += [
        f"{s['key_results']} key results: {s[ACHIEVED]} achieved, {s[PARTIALLY_ACHIEVED]} partially "
        f"achieved, {s[MISSED]} missed. Mid-cycle forecast error: {_pct(s['forecast_error_pct_mid_cycle'])}.",
        "",
    ]
    if s["never_moved"]:
        lines += [f"Never moved: {', '.join(s['never_moved'])}.", ""]
    for objective in report["objectives"]:
        who = objective["team"] or "company"
        lines += [
            f"## {objective['title']} ({who}, {objective['ambition']})",
            f"Average grade {_pct(objective['average_grade'])}.",
            "",
            "| KR | baseline | start | target | first day | middle | end | grade | verdict | forecast at mid-cycle |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for kr in objective["key_results"]:
            m = kr["metric"]
            flag = " (never moved)" if kr["never_moved"] else ""
            lines.append(
                f"| {kr['title']}{flag} | {_fmt(kr['baseline'], m)} | {_fmt(kr.get('start'), m)} | {_fmt(kr['target'], m)} | "
                f"{_fmt(kr['first_value'], m)} | {_fmt(kr['mid_value'], m)} | {_fmt(kr['final_value'], m)} | "
                f"{_pct(kr['final_grade'])} | {VERDICT_LABEL[kr['verdict']]} | "
                f"{_fmt(kr['forecast_mid_cycle'], m)} (off by {_pct(kr['forecast_error_pct'])}) |"
            )
            for change in kr["target_changes"]:
                lines.append(
                    f"|  ↳ changed on {change.get('effective_from', '?')}: target "
                    f"{change.get('old_target')} → {change.get('new_target')}, baseline "
                    f"{change.get('old_baseline')} → {change.get('new_baseline')} | | | | | | | | | |"
                )
        lines.append("")
    lines += _check_in_lines(report)
    lines += _retrospective_lines(report)
    lines += ["## KPIs over the same period (standing health metrics, not graded)", ""]
    if report["kpis"]:
        lines += [
            "| KPI | start | end | low | high | unhealthy days |",
            "|---|---|---|---|---|---|",
        ]
        for kpi in report["kpis"]:
            m = kpi["metric"]
            lines.append(
                f"| {kpi['title']} | {_fmt(kpi['start_value'], m)} | {_fmt(kpi['end_value'], m)} | "
                f"{_fmt(kpi['low'], m)} | {_fmt(kpi['high'], m)} | {kpi['unhealthy_days']} of {kpi['days']} |"
            )
    else:
        lines.append("No KPI values stored for this period.")
    return "\n".join(lines) + "\n"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~])")


def _md(text: Any) -> str:
    """Text people typed (check-in notes, retrospective items) as literal Markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text).replace("\n", " "))


def _check_in_lines(report: dict[str, Any]) -> list[str]:
    krs = [kr for o in report["objectives"] for kr in o["key_results"] if kr.get("check_ins")]
    if not krs:
        return []
    lines = ["## Check-ins: confidence week by week, and why each KR ended where it did", ""]
    for kr in krs:
        trail = ", ".join(f"{c['week'][-3:]} {c['confidence']}" for c in kr["check_ins"])
        lines += [
            f"**{_md(kr['title'])}** ({VERDICT_LABEL[kr.get('verdict')]}): confidence {trail}.",
            "",
        ]
        notes = kr.get("last_notes")
        if notes:
            who = f" ({_md(notes['author'])}, {notes['week']})"
            for name, key in (
                ("Progress", "progress"),
                ("Problems", "problems"),
                ("Next steps", "next_steps"),
            ):
                if notes[key]:
                    lines.append(f"- {name}{who if name == 'Progress' else ''}: {_md(notes[key])}")
            lines.append("")
    return lines


def _retrospective_lines(report: dict[str, Any]) -> list[str]:
    items = report.get("retrospective") or []
    lines = ["## Retrospective", ""]
    if not items:
        return lines + [
            f"No retrospective recorded yet: `krpulse retro {report['cycle']} --add ...` "
            "or the dashboard's /retro page.",
            "",
        ]
    lines += ["Quick wins for the next cycle:", ""]
    lines += [f"{n}. {_md(text)}" for n, text in enumerate(report["quick_wins"], 1)] or ["- none"]
    lines += ["", "| item | benefit | effort | quick win |", "|---|---|---|---|"]
    lines += [
        f"| {_md(i['text'])} | {i['benefit']} | {i['effort']} | {'★' if i['quick_win'] else ''} |"
        for i in items
    ]
    return lines + [""]


def review_html(report: dict[str, Any]) -> str:
    """A standalone, printable page; every text from definitions or the CRM is escaped."""
    import markdown_it  # a dependency of rich; renders the same tables as the Markdown report

    body = (
        markdown_it.MarkdownIt("commonmark", {"html": False})
        .enable("table")
        .render(review_markdown(report))
    )
    title = html.escape(f"Review of {report['cycle']}")
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{title}</title>"
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.25rem .5rem}"
        "blockquote{color:#555}</style>" + body + "</html>\n"
    )


# --- roll-over ---------------------------------------------------------------------------------


def next_cycle(cycle: Cycle, key: str) -> Cycle:
    """The cycle called `key`: dates implied by a quarter/month key, else the same length after."""
    try:
        return Cycle(key=key, timezone=cycle.timezone)
    except ValueError:
        start = cycle.end + dt.timedelta(days=1)
        return Cycle(
            key=key,
            start=start,
            end=start + dt.timedelta(days=cycle.days - 1),
            timezone=cycle.timezone,
        )


def rollover(
    definitions: DefinitionSet,
    current: str,
    following: str,
    actuals: dict[str, float | None],
    source_files: list[Path],
) -> dict[Path, str]:
    """Next cycle's definition files: same objectives and KRs, baselines = final actuals, targets empty.

    Returns {path: text}; nothing is written here. Comments in the source files are kept, and
    every emptied target carries a comment saying what to do. Standing KPIs are not copied (they
    are not tied to a cycle).
    """
    cycle = definitions.cycles[current]
    new_cycle = next_cycle(cycle, following)
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    out = {}
    for path in source_files:
        data = yaml.load(path.read_text(encoding="utf-8"))
        if (
            not isinstance(data, CommentedMap)
            or "cycle" not in data
            or str(data["cycle"].get("key")) != current
        ):
            continue
        cycle_map = data["cycle"]
        cycle_map["key"] = new_cycle.key
        implied = _QUARTER_KEY.match(new_cycle.key) or _MONTH_KEY.match(new_cycle.key)
        for field_name in ("start", "end"):
            if field_name in cycle_map or not implied:
                cycle_map[field_name] = getattr(new_cycle, field_name)
        for objective in data.get("objectives", []):
            for kr in objective.get("key_results", []):
                actual = actuals.get(str(kr["key"]))
                kr["baseline"] = round(float(actual), 4) if actual is not None else "previous_cycle"
                kr["target"] = None
                kr.yaml_add_eol_comment(
                    f"TODO: set the {new_cycle.key} target (baseline = {current} actual)", "target"
                )
                kr.yaml_add_eol_comment("TODO: retitle for the new target", "title")
                kr.pop("milestones", None)
        data.pop("kpis", None)
        buffer = io.StringIO()
        yaml.dump(data, buffer)
        text = buffer.getvalue()
        name = (
            path.name.replace(current, new_cycle.key)
            if current in path.name
            else f"{new_cycle.key}.yaml"
        )
        out[path.with_name(name)] = text
    return out

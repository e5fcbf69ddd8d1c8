"""The weekly check-in digest: per team, status, what moved, what is at risk, stale data, outlook."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pandas as pd
import requests

from core import checkins
from dashboard import views, week
from dashboard.rendering import templates_environment
from kr_metrics.display import SHOWN_DECIMALS

WEBHOOK_TIMEOUT_SECONDS = 15
# Characters that start markup inside a line (our own text decides what starts a line).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]~|])")


@dataclass
class TeamDigest:
    cycle: str
    team: str | None
    label: str
    status_counts: dict[str, int]
    moved: list[dict] = field(default_factory=list)
    at_risk: list[dict] = field(default_factory=list)
    stale: list[dict] = field(default_factory=list)
    outlook: list[dict] = field(default_factory=list)
    # Every KR in one line each (owner, value, change, confidence, link), and the KRs nobody
    # checked in on during the digest's seven days.
    key_results: list[dict] = field(default_factory=list)
    missing_check_ins: list[dict] = field(default_factory=list)


@dataclass
class Digest:
    week_start: dt.date
    week_end: dt.date
    as_of: dt.date
    previous_as_of: dt.date
    teams: list[TeamDigest]
    reported_on: dt.date  # the day the digest reports on (today, or the requested week's end)

    @property
    def numbers_as_of(self) -> str:
        """ "Numbers as of ..." and, when the newest numbers are older than the day reported on,
        how much older: a digest made on Monday from last Wednesday's numbers says so."""
        if self.as_of >= self.reported_on:
            return f"Numbers as of {self.as_of}"
        days = (self.reported_on - self.as_of).days
        return (
            f"Numbers as of {self.as_of}, the newest day with numbers: "
            f"{days} day{'s' * (days != 1)} before {self.reported_on}"
        )

    def as_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            if isinstance(value, dt.date | dt.datetime):
                return value.isoformat()
            return value

        return plain(
            {
                "week_start": self.week_start,
                "week_end": self.week_end,
                "as_of": self.as_of,
                "previous_as_of": self.previous_as_of,
                "reported_on": self.reported_on,
                "teams": [
                    {
                        "cycle": t.cycle,
                        "team": t.team,
                        "label": t.label,
                        "status_counts": t.status_counts,
                        "key_results": t.key_results,
                        "missing_check_ins": t.missing_check_ins,
                        "moved": t.moved,
                        "at_risk": t.at_risk,
                        "stale": t.stale,
                        "outlook": t.outlook,
                    }
                    for t in self.teams
                ],
            }
        )


def week_of(day: dt.date) -> tuple[dt.date, dt.date]:
    """Monday and Sunday of `day`'s ISO week."""
    monday = day - dt.timedelta(days=day.weekday())
    return monday, monday + dt.timedelta(days=6)


def build_digest(
    data: views.DashboardData, *, week: dt.date | None = None, team: str | None = None
) -> Digest:
    """The digest of the seven days ending on the newest day with data (in the ISO week of
    `week` when given), compared with exactly seven days earlier.

    A digest never claims a day it has no numbers for: when the daily job has not run for a
    while, the digest is as of its last day and flags the numbers as stale, judged at the end of
    the requested week (or today).
    """
    known = data.store.cycles()
    if known.empty:
        raise views.NotFound("the OKR store is empty: run `krpulse run` (or `krpulse demo`) first")
    today = data.now().date()
    reporting_day = min(week_of(week)[1], today) if week else today
    spans = {
        row.cycle: views.cycle_dates(data, row.cycle) or (row.first_day, row.last_day)
        for row in known.itertuples()
    }
    with_data = known[known["first_day"] <= reporting_day]
    if with_data.empty:
        raise views.NotFound(f"no KR progress stored on or before {reporting_day}")
    as_of = min(max(with_data["last_day"]), reporting_day)
    active = [c for c, (start, end) in spans.items() if start <= as_of <= end]
    if not active:
        raise views.NotFound(f"no cycle with KR progress on {as_of}")
    previous = as_of - dt.timedelta(days=7)
    teams: list[TeamDigest] = []
    for cycle in active:
        judged_on = min(reporting_day, spans[cycle][1])
        teams.extend(_cycle_digest(data, cycle, as_of, previous, team, judged_on))
    return Digest(as_of - dt.timedelta(days=6), as_of, as_of, previous, teams, reporting_day)


def _cycle_digest(
    data: views.DashboardData,
    cycle: str,
    as_of: dt.date,
    previous: dt.date,
    team: str | None,
    judged_on: dt.date,
) -> list[TeamDigest]:
    now_rows = data.store.latest_cycle_progress(cycle, as_of=as_of, team=team)
    if now_rows.empty:
        return []
    before = data.store.latest_cycle_progress(cycle, as_of=previous, team=team)
    # Staleness is judged at the end of the digest's day, not today, so a past week's digest
    # reads the same whenever it is made.
    reference = min(
        data.now(), dt.datetime.combine(judged_on + dt.timedelta(days=1), dt.time(), dt.UTC)
    )
    frozen = views.DashboardData(**{**data.__dict__, "now": lambda: reference})
    krs = pd.DataFrame(views._kr_records(now_rows, frozen, judged_on))

    moved = krs.merge(
        before[["kr", "value", "progress", "status", "as_of"]].rename(
            columns=lambda c: c if c == "kr" else f"{c}_before"
        ),
        on="kr",
        how="left",
    )
    moved["progress_change"] = moved["progress"] - moved["progress_before"]
    moved["value_change"] = moved["value"] - moved["value_before"]

    # The forecast stored with each KR's latest row (kr_metrics.forecast), not a second method,
    # and its grade measured from the KR's start like every other progress.
    moved["projected_value"] = moved["forecast_value"]
    moved["projected_progress"] = moved["forecast_grade"]
    moved["success"] = moved["ambition"].map({"moonshot": data.moonshot_success}).fillna(1.0)
    moved["team_label"] = moved["team"].map(lambda t: week.team_name(data, t))
    lines = _kr_lines(data, cycle, moved, as_of)

    out = []
    for label, rows in moved.groupby("team_label", sort=False, dropna=False):
        team_key = rows["team"].iloc[0]
        found = rows["shown_status"].value_counts()
        # Known statuses in their fixed order, then any the scoring grew since (never dropped).
        order = views.STATUS_ORDER + sorted(set(found.index) - set(views.STATUS_ORDER))
        counts = found.reindex(order, fill_value=0)
        changed = rows[rows["value_change"].fillna(0).ne(0) | rows["value_before"].isna()]
        changed = changed.reindex(
            changed["progress_change"].abs().sort_values(ascending=False, na_position="last").index
        )
        risky = rows[rows["status"].isin(["at_risk", "off_track"])].sort_values(
            "status", key=lambda s: s.map({"off_track": 0, "at_risk": 1})
        )
        out.append(
            TeamDigest(
                cycle=cycle,
                team=team_key,
                label=label,
                status_counts={k: int(v) for k, v in counts.items()},
                moved=[_item(r, "moved") for r in changed.to_dict("records")],
                at_risk=[_item(r, "risk") for r in risky.to_dict("records")],
                stale=[_item(r, "stale") for r in rows[rows["stale"]].to_dict("records")],
                outlook=[_item(r, "outlook") for r in rows.to_dict("records")],
                key_results=[lines[k] for k in rows["kr"]],
                missing_check_ins=[lines[k] for k in rows["kr"] if lines[k]["confidence"] is None],
            )
        )
    return sorted(out, key=lambda t: (t.team is not None, t.label))


def _kr_lines(
    data: views.DashboardData, cycle: str, rows: pd.DataFrame, as_of: dt.date
) -> dict[str, dict]:
    """Per KR the digest's one line: owner, value, change in seven days, the latest check-in of
    the digest's days (confidence and notes) and the link to its page."""
    first_week = checkins.week_start(as_of - dt.timedelta(days=6))
    stored = week.check_ins(data).check_ins(cycle=cycle, start=first_week, end=as_of)
    latest = {r["kr"]: r for r in stored.to_dict("records")}  # oldest week first: newest wins
    owners = week.owner_names(data)
    objectives = views.objective_titles(data, cycle)
    lines = {}
    for row in rows.to_dict("records"):
        check_in = latest.get(row["kr"])
        before = views.number(row["value_before"])
        url = (
            f"{data.public_url}/kr/{quote(cycle, safe='')}/{quote(row['kr'], safe='')}"
            if data.public_url
            else None
        )
        lines[row["kr"]] = {
            "kr": row["kr"],
            "title": row["title"],
            "url": url,
            "owner": week.owner_text(objectives.get(row["objective"], {}).get("owner"), owners),
            "status": row["shown_status"],
            "status_label": views.status_label(row["shown_status"]),
            "value": views.number(row["value"]),
            "value_text": row["value_text"],
            "value_before": before,
            "change_text": week.change_text(
                views.number(row["value"]), before, row["metric"], row["unit"]
            ),
            "confidence": None if check_in is None else int(check_in["confidence"]),
            "confidence_text": None
            if check_in is None
            else checkins.confidence_label(int(check_in["confidence"])),
            "check_in_week": None if check_in is None else checkins.week_label(check_in["week"]),
            "progress": None if check_in is None else check_in["progress"],
            "problems": None if check_in is None else check_in["problems"],
            "next_steps": None if check_in is None else check_in["next_steps"],
        }
    return lines


def _item(row: dict, kind: str) -> dict:
    metric, unit = row["metric"], row["unit"]
    item = {
        "kr": row["kr"],
        "title": row["title"],
        "status": row["shown_status"],
        "value": views.number(row["value"]),
        "value_text": row["value_text"],
        "target_text": row["target_text"],
        "progress_text": row["progress_text"],
        "expected_text": row["expected_text"],
        "pace_text": row["pace_text"],
        "status_reason": row["status_reason"],
    }
    if kind == "moved":
        item.update(
            value_before=views.number(row["value_before"]),
            value_before_text=views.format_value(row["value_before"], metric, unit),
            progress_change=views.number(row["progress_change"]),
            status_before=None if pd.isna(row["status_before"]) else row["status_before"],
        )
    elif kind == "stale":
        item["reasons"] = row["stale_reasons"]
    elif kind == "outlook":
        projected = views.number(row["projected_progress"])
        item.update(
            projected_value=views.number(row["projected_value"]),
            projected_text=views.format_value(row["projected_value"], metric, unit),
            projected_progress=projected,
            projected_progress_text=views.format_percent(projected),
            reaches_success=None
            if projected is None
            else round(projected, SHOWN_DECIMALS) >= row["success"],
        )
    return item


# --- rendering ---------------------------------------------------------------------------------


def escape_markdown(text: Any) -> str:
    """User text (KR titles, team names) as literal Markdown: no links, no HTML, no emphasis."""
    plain = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", plain.replace("\n", " "))


def _change(value: float | None) -> str:
    if value is None:
        return "new"
    points = round(100 * value)
    return f"{points:+d} pts" if points else "±0 pts"


def render_markdown(digest: Digest) -> str:
    md = escape_markdown
    lines = [
        f"# Weekly KR check-in: {digest.week_start} – {digest.week_end}",
        "",
        f"{digest.numbers_as_of}; moves compared with {digest.previous_as_of}.",
    ]
    for team in digest.teams:
        counts = ", ".join(
            f"{n} {views.status_label(s).lower()}" for s, n in team.status_counts.items() if n
        )
        lines += ["", f"## {md(team.label)} · {md(team.cycle)}", "", f"**Status:** {counts}."]
        lines += ["", "**Key results**"]
        lines += [_markdown_line(i) for i in team.key_results]
        lines += ["", "**Missing a check-in this week**"]
        lines += [
            f"- {_markdown_title(i)}{md(' · ' + i['owner']) if i['owner'] else ''}"
            for i in team.missing_check_ins
        ] or ["- none: every KR was checked in"]
        lines += ["", "**What moved**"]
        lines += [
            f"- {md(i['title'])}: {md(i['value_before_text'])} → {md(i['value_text'])} "
            f"({_change(i['progress_change'])} of the way to target)"
            for i in team.moved
        ] or ["- nothing moved since last week"]
        lines += ["", "**At risk or off track**"]
        lines += [
            f"- {md(i['title'])}: {views.status_label(i['status']).lower()}: "
            f"{md(i['status_reason'] or i['pace_text'])}"
            for i in team.at_risk
        ] or ["- none"]
        lines += ["", "**Stale data**"]
        lines += [f"- {md(i['title'])}: {md('; '.join(i['reasons']))}" for i in team.stale] or [
            "- none: every number is fresh"
        ]
        lines += ["", "**Outlook to the cycle end**"]
        for i in team.outlook:
            if i["projected_progress"] is None:
                lines.append(f"- {md(i['title'])}: too early to forecast")
            else:
                verdict = "reaches the goal" if i["reaches_success"] else "falls short"
                lines.append(
                    f"- {md(i['title'])}: forecast {md(i['projected_text'])} at the cycle end "
                    f"({i['projected_progress_text']} of the way, {verdict}); "
                    f"target {md(i['target_text'])}"
                )
    return "\n".join(lines) + "\n"


def _markdown_title(line: dict) -> str:
    title = escape_markdown(line["title"])
    return f"[{title}]({line['url']})" if line["url"] else title


def _markdown_line(line: dict) -> str:
    md = escape_markdown
    owner = f" · {md(line['owner'])}" if line["owner"] else ""
    confidence = (
        f"confidence {md(line['confidence_text'])}"
        if line["confidence"] is not None
        else "no check-in"
    )
    text = (
        f"- {_markdown_title(line)}{owner} · {md(line['value_text'])} "
        f"({md(line['change_text'])} in 7 days) · {line['status_label'].lower()} · {confidence}"
    )
    notes = [
        f"_{name}:_ {md(line[key].rstrip('.'))}."
        for name, key in (
            ("Progress", "progress"),
            ("Problems", "problems"),
            ("Next", "next_steps"),
        )
        if line.get(key)
    ]
    return text + (f"  \n  {' '.join(notes)}" if notes else "")


# Slack mrkdwn: only &, < and > are special (https://api.slack.com/reference/surfaces/formatting);
# a status reads by its colour, as a coloured circle.
STATUS_EMOJI = {
    "on_track": ":large_green_circle:",
    "achieved": ":large_green_circle:",
    "at_risk": ":large_yellow_circle:",
    "partially_achieved": ":large_yellow_circle:",
    "off_track": ":red_circle:",
    "missed": ":red_circle:",
}


def escape_slack(text: Any) -> str:
    """User text as literal Slack mrkdwn: no links, mentions or markup of its own."""
    plain = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Zero-width joiners keep *bold*, _italic_, ~strike~ and `code` from forming.
    return re.sub(r"([*_~`])", "\\1\u200b", plain.replace("\n", " "))


def render_slack(digest: Digest) -> str:
    """The digest in Slack's mrkdwn: one line per KR with owner, change, confidence and link."""
    sl = escape_slack
    lines = [
        f"*Weekly KR check-in: {digest.week_start} – {digest.week_end}*",
        f"{digest.numbers_as_of}; changes against {digest.previous_as_of}.",
    ]
    for team in digest.teams:
        counts = ", ".join(
            f"{n} {views.status_label(s).lower()}" for s, n in team.status_counts.items() if n
        )
        lines += ["", f"*{sl(team.label)} · {sl(team.cycle)}* — {counts}"]
        for i in team.key_results:
            title = f"<{i['url']}|{sl(i['title'])}>" if i["url"] else f"*{sl(i['title'])}*"
            emoji = STATUS_EMOJI.get(i["status"], ":white_circle:")
            owner = f" · {sl(i['owner'])}" if i["owner"] else ""
            confidence = (
                f"confidence {sl(i['confidence_text'])}"
                if i["confidence"] is not None
                else "_no check-in this week_"
            )
            lines.append(
                f"{emoji} {title}{owner} · {sl(i['value_text'])} "
                f"({sl(i['change_text'])} in 7 days) · {confidence}"
            )
            if i.get("problems"):
                lines.append(f"      problems: {sl(i['problems'])}")
        if team.missing_check_ins:
            names = ", ".join(sl(i["title"]) for i in team.missing_check_ins)
            lines.append(f"_Missing a check-in:_ {names}")
    return "\n".join(lines) + "\n"


def render_html(digest: Digest) -> str:
    template = templates_environment().get_template("digest.html")
    return template.render(
        digest=digest, label=views.status_label, change=_change, colours=HTML_STATUS_COLOURS
    )


# Inline styles (mail clients drop style sheets), the dashboard's badge colours.
HTML_STATUS_COLOURS = {
    "on_track": "background: #dff3e6; color: #0d5b2c;",
    "achieved": "background: #0d5b2c; color: #fff;",
    "at_risk": "background: #fff3cd; color: #5c4700;",
    "partially_achieved": "background: #fff3cd; color: #5c4700;",
    "off_track": "background: #fde2df; color: #8f1a10;",
    "missed": "background: #8f1a10; color: #fff;",
    "stale": "background: #f3e5f5; color: #5e1f6e;",
    "low_sample": "background: #e0f2f7; color: #0b4a5c;",
}


def post_to_webhook(url: str, digest: Digest, text: str, *, structured: bool = True) -> int:
    """POST the digest as `{"text": text, "digest": {...}}`; the HTTP status on success.

    `text` is what Slack, Mattermost and most chat webhooks display (Slack mrkdwn for Slack);
    `digest` carries the structured check-in for tools that want the numbers, left out for
    Slack, whose incoming webhooks expect a message only. The URL is a secret and never printed.
    """
    payload: dict[str, Any] = {"text": text}
    if structured:
        payload["digest"] = digest.as_dict()
    response = requests.post(url, json=payload, timeout=WEBHOOK_TIMEOUT_SECONDS)
    if response.status_code >= 400:
        raise RuntimeError(f"the digest webhook answered HTTP {response.status_code}")
    return response.status_code

"""Weekly check-ins and retrospectives: the fixed confidence scale, the week rule, validation.

Shared by the OKR store (which keeps them), the dashboard and the CLI (which take them in), so it
lives in core: one set of rules whichever door a check-in comes through.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# The confidence scale: how sure the KR's owner is that it reaches its goal by the cycle end.
# Five steps, as small as a weekly meeting can agree on in a few seconds.
CONFIDENCE_LABELS: dict[int, str] = {
    1: "very unlikely",
    2: "unlikely",
    3: "50/50",
    4: "likely",
    5: "very likely",
}
CONFIDENCE_LEVELS = tuple(CONFIDENCE_LABELS)
# A note is a few sentences for a 30-minute meeting, not a document.
MAX_NOTE_LENGTH = 2000
MAX_AUTHOR_LENGTH = 120
NOTE_FIELDS = ("progress", "problems", "next_steps")
# Benefit and effort of a retrospective item, and how many quick wins the next cycle carries.
RETRO_SCALE = (1, 2, 3, 4, 5)
QUICK_WINS = 3
MAX_RETRO_TEXT = 500


class CheckInError(ValueError):
    """A check-in or retrospective item that cannot be stored; the message says what to fix."""


def week_start(day: dt.date) -> dt.date:
    """Monday of `day`'s ISO week: the key of that week's check-in."""
    return day - dt.timedelta(days=day.weekday())


def week_end(day: dt.date) -> dt.date:
    """Sunday of `day`'s ISO week: the last day its check-in can be edited."""
    return week_start(day) + dt.timedelta(days=6)


def week_label(day: dt.date) -> str:
    """`2026-W48` for any day of that ISO week."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def confidence_label(level: int | None) -> str:
    return "—" if level is None else f"{level} · {CONFIDENCE_LABELS.get(int(level), '?')}"


def editable(week: dt.date, today: dt.date) -> bool:
    """Whether a check-in dated `week` (any day of it) may be written or edited on `today`: from
    that day until the Sunday its week ends (days in the org's timezone)."""
    return week_start(week) == week_start(today) and week <= today


@dataclass(frozen=True)
class CheckIn:
    """What a person enters for one KR in one week; the store adds the measured value."""

    cycle: str
    kr: str
    week: dt.date  # Monday of the ISO week
    confidence: int
    progress: str = ""
    problems: str = ""
    next_steps: str = ""
    author: str = "local"


def _text(value: object, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CheckInError(f"{name} must be text")
    text = value.replace("\r\n", "\n").strip()
    if "\x00" in text:
        raise CheckInError(f"{name} contains a NUL character")
    if len(text) > limit:
        raise CheckInError(f"{name} has {len(text)} characters; keep it under {limit}")
    return text


def parse_confidence(value: object) -> int:
    """The confidence as an integer of the scale; CheckInError naming the scale otherwise."""
    scale = ", ".join(f"{k} ({v})" for k, v in CONFIDENCE_LABELS.items())
    if isinstance(value, bool):
        raise CheckInError(f"confidence must be one of {scale}")
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            raise CheckInError(f"confidence '{value}' is not one of {scale}")
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value not in CONFIDENCE_LABELS:
        raise CheckInError(f"confidence {value!r} is not one of {scale}")
    return value


def make_check_in(
    *,
    cycle: str,
    kr: str,
    day: dt.date,
    today: dt.date,
    confidence: object,
    progress: object = "",
    problems: object = "",
    next_steps: object = "",
    author: object = "local",
    cycle_end: dt.date | None = None,
) -> CheckIn:
    """A validated check-in for the week of `day`, refused once that week is over (or ahead),
    and for a cycle whose last week has passed (`cycle_end`: the review takes over then)."""
    if cycle_end is not None and week_start(day) > cycle_end:
        raise CheckInError(
            f"cycle '{cycle}' ended on {cycle_end}: its check-ins are closed; record what to "
            f"change in its retrospective (`krpulse retro {cycle} --add ...`)"
        )
    if not editable(day, today):
        if day > today:
            raise CheckInError(
                f"{day} is in the future; check in for this week ({week_label(today)})"
            )
        raise CheckInError(
            f"the week {week_label(day)} has ended; check-ins can be entered and edited only "
            f"until the Sunday of their week ({week_end(day)})"
        )
    notes = {
        name: _text(value, name.replace("_", " "), MAX_NOTE_LENGTH)
        for name, value in (
            ("progress", progress),
            ("problems", problems),
            ("next_steps", next_steps),
        )
    }
    who = _text(author, "author", MAX_AUTHOR_LENGTH) or "local"
    return CheckIn(
        cycle=cycle,
        kr=kr,
        week=week_start(day),
        confidence=parse_confidence(confidence),
        author=who,
        **notes,
    )


@dataclass(frozen=True)
class RetroItem:
    """One thing to change in the process, weighed by its benefit and its effort (1–5 each)."""

    cycle: str
    text: str
    benefit: int
    effort: int
    author: str = "local"


def make_retro_item(
    *, cycle: str, text: object, benefit: object, effort: object, author: object = "local"
) -> RetroItem:
    body = _text(text, "the item", MAX_RETRO_TEXT)
    if not body:
        raise CheckInError("a retrospective item needs a text")
    scores = {}
    for name, value in (("benefit", benefit), ("effort", effort)):
        try:
            score = int(str(value).strip())
        except ValueError:
            score = None
        if score not in RETRO_SCALE:
            raise CheckInError(f"{name} {value!r} is not one of 1 (low) to 5 (high)")
        scores[name] = score
    who = _text(author, "author", MAX_AUTHOR_LENGTH) or "local"
    return RetroItem(cycle=cycle, text=body, author=who, **scores)


def quick_win_order(items: list[dict]) -> list[dict]:
    """Items best first (most benefit for least effort), the top `QUICK_WINS` marked `quick_win`.

    Ranked by benefit minus effort, then benefit, then the order they were entered, so the same
    items always give the same three. An item whose effort is as large as its benefit is never
    a quick win, however few items there are.
    """
    ranked = sorted(
        enumerate(items),
        key=lambda pair: (-(pair[1]["benefit"] - pair[1]["effort"]), -pair[1]["benefit"], pair[0]),
    )
    out = []
    for rank, (_, item) in enumerate(ranked):
        worthwhile = item["benefit"] > item["effort"]
        out.append({**item, "quick_win": rank < QUICK_WINS and worthwhile})
    return out

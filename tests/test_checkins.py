"""Check-ins: one per KR and ISO week, editable until the week ends, every edit audited."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.checkins import (
    CONFIDENCE_LEVELS,
    QUICK_WINS,
    CheckInError,
    editable,
    make_check_in,
    make_retro_item,
    quick_win_order,
    week_end,
    week_start,
)
from okr_store.checkins import CheckInStore
from okr_store.repository import OkrStore
from tests.store_support import CYCLE, kr_rows

WEDNESDAY = dt.date(2026, 11, 25)  # ISO week 2026-W48: Monday 23rd to Sunday 29th


def _store_with_values(engine) -> CheckInStore:
    store = OkrStore(engine)
    store.write_day(dt.date(2026, 11, 23), kr_rows(60.0), kr_rows(0).iloc[0:0])
    store.write_day(dt.date(2026, 11, 24), kr_rows(62.0), kr_rows(0).iloc[0:0])
    return CheckInStore(engine)


def _check_in(day=WEDNESDAY, today=WEDNESDAY, **fields):
    values = {
        "confidence": 4,
        "progress": "two renewals signed",
        "problems": "",
        "next_steps": "call the three detractors",
        "author": "anna",
    } | fields
    return make_check_in(cycle=CYCLE, kr="nps", day=day, today=today, **values)


def test_a_check_in_records_the_kr_value_of_its_day_beside_the_notes(engine):
    store = _store_with_values(engine)
    stored = store.record(_check_in(), on_day=WEDNESDAY)
    assert stored["week"] == dt.date(2026, 11, 23) and stored["revision"] == 1
    rows = store.check_ins(cycle=CYCLE)
    assert len(rows) == 1
    row = rows.iloc[0]
    # The newest stored day up to the check-in's day: the 24th (nothing stored for the 25th).
    assert row["value"] == 62.0 and row["value_as_of"] == dt.date(2026, 11, 24)
    assert row["team"] == "sales-dach" and row["confidence"] == 4
    assert row["next_steps"] == "call the three detractors"


def test_editing_within_the_week_keeps_one_check_in_and_audits_every_version(engine):
    store = _store_with_values(engine)
    store.record(_check_in(), on_day=WEDNESDAY)
    friday = WEDNESDAY + dt.timedelta(days=2)
    edited = store.record(
        _check_in(day=friday, today=friday, confidence=2, problems="lost the Kiel deal"),
        on_day=friday,
    )
    assert edited["revision"] == 2
    rows = store.check_ins(cycle=CYCLE, kr="nps")
    assert len(rows) == 1 and rows.iloc[0]["confidence"] == 2
    history = store.revisions(CYCLE, "nps", week_start(WEDNESDAY))
    assert list(history["revision"]) == [1, 2]
    assert list(history["confidence"]) == [4, 2]
    assert list(history["problems"]) == ["", "lost the Kiel deal"]


def test_a_week_that_has_ended_cannot_be_checked_in_or_edited():
    next_monday = week_end(WEDNESDAY) + dt.timedelta(days=1)
    with pytest.raises(CheckInError, match="has ended"):
        _check_in(day=WEDNESDAY, today=next_monday)
    with pytest.raises(CheckInError, match="future"):
        _check_in(day=next_monday, today=WEDNESDAY)


def test_a_check_in_for_a_kr_the_store_does_not_know_is_refused(engine):
    store = _store_with_values(engine)
    unknown = make_check_in(cycle=CYCLE, kr="nope", day=WEDNESDAY, today=WEDNESDAY, confidence=3)
    with pytest.raises(CheckInError, match="no key result 'nope'"):
        store.record(unknown, on_day=WEDNESDAY)
    assert store.check_ins().empty


@pytest.mark.parametrize("bad", [0, 6, "high", "", None, True, 2.5, "-1"])
def test_confidence_off_the_scale_is_refused_with_the_scale_named(bad):
    with pytest.raises(CheckInError, match=r"1 \(very unlikely\)"):
        _check_in(confidence=bad)


def test_latest_check_ins_give_each_kr_its_newest_week(engine):
    store = _store_with_values(engine)
    last_week = WEDNESDAY - dt.timedelta(days=7)
    store.record(_check_in(day=last_week, today=last_week, confidence=2), on_day=last_week)
    store.record(_check_in(confidence=5), on_day=WEDNESDAY)
    latest = store.latest_check_ins(CYCLE)
    assert list(latest["confidence"]) == [5]
    before = store.latest_check_ins(CYCLE, up_to=last_week)
    assert list(before["confidence"]) == [2]
    # Last week's check-in was made before any stored value: it records none.
    monday = week_start(last_week)
    assert pd.isna(store.check_ins(start=monday, end=monday).iloc[0]["value"])


@settings(max_examples=200, deadline=None)
@given(
    day=st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2030, 12, 31)),
    offset=st.integers(min_value=-20, max_value=20),
)
def test_a_week_is_editable_exactly_from_its_monday_to_its_sunday(day, offset):
    today = day + dt.timedelta(days=offset)
    assert week_start(day).weekday() == 0 and week_end(day) - week_start(day) == dt.timedelta(6)
    assert editable(day, today) == (week_start(day) == week_start(today) and day <= today)


@settings(max_examples=200, deadline=None)
@given(
    confidence=st.sampled_from(CONFIDENCE_LEVELS),
    notes=st.lists(st.text(max_size=300), min_size=3, max_size=3),
)
def test_any_text_on_the_scale_is_kept_as_written_minus_outer_whitespace(confidence, notes):
    notes = [n.replace("\x00", "") for n in notes]
    made = _check_in(
        confidence=confidence, progress=notes[0], problems=notes[1], next_steps=notes[2]
    )
    assert made.confidence == confidence
    assert made.progress == notes[0].replace("\r\n", "\n").strip()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=0, max_size=12))
def test_at_most_three_quick_wins_and_no_better_item_is_left_unmarked(scores):
    items = [{"text": f"item {i}", "benefit": b, "effort": e} for i, (b, e) in enumerate(scores)]
    ranked = quick_win_order(items)
    wins = [i for i in ranked if i["quick_win"]]
    assert len(wins) <= QUICK_WINS
    assert all(w["benefit"] > w["effort"] for w in wins)
    for win in wins:
        for other in ranked:
            if not other["quick_win"] and other["benefit"] > other["effort"]:
                assert win["benefit"] - win["effort"] >= other["benefit"] - other["effort"]
    assert sorted(i["text"] for i in ranked) == sorted(i["text"] for i in items)


def test_the_retrospective_keeps_its_items_and_marks_the_top_three_quick_wins(engine):
    store = CheckInStore(engine)
    for text, benefit, effort in [
        ("Move the check-in to Monday 9:00", 4, 1),
        ("Rewrite the CRM stages", 5, 5),
        ("Share the digest in the team channel", 3, 1),
        ("One owner per KR", 4, 2),
        ("Weekly pipeline review", 3, 2),
    ]:
        store.add_retro_item(
            make_retro_item(cycle=CYCLE, text=text, benefit=benefit, effort=effort)
        )
    items = store.retro_items(CYCLE)
    assert [i["text"] for i in items if i["quick_win"]] == [
        "Move the check-in to Monday 9:00",
        "One owner per KR",
        "Share the digest in the team channel",
    ]
    assert store.retro_items("2026-Q3") == []
    with pytest.raises(CheckInError, match="benefit"):
        make_retro_item(cycle=CYCLE, text="x", benefit=9, effort=1)


@settings(max_examples=200, deadline=None)
@given(
    first=st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2027, 1, 1)),
    length=st.integers(min_value=0, max_value=400),
)
def test_sparkline_days_are_the_same_weekday_each_week_from_the_first_day(first, length):
    from okr_store.weekly import weekly_days

    as_of = first + dt.timedelta(days=length)
    days = weekly_days(first, as_of)
    assert days[-1] == as_of and days == sorted(days) and days[0] >= first
    assert all((as_of - d).days % 7 == 0 for d in days)
    assert len(days) <= 16
    step = (days[1] - days[0]).days if len(days) > 1 else 7
    assert len({(b - a).days for a, b in zip(days, days[1:], strict=False)}) <= 1  # evenly spaced
    assert (days[0] - first).days < step  # the cycle's start is drawn


def test_values_on_days_reads_exactly_those_days_of_the_team_and_the_company(engine):
    from okr_store.weekly import values_on_days

    store = OkrStore(engine)
    for offset in range(15):
        day = dt.date(2026, 11, 1) + dt.timedelta(days=offset)
        rows = pd.concat([kr_rows(50.0 + offset), kr_rows(50.0, krs=("co",), team=None)])
        store.write_day(day, rows, kr_rows(0).iloc[0:0])
    days = [dt.date(2026, 11, 1), dt.date(2026, 11, 8), dt.date(2026, 11, 15)]
    read = values_on_days(engine, CYCLE, days, team="sales-dach", with_company=True)
    assert sorted(set(read["as_of"])) == days
    assert sorted(set(read["kr"])) == ["co", "nps", "rev"]
    only_team = values_on_days(engine, CYCLE, days, team="sales-dach")
    assert set(only_team["kr"]) == {"nps", "rev"}
    assert list(only_team[only_team["kr"] == "nps"]["value"]) == [50.0, 57.0, 64.0]


def test_the_store_version_changes_with_every_write_the_overview_shows(engine):
    from okr_store.weekly import store_version

    store = _store_with_values(engine)
    versions = [store_version(engine)]
    OkrStore(engine).write_day(dt.date(2026, 11, 25), kr_rows(63.0), kr_rows(0).iloc[0:0])
    versions.append(store_version(engine))
    store.record(_check_in(), on_day=WEDNESDAY)
    versions.append(store_version(engine))
    store.record(_check_in(confidence=1), on_day=WEDNESDAY)  # an edit of the same check-in
    versions.append(store_version(engine))
    store.add_retro_item(make_retro_item(cycle=CYCLE, text="x", benefit=2, effort=1))
    versions.append(store_version(engine))
    # The flow stores the KR pages (charts, drill-downs) after the day's rows: a page cached
    # between the two writes must not outlive the second, nor a rewrite of the same pages.
    chart = {
        "cycle": CYCLE,
        "kr": "nps",
        "objective": "o",
        "objective_title": "O",
        "objective_owner": None,
        "cycle_start": dt.date(2026, 10, 1),
        "cycle_end": dt.date(2026, 12, 31),
        "success_grade": 1.0,
        "unit": None,
        "formula": None,
        "definition": {},
        "expected_path": [],
    }
    for _ in range(2):
        OkrStore(engine).write_kr_pages([CYCLE], [chart], [], run_id="pages")
        versions.append(store_version(engine))
    assert len(set(versions)) == len(versions)
    assert store_version(engine) == versions[-1]  # reading changes nothing


def test_a_cycle_whose_last_week_has_passed_takes_no_check_ins():
    cycle_end = dt.date(2026, 9, 30)  # a Wednesday: its week (to Sunday 4 October) still counts
    last_week = dt.date(2026, 10, 2)
    assert _check_in(day=last_week, today=last_week, cycle_end=cycle_end).week == week_start(
        cycle_end
    )
    later = dt.date(2026, 10, 5)
    with pytest.raises(CheckInError, match="ended on 2026-09-30: its check-ins are closed"):
        _check_in(day=later, today=later, cycle_end=cycle_end)

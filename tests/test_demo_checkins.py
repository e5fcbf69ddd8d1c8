"""The demo ships believable weekly check-ins: one per KR and week from its team's lead."""

from __future__ import annotations

import datetime as dt

import pytest

from connectors.demo_org import DEMO_AS_OF
from core.checkins import week_start
from okr_store.checkins import CheckInStore
from okr_store.repository import OkrStore
from pipelines.demo_checkins import DEMO_LEADS, seed_demo_check_ins, seed_demo_retro
from tests.dashboard_support import CYCLE, filled_demo_store, make_demo_project


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, demo_data):
    project = make_demo_project(tmp_path_factory.mktemp("demo-checkins"), demo_data)
    _, engine = filled_demo_store(project)
    written = seed_demo_check_ins(engine, [CYCLE], DEMO_AS_OF)
    yield engine, written
    engine.dispose()


def test_every_week_of_the_cycle_so_far_has_check_ins_from_the_team_leads(seeded):
    engine, written = seeded
    rows = CheckInStore(engine).check_ins(cycle=CYCLE)
    assert len(rows) == written
    weeks = sorted(set(rows["week"]))
    # 2026-10-01 is a Thursday of W40; the demo's today (2026-11-25) is in W48.
    assert weeks[0] == week_start(dt.date(2026, 10, 1)) and weeks[-1] == week_start(DEMO_AS_OF)
    assert len(weeks) == 9
    assert set(rows["author"]) <= set(DEMO_LEADS.values())
    # Some weeks a lead skipped a KR, but never most of them.
    krs = rows["kr"].nunique()
    assert krs == 8 and 0.7 * 9 * krs <= len(rows) < 9 * krs
    assert rows.groupby(["kr", "week"]).size().max() == 1


def test_confidence_follows_the_stored_status_and_the_notes_quote_the_numbers(seeded):
    engine, _ = seeded
    rows = CheckInStore(engine).check_ins(cycle=CYCLE)
    progress = OkrStore(engine).cycle_history(CYCLE)
    merged = rows.merge(
        progress, left_on=["kr", "value_as_of"], right_on=["kr", "as_of"], suffixes=("", "_stored")
    )
    assert len(merged) == len(rows)
    on_track = merged[merged["status"] == "on_track"]["confidence"]
    off_track = merged[merged["status"] == "off_track"]["confidence"]
    assert on_track.isin([4, 5]).all() and off_track.isin([1, 2]).all()
    same = merged["value"].eq(merged["value_stored"])
    assert (same | (merged["value"].isna() & merged["value_stored"].isna())).all()
    assert merged["progress"].str.contains(r"From .+ to .+|Flat at|Starting the cycle").all()


def test_seeding_again_keeps_one_check_in_per_kr_and_week_and_one_retrospective(seeded):
    engine, written = seeded
    assert seed_demo_check_ins(engine, [CYCLE], DEMO_AS_OF) == 0
    rows = CheckInStore(engine).check_ins(cycle=CYCLE)
    assert len(rows) == written and (rows["revision"] == 1).all()
    assert seed_demo_retro(engine, "2026-Q3") == 6
    assert seed_demo_retro(engine, "2026-Q3") == 0
    wins = [i["text"] for i in CheckInStore(engine).retro_items("2026-Q3") if i["quick_win"]]
    assert len(wins) == 3

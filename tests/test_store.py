"""The OKR store: one row per (KR, day), atomic and audited day writes, stale days, reads.

Every test runs on SQLite and on the PostgreSQL of KRPULSE_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pandas as pd
import pytest
import sqlalchemy as sa
from store_support import SYNCED, kr_rows
from store_support import kpi_rows as support_kpis

from okr_store.db import write_transaction
from okr_store.models import KeyResultDefinition, KpiDefinition, KpiValue, KrProgress, RunDay
from okr_store.repository import OkrStore

DAY = dt.date(2026, 11, 2)
NOW = dt.datetime(2026, 11, 3, 6, 0, tzinfo=dt.UTC)


def progress_rows(value: float, krs=("rev", "nps")) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "cycle": "2026-Q4",
                "objective": "grow",
                "kr": kr,
                "title": kr,
                "team": "sales-dach",
                "level": "team",
                "ambition": "roofshot",
                "metric": "nps",
                "unit": None,
                "value": value,
                "numerator": None,
                "denominator": None,
                "sample_size": 10,
                "baseline": 50.0,
                "target": 70.0,
                "progress": (value - 50) / 20,
                "grade": 0.5,
                "expected_progress": 0.4,
                "status": "on_track",
                "definition_version": "v1",
                "run_id": "run-1",
                "data_synced_at": NOW,
                "computed_at": NOW,
            }
            for kr in krs
        ]
    )


def kpi_rows(value: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "kpi": "win-rate",
                "title": "Win rate",
                "team": None,
                "metric": "win_rate",
                "value": value,
                "sample_size": 40,
                "healthy_min": 0.2,
                "healthy_max": None,
                "health": "healthy",
                "definition_version": "k1",
                "run_id": "run-1",
                "data_synced_at": NOW,
                "computed_at": NOW,
            }
        ]
    )


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(model.__table__)).scalar_one()


def test_rerunning_a_day_replaces_its_progress_row(engine):
    store = OkrStore(engine)
    store.write_day(DAY, progress_rows(60.0), kpi_rows(0.3))
    store.write_day(DAY, progress_rows(62.0), kpi_rows(0.31))
    assert count(engine, KrProgress) == 2
    assert count(engine, KpiValue) == 1
    assert store.progress(as_of=DAY)["value"].tolist() == [62.0, 62.0]
    assert store.kpi_values(as_of=DAY)["value"].tolist() == [0.31]


def test_a_kr_removed_from_the_definitions_disappears_from_a_rerun_day(engine):
    store = OkrStore(engine)
    store.write_day(DAY, progress_rows(60.0), kpi_rows(0.3))
    store.write_day(DAY, progress_rows(60.0, krs=("rev",)), kpi_rows(0.3).iloc[0:0])
    assert store.progress(as_of=DAY)["kr"].tolist() == ["rev"]
    assert count(engine, KpiValue) == 0


def test_other_days_are_untouched_and_latest_wins(engine):
    store = OkrStore(engine)
    store.write_day(DAY, progress_rows(60.0), kpi_rows(0.3))
    store.write_day(DAY + dt.timedelta(days=1), progress_rows(65.0), kpi_rows(0.3))
    assert count(engine, KrProgress) == 4
    assert store.progress()["value"].tolist() == [65.0, 65.0]
    assert store.progress(as_of=DAY)["value"].tolist() == [60.0, 60.0]
    history = store.kr_history("2026-Q4", "nps")
    assert history["value"].tolist() == [60.0, 65.0]


def test_kpis_and_key_results_live_in_separate_tables(engine):
    store = OkrStore(engine)
    store.write_day(DAY, progress_rows(60.0), kpi_rows(0.3))
    assert KrProgress.__tablename__ != KpiValue.__tablename__
    assert "win-rate" not in store.progress()["kr"].tolist()


# --- Exactly once, audited ---------------------------------------------------------------------


def contents(engine) -> list[tuple]:
    """The store's KR and KPI rows without their write timestamps: what a reader sees."""
    with engine.connect() as conn:
        krs = conn.execute(
            sa.select(
                KrProgress.kr, KrProgress.as_of, KrProgress.value, KrProgress.status
            ).order_by(KrProgress.kr, KrProgress.as_of)
        ).all()
        kpis = conn.execute(
            sa.select(KpiValue.kpi, KpiValue.as_of, KpiValue.value).order_by(KpiValue.as_of)
        ).all()
    return [tuple(r) for r in krs] + [tuple(r) for r in kpis]


def test_rerunning_a_backfill_converges_to_the_same_contents(engine):
    store = OkrStore(engine)
    days = [DAY + dt.timedelta(days=i) for i in range(5)]
    for i, day in enumerate(days):
        store.write_day(day, kr_rows(60.0 + i, run_id="first"), support_kpis(0.3, run_id="first"))
    once = contents(engine)
    for i, day in reversed(list(enumerate(days))):
        store.write_day(day, kr_rows(60.0 + i, run_id="again"), support_kpis(0.3, run_id="again"))
    assert contents(engine) == once
    assert count(engine, KrProgress) == 2 * len(days)


def test_a_days_push_is_all_or_nothing(engine):
    store = OkrStore(engine)
    store.write_day(DAY, kr_rows(60.0), support_kpis(0.3))
    broken = kr_rows(65.0, krs=("rev", "nps", "win"))
    broken.loc[broken["kr"] == "win", "title"] = None  # NOT NULL: the third row cannot land
    with pytest.raises(sa.exc.IntegrityError):
        store.write_day(DAY, broken, support_kpis(0.35))
    assert store.progress(as_of=DAY)["value"].tolist() == [60.0, 60.0]
    assert store.kpi_values(as_of=DAY)["value"].tolist() == [0.3]


def test_each_day_written_is_audited_with_its_run_definition_versions_and_freshness(engine):
    store = OkrStore(engine)
    store.start_run("cli-audit", origin="cli", days_requested=2, data_synced_at=SYNCED)
    store.write_day(DAY, kr_rows(60.0, run_id="cli-audit"), support_kpis(0.3, run_id="cli-audit"))
    store.write_day(
        DAY + dt.timedelta(days=1),
        kr_rows(61.0, run_id="cli-audit", version="v2"),
        support_kpis(0.3, run_id="cli-audit"),
    )
    store.finish_run("cli-audit", status="succeeded")
    run = store.runs().iloc[0]
    assert (run["run_id"], run["origin"], run["status"]) == ("cli-audit", "cli", "succeeded")
    assert run["finished_at"] >= run["started_at"] and run["days_requested"] == 2
    days = store.run_days(run_id="cli-audit")
    assert days["as_of"].tolist() == [DAY, DAY + dt.timedelta(days=1)]
    assert days["kr_rows"].tolist() == [2, 2] and days["kpi_rows"].tolist() == [1, 1]
    assert days.iloc[1]["definition_versions"] == {
        "2026-Q4/nps": "v2",
        "2026-Q4/rev": "v2",
        "kpi:win-rate": "k1",
    }
    assert (days["data_synced_at"] == SYNCED).all()
    # Every definition version a row was computed with is kept, old ones too.
    versions = store.definitions("key_results")
    assert sorted(zip(versions["kr"], versions["definition_version"], strict=True)) == [
        ("nps", "v1"),
        ("nps", "v2"),
        ("rev", "v1"),
        ("rev", "v2"),
    ]
    assert count(engine, KpiDefinition) == 1 and count(engine, KeyResultDefinition) == 4
    assert count(engine, RunDay) == 2


def test_a_write_without_a_started_run_is_still_audited(engine):
    OkrStore(engine).write_day(DAY, kr_rows(60.0, run_id="dagster-1"), support_kpis(0.3))
    runs = OkrStore(engine).runs()
    assert set(runs["run_id"]) == {"dagster-1", "run-1"}
    assert set(OkrStore(engine).run_days(as_of=DAY)["run_id"]) == {"dagster-1", "run-1"}


# --- Stale days --------------------------------------------------------------------------------


def test_mark_stale_carries_the_last_good_value_forward_and_keeps_earlier_rows(engine):
    store = OkrStore(engine)
    day1, day2, day3 = (DAY + dt.timedelta(days=i) for i in range(3))
    store.write_day(day1, kr_rows(60.0), support_kpis(0.3))
    store.write_day(day2, kr_rows(64.0), support_kpis(0.3))
    earlier = contents(engine)
    marked = store.mark_stale(
        day3, [("2026-Q4", "rev"), ("2026-Q4", "nps")], "sync of sf-main failed", "run-3"
    )
    assert marked == [("2026-Q4", "nps"), ("2026-Q4", "rev")]
    rows = store.progress(as_of=day3, on_day_only=True)
    assert rows["status"].tolist() == ["stale", "stale"]
    assert rows["value"].tolist() == [64.0, 64.0]  # the last good value, never 0
    assert rows["progress"].tolist() == [0.7, 0.7] and rows["grade"].tolist() == [0.7, 0.7]
    assert rows["stale_reason"].unique().tolist() == ["sync of sf-main failed"]
    assert rows["run_id"].unique().tolist() == ["run-3"]
    assert [r for r in contents(engine) if r[1] != day3] == earlier
    # A second stale day still carries the last *good* value, not the stale one's bookkeeping.
    store.mark_stale(day3 + dt.timedelta(days=1), [("2026-Q4", "rev")], "still failing", "run-4")
    history = store.kr_history("2026-Q4", "rev")
    assert history["value"].tolist() == [60.0, 64.0, 64.0, 64.0]
    assert history["status"].tolist() == ["on_track", "on_track", "stale", "stale"]
    assert store.run_days(run_id="run-4")["action"].tolist() == ["stale"]


def test_mark_stale_replaces_the_days_own_row_and_skips_unknown_krs(engine):
    """A run marks stale the rows it wrote itself (a KR of a failing source); another run's good
    rows of the day stay (tests/test_faults.py)."""
    store = OkrStore(engine)
    store.write_day(DAY, kr_rows(60.0), support_kpis(0.3))
    store.write_day(DAY + dt.timedelta(days=1), kr_rows(99.0, run_id="r"), support_kpis(0.3))
    marked = store.mark_stale(
        DAY + dt.timedelta(days=1), [("2026-Q4", "rev"), ("2026-Q4", "never-seen")], "bad", "r"
    )
    assert marked == [("2026-Q4", "rev")]
    day = store.progress(as_of=DAY + dt.timedelta(days=1), on_day_only=True).set_index("kr")
    assert day.loc["rev", "value"] == 60.0 and day.loc["rev", "status"] == "stale"
    assert day.loc["nps", "value"] == 99.0 and day.loc["nps", "status"] == "on_track"


def test_mark_stale_without_any_earlier_good_row_keeps_no_number(engine):
    store = OkrStore(engine)
    store.write_day(DAY, kr_rows(60.0, run_id="r"), support_kpis(0.3))
    store.mark_stale(DAY, [("2026-Q4", "rev")], "bad data on day one", "r")
    row = store.progress(as_of=DAY, on_day_only=True).set_index("kr").loc["rev"]
    assert row["status"] == "stale" and pd.isna(row["value"]) and pd.isna(row["progress"])


# --- Concurrency within one process ----------------------------------------------------------


def test_runs_writing_different_days_do_not_block_each_other(engine):
    """A writer holding day 1 open does not hold up day 2 on PostgreSQL; SQLite has one writer
    at a time by design, so there the second waits for the first and then succeeds."""
    store = OkrStore(engine)
    holding = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def hold_day_one() -> None:
        try:
            with write_transaction(engine, lock_key=DAY.toordinal()) as conn:
                conn.execute(sa.delete(KrProgress.__table__).where(KrProgress.as_of == DAY))
                holding.set()
                release.wait(timeout=20)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
            holding.set()

    holder = threading.Thread(target=hold_day_one)
    holder.start()
    assert holding.wait(timeout=10)
    other_day = DAY + dt.timedelta(days=1)
    if engine.dialect.name == "postgresql":
        started = time.monotonic()
        store.write_day(other_day, kr_rows(61.0), support_kpis(0.3))
        assert time.monotonic() - started < 5  # did not wait for the open transaction
        release.set()
    else:
        threading.Timer(0.5, release.set).start()
        store.write_day(other_day, kr_rows(61.0), support_kpis(0.3))
    holder.join(timeout=20)
    assert not errors
    assert store.count_progress_rows(other_day) == 2


def test_two_runs_writing_the_same_day_at_once_leave_one_consistent_row_per_kr(engine):
    store = OkrStore(engine)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(run: str, value: float) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(5):
                store.write_day(DAY, kr_rows(value, run_id=run), support_kpis(value, run_id=run))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"run-{v}", v)) for v in (61.0, 62.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    day = store.progress(as_of=DAY, on_day_only=True)
    assert len(day) == 2 and day["run_id"].nunique() == 1  # the whole day from one run
    assert day["value"].iloc[0] == {"run-61.0": 61.0, "run-62.0": 62.0}[day["run_id"].iloc[0]]


# --- Reading -----------------------------------------------------------------------------------


def test_current_progress_by_team_and_histories(engine):
    store = OkrStore(engine)
    for i in range(4):
        day = DAY + dt.timedelta(days=i)
        store.write_day(
            day,
            pd.concat([kr_rows(60.0 + i), kr_rows(70.0 + i, krs=("uk-nps",), team="sales-uk")]),
            support_kpis(0.3 + i / 100),
        )
    # A KR that stopped two days ago still shows its latest row.
    store.write_day(DAY + dt.timedelta(days=4), kr_rows(99.0, krs=("rev",)), support_kpis(0.5))
    current = store.progress()
    assert current[["kr", "value"]].values.tolist() == [
        ["nps", 63.0],
        ["rev", 99.0],
        ["uk-nps", 73.0],
    ]
    uk = store.progress(team="sales-uk")
    assert uk["kr"].tolist() == ["uk-nps"] and uk["as_of"].tolist() == [DAY + dt.timedelta(days=3)]
    assert store.progress(as_of=DAY + dt.timedelta(days=1))["value"].tolist() == [61.0, 61.0, 71.0]
    history = store.kr_history("2026-Q4", "uk-nps", start=DAY + dt.timedelta(days=1))
    assert history["value"].tolist() == [71.0, 72.0, 73.0]
    kpi = store.kpi_history("win-rate")
    assert kpi["value"].tolist() == pytest.approx([0.3, 0.31, 0.32, 0.33, 0.5])
    assert kpi["as_of"].iloc[0] == DAY and str(kpi["computed_at"].dt.tz) == "UTC"

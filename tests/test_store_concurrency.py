"""Several processes backfilling overlapping days at once: one row per (KR, day), no errors.

The children are real processes (multiprocessing, spawn) with their own engines; they import
only okr_store and pandas (tests/store_support.py), never Dagster or Great Expectations.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing

import sqlalchemy as sa
from store_support import FIRST_DAY, backfill_worker, worker_value

from okr_store.models import KpiValue, KrProgress

WORKERS = 4
KRS = 12
PASSES = 2


def overlapping_days(worker: int) -> list[dt.date]:
    """Worker w backfills days 3w .. 3w+7: each day is written by two or three workers."""
    return [FIRST_DAY + dt.timedelta(days=3 * worker + i) for i in range(8)]


def test_processes_backfilling_overlapping_days_leave_one_row_per_kr_and_day(engine, database_url):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    processes = [
        context.Process(
            target=backfill_worker,
            args=(database_url, w, overlapping_days(w), KRS, PASSES, barrier),
        )
        for w in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    assert [p.exitcode for p in processes] == [0] * WORKERS  # no errors in any writer

    days = sorted({d for w in range(WORKERS) for d in overlapping_days(w)})
    writers = {d: {w for w in range(WORKERS) if d in overlapping_days(w)} for d in days}
    with engine.connect() as conn:
        per_key = conn.execute(
            sa.select(KrProgress.kr, KrProgress.as_of, sa.func.count()).group_by(
                KrProgress.kr, KrProgress.as_of
            )
        ).all()
        rows = conn.execute(sa.select(KrProgress.as_of, KrProgress.run_id, KrProgress.value)).all()
        kpis = conn.execute(sa.select(sa.func.count()).select_from(KpiValue.__table__)).scalar()
    assert len(per_key) == KRS * len(days)
    assert {n for _, _, n in per_key} == {1}
    assert kpis == 2 * len(days)
    by_day: dict[dt.date, set] = {}
    for as_of, run_id, value in rows:
        by_day.setdefault(as_of, set()).add((run_id, value))
    for day, written in by_day.items():
        # Each day holds one writer's complete, consistent write (never a mix of two).
        assert len(written) == 1, (day, written)
        ((run_id, value),) = written
        worker = int(run_id.removeprefix("worker-"))
        assert worker in writers[day] and value == worker_value(worker, day)

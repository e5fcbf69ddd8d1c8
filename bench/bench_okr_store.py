"""Times the OKR store at production size: a year of daily history for 1,000 KRs (and 50 KPIs).

`uv run python bench/bench_okr_store.py [DATABASE_URL]` — SQLite in a temporary folder by
default; pass a PostgreSQL URL (an empty database or schema) to measure that instead.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from okr_store.db import create_engine
from okr_store.repository import OkrStore
from okr_store.schema import upgrade

KRS = 1_000
KPIS = 50
DAYS = 365
TEAMS = [f"team-{i:02d}" for i in range(20)]
FIRST = dt.date(2026, 1, 1)


def day_frames(day: dt.date, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = np.arange(KRS)
    offset = (day - FIRST).days
    now = dt.datetime.now(dt.UTC)
    progress = pd.DataFrame(
        {
            "cycle": np.where(index < KRS // 2, "2026-A", "2026-B"),
            "objective": [f"objective-{i // 4:03d}" for i in index],
            "kr": [f"kr-{i:04d}" for i in index],
            "title": "A key result",
            "team": [TEAMS[i % len(TEAMS)] for i in index],
            "level": "team",
            "ambition": "roofshot",
            "metric": "won_revenue",
            "unit": "EUR",
            "value": index * 10.0 + offset,
            "numerator": None,
            "denominator": None,
            "sample_size": 30,
            "baseline": 0.0,
            "target": 10_000.0,
            "progress": (index * 10.0 + offset) / 10_000,
            "grade": 0.5,
            "expected_progress": offset / DAYS,
            "status": "on_track",
            "definition_version": "v1",
            "run_id": run_id,
            "data_synced_at": now,
            "computed_at": now,
        }
    )
    kpis = pd.DataFrame(
        {
            "kpi": [f"kpi-{i:02d}" for i in range(KPIS)],
            "title": "A KPI",
            "team": [TEAMS[i % len(TEAMS)] for i in range(KPIS)],
            "metric": "win_rate",
            "value": 0.3,
            "sample_size": 40,
            "healthy_min": 0.2,
            "healthy_max": None,
            "health": "healthy",
            "definition_version": "k1",
            "run_id": run_id,
            "data_synced_at": now,
            "computed_at": now,
        }
    )
    return progress, kpis


def timed(label: str, fn, repeat: int = 5):
    fn()  # warm caches and the connection pool
    start = time.perf_counter()
    for _ in range(repeat):
        result = fn()
    print(f"| {label} | {(time.perf_counter() - start) / repeat * 1000:.0f} ms |")
    return result


def main(url: str) -> None:
    engine = create_engine(url)
    upgrade(engine)
    store = OkrStore(engine)
    days = [FIRST + dt.timedelta(days=i) for i in range(DAYS)]
    start = time.perf_counter()
    for day in days:
        store.write_day(day, *day_frames(day, "bench"))
    load = time.perf_counter() - start
    print(
        f"{engine.dialect.name}: {DAYS} days x {KRS} KRs written in {load:.1f} s "
        f"({load / DAYS * 1000:.0f} ms per day's push)\n"
    )
    print("| read (a year of history, 1,000 KRs) | time |\n|---|---|")
    last, mid = days[-1], days[DAYS // 2]
    timed(
        "write one day again (1,000 KRs + 50 KPIs, one transaction)",
        lambda: store.write_day(last, *day_frames(last, "again")),
        repeat=3,
    )
    timed("current progress, all KRs", lambda: store.progress())
    timed("current progress of one team", lambda: store.progress(team="team-07"))
    timed("progress as of a past day", lambda: store.progress(as_of=mid))
    timed("one KR's history (365 days)", lambda: store.kr_history("2026-A", "kr-0042"))
    timed("one KPI's history", lambda: store.kpi_history("kpi-07"))
    timed("current KPI values", lambda: store.kpi_values())
    timed("export-size read: all progress rows", lambda: store.progress_history(), repeat=1)
    engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(f"sqlite:///{tmp}/bench.db")

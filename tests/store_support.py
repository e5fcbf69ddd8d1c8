"""Rows for OKR store tests, and the backfill worker the concurrency test spawns.

Imports only pandas and okr_store: spawned children must never import Dagster or GE.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

CYCLE = "2026-Q4"
FIRST_DAY = dt.date(2026, 10, 1)
SYNCED = dt.datetime(2026, 11, 3, 5, 0, tzinfo=dt.UTC)


def kr_rows(
    value: float,
    *,
    krs: tuple[str, ...] = ("rev", "nps"),
    run_id: str = "run-1",
    team: str = "sales-dach",
    version: str = "v1",
) -> pd.DataFrame:
    """One progress row per KR, all with `value`, shaped like flow.push_day's frames."""
    now = dt.datetime.now(dt.UTC)
    return pd.DataFrame(
        [
            {
                "cycle": CYCLE,
                "objective": "grow",
                "kr": kr,
                "title": f"KR {kr}",
                "team": team,
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
                "grade": min(max((value - 50) / 20, 0.0), 1.0),
                "expected_progress": 0.4,
                "status": "on_track",
                "definition_version": version,
                "run_id": run_id,
                "data_synced_at": SYNCED,
                "computed_at": now,
            }
            for kr in krs
        ]
    )


def kpi_rows(value: float, *, run_id: str = "run-1", kpis: tuple[str, ...] = ("win-rate",)):
    now = dt.datetime.now(dt.UTC)
    return pd.DataFrame(
        [
            {
                "kpi": kpi,
                "title": kpi,
                "team": None,
                "metric": "win_rate",
                "value": value,
                "sample_size": 40,
                "healthy_min": 0.2,
                "healthy_max": None,
                "health": "healthy",
                "definition_version": "k1",
                "run_id": run_id,
                "data_synced_at": SYNCED,
                "computed_at": now,
            }
            for kpi in kpis
        ]
    )


def worker_value(worker: int, day: dt.date) -> float:
    """What worker `worker` writes for `day`: tells afterwards which worker wrote a row."""
    return 1000.0 * (worker + 1) + (day - FIRST_DAY).days


def backfill_worker(url: str, worker: int, days: list[dt.date], krs: int, passes: int, barrier):
    """A child process: backfill `days` (twice over) with its own engine, like `krpulse run
    --from --to` would; any exception propagates and fails the child."""
    from okr_store.db import create_engine
    from okr_store.repository import OkrStore

    engine = create_engine(url)
    store = OkrStore(engine)
    keys = tuple(f"kr-{i:03d}" for i in range(krs))
    barrier.wait(timeout=60)
    try:
        for _ in range(passes):
            for day in days:
                run_id = f"worker-{worker}"
                value = worker_value(worker, day)
                store.write_day(
                    day,
                    kr_rows(value, krs=keys, run_id=run_id),
                    kpi_rows(value, run_id=run_id, kpis=("win-rate", "nps-90d")),
                )
    finally:
        engine.dispose()

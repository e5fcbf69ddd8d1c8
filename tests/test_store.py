"""The OKR store: one row per (KR, day), reruns replace, KPIs kept apart. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from okr_store.models import KpiValue, KrProgress
from okr_store.repository import OkrStore

DAY = dt.date(2026, 11, 2)
NOW = dt.datetime(2026, 11, 3, 6, 0, tzinfo=dt.UTC)


def progress_rows(value: float, krs=("rev", "nps")) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "cycle": "2026-Q4", "objective": "grow", "kr": kr, "title": kr, "team": "sales-dach",
                "level": "team", "ambition": "roofshot", "metric": "nps", "unit": None,
                "value": value, "numerator": None, "denominator": None, "sample_size": 10,
                "baseline": 50.0, "target": 70.0, "progress": (value - 50) / 20, "grade": 0.5,
                "expected_progress": 0.4, "status": "on_track", "definition_version": "v1",
                "run_id": "run-1", "data_synced_at": NOW, "computed_at": NOW,
            }
            for kr in krs
        ]
    )  # fmt: skip


def kpi_rows(value: float) -> pd.DataFrame:
    return pd.DataFrame(
        [{"kpi": "win-rate", "title": "Win rate", "team": None, "metric": "win_rate", "value": value,
          "sample_size": 40, "healthy_min": 0.2, "healthy_max": None, "health": "healthy",
          "definition_version": "k1", "run_id": "run-1", "data_synced_at": NOW, "computed_at": NOW}]
    )  # fmt: skip


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

"""The OKR store's repository: write a day's progress atomically, read what readers need."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from okr_store.db import upsert
from okr_store.models import KpiValue, KrProgress

KR_PROGRESS_COLUMNS = [c.name for c in KrProgress.__table__.columns if c.name != "id"]
KPI_VALUE_COLUMNS = [c.name for c in KpiValue.__table__.columns if c.name != "id"]


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    out = frame.reindex(columns=columns)
    return out.astype(object).where(out.notna(), None).to_dict("records")


class OkrStore:
    """Reads and writes KR progress and KPI values through one SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def write_day(self, as_of: dt.date, progress: pd.DataFrame, kpis: pd.DataFrame) -> None:
        """Replace everything stored for `as_of` with these rows, in one transaction.

        Upserts by (cycle, kr, as_of) and (kpi, as_of); rows of that day for KRs or KPIs that
        are no longer defined are removed, so rerunning a day after an edit converges to the
        same contents as a fresh run.
        """
        kr_table, kpi_table = KrProgress.__table__, KpiValue.__table__
        progress = progress.assign(as_of=as_of)
        kpis = kpis.assign(as_of=as_of)
        with self.engine.begin() as conn:
            upsert(conn, kr_table, _rows(progress, KR_PROGRESS_COLUMNS))
            upsert(conn, kpi_table, _rows(kpis, KPI_VALUE_COLUMNS))
            kept_krs = sa.tuple_(kr_table.c.cycle, kr_table.c.kr).in_(
                list(zip(progress["cycle"], progress["kr"], strict=True))
            )
            stale_rows = sa.delete(kr_table).where(kr_table.c.as_of == as_of)
            conn.execute(stale_rows.where(~kept_krs) if len(progress) else stale_rows)
            gone_kpis = sa.delete(kpi_table).where(kpi_table.c.as_of == as_of)
            if len(kpis):
                gone_kpis = gone_kpis.where(kpi_table.c.kpi.not_in(list(kpis["kpi"])))
            conn.execute(gone_kpis)

    def progress(
        self, *, as_of: dt.date | None = None, team: str | None = None, on_day_only: bool = False
    ) -> pd.DataFrame:
        """Each KR's latest progress row up to `as_of` (or exactly on it with on_day_only)."""
        table = KrProgress.__table__
        query = sa.select(table)
        if as_of is not None:
            query = query.where(table.c.as_of == as_of if on_day_only else table.c.as_of <= as_of)
        if team is not None:
            query = query.where(table.c.team == team)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        if frame.empty:
            return frame
        frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
        latest = frame.sort_values("as_of").groupby(["cycle", "kr"], as_index=False).tail(1)
        return latest.sort_values(["cycle", "objective", "kr"]).reset_index(drop=True)

    def kpi_values(self, *, as_of: dt.date | None = None, team: str | None = None) -> pd.DataFrame:
        table = KpiValue.__table__
        query = sa.select(table)
        if as_of is not None:
            query = query.where(table.c.as_of <= as_of)
        if team is not None:
            query = query.where(table.c.team == team)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        if frame.empty:
            return frame
        frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
        latest = frame.sort_values("as_of").groupby("kpi", as_index=False).tail(1)
        return latest.sort_values("kpi").reset_index(drop=True)

    def kr_history(self, cycle: str, kr: str) -> pd.DataFrame:
        table = KrProgress.__table__
        query = (
            sa.select(table).where(table.c.cycle == cycle, table.c.kr == kr).order_by(table.c.as_of)
        )
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def count_progress_rows(self, as_of: dt.date | None = None) -> int:
        table = KrProgress.__table__
        query = sa.select(sa.func.count()).select_from(table)
        if as_of is not None:
            query = query.where(table.c.as_of == as_of)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

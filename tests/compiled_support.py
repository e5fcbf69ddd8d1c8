"""Where the compiled engine's tests put staged rows: embedded DuckDB, or PostgreSQL staging tables."""

from __future__ import annotations

import uuid

import pandas as pd
import sqlalchemy as sa

from core.canonical import CANONICAL_TABLES, CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.sql.engine import DatabaseStaged, DuckDBStaged
from okr_store.staging import STAGING_TABLES, staging_metadata

TIMEZONE = "Europe/Berlin"


def _rows(frame: pd.DataFrame, table: str) -> list[dict]:
    spec = CANONICAL_TABLES[table]
    out = frame[[c for c in frame.columns if c in spec.columns]].copy()
    for column, kind in spec.columns.items():
        if kind == "date" and column in out:
            out[column] = pd.to_datetime(out[column]).dt.date
    return out.astype(object).where(out.notna(), None).to_dict("records")


class PostgresStaging:
    """The store's real staging tables in a schema of its own on the test PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.schema = f"t_{uuid.uuid4().hex[:10]}"
        self.admin = sa.create_engine(url)
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
        separator = "&" if "?" in url else "?"
        self.engine = sa.create_engine(f"{url}{separator}options=-csearch_path%3D{self.schema}")
        staging_metadata.create_all(
            self.engine, tables=[STAGING_TABLES[t] for t in (DEALS, CUSTOMERS, NPS_RESPONSES)]
        )

    def __call__(self, deals, customers, responses) -> DatabaseStaged:
        with self.engine.begin() as conn:
            for table, frame in (
                (DEALS, deals),
                (CUSTOMERS, customers),
                (NPS_RESPONSES, responses),
            ):
                conn.execute(STAGING_TABLES[table].delete())
                rows = _rows(frame, table)
                if rows:
                    conn.execute(STAGING_TABLES[table].insert(), rows)
        return DatabaseStaged(self.engine, timezone=TIMEZONE)

    def close(self) -> None:
        self.engine.dispose()
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        self.admin.dispose()


def duckdb_staging(deals, customers, responses) -> DuckDBStaged:
    return DuckDBStaged(deals, customers, responses, timezone=TIMEZONE)

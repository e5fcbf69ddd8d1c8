"""Database plumbing shared by staging and the OKR store: engines, schema creation, upserts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; an embedded SQLite file gets its folder and sane concurrency."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001 - DBAPI callback
            # WAL lets the dashboard read while a run writes; busy_timeout waits for a lock
            # instead of failing at once when two processes write.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def upsert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict]) -> None:
    """Insert `rows`, replacing any existing row with the same primary or unique key.

    ON CONFLICT DO UPDATE (PostgreSQL and SQLite alike) rather than delete-then-insert, so two
    runs writing the same rows at once converge on one row each instead of failing.
    """
    if not rows:
        return
    key = _conflict_key(table)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(f"upsert is not implemented for {conn.dialect.name}")
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=key,
        set_={
            c.name: stmt.excluded[c.name]
            for c in table.columns
            if c.name not in key and not c.primary_key
        },
    )
    conn.execute(stmt, list(rows))


def _conflict_key(table: sa.Table) -> list[str]:
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            return [c.name for c in constraint.columns]
    return [c.name for c in table.primary_key.columns]


def create_schema(engine: sa.Engine) -> None:
    """Create every krpulse table that does not exist yet (staging and store)."""
    from connectors.staging import staging_metadata
    from okr_store.models import Base

    staging_metadata.create_all(engine)
    Base.metadata.create_all(engine)

"""Database plumbing shared by staging and the OKR store: engines, write transactions, upserts."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

# How long a SQLite writer waits for another process's write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; an embedded SQLite file gets its folder and sane concurrency."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # A `file:...?uri=true` URL (e.g. `mode=ro`, a read-only copy) names an existing file.
        if parsed.database and parsed.database != ":memory:" and not _sqlite_uri(parsed):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        timeout = SQLITE_BUSY_TIMEOUT_SECONDS
        engine = sa.create_engine(url, connect_args={"timeout": timeout})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001 - DBAPI callback
            # WAL lets the dashboard read while a run writes; busy_timeout waits for a lock
            # instead of failing at once when two processes write.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict],
    *,
    on_conflict: Literal["update", "nothing"] = "update",
) -> None:
    """Insert `rows`, replacing any existing row with the same primary or unique key.

    ON CONFLICT DO UPDATE (PostgreSQL and SQLite alike) rather than delete-then-insert, so two
    runs writing the same rows at once converge on one row each instead of failing.
    `on_conflict="nothing"` keeps existing rows instead (insert-if-missing).
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
    if on_conflict == "nothing":
        conn.execute(stmt.on_conflict_do_nothing(index_elements=key), list(rows))
        return
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


# pg_advisory_xact_lock(namespace, key): krpulse's locks live in their own namespace so they
# never collide with another application's advisory locks on a shared server.
ADVISORY_LOCK_NAMESPACE = 0x6B72  # "kr"


@contextmanager
def write_transaction(engine: sa.Engine, *, lock_key: int | None = None) -> Iterator[sa.Connection]:
    """A transaction that writes, committed on exit and rolled back on error.

    SQLite: BEGIN IMMEDIATE takes the database's write lock up front (waiting up to the busy
    timeout), so a transaction that reads before it writes cannot fail later with "database is
    locked" when another process committed in between. PostgreSQL: with `lock_key`, a
    transaction-scoped advisory lock serialises writers of the same key (one day, say) while
    writers of other keys go on in parallel; it is released at commit or rollback.
    """
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "sqlite":
            # The sqlite3 driver's legacy transaction mode has not begun anything yet; our own
            # BEGIN makes the driver treat the rest as one transaction until COMMIT.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql" and lock_key is not None:
            lock = sa.func.pg_advisory_xact_lock(
                sa.cast(ADVISORY_LOCK_NAMESPACE, sa.Integer), sa.cast(lock_key, sa.Integer)
            )
            conn.execute(sa.select(lock))
        yield conn


class DatabaseVanishedError(RuntimeError):
    """The SQLite file was deleted or replaced while a run wrote to it: what it wrote is lost."""


def _sqlite_uri(url: sa.URL) -> bool:
    return str(url.query.get("uri", "")).lower() == "true"


def sqlite_file(engine: sa.Engine) -> Path | None:
    """The file of an embedded SQLite database, or None (PostgreSQL, in-memory)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if _sqlite_uri(url):
        return Path(url.database.removeprefix("file:"))
    return Path(url.database)


def database_identity(engine: sa.Engine) -> tuple[int, int] | None:
    """Which file the SQLite database is (device, inode), to notice it vanishing mid-run."""
    path = sqlite_file(engine)
    if path is None or not path.exists():
        return None
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def check_database_identity(engine: sa.Engine, identity: tuple[int, int] | None) -> None:
    """Raise DatabaseVanishedError when the SQLite file seen at `identity` is gone or replaced.

    SQLite keeps writing into a deleted file's open handle without complaint: without this
    check a run whose database was deleted under it reports success with everything lost.
    """
    if identity is None:
        return
    path = sqlite_file(engine)
    assert path is not None
    now = database_identity(engine)
    if now == identity:
        return
    what = "deleted" if now is None else "replaced by another file"
    raise DatabaseVanishedError(
        f"the SQLite database {path} was {what} while the run was writing to it: nothing this "
        "run wrote is kept. Restore the file (or run `krpulse db upgrade` for a new one) and "
        "run again; keep other processes from deleting it."
    )


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a reaped run's process must not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


# Columns read back as plain dates, and as UTC-aware timestamps, by every store reader.
DATE_COLUMNS = (
    "as_of",
    "last_pushed_as_of",
    "start",
    "end",
    "cycle_start",
    "cycle_end",
    "week",
    "value_as_of",
)
TIMESTAMP_COLUMNS = (
    "data_synced_at",
    "computed_at",
    "recorded_at",
    "started_at",
    "finished_at",
    "last_pushed_at",
    "last_attempt_at",
    "heartbeat_at",
    "created_at",
    "updated_at",
)


def read_frame(conn: sa.Connection, query: sa.Select) -> pd.DataFrame:
    """A query's rows as a frame with plain dates and UTC-aware timestamps on every database."""
    frame = pd.read_sql(query, conn)
    for col in frame.columns.intersection(DATE_COLUMNS):
        frame[col] = pd.to_datetime(frame[col]).dt.date
    for col in frame.columns.intersection(TIMESTAMP_COLUMNS):
        # SQLite hands back naive UTC, PostgreSQL aware timestamps: one shape for readers.
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def kr_rows(
    table: sa.Table,
    day: str,
    *,
    cycle: str | None,
    kr: str | None,
    team: str | None,
    start: dt.date | None,
    end: dt.date | None,
) -> sa.Select:
    """Rows of a per-KR table (cycle, kr, team, a day column), optionally of one cycle, KR or
    team and between `start` and `end` inclusive, ordered by cycle, KR and day."""
    query = sa.select(table)
    for column, value in (("cycle", cycle), ("kr", kr), ("team", team)):
        if value is not None:
            query = query.where(table.c[column] == value)
    if start is not None:
        query = query.where(table.c[day] >= start)
    if end is not None:
        query = query.where(table.c[day] <= end)
    return query.order_by(table.c.cycle, table.c.kr, table.c[day])

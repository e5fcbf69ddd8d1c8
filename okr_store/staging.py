"""Staging tables in the database: canonical rows upserted by (source, id), quarantine, cursors.

`DatabaseStaging` is the writer (core.sync.StagingWriter) a source is handed; `stage` runs one
source's sync into it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import pandas as pd
import sqlalchemy as sa

from core.canonical import CANONICAL_TABLES, FX_RATES, as_canonical
from core.sync import StagingWriter, SyncReport
from okr_store.db import upsert

log = logging.getLogger(__name__)

staging_metadata = sa.MetaData()
SYNC_ID = "sync_id"
# FX rates have no id: a source's rate of a currency is keyed by the day it starts to hold.
FX_KEY = ("source", "currency", "valid_from")

_SQL_TYPES = {
    "string": lambda: sa.String(),
    "bool": lambda: sa.Boolean(),
    "float": lambda: sa.Float(),
    "int": lambda: sa.Integer(),
    "timestamp": lambda: sa.DateTime(timezone=True),
    "date": lambda: sa.Date(),
}


def _staging_table(name: str) -> sa.Table:
    spec = CANONICAL_TABLES[name]
    key = spec.key if spec.id_column else FX_KEY
    columns = [
        sa.Column(col, _SQL_TYPES[kind](), primary_key=col in key, nullable=col not in key)
        for col, kind in spec.columns.items()
    ]
    # Which sync last wrote the row (sync_history.id): "the rows that changed in this sync".
    columns.append(sa.Column(SYNC_ID, sa.Integer, nullable=True, index=True))
    return sa.Table(f"staging_{name}", staging_metadata, *columns)


STAGING_TABLES: dict[str, sa.Table] = {name: _staging_table(name) for name in CANONICAL_TABLES}

quarantine_table = sa.Table(
    "quarantine",
    staging_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String, nullable=False, index=True),
    sa.Column("table_name", sa.String, nullable=False),
    sa.Column("record_id", sa.String),
    sa.Column("reason", sa.String, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
    # The sync that quarantined the record; and, when the record is an update of a good staged
    # row, the sync that wrote that row: it stays in effect, shadowed, never deleted or changed.
    sa.Column("sync_id", sa.Integer, nullable=True, index=True),
    sa.Column("shadowed_sync_id", sa.Integer, nullable=True),
)

sync_state_table = sa.Table(
    "sync_state",
    staging_metadata,
    sa.Column("source", sa.String, primary_key=True),
    sa.Column("object", sa.String, primary_key=True),
    sa.Column("cursor", sa.DateTime(timezone=True)),
    sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_report", sa.Text),
    # What a source remembers between syncs of an object besides its cursor (JSON): when it last
    # reconciled, the stage metadata it derived flags from.
    sa.Column("state", sa.Text),
)


# One row per merge of one (source, object): the volumes the data gate compares with recent
# history, and the gate's verdict once it has judged the rows that merge wrote.
sync_history_table = sa.Table(
    "sync_history",
    staging_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("object", sa.String, nullable=False),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fetched", sa.Integer, nullable=False),
    sa.Column("changed", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Integer, nullable=False),
    sa.Column("quarantined", sa.Integer, nullable=False),
    sa.Column("staged_before", sa.Integer, nullable=False),
    sa.Column("validation_status", sa.String, nullable=True),  # passed | warned | failed
    sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("validation_report", sa.Text, nullable=True),  # JSON of the ValidationReport
    sa.Index("ix_sync_history_source_object", "source", "object", "id"),
)

# An operator's acceptance of a sync the gate failed (`krpulse validate --accept`): the state
# after that sync becomes the one later syncs are judged against. Audited: who, why, when.
gate_acceptances_table = sa.Table(
    "gate_acceptances",
    staging_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync_id", sa.Integer, nullable=False, index=True),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("object", sa.String, nullable=False),
    sa.Column("accepted_by", sa.String, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("report", sa.Text, nullable=True),  # the failed verdict that was accepted
)

# One row per failed sync attempt of a source: a source whose newest attempt failed after its
# last good sync is failing, and the KRs that depend on it go stale (pipelines/source_health.py).
# Written by `stage`, so `krpulse sync` and the Dagster sync assets record failures alike.
sync_failures_table = sa.Table(
    "sync_failures",
    staging_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Index("ix_sync_failures_source", "source", "id"),
)


class _Syncable(Protocol):
    """What `stage` needs of a source (connectors.base.Source, named here without importing it)."""

    name: str

    def sync(self, writer: StagingWriter, *, home_currency: str) -> list[SyncReport]: ...


def stage(source: _Syncable, engine: sa.Engine, *, home_currency: str) -> list[SyncReport]:
    """Sync `source` into the staging tables of `engine`'s database; one report per object.

    A sync that raises is recorded in sync_failures before the error goes on, so every caller
    (`krpulse sync`, the Dagster sync assets) leaves the same trace of a failing source.
    """
    try:
        return source.sync(DatabaseStaging(engine, source.name), home_currency=home_currency)
    except Exception as exc:
        record_sync_failure(engine, source.name, exc)
        raise


def record_sync_failure(engine: sa.Engine, source: str, error: BaseException) -> None:
    """Record a failed sync attempt of `source`; a store that cannot take it (down, or its
    schema behind) only logs, so the sync's own error is the one the caller sees."""
    row = {
        "source": source,
        "failed_at": dt.datetime.now(dt.UTC),
        # The connectors' errors name settings and env var names, never secret values.
        "error": f"{type(error).__name__}: {error}"[:2000],
    }
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(sync_failures_table), [row])
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not record the failed sync of %s: %s", source, exc)


def latest_sync_failures(
    conn: sa.Connection | sa.Engine, sources: list[str]
) -> dict[str, tuple[dt.datetime, str]]:
    """Each source's newest failed sync attempt: (when, error)."""
    table = sync_failures_table
    newest = (
        sa.select(sa.func.max(table.c.id))
        .where(table.c.source.in_(sources))
        .group_by(table.c.source)
    )
    query = sa.select(table.c.source, table.c.failed_at, table.c.error).where(
        table.c.id.in_(newest)
    )
    frame = _utc(_read_sql(conn, query), "failed_at")
    return {row.source: (row.failed_at.to_pydatetime(), row.error) for row in frame.itertuples()}


class DatabaseStaging:
    """The staging tables as one source's writer: reads and merges touch only its rows."""

    def __init__(self, engine: sa.Engine, source: str):
        self.engine = engine
        self.source = source

    def cursor(self, table: str) -> dt.datetime | None:
        with self.engine.connect() as conn:
            return read_cursor(conn, self.source, table)

    def staged(self, table: str, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return read_staged(self.engine, table, sources=[self.source], columns=columns)

    def state(self, table: str) -> dict:
        with self.engine.connect() as conn:
            return read_state(conn, self.source, table)

    def fx_rates(self, sources: Sequence[str] | None = None) -> pd.DataFrame:
        return read_staged(
            self.engine, FX_RATES, sources=list(sources) if sources is not None else None
        )

    @contextmanager
    def batch(self) -> Iterator[DatabaseBatch]:
        with self.engine.begin() as conn:
            yield DatabaseBatch(conn, self.source)


class DatabaseBatch:
    """One transaction of one source's staging writes (core.sync.StagingBatch)."""

    def __init__(self, conn: sa.Connection, source: str):
        self.conn = conn
        self.source = source

    def staged(self, table: str, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return read_staged(self.conn, table, sources=[self.source], columns=columns)

    def merge_snapshot(
        self, table: str, snapshot: pd.DataFrame, *, quarantined: pd.DataFrame
    ) -> SyncReport:
        return merge_snapshot(
            self.conn, table, snapshot, source=self.source, quarantined=quarantined
        )

    def merge_changes(
        self,
        table: str,
        changed: pd.DataFrame,
        *,
        quarantined: pd.DataFrame,
        cursor: dt.datetime | None,
        deleted_ids: Sequence[str] = (),
        fetched: int | None = None,
        api_calls: int = 0,
        details: dict | None = None,
    ) -> SyncReport:
        return merge_changes(
            self.conn,
            table,
            changed,
            source=self.source,
            quarantined=quarantined,
            cursor=cursor,
            deleted_ids=deleted_ids,
            fetched=fetched,
            api_calls=api_calls,
            details=details,
        )

    def set_state(self, table: str, state: dict) -> None:
        write_state(self.conn, self.source, table, state)

    def drop_fx_rates(self, periods: pd.DataFrame) -> None:
        if periods.empty:
            return
        fx = STAGING_TABLES[FX_RATES]
        self.conn.execute(
            sa.delete(fx).where(
                fx.c.source == self.source,
                fx.c.currency == sa.bindparam("b_currency"),
                fx.c.valid_from == sa.bindparam("b_from"),
            ),
            [
                {"b_currency": currency, "b_from": pd.Timestamp(day).date()}
                for currency, day in zip(periods["currency"], periods["valid_from"], strict=True)
            ],
        )

    def reassign_teams(self, table: str, owner_teams: pd.DataFrame) -> None:
        if owner_teams.empty:
            return
        staging = STAGING_TABLES[table]
        params = [
            {"b_source": self.source, "b_owner": owner, "b_team": None if pd.isna(team) else team}
            for owner, team in zip(
                owner_teams["owner_id"], owner_teams["team"].astype(object), strict=True
            )
        ]
        self.conn.execute(
            sa.update(staging)
            .where(
                staging.c.source == sa.bindparam("b_source"),
                staging.c.owner_id == sa.bindparam("b_owner"),
            )
            .values(team=sa.bindparam("b_team")),
            params,
        )


def _records(frame: pd.DataFrame, table: str, sync_id: int | None = None) -> list[dict]:
    """Rows as plain Python values for SQLAlchemy (None for missing, date for dates), stamped
    with the sync that writes them."""
    spec = CANONICAL_TABLES[table]
    out = frame[[c for c in frame.columns if c in spec.columns]].copy()
    for col, kind in spec.columns.items():
        if kind == "date":
            out[col] = pd.to_datetime(out[col]).dt.date
    out[SYNC_ID] = sync_id
    return out.astype(object).where(out.notna(), None).to_dict("records")


def read_staged(
    conn: sa.Connection | sa.Engine,
    table: str,
    *,
    sources: list[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Canonical frame of everything staged for `table` (deleted rows included, flagged);
    only `columns` of it when given."""
    sa_table = STAGING_TABLES[table]
    query = sa.select(*(sa_table.c[c] for c in columns)) if columns else sa.select(sa_table)
    if sources is not None and "source" in sa_table.c:
        query = query.where(sa_table.c.source.in_(sources))
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            frame = pd.read_sql(query, c)
    else:
        frame = pd.read_sql(query, conn)
    canonical = as_canonical(frame, table)
    return canonical[list(columns)].copy() if columns else canonical


# A staging table whose rows changed by more than this share since PostgreSQL last sampled it
# is analyzed before statements plan on it (autovacuum's default analyze threshold).
STALE_STATISTICS = 0.1


def refresh_statistics(engine: sa.Engine, tables: Sequence[str]) -> list[str]:
    """PostgreSQL: ANALYZE each staging table of `tables` never analyzed, or changed by more
    than STALE_STATISTICS of its rows since; returns the ones analyzed (none elsewhere).

    The compiled engine's statements join a million deals to their customers: planned on a
    table's statistics of before its first full sync (a few rows), they run as nested loops for
    many minutes instead of hash joins for seconds. Autovacuum analyzes eventually, or never
    when it is off; a run that computes in the database right after a sync cannot wait for it.
    """
    if engine.dialect.name != "postgresql":
        return []
    analyzed = []
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in tables:
            name = STAGING_TABLES[table].name
            stats = conn.execute(
                sa.text(
                    "SELECT n_live_tup, n_mod_since_analyze, "
                    "coalesce(last_analyze, last_autoanalyze) IS NULL AS never "
                    "FROM pg_stat_user_tables WHERE relid = to_regclass(:name)"
                ),
                {"name": name},
            ).one_or_none()
            if stats is None:
                continue
            live, changed, never = stats
            if never or changed > STALE_STATISTICS * max(live, 1):
                # The name is the code's own table name, quoted; never a user's value.
                conn.execute(sa.text(f"ANALYZE {conn.dialect.identifier_preparer.quote(name)}"))
                analyzed.append(table)
    return analyzed


def _fingerprint(frame: pd.DataFrame) -> pd.Series:
    return pd.util.hash_pandas_object(frame.astype("string"), index=False)


def merge_snapshot(
    conn: sa.Connection,
    table: str,
    snapshot: pd.DataFrame,
    *,
    source: str,
    quarantined: pd.DataFrame,
) -> SyncReport:
    """Merge a full snapshot of one source's `table` into staging, inside the caller's transaction.

    New and changed rows are upserted by (source, id); rows staged earlier that the snapshot no
    longer contains are marked deleted (kept, so history and audits still see them); the source's
    quarantine for this table is replaced by this snapshot's. Rerunning with the same snapshot
    changes nothing.
    """
    spec = CANONICAL_TABLES[table]
    sa_table = STAGING_TABLES[table]
    existing = read_staged(conn, table, sources=[source])
    key = list(spec.key) if spec.id_column else list(FX_KEY)

    merged = snapshot.merge(
        existing.assign(_old=_fingerprint(existing))[[*key, "_old"]], on=key, how="left"
    )
    changed_mask = merged["_old"].isna() | (merged["_old"] != _fingerprint(snapshot).to_numpy())
    changed = snapshot[changed_mask.to_numpy()]

    deleted = snapshot.iloc[0:0]
    shadowed = _shadowed_rows(conn, table, source, quarantined) if table != FX_RATES else {}
    if table != FX_RATES and "is_deleted" in spec.columns:
        gone = ~existing.set_index(key).index.isin(snapshot.set_index(key).index)
        # A record quarantined in this snapshot is still in the CRM: its good staged row stays.
        gone &= ~existing[spec.id_column].astype("string").isin(list(shadowed)).to_numpy()
        deleted = existing[gone & ~existing["is_deleted"].fillna(False).to_numpy()].copy()
        deleted["is_deleted"] = True
        deleted["is_deleted"] = deleted["is_deleted"].astype("boolean")

    staged_before = len(existing)
    if "is_deleted" in existing.columns:
        staged_before = int((~existing["is_deleted"].fillna(False).astype(bool)).sum())
    sync_id = _start_sync(
        conn,
        source,
        table,
        fetched=len(snapshot) + len(quarantined),
        changed=len(changed),
        deleted=len(deleted),
        quarantined=len(quarantined),
        staged_before=staged_before,
    )
    upsert(conn, sa_table, _records(changed, table, sync_id) + _records(deleted, table, sync_id))

    first_seen = _quarantined_by(conn, source, table)
    conn.execute(
        sa.delete(quarantine_table).where(
            quarantine_table.c.source == source, quarantine_table.c.table_name == table
        )
    )
    _insert_quarantine(conn, table, source, quarantined, sync_id, shadowed, first_seen)
    cursor = None
    if "last_modified_at" in snapshot.columns and snapshot["last_modified_at"].notna().any():
        cursor = snapshot["last_modified_at"].max().to_pydatetime()
    report = SyncReport(
        source=source,
        object=table,
        fetched=len(snapshot) + len(quarantined),
        changed=len(changed),
        deleted=len(deleted),
        quarantined=len(quarantined),
        quarantine_reasons=_reasons(quarantined),
        cursor=cursor.isoformat() if cursor else None,
        shadowed=_count_shadowing(quarantined, spec.id_column, shadowed),
    )
    write_cursor(conn, source, table, cursor, report)
    return report


def merge_changes(
    conn: sa.Connection,
    table: str,
    changed: pd.DataFrame,
    *,
    source: str,
    quarantined: pd.DataFrame,
    cursor: dt.datetime | None,
    deleted_ids: Sequence[str] = (),
    fetched: int | None = None,
    api_calls: int = 0,
    details: dict | None = None,
) -> SyncReport:
    """Merge an incremental extraction into staging, inside the caller's transaction.

    `changed` holds canonical rows (deleted records may be among them with is_deleted=True);
    `deleted_ids` are ids known only to be gone. Rows are upserted by (source, id); quarantine
    entries of the records seen in this run are replaced, so a record fixed in the CRM leaves
    quarantine on the next sync. The cursor is written in the same transaction: if the merge
    rolls back, the cursor does too, and the next run fetches the same changes again.
    """
    spec = CANONICAL_TABLES[table]
    sa_table = STAGING_TABLES[table]
    id_col = spec.id_column
    deleted_count = len(deleted_ids)
    if "is_deleted" in changed.columns and not changed.empty:
        deleted_count += int(changed["is_deleted"].fillna(False).sum())
    sync_id = _start_sync(
        conn,
        source,
        table,
        fetched=fetched if fetched is not None else len(changed) + len(quarantined),
        changed=len(changed),
        deleted=deleted_count,
        quarantined=len(quarantined),
        staged_before=_count_staged(conn, table, source),
    )
    rows = _records(changed, table, sync_id)
    if deleted_ids and id_col:
        known = set(changed[id_col]) if not changed.empty else set()
        gone = [i for i in deleted_ids if i not in known]
        if gone:
            conn.execute(
                sa.update(sa_table)
                .where(sa_table.c.source == source, sa_table.c[id_col].in_(gone))
                .values(is_deleted=True, sync_id=sync_id)
            )
    upsert(conn, sa_table, rows)
    first_seen = _quarantined_by(conn, source, table)
    if id_col:
        seen = [*(changed[id_col].dropna().tolist() if not changed.empty else [])]
        if not quarantined.empty and id_col in quarantined:
            seen += quarantined[id_col].dropna().tolist()
        if seen:
            conn.execute(
                sa.delete(quarantine_table).where(
                    quarantine_table.c.source == source,
                    quarantine_table.c.table_name == table,
                    quarantine_table.c.record_id.in_(seen),
                )
            )
    # A quarantined update of a staged record leaves the staged row as it was (upsert skipped
    # it); the quarantine row names that row.
    shadowed = _shadowed_rows(conn, table, source, quarantined)
    _insert_quarantine(conn, table, source, quarantined, sync_id, shadowed, first_seen)
    report = SyncReport(
        source=source,
        object=table,
        fetched=fetched if fetched is not None else len(changed) + len(quarantined),
        changed=len(changed),
        deleted=deleted_count,
        quarantined=len(quarantined),
        quarantine_reasons=_reasons(quarantined),
        cursor=cursor.isoformat() if cursor else None,
        api_calls=api_calls,
        details=details or {},
        shadowed=_count_shadowing(quarantined, id_col, shadowed),
    )
    write_cursor(conn, source, table, cursor, report)
    return report


def _reasons(quarantined: pd.DataFrame) -> dict[str, int]:
    if quarantined.empty:
        return {}
    return {str(k): int(v) for k, v in quarantined["reason"].value_counts().items()}


def _shadowed_rows(
    conn: sa.Connection, table: str, source: str, quarantined: pd.DataFrame
) -> dict[str, int | None]:
    """{record id: sync that wrote its staged row} of the quarantined records that are updates
    of a live staged row (a currency without a rate, a duplicated id, a score of 11 ...)."""
    id_column = CANONICAL_TABLES[table].id_column
    if not id_column or quarantined.empty or id_column not in quarantined:
        return {}
    ids = sorted(set(quarantined[id_column].dropna().astype(str)))
    if not ids:
        return {}
    sa_table = STAGING_TABLES[table]
    found: dict[str, int | None] = {}
    for start in range(0, len(ids), 5000):  # bound parameters stay under SQLite's limit
        query = sa.select(sa_table.c[id_column], sa_table.c[SYNC_ID]).where(
            sa_table.c.source == source, sa_table.c[id_column].in_(ids[start : start + 5000])
        )
        if "is_deleted" in sa_table.c:
            query = query.where(sa.func.coalesce(sa_table.c.is_deleted, sa.false()) == sa.false())
        found.update({str(i): s for i, s in conn.execute(query).all()})
    return found


def _count_shadowing(
    quarantined: pd.DataFrame, id_column: str | None, shadowed: dict[str, int | None]
) -> int:
    if not shadowed or quarantined.empty or not id_column or id_column not in quarantined:
        return 0
    return int(quarantined[id_column].astype("string").isin(list(shadowed)).sum())


def _insert_quarantine(
    conn: sa.Connection,
    table: str,
    source: str,
    quarantined: pd.DataFrame,
    sync_id: int | None = None,
    shadowed: dict[str, int | None] | None = None,
    first_seen: dict[tuple[str, str], int | None] | None = None,
) -> None:
    """Add quarantine rows; a record quarantined before, unchanged and for the same reason,
    keeps the sync that first quarantined it (the gate counts what is new since it passed)."""
    if quarantined.empty:
        return
    shadowed = shadowed or {}
    first_seen = first_seen or {}
    id_col = CANONICAL_TABLES[table].id_column
    now = dt.datetime.now(dt.UTC)
    records = quarantined.astype(object).where(quarantined.notna(), None).to_dict("records")
    rows = []
    for rec in records:
        record = json.dumps({k: v for k, v in rec.items() if k != "reason"}, default=str)
        rows.append(
            {
                "source": source,
                "table_name": table,
                "record_id": rec.get(id_col) if id_col else None,
                "reason": rec["reason"],
                "record": record,
                "quarantined_at": now,
                "sync_id": first_seen.get((record, rec["reason"]), sync_id),
                "shadowed_sync_id": shadowed.get(str(rec.get(id_col))) if id_col else None,
            }
        )
    conn.execute(sa.insert(quarantine_table), rows)


def _quarantined_by(conn: sa.Connection, source: str, table: str) -> dict[tuple[str, str], int]:
    """{(record JSON, reason): sync that first quarantined it} of the current quarantine."""
    q = quarantine_table
    query = sa.select(q.c.record, q.c.reason, q.c.sync_id).where(
        q.c.source == source, q.c.table_name == table
    )
    return {(record, reason): sync for record, reason, sync in conn.execute(query).all()}


def read_cursor(conn: sa.Connection, source: str, table: str) -> dt.datetime | None:
    """The (source, object) cursor: the newest last-modified time merged so far, or None."""
    value = conn.execute(
        sa.select(sync_state_table.c.cursor).where(
            sync_state_table.c.source == source, sync_state_table.c.object == table
        )
    ).scalar_one_or_none()
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # SQLite hands back naive UTC
    return value


def _state_row(conn: sa.Connection, source: str, table: str) -> sa.Row | None:
    return conn.execute(
        sa.select(sync_state_table).where(
            sync_state_table.c.source == source, sync_state_table.c.object == table
        )
    ).one_or_none()


def write_cursor(
    conn: sa.Connection, source: str, table: str, cursor: dt.datetime | None, report: SyncReport
) -> None:
    row = _state_row(conn, source, table)
    values = {
        "cursor": cursor,
        "last_synced_at": dt.datetime.now(dt.UTC),
        "last_report": json.dumps(report.as_dict(), default=str),
    }
    where = (sync_state_table.c.source == source, sync_state_table.c.object == table)
    if row is None:
        conn.execute(sa.insert(sync_state_table), [{"source": source, "object": table, **values}])
    else:
        conn.execute(sa.update(sync_state_table).where(*where).values(**values))


def read_state(conn: sa.Connection, source: str, table: str) -> dict:
    """What the source remembered for (source, object) besides its cursor; {} before."""
    row = _state_row(conn, source, table)
    return json.loads(row.state) if row is not None and row.state else {}


def write_state(conn: sa.Connection, source: str, table: str, state: dict) -> None:
    """Replace the remembered state of (source, object); the cursor row is created if needed."""
    text = json.dumps(state, default=str, sort_keys=True)
    if _state_row(conn, source, table) is None:
        conn.execute(
            sa.insert(sync_state_table),
            [
                {
                    "source": source,
                    "object": table,
                    "cursor": None,
                    "last_synced_at": dt.datetime.now(dt.UTC),
                    "state": text,
                }
            ],
        )
    else:
        conn.execute(
            sa.update(sync_state_table)
            .where(sync_state_table.c.source == source, sync_state_table.c.object == table)
            .values(state=text)
        )


def read_quarantine(conn: sa.Connection | sa.Engine, *, source: str | None = None) -> pd.DataFrame:
    query = sa.select(quarantine_table).order_by(quarantine_table.c.id)
    if source is not None:
        query = query.where(quarantine_table.c.source == source)
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return pd.read_sql(query, c)
    return pd.read_sql(query, conn)


def last_synced(conn: sa.Connection | sa.Engine, sources: list[str]) -> dict[str, dt.datetime]:
    """When each source last completed a sync (the oldest of its objects)."""
    query = (
        sa.select(sync_state_table.c.source, sa.func.min(sync_state_table.c.last_synced_at))
        .where(sync_state_table.c.source.in_(sources))
        .group_by(sync_state_table.c.source)
    )
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            rows = c.execute(query).all()
    else:
        rows = conn.execute(query).all()
    return {
        src: (ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)) for src, ts in rows if ts is not None
    }


# --- Sync history: what each sync changed, for the data gate -----------------------------------


def _start_sync(conn: sa.Connection, source: str, table: str, **counts: int) -> int:
    """Record one merge in sync_history (same transaction) and return its id for the rows."""
    result = conn.execute(
        sa.insert(sync_history_table).values(
            source=source, object=table, synced_at=dt.datetime.now(dt.UTC), **counts
        )
    )
    return int(result.inserted_primary_key[0])


def _count_staged(conn: sa.Connection, table: str, source: str) -> int:
    """Rows of `source` staged in `table` and not marked deleted."""
    sa_table = STAGING_TABLES[table]
    query = sa.select(sa.func.count()).select_from(sa_table)
    if "source" in sa_table.c:
        query = query.where(sa_table.c.source == source)
    if "is_deleted" in sa_table.c:
        query = query.where(sa.func.coalesce(sa_table.c.is_deleted, sa.false()) == sa.false())
    return int(conn.execute(query).scalar_one())


def _utc(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def latest_syncs(conn: sa.Connection | sa.Engine, sources: list[str]) -> pd.DataFrame:
    """The newest sync_history row of each (source, object) of `sources`."""
    table = sync_history_table
    newest = (
        sa.select(sa.func.max(table.c.id))
        .where(table.c.source.in_(sources))
        .group_by(table.c.source, table.c.object)
    )
    query = sa.select(table).where(table.c.id.in_(newest)).order_by(table.c.source, table.c.id)
    return _utc(_read_sql(conn, query), "synced_at", "validated_at")


def sync_history(
    conn: sa.Connection | sa.Engine, source: str, table: str, *, before: int, limit: int = 14
) -> pd.DataFrame:
    """Earlier syncs of (source, object) than sync `before`, newest first."""
    history = sync_history_table
    query = (
        sa.select(history)
        .where(history.c.source == source, history.c.object == table, history.c.id < before)
        .order_by(history.c.id.desc())
        .limit(limit)
    )
    return _utc(_read_sql(conn, query), "synced_at", "validated_at")


def read_synced_rows(
    conn: sa.Connection | sa.Engine,
    table: str,
    *,
    source: str,
    sync_id: int | None = None,
    since: int | None = None,
) -> pd.DataFrame:
    """Canonical frame of the rows that sync `sync_id` wrote (changed, new or deleted), or, with
    `since`, that any later sync than `since` wrote (0: every row a sync wrote)."""
    sa_table = STAGING_TABLES[table]
    if since is not None:
        query = sa.select(sa_table).where(sa_table.c[SYNC_ID] > since)
    else:
        query = sa.select(sa_table).where(sa_table.c[SYNC_ID] == sync_id)
    if "source" in sa_table.c:
        query = query.where(sa_table.c.source == source)
    return as_canonical(_read_sql(conn, query), table)


def staged_ids(conn: sa.Connection | sa.Engine, table: str, *, source: str) -> pd.Series:
    """Ids of the rows of `source` staged in `table` and not marked deleted."""
    sa_table = STAGING_TABLES[table]
    id_col = CANONICAL_TABLES[table].id_column
    query = sa.select(sa_table.c[id_col]).where(
        sa_table.c.source == source,
        sa.func.coalesce(sa_table.c.is_deleted, sa.false()) == sa.false(),
    )
    return _read_sql(conn, query)[id_col].astype("string")


def staged_currencies(conn: sa.Connection | sa.Engine) -> set[str]:
    """Currencies with a staged FX rate."""
    fx = STAGING_TABLES[FX_RATES]
    frame = _read_sql(conn, sa.select(fx.c.currency).distinct())
    return set(frame["currency"].dropna().astype(str))


def record_validation(conn: sa.Connection, sync_id: int, status: str, report: dict) -> None:
    """Store the data gate's verdict on one sync."""
    conn.execute(
        sa.update(sync_history_table)
        .where(sync_history_table.c.id == sync_id)
        .values(
            validation_status=status,
            validated_at=dt.datetime.now(dt.UTC),
            validation_report=json.dumps(report, default=str),
        )
    )


def _read_sql(conn: sa.Connection | sa.Engine, query: sa.Select) -> pd.DataFrame:
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return pd.read_sql(query, c)
    return pd.read_sql(query, conn)


# --- The gate's reference: the last state that passed ------------------------------------------

# Verdicts after which a sync's state is the reference later syncs are judged against.
PASSING_VERDICTS = ("passed", "warned", "accepted")
ACCEPTED = "accepted"


def baseline_sync(conn: sa.Connection | sa.Engine, source: str, table: str, *, before: int) -> int:
    """The newest sync of (source, object) older than `before` whose state passed the gate (or
    was accepted by an operator); 0 when none has."""
    history = sync_history_table
    query = sa.select(sa.func.max(history.c.id)).where(
        history.c.source == source,
        history.c.object == table,
        history.c.id < before,
        history.c.validation_status.in_(PASSING_VERDICTS),
    )
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return int(c.execute(query).scalar_one_or_none() or 0)
    return int(conn.execute(query).scalar_one_or_none() or 0)


def staged_state(
    conn: sa.Connection | sa.Engine, source: str, table: str, *, since: int, until: int
) -> dict:
    """What the staged state of (source, object) holds now, against sync `since` (the last that
    passed): live rows, the quarantine, and per later sync up to `until` its fetched records,
    the rows it marked deleted that are still deleted, and the records it quarantined that are
    still in quarantine."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return staged_state(c, source, table, since=since, until=until)
    sa_table, q, history = STAGING_TABLES[table], quarantine_table, sync_history_table
    scoped = [sa_table.c.source == source] if "source" in sa_table.c else []
    deleted = (
        sa.func.coalesce(sa_table.c.is_deleted, sa.false()) == sa.true()
        if "is_deleted" in sa_table.c
        else sa.false()
    )
    live = int(
        conn.execute(
            sa.select(sa.func.count()).select_from(sa_table).where(*scoped, ~deleted)
        ).scalar_one()
    )
    in_quarantine = [q.c.source == source, q.c.table_name == table]
    quarantined_now = int(
        conn.execute(sa.select(sa.func.count()).where(*in_quarantine)).scalar_one()
    )
    syncs = pd.read_sql(
        sa.select(
            history.c.id,
            history.c.fetched,
            history.c.staged_before,
            history.c.changed,
            history.c.deleted,
        )
        .where(
            history.c.source == source,
            history.c.object == table,
            history.c.id > since,
            history.c.id <= until,
        )
        .order_by(history.c.id),
        conn,
    )
    still_deleted = (
        dict(
            conn.execute(
                sa.select(sa_table.c[SYNC_ID], sa.func.count())
                .where(*scoped, deleted, sa_table.c[SYNC_ID] > since)
                .group_by(sa_table.c[SYNC_ID])
            ).all()
        )
        if "is_deleted" in sa_table.c
        else {}
    )
    still_quarantined = dict(
        conn.execute(
            sa.select(q.c.sync_id, sa.func.count())
            .where(*in_quarantine, q.c.sync_id > since)
            .group_by(q.c.sync_id)
        ).all()
    )
    syncs["still_deleted"] = syncs["id"].map(still_deleted).fillna(0).astype(int)
    syncs["still_quarantined"] = syncs["id"].map(still_quarantined).fillna(0).astype(int)
    return {
        "live": live,
        "quarantined_now": quarantined_now,
        "deleted_since": int(sum(still_deleted.values())),
        "quarantined_since": int(sum(still_quarantined.values())),
        "syncs": syncs,
    }


def accept_sync(
    conn: sa.Connection, sync_id: int, *, accepted_by: str, reason: str, report: dict | None
) -> None:
    """Record an operator's acceptance of sync `sync_id` (its state becomes the reference);
    later syncs of the same (source, object) are judged again against it."""
    history = sync_history_table
    row = conn.execute(sa.select(history).where(history.c.id == sync_id)).mappings().one()
    now = dt.datetime.now(dt.UTC)
    conn.execute(
        sa.insert(gate_acceptances_table).values(
            sync_id=sync_id,
            source=row["source"],
            object=row["object"],
            accepted_by=accepted_by,
            reason=reason,
            accepted_at=now,
            report=json.dumps(report, default=str) if report else None,
        )
    )
    conn.execute(
        sa.update(history).where(history.c.id == sync_id).values(validation_status=ACCEPTED)
    )
    conn.execute(
        sa.update(history)
        .where(
            history.c.source == row["source"],
            history.c.object == row["object"],
            history.c.id > sync_id,
        )
        .values(validation_status=None, validated_at=None, validation_report=None)
    )


def read_sync(conn: sa.Connection | sa.Engine, sync_id: int) -> dict | None:
    """One sync_history row, or None."""
    frame = _read_sql(conn, sa.select(sync_history_table).where(sync_history_table.c.id == sync_id))
    return None if frame.empty else _utc(frame, "synced_at", "validated_at").iloc[0].to_dict()


def read_acceptances(
    conn: sa.Connection | sa.Engine, sync_ids: list[int] | None = None
) -> pd.DataFrame:
    """Operators' acceptances (who, why, when), newest first; of `sync_ids` only when given."""
    table = gate_acceptances_table
    query = sa.select(table).order_by(table.c.id.desc())
    if sync_ids is not None:
        query = query.where(table.c.sync_id.in_(sync_ids))
    return _utc(_read_sql(conn, query), "accepted_at")


def quarantine_counts(conn: sa.Connection | sa.Engine, sources: list[str]) -> pd.DataFrame:
    """Per (source, object): records in quarantine now, and how many of them shadow a good
    staged row (an update that failed its checks; the earlier row stays in effect)."""
    q = quarantine_table
    query = (
        sa.select(
            q.c.source,
            q.c.table_name.label("object"),
            sa.func.count().label("quarantined"),
            sa.func.count(q.c.shadowed_sync_id).label("shadowing"),
        )
        .where(q.c.source.in_(sources))
        .group_by(q.c.source, q.c.table_name)
        .order_by(q.c.source, q.c.table_name)
    )
    return _read_sql(conn, query)

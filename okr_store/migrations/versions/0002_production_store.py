"""Production store: definitions by version, runs and run days (audit), push state.

Backfills what the foundation's rows already tell: one run per distinct run_id, one run day
per (run, day) written, and the KR and KPI definition versions the stored rows reference.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cycles",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("definition_version", sa.String(40), primary_key=True),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("end", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_table(
        "objectives",
        sa.Column("cycle", sa.String(80), primary_key=True),
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("definition_version", sa.String(40), primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("team", sa.String(120), nullable=True),
        sa.Column("ambition", sa.String(20), nullable=False),
        sa.Column("aligns_to", sa.String(80), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=True),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_table(
        "key_results",
        sa.Column("cycle", sa.String(80), primary_key=True),
        sa.Column("kr", sa.String(80), primary_key=True),
        sa.Column("definition_version", sa.String(40), primary_key=True),
        sa.Column("objective", sa.String(80), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("team", sa.String(120), nullable=True),
        sa.Column("metric", sa.String(80), nullable=False),
        sa.Column("unit", sa.String(20), nullable=True),
        sa.Column("baseline", sa.Float(), nullable=False),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=True),
        sa.Column("first_run_id", sa.String(80), nullable=True),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_table(
        "kpis",
        sa.Column("kpi", sa.String(80), primary_key=True),
        sa.Column("definition_version", sa.String(40), primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("team", sa.String(120), nullable=True),
        sa.Column("metric", sa.String(80), nullable=False),
        sa.Column("healthy_min", sa.Float(), nullable=True),
        sa.Column("healthy_max", sa.Float(), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=True),
        sa.Column("first_run_id", sa.String(80), nullable=True),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(80), primary_key=True),
        sa.Column("origin", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("days_requested", sa.Integer(), nullable=True),
        sa.Column("data_synced_at", TZ, nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "run_days",
        sa.Column("run_id", sa.String(80), primary_key=True),
        sa.Column("as_of", sa.Date(), primary_key=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("kr_rows", sa.Integer(), nullable=False),
        sa.Column("kpi_rows", sa.Integer(), nullable=False),
        sa.Column("definition_versions", sa.JSON(), nullable=False),
        sa.Column("data_synced_at", TZ, nullable=True),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_index("ix_run_days_as_of", "run_days", ["as_of"])
    op.create_table(
        "push_state",
        sa.Column("sink", sa.String(120), primary_key=True),
        sa.Column("cycle", sa.String(80), primary_key=True),
        sa.Column("kr", sa.String(80), primary_key=True),
        sa.Column("target_id", sa.String(200), nullable=False),
        sa.Column("last_pushed_value", sa.Float(), nullable=True),
        sa.Column("last_pushed_as_of", sa.Date(), nullable=True),
        sa.Column("last_pushed_at", TZ, nullable=True),
        sa.Column("last_attempt_at", TZ, nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    _backfill()


# Table shapes as of this revision (never the live models: they move on, this file must not).
_KR_COLUMNS = [
    "cycle",
    "objective",
    "kr",
    "as_of",
    "title",
    "team",
    "metric",
    "unit",
    "baseline",
    "target",
    "definition_version",
    "run_id",
    "data_synced_at",
    "computed_at",
]
_KPI_COLUMNS = [
    "kpi",
    "as_of",
    "title",
    "team",
    "metric",
    "healthy_min",
    "healthy_max",
    "definition_version",
    "run_id",
    "data_synced_at",
    "computed_at",
]


def _read(bind: sa.Connection, table: str, columns: list[str]) -> pd.DataFrame:
    types = {"as_of": sa.Date(), "data_synced_at": TZ, "computed_at": TZ}
    query = sa.select(*(sa.column(c, types.get(c)) for c in columns)).select_from(sa.table(table))
    frame = pd.read_sql(query, bind)
    for col in ("data_synced_at", "computed_at"):
        # SQLite hands back naive UTC, PostgreSQL aware: one aware UTC column either way.
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _records(frame: pd.DataFrame) -> list[dict]:
    frame = frame.astype(object).where(frame.notna(), None)
    return [
        {k: (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v) for k, v in rec.items()}
        for rec in frame.to_dict("records")
    ]


def _backfill() -> None:
    """Runs, run days and definition versions from rows written before this revision."""
    bind = op.get_bind()
    krs = _read(bind, "kr_progress", _KR_COLUMNS)
    kpis = _read(bind, "kpi_values", _KPI_COLUMNS)
    if krs.empty and kpis.empty:
        return
    both = pd.concat(
        [
            krs.assign(version_key=krs["cycle"] + "/" + krs["kr"], kr_rows=1, kpi_rows=0),
            kpis.assign(version_key="kpi:" + kpis["kpi"], kr_rows=0, kpi_rows=1),
        ],
        ignore_index=True,
    )
    runs = both.groupby("run_id", as_index=False).agg(
        started_at=("computed_at", "min"),
        finished_at=("computed_at", "max"),
        data_synced_at=("data_synced_at", "min"),
    )
    runs = runs.assign(
        origin=runs["run_id"].str.startswith("cli-").map({True: "cli", False: "dagster"}),
        status="succeeded",
        days_requested=None,
        message="backfilled by migration 0002 from stored rows",
    )
    days = both.groupby(["run_id", "as_of"], as_index=False).agg(
        kr_rows=("kr_rows", "sum"),
        kpi_rows=("kpi_rows", "sum"),
        data_synced_at=("data_synced_at", "min"),
        recorded_at=("computed_at", "max"),
    )
    versions = (
        both.groupby(["run_id", "as_of"])[["version_key", "definition_version"]]
        .apply(lambda g: dict(zip(g["version_key"], g["definition_version"], strict=True)))
        .rename("definition_versions")
        .reset_index()
    )
    days = days.merge(versions, on=["run_id", "as_of"]).assign(action="written")
    first = lambda frame, key: (  # noqa: E731 - the oldest row of each definition version
        frame.sort_values("computed_at").drop_duplicates(key)
    )
    kr_versions = first(krs, ["cycle", "kr", "definition_version"]).rename(
        columns={"run_id": "first_run_id", "computed_at": "recorded_at"}
    )
    kpi_versions = first(kpis, ["kpi", "definition_version"]).rename(
        columns={"run_id": "first_run_id", "computed_at": "recorded_at"}
    )
    meta = sa.MetaData()
    meta.reflect(bind, only=["runs", "run_days", "key_results", "kpis"])
    for name, frame in (
        ("runs", runs),
        ("run_days", days),
        ("key_results", kr_versions),
        ("kpis", kpi_versions),
    ):
        table = meta.tables[name]
        frame = frame.reindex(columns=[c.name for c in table.columns])
        if not frame.empty:
            bind.execute(sa.insert(table), _records(frame))


def downgrade() -> None:
    for table in ("push_state", "run_days", "runs", "kpis", "key_results", "objectives", "cycles"):
        op.drop_table(table)

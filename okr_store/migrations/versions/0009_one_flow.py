"""One daily flow: failed sync attempts recorded in the store, so `krpulse run` and Dagster judge
a failing source by the same rows (before, only Dagster's event log knew of them); and what the
dashboard's KR page needs precomputed by the flow (chart basis, drill-down records), so the
dashboard reads the store and never runs the engine. Pages are filled by the next run.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sync_failures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("failed_at", TZ, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
    )
    op.create_index("ix_sync_failures_source", "sync_failures", ["source", "id"])
    op.create_table(
        "kr_charts",
        sa.Column("cycle", sa.String(80), primary_key=True),
        sa.Column("kr", sa.String(80), primary_key=True),
        sa.Column("objective", sa.String(80), nullable=False),
        sa.Column("objective_title", sa.Text(), nullable=False),
        sa.Column("objective_owner", sa.String(200), nullable=True),
        sa.Column("cycle_start", sa.Date(), nullable=False),
        sa.Column("cycle_end", sa.Date(), nullable=False),
        sa.Column("success_grade", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(20), nullable=True),
        sa.Column("formula", sa.Text(), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("expected_path", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(80), nullable=False),
        sa.Column("computed_at", TZ, nullable=False),
    )
    op.create_table(
        "kr_drilldowns",
        sa.Column("cycle", sa.String(80), primary_key=True),
        sa.Column("kr", sa.String(80), primary_key=True),
        sa.Column("as_of", sa.Date(), primary_key=True),
        sa.Column("entity", sa.String(40), nullable=True),
        sa.Column("window_start", sa.Date(), nullable=True),
        sa.Column("window_end", sa.Date(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("sample_size", sa.Integer(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("records", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(80), nullable=False),
        sa.Column("computed_at", TZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kr_drilldowns")
    op.drop_table("kr_charts")
    op.drop_index("ix_sync_failures_source", table_name="sync_failures")
    op.drop_table("sync_failures")

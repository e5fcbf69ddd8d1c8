"""Sync history for the data gate: one row per merge of a (source, object), its volumes and the
validation verdict; every staging row names the sync that last wrote it (`sync_id`).

Rows staged before this revision have no sync id: the next sync that touches them stamps them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGING = ("deals", "customers", "nps_responses", "owners", "fx_rates")
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sync_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("object", sa.String(), nullable=False),
        sa.Column("synced_at", TZ, nullable=False),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("staged_before", sa.Integer(), nullable=False),
        sa.Column("validation_status", sa.String(), nullable=True),
        sa.Column("validated_at", TZ, nullable=True),
        sa.Column("validation_report", sa.Text(), nullable=True),
    )
    op.create_index("ix_sync_history_source_object", "sync_history", ["source", "object", "id"])
    for table in STAGING:
        with op.batch_alter_table(f"staging_{table}") as batch:
            batch.add_column(sa.Column("sync_id", sa.Integer(), nullable=True))
            batch.create_index(f"ix_staging_{table}_sync_id", ["sync_id"])


def downgrade() -> None:
    for table in STAGING:
        with op.batch_alter_table(f"staging_{table}") as batch:
            batch.drop_index(f"ix_staging_{table}_sync_id")
            batch.drop_column("sync_id")
    op.drop_index("ix_sync_history_source_object", table_name="sync_history")
    op.drop_table("sync_history")

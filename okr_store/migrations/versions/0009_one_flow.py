"""One daily flow: failed sync attempts recorded in the store, so `krpulse run` and Dagster judge
a failing source by the same rows (before, only Dagster's event log knew of them).

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0005"
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


def downgrade() -> None:
    op.drop_index("ix_sync_failures_source", table_name="sync_failures")
    op.drop_table("sync_failures")

"""The team's week: check-ins (one per KR and ISO week, with their revisions) and retrospectives.

`check_ins` holds each KR's current check-in per week (Monday's date): confidence on the fixed
scale of core.checkins, the progress / problems / next-steps notes, and the KR's stored value on
the day of the check-in. `check_in_revisions` keeps every version ever written (the audit).
`retro_items` holds a cycle's retrospective: items with benefit and effort.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "check_ins",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("cycle", sa.String(80), nullable=False),
        sa.Column("kr", sa.String(80), nullable=False),
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("team", sa.String(120), nullable=True),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Text(), nullable=False),
        sa.Column("problems", sa.Text(), nullable=False),
        sa.Column("next_steps", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("value_as_of", sa.Date(), nullable=True),
        sa.Column("author", sa.String(120), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("cycle", "kr", "week", name="uq_check_ins_cycle_kr_week"),
    )
    op.create_index("ix_check_ins_cycle_week", "check_ins", ["cycle", "week"])
    op.create_table(
        "check_in_revisions",
        sa.Column("check_in_id", sa.Integer(), primary_key=True),
        sa.Column("revision", sa.Integer(), primary_key=True),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Text(), nullable=False),
        sa.Column("problems", sa.Text(), nullable=False),
        sa.Column("next_steps", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("value_as_of", sa.Date(), nullable=True),
        sa.Column("author", sa.String(120), nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_table(
        "retro_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("cycle", sa.String(80), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("benefit", sa.Integer(), nullable=False),
        sa.Column("effort", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(120), nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_index("ix_retro_items_cycle", "retro_items", ["cycle"])


def downgrade() -> None:
    op.drop_index("ix_retro_items_cycle", table_name="retro_items")
    op.drop_table("retro_items")
    op.drop_table("check_in_revisions")
    op.drop_index("ix_check_ins_cycle_week", table_name="check_ins")
    op.drop_table("check_ins")

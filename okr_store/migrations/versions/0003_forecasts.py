"""KR progress rows carry their forecast and margin of error; baseline and target may be unknown.

`forecast_value` / `forecast_grade`: the projected end-of-cycle value and its grade as of the
row's day (kr_metrics.forecast). `margin_of_error`: the 95 % margin of NPS and win-rate values.
A `previous_cycle` baseline without data leaves baseline and target unknown (NULL) rather than 0.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("kr_progress") as batch:
        batch.add_column(sa.Column("forecast_value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("forecast_grade", sa.Float(), nullable=True))
        batch.add_column(sa.Column("margin_of_error", sa.Float(), nullable=True))
        batch.alter_column("baseline", existing_type=sa.Float(), nullable=True)
        batch.alter_column("target", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("kr_progress") as batch:
        batch.alter_column("target", existing_type=sa.Float(), nullable=False)
        batch.alter_column("baseline", existing_type=sa.Float(), nullable=False)
        batch.drop_column("margin_of_error")
        batch.drop_column("forecast_grade")
        batch.drop_column("forecast_value")

"""KR progress rows say where their progress bar starts and why their status is what it is.

`start_value`: where progress is measured from (0 for accumulating KRs, the baseline for levels,
or the KR's own `start:`); progress = (value − start_value) / (target − start_value).
`expected_value`: the value expected by the row's day on the KR's expected path.
`metric_kind`: accumulating or level. `status_reason`: the sentence behind the status (pace and
forecast disagree, the sample is too small to tell, ...). `verdict`: a closed cycle's final
achieved / partially_achieved / missed. Rows written before this revision keep NULL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("kr_progress") as batch:
        batch.add_column(sa.Column("start_value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("expected_value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("metric_kind", sa.String(20), nullable=True))
        batch.add_column(sa.Column("status_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("verdict", sa.String(30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kr_progress") as batch:
        batch.drop_column("verdict")
        batch.drop_column("status_reason")
        batch.drop_column("metric_kind")
        batch.drop_column("expected_value")
        batch.drop_column("start_value")

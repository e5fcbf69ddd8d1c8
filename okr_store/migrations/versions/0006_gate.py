"""The gate judges staged state against the last state that passed; runs can be reaped.

`quarantine.sync_id`: the sync that quarantined the record (the gate counts the quarantine that
appeared since the last passing sync). `quarantine.shadowed_sync_id`: set when the quarantined
record is an update of a good staged row, which stays in effect; it names the sync that wrote
that row. `gate_acceptances`: an operator's audited acceptance of a sync the gate failed (who,
why, when). `runs.pid`, `runs.host`, `runs.heartbeat_at`: which process runs it and when it last
showed life, so a run left `running` by a killed process is marked failed on the next start.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("sync_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("shadowed_sync_id", sa.Integer(), nullable=True))
        batch.create_index("ix_quarantine_sync_id", ["sync_id"])
    op.create_table(
        "gate_acceptances",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("sync_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("object", sa.String(), nullable=False),
        sa.Column("accepted_by", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("accepted_at", TZ, nullable=False),
        sa.Column("report", sa.Text(), nullable=True),
    )
    op.create_index("ix_gate_acceptances_sync_id", "gate_acceptances", ["sync_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", TZ, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("host")
        batch.drop_column("pid")
    op.drop_index("ix_gate_acceptances_sync_id", table_name="gate_acceptances")
    op.drop_table("gate_acceptances")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_index("ix_quarantine_sync_id")
        batch.drop_column("shadowed_sync_id")
        batch.drop_column("sync_id")

"""Indexes on the times the store's version reads (okr_store.weekly.store_version): the dashboard
reads that version on every page view to know whether its cached pages still hold, and without
these indexes the newest run day and check-in revision were found by scanning both tables (a
few ms a view at a year of run days and check-ins; an index answers max() from its last entry).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = [
    ("ix_run_days_recorded_at", "run_days", "recorded_at"),
    ("ix_check_in_revisions_recorded_at", "check_in_revisions", "recorded_at"),
    ("ix_kr_charts_computed_at", "kr_charts", "computed_at"),
]


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)

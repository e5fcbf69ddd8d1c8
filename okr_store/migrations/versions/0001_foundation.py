"""Foundation schema: staging tables, quarantine, sync state, KR progress and KPI values.

Exactly what `create_schema` (metadata.create_all) built before migrations existed, so a
database created that way is stamped at this revision by `krpulse db upgrade` and moves on.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def _key(name: str) -> sa.Column:
    return sa.Column(name, sa.String(), primary_key=True, nullable=False)


def _col(name: str, type_: sa.types.TypeEngine) -> sa.Column:
    return sa.Column(name, type_, nullable=True)


def upgrade() -> None:
    # Staging: canonical columns as they were at this revision (connectors/schema.py).
    op.create_table(
        "staging_deals",
        _key("source"),
        _key("deal_id"),
        *(
            _col(c, sa.String())
            for c in ("customer_id", "name", "owner_id", "team", "pipeline", "stage")
        ),
        _col("is_closed", sa.Boolean()),
        _col("is_won", sa.Boolean()),
        _col("amount", sa.Float()),
        _col("currency", sa.String()),
        _col("amount_home", sa.Float()),
        _col("created_at", TZ),
        _col("close_date", sa.Date()),
        _col("deal_type", sa.String()),
        _col("last_modified_at", TZ),
        _col("is_deleted", sa.Boolean()),
    )
    op.create_table(
        "staging_customers",
        _key("source"),
        _key("customer_id"),
        *(
            _col(c, sa.String())
            for c in ("name", "segment", "region", "industry", "owner_id", "team")
        ),
        _col("created_at", TZ),
        _col("last_modified_at", TZ),
        _col("is_deleted", sa.Boolean()),
    )
    op.create_table(
        "staging_nps_responses",
        _key("source"),
        _key("response_id"),
        _col("customer_id", sa.String()),
        _col("score", sa.Integer()),
        _col("submitted_at", TZ),
        _col("survey_id", sa.String()),
        _col("comment", sa.String()),
        _col("last_modified_at", TZ),
        _col("is_deleted", sa.Boolean()),
    )
    op.create_table(
        "staging_owners",
        _key("source"),
        _key("owner_id"),
        *(_col(c, sa.String()) for c in ("name", "email", "team")),
    )
    op.create_table(
        "staging_fx_rates",
        _key("currency"),
        _col("rate_to_home", sa.Float()),
        sa.Column("valid_from", sa.Date(), primary_key=True, nullable=False),
        _col("valid_to", sa.Date()),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("table_name", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("quarantined_at", TZ, nullable=False),
    )
    op.create_index("ix_quarantine_source", "quarantine", ["source"])
    op.create_table(
        "sync_state",
        _key("source"),
        _key("object"),
        sa.Column("cursor", TZ, nullable=True),
        sa.Column("last_synced_at", TZ, nullable=False),
        sa.Column("last_report", sa.Text(), nullable=True),
    )

    op.create_table(
        "kr_progress",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("cycle", sa.String(80), nullable=False),
        sa.Column("objective", sa.String(80), nullable=False),
        sa.Column("kr", sa.String(80), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("team", sa.String(120), nullable=True),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("ambition", sa.String(20), nullable=False),
        sa.Column("metric", sa.String(80), nullable=False),
        sa.Column("unit", sa.String(20), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("numerator", sa.Float(), nullable=True),
        sa.Column("denominator", sa.Float(), nullable=True),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("baseline", sa.Float(), nullable=False),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("grade", sa.Float(), nullable=True),
        sa.Column("expected_progress", sa.Float(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("stale_reason", sa.Text(), nullable=True),
        sa.Column("definition_version", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(80), nullable=False),
        sa.Column("data_synced_at", TZ, nullable=True),
        sa.Column("computed_at", TZ, nullable=False),
        sa.UniqueConstraint("cycle", "kr", "as_of", name="uq_kr_progress_cycle_kr_as_of"),
    )
    op.create_index("ix_kr_progress_team_as_of", "kr_progress", ["team", "as_of"])
    op.create_index("ix_kr_progress_as_of", "kr_progress", ["as_of"])

    op.create_table(
        "kpi_values",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kpi", sa.String(80), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("team", sa.String(120), nullable=True),
        sa.Column("metric", sa.String(80), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("healthy_min", sa.Float(), nullable=True),
        sa.Column("healthy_max", sa.Float(), nullable=True),
        sa.Column("health", sa.String(20), nullable=False),
        sa.Column("definition_version", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(80), nullable=False),
        sa.Column("data_synced_at", TZ, nullable=True),
        sa.Column("computed_at", TZ, nullable=False),
        sa.UniqueConstraint("kpi", "as_of", name="uq_kpi_values_kpi_as_of"),
    )
    op.create_index("ix_kpi_values_as_of", "kpi_values", ["as_of"])


def downgrade() -> None:
    for table in (
        "kpi_values",
        "kr_progress",
        "sync_state",
        "quarantine",
        "staging_fx_rates",
        "staging_owners",
        "staging_nps_responses",
        "staging_customers",
        "staging_deals",
    ):
        op.drop_table(table)

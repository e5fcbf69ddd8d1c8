"""FX rates keyed by source, and what a source remembers between syncs of an object.

`staging_fx_rates.source`: two orgs may book different rates for the same currency and day; each
source now keeps its own (the key becomes source, currency, valid_from). Rates staged before this
revision are given to the one source whose sync state shows it staged fx_rates; when none or
several did, they keep an empty source and the next sync of each source stages its own again
(every source re-reads its rates in full each sync, so nothing is lost).
`sync_state.state`: JSON a source keeps next to an object's cursor (when it last reconciled,
the stage metadata its flags were derived from).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COLUMNS = "currency, rate_to_home, valid_from, valid_to, sync_id"


def _fx_table(name: str, key: list[str]) -> None:
    op.create_table(
        name,
        *(
            [sa.Column("source", sa.String(), primary_key=True, nullable=False)]
            if "source" in key
            else []
        ),
        sa.Column("currency", sa.String(), primary_key=True, nullable=False),
        sa.Column("rate_to_home", sa.Float(), nullable=True),
        sa.Column("valid_from", sa.Date(), primary_key=True, nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("sync_id", sa.Integer(), nullable=True),
    )


def _replace_fx_table(key: list[str], copy: str, params: dict | None = None) -> None:
    """Primary keys cannot be altered alike on SQLite and PostgreSQL: build, copy, swap."""
    _fx_table("staging_fx_rates_next", key)
    op.get_bind().execute(sa.text(copy), params or {})
    op.drop_index("ix_staging_fx_rates_sync_id", table_name="staging_fx_rates")
    op.drop_table("staging_fx_rates")
    op.rename_table("staging_fx_rates_next", "staging_fx_rates")
    op.create_index("ix_staging_fx_rates_sync_id", "staging_fx_rates", ["sync_id"])


def upgrade() -> None:
    conn = op.get_bind()
    stagers = [
        row[0]
        for row in conn.execute(
            sa.text("SELECT DISTINCT source FROM sync_state WHERE object = 'fx_rates'")
        )
    ]
    owner = stagers[0] if len(stagers) == 1 else ""
    with op.batch_alter_table("sync_state") as batch:
        batch.add_column(sa.Column("state", sa.Text(), nullable=True))
    _replace_fx_table(
        ["source", "currency", "valid_from"],
        f"INSERT INTO staging_fx_rates_next (source, {COLUMNS})"  # noqa: S608 - column names
        f" SELECT :owner, {COLUMNS} FROM staging_fx_rates",
        {"owner": owner},
    )


def downgrade() -> None:
    # The older key holds one rate per currency and day: keep the first source's (by name).
    _replace_fx_table(
        ["currency", "valid_from"],
        f"INSERT INTO staging_fx_rates_next ({COLUMNS}) SELECT {COLUMNS} FROM staging_fx_rates"  # noqa: S608
        " AS rate WHERE rate.source = (SELECT MIN(other.source) FROM staging_fx_rates AS other"
        " WHERE other.currency = rate.currency AND other.valid_from = rate.valid_from)",
    )
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("state")

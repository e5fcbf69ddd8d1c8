"""Alembic environment: configured programmatically by okr_store.schema (no alembic.ini)."""

from alembic import context

from okr_store.schema import target_metadata

config = context.config


def run_migrations_offline() -> None:
    """Emit SQL for `alembic upgrade --sql` style use; nothing is executed."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata(),
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # okr_store.schema hands over an open connection whose transaction it owns (and, on
    # PostgreSQL, whose advisory lock serialises concurrent upgrades).
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        # SQLite cannot ALTER most things; batch mode recreates tables where needed.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

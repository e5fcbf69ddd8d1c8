"""Schema migrations (Alembic, configured in code): upgrade a database, or refuse one behind."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from okr_store.db import write_transaction
from okr_store.models import Base
from okr_store.staging import staging_metadata

MIGRATIONS = "okr_store:migrations"
# The revision that equals the schema `metadata.create_all` built before migrations existed.
BASELINE_REVISION = "0001"
# Advisory lock key (in okr_store.db's namespace) that serialises concurrent upgrades; day
# writes use the day's ordinal, which is never this small.
_UPGRADE_LOCK_KEY = 1
FIX_COMMAND = "krpulse db upgrade"


class SchemaOutOfDateError(RuntimeError):
    """The database's schema is not the one this krpulse needs; the message says what to run."""


def target_metadata() -> list[sa.MetaData]:
    """Every krpulse table the migrations must build: staging and the OKR store."""
    return [staging_metadata, Base.metadata]


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config pointing at the migrations shipped inside the package (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@functools.cache
def head_revision() -> str:
    """The revision this code needs: the newest migration."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "okr_store/migrations/versions holds no revision"
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    return frozenset(
        r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    )


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands: its revision (None when unversioned) against the code's head."""

    url: str
    current: str | None
    head: str
    has_tables: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def problem(self) -> str | None:
        """None when up to date, else what is wrong and the command that fixes it."""
        if self.up_to_date:
            return None
        where = f"the database at {self.url}"
        if self.current is None and not self.has_tables:
            return f"{where} has no krpulse schema yet: run `{FIX_COMMAND}` to create it"
        if self.current is None:
            return (
                f"{where} was created before krpulse used migrations: run `{FIX_COMMAND}` "
                "to adopt its tables and bring it to the current schema"
            )
        if self.current not in known_revisions():
            return (
                f"{where} is at schema revision {self.current}, which this krpulse does not "
                f"know (a newer krpulse migrated it; it needs {self.head}): upgrade krpulse"
            )
        return (
            f"{where} is at schema revision {self.current} but this krpulse needs {self.head}: "
            f"run `{FIX_COMMAND}`"
        )


def _current(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _has_foundation_tables(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table("kr_progress")


def schema_status(engine: sa.Engine) -> SchemaStatus:
    with engine.connect() as conn:
        current = _current(conn)
        has_tables = current is not None or _has_foundation_tables(conn)
    return SchemaStatus(
        url=engine.url.render_as_string(hide_password=True),
        current=current,
        head=head_revision(),
        has_tables=has_tables,
    )


def ensure_current(engine: sa.Engine) -> None:
    """Raise SchemaOutOfDateError (naming the fix) unless the schema is exactly the code's."""
    problem = schema_status(engine).problem()
    if problem:
        raise SchemaOutOfDateError(problem)


def upgrade(engine: sa.Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database to `revision` in one transaction; returns (before, after).

    A database built by the foundation's `create_all` (tables but no version) is first stamped
    at the baseline revision. Concurrent upgrades are serialised (SQLite's write lock, an
    advisory lock on PostgreSQL); the second one finds nothing left to do.
    """
    with write_transaction(engine, lock_key=_UPGRADE_LOCK_KEY) as conn:
        before = _current(conn)
        config = alembic_config()
        config.attributes["connection"] = conn
        if before is None and _has_foundation_tables(conn):
            command.stamp(config, BASELINE_REVISION)
        command.upgrade(config, revision)
        after = _current(conn)
    return before, after

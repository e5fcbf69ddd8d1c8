"""Shared fixtures: canonical frames from literal rows, databases (SQLite and PostgreSQL), demo org."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from core.canonical import conform, empty_frame
from okr_store.db import create_engine
from okr_store.schema import upgrade

REPO = Path(__file__).resolve().parents[1]
POSTGRES_ENV = "KRPULSE_TEST_POSTGRES_URL"


def canonical(table: str, rows: list[dict], source: str = "test") -> pd.DataFrame:
    """Literal rows -> canonical frame, through the same conform() the connectors use."""
    if not rows:
        return empty_frame(table).assign(source=pd.Series(dtype="string"))
    conformed = conform(pd.DataFrame(rows), table, source=source)
    assert conformed.quarantined.empty, conformed.quarantined.to_dict("records")
    return conformed.valid


def _database_urls() -> list:
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]


@pytest.fixture(params=_database_urls())
def database_url(request, tmp_path) -> str:
    """A fresh, empty krpulse database: a SQLite file, and the real PostgreSQL when configured."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'krpulse.db'}"
    url = os.environ.get(POSTGRES_ENV)
    if not url and os.environ.get("CI"):
        # On CI the store suite must run on PostgreSQL, never be skipped quietly.
        pytest.fail(f"{POSTGRES_ENV} is not set on CI: the store tests need PostgreSQL there")
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL to test the store against here")
    # One schema per test keeps tests independent without dropping anybody's tables.
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    request.addfinalizer(lambda: _drop_schema(admin, schema))
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def _drop_schema(admin: sa.Engine, schema: str) -> None:
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def engine(database_url):
    """An engine on a database built the way production builds it: through the migrations."""
    engine = create_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """The demo org's files, generated once per test session."""
    from connectors.demo_org import generate_demo_org

    folder = tmp_path_factory.mktemp("demo-data")
    generate_demo_org(folder)
    return folder


def make_demo_project(folder: Path, demo_data: Path) -> Path:
    """Fill `folder` with krpulse.yaml, the repo's definitions, the demo data and a migrated
    database, as after `krpulse db upgrade`."""
    shutil.copytree(REPO / "definitions", folder / "definitions")
    shutil.copytree(demo_data, folder / "demo-data")
    (folder / "krpulse.yaml").write_text(
        "timezone: Europe/Berlin\n"
        "reporting_currency: EUR\n"
        f"database_url: sqlite:///{folder / 'krpulse.db'}\n"
        "definitions: definitions/\n"
        "sources:\n"
        "  - {name: demo, type: files, path: demo-data}\n"
    )
    # Its database is set up as after `krpulse db upgrade`: the app refuses a schema behind.
    project_engine = create_engine(f"sqlite:///{folder / 'krpulse.db'}")
    upgrade(project_engine)
    project_engine.dispose()
    return folder


def copy_demo_project(source: Path, folder: Path) -> Path:
    """A copy of a demo project (its database included) that points at its own database."""
    shutil.copytree(source, folder)
    config = folder / "krpulse.yaml"
    config.write_text(
        config.read_text().replace(str(source / "krpulse.db"), str(folder / "krpulse.db"))
    )
    return folder


@pytest.fixture
def demo_project(tmp_path, demo_data) -> Path:
    """A project folder with krpulse.yaml, the repo's definitions, the demo data and a migrated
    database."""
    return make_demo_project(tmp_path, demo_data)


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def staging(request):
    """Where the compiled engine finds staged rows: (deals, customers, responses) -> Staged,
    on embedded DuckDB and on the store's staging tables in PostgreSQL."""
    from compiled_support import PostgresStaging, duckdb_staging

    if request.param == "duckdb":
        yield duckdb_staging
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url and os.environ.get("CI"):
        pytest.fail(
            f"{POSTGRES_ENV} is not set on CI: the compiled engine must be tested on PostgreSQL there"
        )
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL to run the compiled engine on here")
    postgres = PostgresStaging(url)
    yield postgres
    postgres.close()

"""Alembic migrations: from an empty database, from the previous revision with data in it, from
a pre-migration database; and the app refuses a schema that is behind. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from okr_store import schema
from okr_store.db import create_engine
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.cli import cli
from pipelines.settings import load_settings

PREVIOUS = "0001"
NOW = dt.datetime(2026, 11, 3, 6, 0, tzinfo=dt.UTC)


@pytest.fixture
def empty(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def test_migrations_build_every_table_from_an_empty_database_exactly_as_the_models(empty):
    assert schema.upgrade(empty) == (None, schema.head_revision())
    with empty.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, schema.target_metadata())
    # A model changed without a migration shows up here: add a revision under
    # okr_store/migrations/versions/.
    assert differences == []
    assert schema.schema_status(empty).up_to_date


def _foundation_rows(conn: sa.Connection) -> None:
    """Rows as the foundation (revision 0001) wrote them."""
    conn.execute(
        sa.text(
            "INSERT INTO kr_progress (cycle, objective, kr, as_of, title, team, level, ambition,"
            " metric, value, sample_size, baseline, target, progress, grade, expected_progress,"
            " status, definition_version, run_id, data_synced_at, computed_at) VALUES"
            " ('2026-Q4', 'grow', :kr, :as_of, 'NPS', 'sales-dach', 'team', 'roofshot', 'nps',"
            " :value, 10, 50, 70, 0.5, 0.5, 0.4, 'on_track', :version, :run, :synced, :now)"
        ),
        [
            {
                "kr": "nps",
                "as_of": dt.date(2026, 11, 1),
                "value": 60.0,
                "version": "a1",
                "run": "cli-aaa",
                "synced": NOW,
                "now": NOW,
            },
            {
                "kr": "nps",
                "as_of": dt.date(2026, 11, 2),
                "value": 61.0,
                "version": "a2",
                "run": "cli-bbb",
                "synced": NOW,
                "now": NOW,
            },
            {
                "kr": "rev",
                "as_of": dt.date(2026, 11, 2),
                "value": 9.0,
                "version": "b1",
                "run": "cli-bbb",
                "synced": NOW,
                "now": NOW,
            },
        ],
    )
    conn.execute(
        sa.text(
            "INSERT INTO kpi_values (kpi, as_of, title, metric, value, sample_size, health,"
            " definition_version, run_id, computed_at) VALUES ('win-rate', :as_of, 'Win rate',"
            " 'win_rate', 0.3, 40, 'healthy', 'k1', 'cli-bbb', :now)"
        ),
        {"as_of": dt.date(2026, 11, 2), "now": NOW},
    )
    conn.execute(
        sa.text(
            "INSERT INTO staging_deals (source, deal_id, is_closed, is_won, currency)"
            " VALUES ('demo', 'd-1', true, true, 'EUR')"
        )
    )


def test_upgrading_from_the_previous_revision_keeps_the_data_and_backfills_the_audit(empty):
    assert schema.upgrade(empty, PREVIOUS) == (None, PREVIOUS)
    with empty.begin() as conn:
        _foundation_rows(conn)
    assert schema.upgrade(empty) == (PREVIOUS, schema.head_revision())

    store = OkrStore(empty)
    assert store.kr_history("2026-Q4", "nps")["value"].tolist() == [60.0, 61.0]
    assert store.kpi_history("win-rate")["value"].tolist() == [0.3]
    with empty.connect() as conn:
        assert conn.execute(sa.text("SELECT deal_id FROM staging_deals")).scalars().all() == ["d-1"]
    runs = store.runs().set_index("run_id")
    assert sorted(runs.index) == ["cli-aaa", "cli-bbb"]
    assert set(runs["origin"]) == {"cli"} and set(runs["status"]) == {"succeeded"}
    day = store.run_days(run_id="cli-bbb").iloc[0]
    assert (day["kr_rows"], day["kpi_rows"]) == (2, 1)
    assert day["definition_versions"] == {
        "2026-Q4/nps": "a2",
        "2026-Q4/rev": "b1",
        "kpi:win-rate": "k1",
    }
    versions = store.definitions("key_results")
    assert sorted(zip(versions["kr"], versions["definition_version"], strict=True)) == [
        ("nps", "a1"),
        ("nps", "a2"),
        ("rev", "b1"),
    ]
    # The migrated store keeps working: a new day writes and reads as usual.
    assert store.progress()["value"].tolist() == [61.0, 9.0]


def test_a_database_created_before_migrations_is_adopted(empty):
    schema.upgrade(empty, PREVIOUS)
    with empty.begin() as conn:
        _foundation_rows(conn)
        conn.execute(sa.text("DROP TABLE alembic_version"))  # as `create_all` left it
    status = schema.schema_status(empty)
    assert status.current is None and "created before krpulse used migrations" in status.problem()
    assert schema.upgrade(empty) == (None, schema.head_revision())
    assert OkrStore(empty).count_progress_rows() == 3


def test_upgrading_twice_changes_nothing(empty):
    schema.upgrade(empty)
    assert schema.upgrade(empty) == (schema.head_revision(), schema.head_revision())


def test_the_app_refuses_a_schema_behind_and_names_the_command(demo_project):
    settings = load_settings(demo_project / "krpulse.yaml")
    (demo_project / "krpulse.db").unlink()
    engine = create_engine(settings.effective_database_url)
    schema.upgrade(engine, PREVIOUS)
    engine.dispose()
    with pytest.raises(schema.SchemaOutOfDateError, match="run `krpulse db upgrade`"):
        flow.open_database(settings)

    runner = CliRunner()
    config = ["--config", str(demo_project / "krpulse.yaml")]
    refused = runner.invoke(cli, [*config, "sync"])
    assert refused.exit_code == 1
    assert f"is at schema revision {PREVIOUS} but this krpulse needs" in refused.output
    assert "krpulse db upgrade" in refused.output

    current = runner.invoke(cli, [*config, "db", "current", "--check"])
    assert current.exit_code == 1 and PREVIOUS in current.output
    upgraded = runner.invoke(cli, [*config, "db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"upgraded from {PREVIOUS} to revision {schema.head_revision()}" in upgraded.output
    assert runner.invoke(cli, [*config, "db", "current", "--check"]).exit_code == 0
    assert runner.invoke(cli, [*config, "sync"]).exit_code == 0


def test_the_demo_sets_up_its_own_database_and_says_so(demo_project):
    (demo_project / "krpulse.db").unlink()
    result = CliRunner().invoke(cli, ["--config", str(demo_project / "krpulse.yaml"), "demo"])
    assert result.exit_code == 0, result.output
    assert f"Database schema upgraded from empty to {schema.head_revision()}" in result.output


def test_every_revision_upgrades_from_the_one_before_with_progress_rows_in_it(empty):
    """Each revision in turn, with a day of progress stored before it: the rows survive."""
    from alembic.script import ScriptDirectory

    revisions = [
        r.revision for r in ScriptDirectory.from_config(schema.alembic_config()).walk_revisions()
    ]
    revisions.reverse()  # oldest first
    schema.upgrade(empty, revisions[0])
    with empty.begin() as conn:
        _foundation_rows(conn)
    before = pd.read_sql(
        "SELECT cycle, kr, as_of, value FROM kr_progress ORDER BY kr, as_of", empty
    )
    for revision in revisions[1:]:
        schema.upgrade(empty, revision)
        after = pd.read_sql(
            "SELECT cycle, kr, as_of, value FROM kr_progress ORDER BY kr, as_of", empty
        )
        pd.testing.assert_frame_equal(before, after, check_dtype=False)
    assert schema.schema_status(empty).up_to_date

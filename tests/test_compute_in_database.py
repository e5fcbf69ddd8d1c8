"""The day run computes next to the data on PostgreSQL: the compiled statements run on the store's
staging tables (`DatabaseStaged`, only the configured sources' rows) and give, row for row, the
values, progress and KPIs that embedded DuckDB computes over the frames `load_prepared` reads —
with deleted rows, quarantined updates (their good staged row shadowed, kept) and staged sources
that are not configured. And the run does not read the staged rows into its process to compute."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import POSTGRES_ENV, REPO
from hypothesis import HealthCheck, assume, given, settings
from sqlalchemy.dialects.postgresql import dialect as postgresql
from test_compiled_engine import definitions_for, key_results
from test_engine_properties import ORIGIN, orgs

from connectors.demo_org import DEMO_AS_OF
from core.canonical import CUSTOMERS, DEALS, METRIC_TABLES, NPS_RESPONSES, conform
from kr_metrics import pages
from kr_metrics.definitions import DefinitionError
from kr_metrics.sql.engine import DatabaseStaged, DuckDBStaged
from okr_store.db import create_engine
from okr_store.schema import upgrade
from okr_store.staging import (
    STAGING_TABLES,
    merge_changes,
    quarantine_table,
    read_staged,
    refresh_statistics,
)
from pipelines import flow
from pipelines.settings import ConfigError, FilesSourceSettings, Settings, load_settings

pytestmark = pytest.mark.postgres

DEMO_DAYS = [dt.date(2026, 9, 30), dt.date(2026, 10, 1), dt.date(2026, 11, 5), DEMO_AS_OF]
KEYS = {"values": ["as_of", "kind", "key"], "progress": ["cycle", "kr"], "kpis": ["kpi"]}


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url and os.environ.get("CI"):
        pytest.fail(f"{POSTGRES_ENV} is not set on CI: computing in the database needs PostgreSQL")
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL to compute next to the data here")
    return url


class Schema:
    """A schema of its own on the test PostgreSQL, migrated as production's store is."""

    def __init__(self, url: str) -> None:
        self.name = f"t_{uuid.uuid4().hex[:10]}"
        self.admin = sa.create_engine(url)
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{self.name}"'))
        separator = "&" if "?" in url else "?"
        self.url = f"{url}{separator}options=-csearch_path%3D{self.name}"
        self.engine = create_engine(self.url)
        upgrade(self.engine)

    def drop(self) -> None:
        self.engine.dispose()
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


def _project(root: Path, url: str, sources: list[str], compute: str = "auto") -> Settings:
    lines = "".join(f"  - {{name: {name}, type: files, path: {name}-data}}\n" for name in sources)
    config = root / f"krpulse-{'-'.join(sources)}-{compute}.yaml"
    config.write_text(
        "timezone: Europe/Berlin\nreporting_currency: EUR\n"
        f"database_url: {url}\ndefinitions: definitions/\n"
        f"engine: {{compute: {compute}}}\nsources:\n{lines}"
    )
    return load_settings(config)


def _quarantined_update_and_deletions(engine: sa.Engine, source: str, rows: int) -> None:
    """A later sync of `source`: its first live deal comes back with a negative amount
    (quarantined; the staged row stays in effect, shadowed) and the next `rows` are deleted."""
    live = read_staged(engine, DEALS, sources=[source])
    live = live[~live["is_deleted"].fillna(False)].head(rows + 1)
    bad = live.head(1).astype("string").assign(amount="-5")
    conformed = conform(bad, DEALS, source=source)
    assert len(conformed.quarantined) == 1
    with engine.begin() as conn:
        merge_changes(
            conn,
            DEALS,
            conformed.valid,
            source=source,
            quarantined=conformed.quarantined,
            cursor=None,
            deleted_ids=live["deal_id"].iloc[1:].tolist(),
        )


@pytest.fixture(scope="module")
def demo_store(postgres_url, tmp_path_factory, demo_data):
    """The demo org (source `demo`) and a slice of it as a second source (`extra`) synced into
    PostgreSQL; then, in each, one quarantined update of a staged deal and a few deletions."""
    root = tmp_path_factory.mktemp("pg-demo")
    shutil.copytree(REPO / "definitions", root / "definitions")
    shutil.copytree(demo_data, root / "demo-data")
    (root / "extra-data").mkdir()
    for name in ("deals", "customers", "nps_responses"):
        frame = pd.read_csv(demo_data / f"{name}.csv", dtype=str)
        frame.head(300).to_csv(root / "extra-data" / f"{name}.csv", index=False)
    schema = Schema(postgres_url)
    both = _project(root, schema.url, ["demo", "extra"])
    flow.sync_sources(both, schema.engine)
    for source in ("demo", "extra"):
        _quarantined_update_and_deletions(schema.engine, source, rows=3)
    with schema.engine.connect() as conn:
        shadowed = conn.execute(
            sa.select(sa.func.count()).where(quarantine_table.c.shadowed_sync_id.is_not(None))
        ).scalar_one()
    assert shadowed >= 2  # the quarantined updates shadow good staged rows
    yield root, schema
    schema.drop()


def assert_same_days(actual: dict, expected: dict) -> None:
    """Days computed two ways are the same, row for row: values, progress and KPIs."""
    assert actual.keys() == expected.keys()
    for day in expected:
        for name, got, want in zip(KEYS, actual[day], expected[day], strict=True):
            key = KEYS[name]
            got = got.sort_values(key).reset_index(drop=True)
            want = want.sort_values(key).reset_index(drop=True)
            pd.testing.assert_frame_equal(
                got, want, check_exact=False, rtol=1e-9, atol=1e-9, obj=f"{day} {name}"
            )


@pytest.mark.parametrize("configured", [["demo", "extra"], ["demo"], ["extra"]])
def test_the_demo_org_computed_in_postgres_equals_duckdb_over_frames(demo_store, configured):
    root, schema = demo_store
    settings = _project(root, schema.url, configured)
    definitions = flow.load_definition_set(settings)
    staged = flow.staged_data(settings, schema.engine)
    assert isinstance(staged, DatabaseStaged) and staged.sources == configured
    in_database = flow.compute_days(settings, definitions, staged, DEMO_DAYS)
    over_frames = DuckDBStaged.from_prepared(flow.load_prepared(settings, schema.engine))
    assert_same_days(in_database, flow.compute_days(settings, definitions, over_frames, DEMO_DAYS))
    progress = in_database[DEMO_AS_OF][1]
    assert len(progress) == 8 and progress["value"].notna().sum() >= 3  # not two empty frames


def test_a_staged_source_that_is_not_configured_does_not_count(demo_store):
    root, schema = demo_store
    definitions = flow.load_definition_set(_project(root, schema.url, ["demo"]))

    def records_counted(sources: list[str] | None) -> float:
        staged = DatabaseStaged(schema.engine, timezone="Europe/Berlin", sources=sources)
        values = flow.compute_days(
            _project(root, schema.url, ["demo"]), definitions, staged, [DEMO_AS_OF]
        )[DEMO_AS_OF][0]
        return values["sample_size"].sum()

    assert records_counted(["demo"]) < records_counted(["demo", "extra"]) == records_counted(None)
    assert records_counted([]) == 0


SOURCES = ["alpha", "beta", "gamma"]


def _stage(engine: sa.Engine, source: str, org, resent: list[int]) -> None:
    """Stage one random org as `source` (first sync), then a second sync that sends the deals
    at `resent` again with a negative amount and the first response with a score of 11: both
    quarantined, their good staged rows kept."""
    deals, customers, responses = org
    with engine.begin() as conn:
        for table, rows in ((CUSTOMERS, customers), (DEALS, deals), (NPS_RESPONSES, responses)):
            conformed = conform(pd.DataFrame(rows, dtype=object), table, source=source)
            merge_changes(
                conn,
                table,
                conformed.valid,
                source=source,
                quarantined=conformed.quarantined,
                cursor=None,
            )
        bad_deals = [dict(deals[i], amount=-1) for i in resent if i < len(deals)]
        bad_responses = [dict(r, score=11) for r in responses[:1]]
        for table, rows in ((DEALS, bad_deals), (NPS_RESPONSES, bad_responses)):
            if rows:
                conformed = conform(pd.DataFrame(rows, dtype=object), table, source=source)
                merge_changes(
                    conn,
                    table,
                    conformed.valid,
                    source=source,
                    quarantined=conformed.quarantined,
                    cursor=None,
                )


@pytest.fixture(scope="module")
def random_store(postgres_url):
    schema = Schema(postgres_url)
    yield schema
    schema.drop()


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    staged_orgs=st.lists(orgs(), min_size=len(SOURCES), max_size=len(SOURCES)),
    configured=st.lists(st.sampled_from(SOURCES), min_size=1, max_size=2, unique=True),
    resent=st.lists(st.integers(0, 10), max_size=3),
    krs=key_results,
    start_offset=st.integers(10, 40),
    length=st.integers(5, 30),
    span=st.integers(0, 8),
)
def test_random_orgs_computed_in_postgres_equal_duckdb_over_frames(
    random_store, staged_orgs, configured, resent, krs, start_offset, length, span
):
    """Several staged sources, only some configured, deleted rows and quarantined updates:
    the database computes exactly what DuckDB computes over the configured sources' frames."""
    engine = random_store.engine
    cycle_start = ORIGIN.date() + dt.timedelta(days=start_offset)
    with tempfile.TemporaryDirectory() as folder:
        try:
            definitions = definitions_for(
                krs, cycle_start, cycle_start + dt.timedelta(days=length), Path(folder)
            )
        except DefinitionError:
            assume(False)
    with engine.begin() as conn:
        for table in [*STAGING_TABLES.values(), quarantine_table]:
            conn.execute(table.delete())
    for source, org in zip(SOURCES, staged_orgs, strict=True):
        _stage(engine, source, org, resent)
    settings_ = Settings(
        timezone="Europe/Berlin",
        sources=[FilesSourceSettings(name=n, type="files", path=Path(n)) for n in configured],
    )
    days = [cycle_start + dt.timedelta(days=2 + i) for i in range(span + 1)]
    staged = flow.staged_data(settings_, engine)
    assert isinstance(staged, DatabaseStaged)
    in_database = flow.compute_days(settings_, definitions, staged, days)
    over_frames = DuckDBStaged.from_prepared(flow.load_prepared(settings_, engine))
    assert_same_days(in_database, flow.compute_days(settings_, definitions, over_frames, days))
    # The KR pages' drill-downs too: the same records of the configured sources only.
    requests = [(loaded, kr, days[-1]) for loaded, kr in definitions.key_results()]
    drilled = [pages.drilldown_rows(definitions, requests, s) for s in (staged, over_frames)]
    for in_db, in_duckdb in zip(*drilled, strict=True):
        assert in_db.pop("value") == pytest.approx(in_duckdb.pop("value"), nan_ok=True)
        for row in (in_db, in_duckdb):
            row["records"].sort(key=lambda r: (r["source"], r["record_id"]))
        assert in_db == in_duckdb
        assert {r["source"] for r in in_db["records"]} <= set(configured)


def test_compute_setting_chooses_where(demo_store, tmp_path):
    root, schema = demo_store
    assert isinstance(
        flow.staged_data(_project(root, schema.url, ["demo"], "duckdb"), schema.engine),
        DuckDBStaged,
    )
    assert isinstance(
        flow.staged_data(_project(root, schema.url, ["demo"], "database"), schema.engine),
        DatabaseStaged,
    )
    sqlite = create_engine(f"sqlite:///{tmp_path / 'krpulse.db'}")
    assert not flow.computes_in_database(_project(root, "sqlite://", ["demo"]), sqlite)
    with pytest.raises(ConfigError, match="engine.compute: database needs the store on Postgre"):
        flow.computes_in_database(_project(root, "sqlite://", ["demo"], "database"), sqlite)


def _spy_on_loading(monkeypatch) -> tuple[list, list]:
    """Who asks for the staged frames (`load_prepared`), and what compute_days computes over."""
    loads, computed_over = [], []
    real_load, real_compute, real_pages = flow.load_prepared, flow.compute_days, flow.write_kr_pages
    in_pages = []

    def load(*args, **kwargs):
        loads.append("drill-downs" if in_pages else "elsewhere")
        return real_load(*args, **kwargs)

    def compute(settings, definitions, staged, days):
        computed_over.append(type(staged))
        return real_compute(settings, definitions, staged, days)

    def write_pages(*args, **kwargs):
        in_pages.append(True)
        try:
            return real_pages(*args, **kwargs)
        finally:
            in_pages.pop()

    monkeypatch.setattr(flow, "load_prepared", load)
    monkeypatch.setattr(flow, "compute_days", compute)
    monkeypatch.setattr(flow, "write_kr_pages", write_pages)
    return loads, computed_over


def test_the_day_run_on_postgres_computes_without_reading_the_staged_rows(demo_store, monkeypatch):
    """run_days computes in the database, the numbers and the KR pages' drill-downs (the
    compiled records behind each number): the staged rows are never read into the process."""
    root, schema = demo_store
    settings = _project(root, schema.url, ["demo", "extra"])
    loads, computed_over = _spy_on_loading(monkeypatch)
    # A day after every cycle: KPIs only, no KR page to write.
    flow.run_days(settings, schema.engine, [dt.date(2027, 3, 1)], publish=False)
    assert computed_over == [DatabaseStaged]
    assert loads == []
    results = flow.run_days(settings, schema.engine, [DEMO_AS_OF], publish=False)
    assert computed_over == [DatabaseStaged, DatabaseStaged]
    assert loads == []
    drilled = pd.read_sql("SELECT count(*) AS n FROM kr_drilldowns", schema.engine)["n"].iloc[0]
    assert drilled >= 6  # the drill-downs were written, from the database
    assert len(results[0].progress) >= 6


def test_the_day_run_writes_the_same_rows_whichever_engine_computes(demo_store):
    root, schema = demo_store
    days = [dt.date(2026, 11, 5), DEMO_AS_OF]
    runs = {}
    for compute in ("duckdb", "database"):
        settings = _project(root, schema.url, ["demo", "extra"], compute)
        results = flow.run_days(settings, schema.engine, days, publish=False)
        runs[compute] = {r.as_of: (r.values, r.progress, r.kpis) for r in results}
    assert_same_days(runs["database"], runs["duckdb"])
    stored = pd.read_sql("SELECT count(*) AS n FROM kr_progress", schema.engine)["n"].iloc[0]
    assert stored > 0 and not np.isnan(stored)


def test_krpulse_run_and_preview_on_postgres_lint_without_reading_the_staged_rows(
    demo_store, monkeypatch, tmp_path
):
    """The warnings about the staged data (a filter value no record has, a previous-cycle
    baseline of zero) are asked of the staging tables, like the numbers: `krpulse run` and
    `preview` on PostgreSQL never read the staged rows into the process, and still warn."""
    from click.testing import CliRunner

    from pipelines.cli import cli

    root, schema = demo_store
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    q4 = tmp_path / "definitions" / "2026-Q4.yaml"
    q4.write_text(
        q4.read_text().replace(
            "where: {team: sales-dach}", "where: {team: sales-dach, region: DACHH}", 1
        )
    )
    config = tmp_path / "krpulse.yaml"
    config.write_text(
        "timezone: Europe/Berlin\nreporting_currency: EUR\n"
        f"database_url: {schema.url}\ndefinitions: definitions/\n"
        f"sources:\n  - {{name: demo, type: files, path: {root / 'demo-data'}}}\n"
        f"  - {{name: extra, type: files, path: {root / 'extra-data'}}}\n"
    )
    loads, computed_over = _spy_on_loading(monkeypatch)
    runner = CliRunner()
    for command in ("preview", "run"):
        result = runner.invoke(
            cli, ["--config", str(config), command, "--as-of", "2027-03-01", "--format", "json"]
        )
        assert result.exit_code == 0, result.output
        assert "where: region: DACHH — no staged deal, customer or NPS response" in result.output
    assert loads == []
    assert computed_over == [DatabaseStaged, DatabaseStaged]


def test_the_configured_sources_are_a_bound_parameter_never_sql_text():
    sources = ["demo", "o'hara; DROP TABLE staging_deals"]
    staged = DatabaseStaged(sa.create_engine("sqlite://"), timezone="UTC", sources=sources)
    for table in staged.tables.values():
        compiled = sa.select(sa.func.count()).select_from(table).compile(dialect=postgresql())
        assert "o'hara" not in compiled.string and "demo" not in compiled.string
        assert compiled.params == {"staged_sources": sources}


def test_staging_tables_never_analyzed_are_analyzed_before_the_database_computes(postgres_url):
    """Planned on statistics of before the first full sync, the compiled statements ran as
    nested loops over a million deals for many minutes (bench/README.md); with them, seconds."""
    schema = Schema(postgres_url)
    try:
        _stage(schema.engine, "alpha", ORG_WITH_A_DEAL, resent=[])
        assert refresh_statistics(schema.engine, METRIC_TABLES) == list(METRIC_TABLES)
        with schema.engine.connect() as conn:
            analyzed = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_user_tables WHERE relname LIKE 'staging_%' "
                    "AND schemaname = current_schema() AND last_analyze IS NOT NULL"
                )
            ).scalar_one()
        assert analyzed == len(METRIC_TABLES)
    finally:
        schema.drop()


ORG_WITH_A_DEAL = (
    [
        {
            "deal_id": "D1",
            "customer_id": "C0",
            "is_closed": "true",
            "is_won": "true",
            "amount": 10,
            "currency": "EUR",
            "amount_home": 10,
            "created_at": "2026-09-02T10:00:00+00:00",
            "close_date": "2026-09-10",
        }
    ],
    [{"customer_id": "C0", "segment": "SMB"}],
    [],
)

"""The compiled engine: every KR and KPI of a definition set as set-based SQL, on embedded DuckDB
over the staged frames (via Arrow) or on the database that holds the staging tables.

It shares the engine's orchestration (`kr_metrics.engine.evaluate_with`): a first pass collects
the leaf metrics every KR, KPI, baseline and margin of error needs, the compiler turns them into
one statement per metric family, and a second pass assembles the same frame as the pandas
engine from their results. pandas is only the interchange at the edges: frames in, frames out.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from kr_metrics.definitions import DefinitionSet
from kr_metrics.engine import Series, evaluate_with
from kr_metrics.metrics import MetricSpec, Window
from kr_metrics.sql.compiler import Compiler, Leaf, Sums
from kr_metrics.sql.views import ENTITIES, Views, staged_tables

# DuckDB speaks PostgreSQL's SQL: statements are rendered by SQLAlchemy's PostgreSQL dialect
# with `?` placeholders, DuckDB's own.
DUCKDB_DIALECT = postgresql.dialect(paramstyle="qmark")


class Staged(Protocol):
    """Where the staged canonical rows are and how to run a statement over them."""

    tables: dict[str, sa.FromClause]
    timezone: str

    def run(self, statements: dict[tuple, sa.Select]) -> dict[tuple, pd.DataFrame]: ...


def _by_day(frame: pd.DataFrame) -> pd.DataFrame:
    frame.index = pd.to_datetime(frame.pop("day")).dt.date
    return frame


def _referenced_columns(statements, tables: dict[str, sa.Table]) -> dict[str, list[str]]:
    """The columns of each staged table the statements read: only those cross into DuckDB."""
    wanted: dict[str, set[str]] = {entity: set() for entity in tables}
    by_table = {table: entity for entity, table in tables.items()}
    for statement in statements:
        for element in sa.sql.visitors.iterate(statement):
            table = getattr(element, "table", None)
            if isinstance(element, sa.Column) and table in by_table:
                wanted[by_table[table]].add(element.name)
    return {
        entity: [col.name for col in tables[entity].c if col.name in names]
        for entity, names in wanted.items()
    }


def duckdb_config() -> dict:
    """One DuckDB thread unless KRPULSE_DUCKDB_THREADS says more: the daily run shares a small
    machine with Dagster and the validation gate, and each thread holds its own hash tables, so
    one thread keeps peak memory lowest; a second core buys little time at a million deals."""
    return {"threads": int(os.environ.get("KRPULSE_DUCKDB_THREADS", "1"))}


class DuckDBStaged:
    """Staged canonical rows in an embedded, in-memory DuckDB, handed over as Arrow.

    Built from pandas frames (as `okr_store.staging.read_staged` returns them) or, with
    `from_parquet`, from Parquet files read column by column — only the columns the compiled
    statements read ever cross into DuckDB.
    """

    def __init__(
        self,
        deals: pd.DataFrame,
        customers: pd.DataFrame,
        nps_responses: pd.DataFrame,
        *,
        timezone: str,
    ):
        frames = {"deals": deals, "customers": customers, "nps_responses": nps_responses}
        self.sources = {entity: _frame_source(frame) for entity, frame in frames.items()}
        self.timezone = timezone
        self.tables = staged_tables()
        self.config = duckdb_config()

    @classmethod
    def from_prepared(cls, data) -> DuckDBStaged:
        """The staged frames a PreparedData was made from (kr_metrics.engine.prepare keeps them)."""
        if data.staged is None:
            raise ValueError(
                "these prepared frames do not carry their staged frames; build them with prepare()"
            )
        return cls(*data.staged, timezone=data.timezone)

    @classmethod
    def from_parquet(cls, folder, *, timezone: str) -> DuckDBStaged:
        """`deals.parquet`, `customers.parquet`, `nps_responses.parquet` of a folder (canonical
        columns), read with Arrow: text columns as dictionaries, unread columns never loaded."""
        staged = cls.__new__(cls)
        staged.sources = {
            entity: _parquet_source(Path(folder) / f"{entity}.parquet") for entity in ENTITIES
        }
        staged.timezone = timezone
        staged.tables = staged_tables()
        staged.config = duckdb_config()
        return staged

    def run(self, statements: dict[tuple, sa.Select]) -> dict[tuple, pd.DataFrame]:
        import duckdb

        connection = duckdb.connect(config=self.config)
        try:
            columns = _referenced_columns(statements.values(), self.tables)
            for entity in ENTITIES:
                connection.register(entity, self.sources[entity](columns[entity] or ["source"]))
            results = {}
            for key, statement in statements.items():
                compiled = statement.compile(
                    dialect=DUCKDB_DIALECT, compile_kwargs={"render_postcompile": True}
                )
                params = [compiled.params[name] for name in compiled.positiontup]
                results[key] = _by_day(connection.execute(compiled.string, params).df())
            return results
        finally:
            connection.close()


def _frame_source(frame: pd.DataFrame):
    def arrow(columns: list[str]):
        import pyarrow as pa

        return pa.table({name: _arrow_column(frame, name) for name in columns})

    return arrow


def _parquet_source(path: Path):
    def arrow(columns: list[str]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        present = [c for c in columns if c in schema.names]
        text = [
            c
            for c in present
            if pa.types.is_string(schema.field(c).type)
            or pa.types.is_large_string(schema.field(c).type)
        ]
        table = pq.read_table(path, columns=present, read_dictionary=text)
        for name in columns:
            if name not in present:
                table = table.append_column(name, pa.nulls(len(table)))
        return table

    return arrow


def _arrow_column(frame: pd.DataFrame, name: str):
    """One frame column as Arrow. Text becomes a dictionary (codes + distinct values): ids,
    teams and regions repeat, and a million copied strings would be most of the run's memory."""
    import pyarrow as pa

    if name not in frame:
        return pa.nulls(len(frame))
    column = frame[name]
    if column.dtype == object or isinstance(column.dtype, pd.StringDtype):
        codes, uniques = pd.factorize(column)
        indices = pa.array(codes.astype("int32"), mask=codes < 0)
        return pa.DictionaryArray.from_arrays(
            indices, pa.array(uniques.astype(object), type=pa.string())
        )
    return pa.array(column, from_pandas=True)


class DatabaseStaged:
    """The staging tables of the store's database (PostgreSQL): compute next to the data.

    `sources` (the configured sources' names) limits every view to their rows, as the flow's
    `load_prepared` reads them (`okr_store.staging.read_staged(..., sources=names)`): staged rows
    of other sources, say one removed from krpulse.yaml, never count. The names are one bound
    (expanding) parameter per table; `None` reads every source's rows.
    """

    def __init__(
        self,
        connectable: sa.Engine | sa.Connection,
        *,
        timezone: str,
        sources: Sequence[str] | None = None,
        prefix: str = "staging_",
        schema: str | None = None,
    ):
        self.connectable = connectable
        self.timezone = timezone
        self.sources = None if sources is None else list(sources)
        tables = staged_tables(prefix, schema)
        self.tables = tables if self.sources is None else _of_sources(tables, self.sources)

    def run(self, statements: dict[tuple, sa.Select]) -> dict[tuple, pd.DataFrame]:
        results = {}
        with (
            self.connectable.connect()
            if isinstance(self.connectable, sa.Engine)
            else _borrowed(self.connectable)
        ) as connection:
            for key, statement in statements.items():
                rows = connection.execute(statement)
                frame = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
                kept = _not_numbers(statement)
                for column in frame.columns.drop("day"):
                    if column in kept:
                        continue
                    try:  # numbers arrive as Decimal from PostgreSQL
                        frame[column] = pd.to_numeric(frame[column]).astype("float64")
                    except (TypeError, ValueError):
                        continue
                results[key] = _by_day(frame)
        return results


def _not_numbers(statement: sa.Select) -> set[str]:
    """The statement's columns typed as text, flags, dates or instants: they stay as they are
    (an id "00123" or a survey id "2026" is text, not a number)."""
    kept = (sa.String, sa.Boolean, sa.Date, sa.DateTime)
    return {column.key for column in statement.selected_columns if isinstance(column.type, kept)}


def _of_sources(tables: dict[str, sa.Table], sources: list[str]) -> dict[str, sa.FromClause]:
    """Each staged table narrowed to the rows of `sources`: a subquery the views read in its
    place (PostgreSQL pushes the condition and the unread columns down into the scan)."""
    return {
        entity: sa.select(table)
        .where(table.c.source.in_(sa.bindparam("staged_sources", sources, expanding=True)))
        .subquery(entity)
        for entity, table in tables.items()
    }


class _borrowed:
    """A connection the caller owns: used, not closed."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sa.Connection:
        return self.connection

    def __exit__(self, *exc) -> None:
        return None


def _key(where: dict) -> str:
    return json.dumps(where, sort_keys=True, default=str)


class _Collecting:
    """First pass: records every leaf the definitions need; answers with no values."""

    def __init__(self) -> None:
        self.leaves: dict[Leaf, None] = {}

    def scope(self, where: dict) -> tuple[str, ...]:
        return (_key(where),) if where else ()

    def narrow(self, scope: tuple[str, ...], filters: dict) -> tuple[str, ...]:
        return scope + (_key(filters),)

    def leaf(self, spec: MetricSpec, scope, windows: Sequence[Window], basis: str) -> Series:
        self.leaves.setdefault(Leaf(spec, spec.name, scope, basis, tuple(windows)), None)
        empty = np.full(len(windows), np.nan)
        return Series(empty, empty.copy(), empty.copy(), np.zeros(len(windows)))


class _Computed(_Collecting):
    """Second pass: the compiled statements' results, combined as the pandas engine combines."""

    def __init__(self, sums: dict[Leaf, Sums]) -> None:
        super().__init__()
        self.sums = sums

    def leaf(self, spec: MetricSpec, scope, windows: Sequence[Window], basis: str) -> Series:
        return leaf_series(spec, self.sums[Leaf(spec, spec.name, scope, basis, tuple(windows))])


def leaf_series(spec: MetricSpec, sums: Sums) -> Series:
    """A leaf's value from its window sums (what kr_metrics.engine._additive_series does)."""
    num, den, count = sums.num, sums.den, sums.n
    if spec.reduce:
        return Series(num, num.copy(), np.full(len(num), np.nan), count)
    with np.errstate(divide="ignore", invalid="ignore"):
        if spec.combine == "ratio":
            value = np.where(den != 0, spec.scale * num / np.where(den != 0, den, 1), np.nan)
            return Series(value, num, den, count)
        if spec.combine == "per_constant":
            value = np.where(den != 0, num / np.where(den != 0, den, 1), np.nan)
            return Series(value, num, den, den.copy())
    return Series(num, num.copy(), np.full(len(num), np.nan), count)


def compute_leaves(leaves: Sequence[Leaf], staged: Staged) -> dict[Leaf, Sums]:
    """Compile the leaves into one statement per family, run them, read each leaf's sums."""
    compiler = Compiler(Views(staged.tables, staged.timezone))
    for leaf in leaves:
        compiler.add(leaf)
    return compiler.read(staged.run(compiler.statements()))


def evaluate_history(
    definitions: DefinitionSet,
    staged: Staged,
    start: dt.date,
    end: dt.date,
    *,
    kpis_from: dt.date | None = None,
) -> pd.DataFrame:
    """One row per (day, KR of a cycle running that day) and per (day, KPI), start..end inclusive:
    the same frame as kr_metrics.engine.evaluate_history, computed in SQL."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    collecting = _Collecting()
    evaluate_with(definitions, collecting, start, end, kpis_from=kpis_from)
    sums = compute_leaves(list(collecting.leaves), staged)
    return evaluate_with(definitions, _Computed(sums), start, end, kpis_from=kpis_from)


def evaluate(definitions: DefinitionSet, staged: Staged, as_of: dt.date) -> pd.DataFrame:
    return evaluate_history(definitions, staged, as_of, as_of)


def metric_over_windows(
    spec: MetricSpec,
    library: dict[str, MetricSpec],
    staged: Staged,
    where: dict,
    windows: Sequence[Window],
    *,
    basis: str = "count",
) -> Series:
    """One metric (built-in, custom, ratio or derived) over windows for one `where`."""
    from kr_metrics.engine import series_of

    collecting = _Collecting()
    series_of(spec, library, collecting, collecting.scope(where), windows, basis=basis)
    computed = _Computed(compute_leaves(list(collecting.leaves), staged))
    return series_of(spec, library, computed, computed.scope(where), windows, basis=basis)


def computed_baselines(
    key_results: Sequence[tuple], library: dict[str, MetricSpec], staged: Staged
) -> dict[tuple[str, str], float | None]:
    """The baseline of each (loaded objective, KR) — its number, or the metric over the whole
    previous cycle — by (cycle, KR key), all from one compiled run: the leaves of every
    `previous_cycle` baseline are collected first and compiled together, as in
    `evaluate_history`, so no statement is per KR."""
    from kr_metrics.engine import baseline_with

    def each(backend) -> dict[tuple[str, str], float | None]:
        return {
            (loaded.cycle.key, kr.key): baseline_with(
                kr, loaded.cycle, library[kr.metric], library, backend, backend.scope(kr.where)
            )
            for loaded, kr in key_results
        }

    collecting = _Collecting()
    each(collecting)
    if not collecting.leaves:  # only numeric baselines: nothing to run
        return each(collecting)
    return each(_Computed(compute_leaves(list(collecting.leaves), staged)))

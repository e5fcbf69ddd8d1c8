"""DuckDB scans the staged frames in place: whatever pandas representation a column arrives in
(nullable "string"/"boolean"/"Int64", plain object with None, an all-None object column DuckDB
cannot type, a column the frame lacks), the compiled engine reads the canonical types and gives
the pandas engine's numbers; a column of the wrong kind is refused, never guessed."""

from __future__ import annotations

import datetime as dt

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from test_engine_properties import ORIGIN, filters, frames, orgs

from core.canonical import CANONICAL_TABLES, CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.engine import metric_series, prepare, window_for
from kr_metrics.metrics import METRICS, scope_for
from kr_metrics.sql.engine import DuckDBStaged, metric_over_windows

TIMEZONE = "Europe/Berlin"
ENTITIES = (DEALS, CUSTOMERS, NPS_RESPONSES)
# Columns no metric requires: these may be empty in a real org, or missing from a frame.
OPTIONAL = {
    DEALS: ["team", "customer_id", "amount_home", "deal_type", "close_date", "is_deleted"],
    CUSTOMERS: ["segment", "region", "team", "industry", "is_deleted"],
    NPS_RESPONSES: ["customer_id", "comment", "is_deleted"],
}


def same(a, b) -> bool:
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    return bool(np.all(np.isclose(a, b, rtol=1e-9, atol=1e-9) | (np.isnan(a) & np.isnan(b))))


def emptied(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The canonical frame with these columns holding no value at all (canonical dtypes)."""
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].where(pd.Series(False, index=frame.index))
    return frame


def as_handed_over(frame: pd.DataFrame, table: str, style: dict[str, str]) -> pd.DataFrame:
    """The same values in another pandas representation, per column: `object` (Python objects,
    None for missing — what a store read or an older pandas gives), `missing` (column dropped),
    or `canonical` (nullable extension dtypes, as conform makes them)."""
    out = {}
    for column, kind in CANONICAL_TABLES[table].columns.items():
        how = style.get(column, "canonical")
        if how == "missing":
            continue
        values = frame[column]
        if how == "object" and kind in ("string", "bool", "int"):
            values = values.astype(object).where(values.notna(), None)
        out[column] = values
    return pd.DataFrame(out, index=frame.index)


def styles(table: str):
    columns = list(CANONICAL_TABLES[table].columns)
    optional = OPTIONAL[table]
    return st.fixed_dictionaries(
        {
            column: st.sampled_from(
                ["canonical", "object", "missing"]
                if column in optional
                else ["canonical", "object"]
            )
            for column in columns
        }
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    org=orgs(),
    metric=st.sampled_from(sorted(METRICS)),
    where=filters,
    empty=st.fixed_dictionaries(
        {table: st.lists(st.sampled_from(OPTIONAL[table]), unique=True) for table in ENTITIES}
    ),
    style=st.fixed_dictionaries({table: styles(table) for table in ENTITIES}),
    start_offset=st.integers(0, 30),
    length=st.integers(1, 40),
)
def test_any_representation_and_all_null_columns_give_the_pandas_engines_numbers(
    org, metric, where, empty, style, start_offset, length
):
    canonical = dict(zip(ENTITIES, frames(org), strict=True))
    # Emptied columns hold no value in both engines' input; a dropped column is one the compiled
    # engine never sees, the oracle sees it empty.
    oracle_frames = {
        table: emptied(
            canonical[table],
            sorted(set(empty[table]) | {c for c, how in style[table].items() if how == "missing"}),
        )
        for table in ENTITIES
    }
    handed = {
        table: as_handed_over(oracle_frames[table], table, style[table]) for table in ENTITIES
    }
    start = ORIGIN.date() + dt.timedelta(days=start_offset)
    cycle_end = start + dt.timedelta(days=length)
    windows = [
        window_for(start, cycle_end, start + dt.timedelta(days=i)) for i in range(length + 3)
    ]
    spec = METRICS[metric]
    staged = DuckDBStaged(*(handed[t] for t in ENTITIES), timezone=TIMEZONE)
    compiled = metric_over_windows(spec, METRICS, staged, where, windows)
    data = prepare(*(oracle_frames[t] for t in ENTITIES), timezone=TIMEZONE)
    oracle = metric_series(spec, METRICS, data, scope_for(data, where), windows, basis="count")
    for field in ("value", "numerator", "denominator", "sample"):
        assert same(getattr(compiled, field), getattr(oracle, field)), (metric, field)


def test_an_all_none_object_column_is_read_as_its_canonical_type():
    """pandas hands DuckDB an all-None object column as type NULL; the typed view makes it the
    column's canonical type, so filters and sums over it behave as over an empty column."""
    deals, customers, responses = frames(
        (
            [
                {
                    "deal_id": "D1",
                    "customer_id": "C0",
                    "is_closed": "true",
                    "is_won": "true",
                    "amount": 10,
                    "currency": "EUR",
                    "amount_home": 10,
                    "created_at": "2026-10-01T10:00:00+00:00",
                    "close_date": "2026-10-02",
                }
            ],
            [{"customer_id": "C0"}],
            [],
        )
    )
    deals = deals.astype({"team": object, "amount_home": object})
    deals["team"] = None
    deals["amount_home"] = None
    customers = customers.astype({"region": object})
    customers["region"] = None
    windows = [window_for(dt.date(2026, 10, 1), dt.date(2026, 10, 31), dt.date(2026, 10, 5))]
    staged = DuckDBStaged(deals, customers, responses, timezone=TIMEZONE)
    revenue = metric_over_windows(METRICS["won_revenue"], METRICS, staged, {}, windows)
    assert revenue.value.tolist() == [0.0]
    assert metric_over_windows(
        METRICS["win_rate"], METRICS, staged, {"team": "sales-dach"}, windows
    ).sample.tolist() == [0.0]
    assert metric_over_windows(
        METRICS["win_rate"], METRICS, staged, {"region": {"not": "DACH"}}, windows
    ).sample.tolist() == [1.0]


def test_a_column_of_the_wrong_kind_is_refused():
    """Customer ids held as Python ints are not text: DuckDB would read them as INTEGER and a
    cast would make "7" of 7; the engine refuses instead of guessing."""
    deals, customers, responses = frames(([], [{"customer_id": "C0"}], []))
    customers["customer_id"] = pd.Series([7], dtype=object)
    staged = DuckDBStaged(deals, customers, responses, timezone=TIMEZONE)
    windows = [window_for(dt.date(2026, 10, 1), dt.date(2026, 10, 31), dt.date(2026, 10, 5))]
    with pytest.raises(TypeError, match="customers.customer_id holds INTEGER"):
        metric_over_windows(METRICS["win_rate"], METRICS, staged, {"region": "DACH"}, windows)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    org=orgs(),
    metric=st.sampled_from(sorted(METRICS)),
    where=filters,
    dropped=st.fixed_dictionaries(
        {table: st.lists(st.sampled_from(OPTIONAL[table]), unique=True) for table in ENTITIES}
    ),
)
def test_parquet_read_by_duckdb_gives_the_same_numbers_as_the_frames(org, metric, where, dropped):
    """from_parquet (DuckDB's own Parquet reader, columns a file lacks as typed NULLs) computes
    what the same rows as frames compute."""
    import tempfile
    from pathlib import Path

    canonical = dict(zip(ENTITIES, frames(org), strict=True))
    oracle_frames = {table: emptied(canonical[table], dropped[table]) for table in ENTITIES}
    windows = [
        window_for(
            dt.date(2026, 9, 5), dt.date(2026, 11, 5), dt.date(2026, 9, 5) + dt.timedelta(days=i)
        )
        for i in range(0, 70, 7)
    ]
    spec = METRICS[metric]
    with tempfile.TemporaryDirectory() as folder:
        for table in ENTITIES:
            oracle_frames[table].drop(columns=dropped[table]).to_parquet(
                Path(folder) / f"{table}.parquet", index=False
            )
        parquet = metric_over_windows(
            spec, METRICS, DuckDBStaged.from_parquet(folder, timezone=TIMEZONE), where, windows
        )
    staged = DuckDBStaged(*(oracle_frames[t] for t in ENTITIES), timezone=TIMEZONE)
    in_memory = metric_over_windows(spec, METRICS, staged, where, windows)
    for field in ("value", "numerator", "denominator", "sample"):
        assert same(getattr(parquet, field), getattr(in_memory, field)), (metric, field)


def test_a_categorical_text_column_reads_as_text():
    """A pandas Categorical reaches DuckDB as an ENUM; the typed view reads it as text, so
    filters and the customer join compare text with text."""
    org = (
        [
            {
                "deal_id": "D1",
                "customer_id": "C0",
                "team": "sales-dach",
                "is_closed": "true",
                "is_won": "true",
                "amount": 10,
                "currency": "EUR",
                "amount_home": 10,
                "created_at": "2026-10-01T10:00:00+00:00",
                "close_date": "2026-10-02",
            }
        ],
        [{"customer_id": "C0", "region": "DACH"}],
        [],
    )
    deals, customers, responses = frames(org)
    windows = [window_for(dt.date(2026, 10, 1), dt.date(2026, 10, 31), dt.date(2026, 10, 5))]
    plain = DuckDBStaged(deals, customers, responses, timezone=TIMEZONE)
    deals = deals.astype({"team": "category", "customer_id": "category"})
    customers = customers.astype({"region": "category", "customer_id": "category"})
    categorical = DuckDBStaged(deals, customers, responses, timezone=TIMEZONE)
    for where in ({"team": "sales-dach"}, {"region": "DACH"}, {"region": {"not": "UK&I"}}):
        for staged in (plain, categorical):
            revenue = metric_over_windows(METRICS["won_revenue"], METRICS, staged, where, windows)
            assert revenue.value.tolist() == [10.0], where

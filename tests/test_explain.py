"""The records behind a number: listed from the metric's own events, and adding up to its value."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from connectors.files import FilesSource
from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.engine import metric_value, prepare, window_for
from kr_metrics.explain import records_behind
from kr_metrics.metrics import METRICS, scope_for
from okr_store.db import create_engine
from okr_store.schema import upgrade
from okr_store.staging import read_staged, stage
from tests.conftest import canonical

CYCLE_START, CYCLE_END = dt.date(2026, 10, 1), dt.date(2026, 12, 31)


@pytest.fixture(scope="module")
def demo_prepared(demo_data, tmp_path_factory):
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('explain') / 'db.sqlite'}")
    upgrade(engine)
    stage(FilesSource("demo", demo_data), engine, home_currency="EUR")
    frames = {t: read_staged(engine, t) for t in (DEALS, CUSTOMERS, NPS_RESPONSES)}
    yield prepare(frames[DEALS], frames[CUSTOMERS], frames[NPS_RESPONSES], timezone="Europe/Berlin")
    engine.dispose()


@pytest.mark.parametrize("metric", sorted(n for n, s in METRICS.items() if s.events is not None))
@pytest.mark.parametrize("where", [{}, {"team": "sales-uk"}])
def test_records_behind_add_up_to_the_metric_value(demo_prepared, metric, where):
    spec = METRICS[metric]
    window = window_for(CYCLE_START, CYCLE_END, dt.date(2026, 11, 25))
    scope = scope_for(demo_prepared, where)
    expected = metric_value(spec, demo_prepared, window, scope)
    behind = records_behind(spec, demo_prepared, scope, window)
    if expected.value is None:
        assert behind.value is None
    else:
        assert math.isclose(behind.value, expected.value, rel_tol=1e-9, abs_tol=1e-9)
    assert behind.sample_size == expected.sample_size
    assert behind.records["record_id"].is_unique
    if not spec.point_in_time and not behind.records.empty:
        days = pd.to_datetime(behind.records["day"])
        assert days.min() >= pd.Timestamp(window.start) and days.max() <= pd.Timestamp(window.end)


def _tiny_org():
    customers = canonical(
        CUSTOMERS,
        [
            {"customer_id": "C1", "name": "Old Friend GmbH", "team": "t"},
            {"customer_id": "C2", "name": "New Face Ltd", "team": "t"},
        ],
    )
    deal = {"currency": "EUR", "is_closed": True, "created_at": "2026-01-01T00:00:00Z", "team": "t"}
    deals = canonical(
        DEALS,
        [
            {
                **deal,
                "deal_id": "D0",
                "customer_id": "C1",
                "is_won": True,
                "amount": 100,
                "amount_home": 100,
                "close_date": "2026-09-15",
            },
            {
                **deal,
                "deal_id": "D1",
                "customer_id": "C1",
                "is_won": True,
                "amount": 300,
                "amount_home": 300,
                "close_date": "2026-10-10",
            },
            {
                **deal,
                "deal_id": "D2",
                "customer_id": "C2",
                "is_won": True,
                "amount": 900,
                "amount_home": 900,
                "close_date": "2026-10-11",
            },
            {
                **deal,
                "deal_id": "D3",
                "customer_id": "C1",
                "is_won": False,
                "amount": 50,
                "amount_home": 50,
                "close_date": "2026-10-12",
            },
            {
                **deal,
                "deal_id": "D4",
                "customer_id": "C1",
                "is_won": True,
                "amount": 70,
                "amount_home": 70,
                "close_date": "2026-12-01",
            },
        ],
    )
    responses = canonical(
        NPS_RESPONSES,
        [
            {
                "response_id": "R1",
                "customer_id": "C1",
                "score": 10,
                "submitted_at": "2026-10-02T10:00:00Z",
            },
            {
                "response_id": "R2",
                "customer_id": "C2",
                "score": 3,
                "submitted_at": "2026-10-03T10:00:00Z",
            },
            {
                "response_id": "R3",
                "customer_id": "C2",
                "score": 8,
                "submitted_at": "2026-09-30T10:00:00Z",
            },
        ],
    )
    return prepare(deals, customers, responses, timezone="Europe/Berlin")


def test_revenue_per_existing_customer_lists_only_won_deals_of_existing_customers_in_the_window():
    data = _tiny_org()
    window = window_for(CYCLE_START, CYCLE_END, dt.date(2026, 11, 1))
    behind = records_behind(
        METRICS["revenue_per_existing_customer"], data, scope_for(data, {}), window
    )
    # D0 closed before the cycle (it makes C1 existing), D2 is a new customer's, D3 was lost,
    # D4 closes after the as-of day.
    assert behind.records["record_id"].tolist() == ["D1"]
    assert behind.records["customer_name"].tolist() == ["Old Friend GmbH"]
    assert behind.numerator == 300 and behind.denominator == 1 and behind.value == 300


def test_win_rate_lists_won_and_lost_deals_with_what_each_adds():
    data = _tiny_org()
    window = window_for(CYCLE_START, CYCLE_END, dt.date(2026, 11, 1))
    records = records_behind(METRICS["win_rate"], data, scope_for(data, {}), window).records
    by_id = records.set_index("record_id")
    assert sorted(by_id.index) == ["D1", "D2", "D3"]
    assert by_id.loc["D3", "contribution"] == 0 and by_id.loc["D3", "weight"] == 1
    assert by_id.loc["D1", "contribution"] == 1


def test_nps_lists_the_responses_submitted_in_the_window_newest_first():
    data = _tiny_org()
    window = window_for(CYCLE_START, CYCLE_END, dt.date(2026, 11, 1))
    behind = records_behind(METRICS["nps"], data, scope_for(data, {}), window)
    assert behind.records["record_id"].tolist() == ["R2", "R1"]
    assert behind.value == 0.0  # one promoter, one detractor


def test_a_metric_without_events_is_refused_with_its_reason():
    spec = METRICS["nps"]
    reducer = type(spec)(**{**spec.__dict__, "events": None, "reduce": "max"})
    data = _tiny_org()
    with pytest.raises(ValueError, match="aggregates with 'max'"):
        records_behind(
            reducer, data, scope_for(data, {}), window_for(CYCLE_START, CYCLE_END, CYCLE_END)
        )


# --- the compiled records (what the KR page and `definitions explain` list) -------------------


def _compiled(metric: str, window, *, order: str = "newest", limit: int | None = None):
    from kr_metrics.sql.engine import DuckDBStaged
    from kr_metrics.sql.explain import _shown
    from kr_metrics.sql.records import listed_records_statement
    from kr_metrics.sql.views import Views

    staged = DuckDBStaged.from_prepared(_tiny_org())
    statement = listed_records_statement(
        METRICS[metric],
        Views(staged.tables, staged.timezone),
        {},
        window,
        order=order,
        limit=limit,
    )
    return _shown(METRICS[metric].entity, staged.run({("r",): statement})[("r",)])


def test_compiled_records_carry_what_a_reader_sees():
    window = window_for(CYCLE_START, CYCLE_END, dt.date(2026, 11, 1))
    records, total = _compiled("revenue_per_existing_customer", window)
    assert total == 1 and records["record_id"].tolist() == ["D1"]
    (record,) = records.to_dict("records")
    assert record["customer_name"] == "Old Friend GmbH" and record["entity"] == "deals"
    assert record["contribution"] == 300 and pd.isna(record["weight"])  # no record denominator
    assert record["day"] == pd.Timestamp("2026-10-10") and record["is_won"]


def test_compiled_records_are_ordered_and_cut_in_sql_with_the_full_count():
    window = window_for(CYCLE_START, CYCLE_END, dt.date(2026, 11, 1))
    newest, total = _compiled("win_rate", window)
    assert total == 3 and newest["record_id"].tolist() == ["D3", "D2", "D1"]
    largest, total = _compiled("win_rate", window, order="largest", limit=2)
    # Won deals add 1, the lost one 0; ties newest first.
    assert total == 3 and largest["record_id"].tolist() == ["D2", "D1"]


def test_open_pipeline_lists_the_deals_open_on_the_last_day():
    from kr_metrics.sql.engine import DuckDBStaged
    from kr_metrics.sql.records import records_behind as compiled_records

    base = {"currency": "EUR", "is_closed": False, "is_won": False, "amount": 1}
    deals_rows = [
        {"deal_id": "open", "amount_home": 10, "created_at": "2026-10-02T10:00:00Z"},
        {
            "deal_id": "closed-later",
            "amount_home": 20,
            "created_at": "2026-10-03T10:00:00Z",
            "is_closed": True,
            "close_date": "2026-11-20",
        },
        {
            "deal_id": "closed-before",
            "amount_home": 40,
            "created_at": "2026-10-03T10:00:00Z",
            "is_closed": True,
            "close_date": "2026-10-20",
        },
        {"deal_id": "created-later", "amount_home": 80, "created_at": "2026-11-05T10:00:00Z"},
    ]
    deals = canonical(DEALS, [{**base, **row} for row in deals_rows])
    staged = DuckDBStaged(
        deals, canonical(CUSTOMERS, []), canonical(NPS_RESPONSES, []), timezone="Europe/Berlin"
    )
    window = window_for(CYCLE_START, CYCLE_END, dt.date(2026, 11, 1))
    records = compiled_records(METRICS["open_pipeline"], staged, {}, window)
    assert sorted(records["record_id"]) == ["closed-later", "open"]
    assert records["contribution"].sum() == 30


def test_a_metric_made_of_other_metrics_or_a_reduction_has_a_reason_not_records():
    from kr_metrics.sql.records import no_records_reason

    nps = METRICS["nps"]
    reducer = type(nps)(**{**nps.__dict__, "reduce": "max"})
    derived = type(nps)(**{**nps.__dict__, "combine": "derived", "inputs": ("nps", "win_rate")})
    assert "aggregates with 'max'" in no_records_reason(reducer)
    assert "computed from other metrics (nps, win_rate)" in no_records_reason(derived)
    assert no_records_reason(nps) is None

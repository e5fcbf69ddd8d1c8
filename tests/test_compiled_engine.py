"""The compiled SQL engine against the plain reference and the pandas engine, on random orgs:
every metric, cycle and rolling windows, filters, custom metrics and whole definition sets,
on embedded DuckDB and on PostgreSQL staging tables."""

from __future__ import annotations

import datetime as dt
import tempfile
import textwrap
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from reference_metrics import reference
from test_engine_properties import ORIGIN, filters, frames, orgs

from kr_metrics.definitions import DefinitionError
from kr_metrics.engine import evaluate_history, metric_series, prepare, rolling_window, window_for
from kr_metrics.loader import load_definitions
from kr_metrics.metrics import METRICS, scope_for
from kr_metrics.sql.engine import evaluate_history as compiled_history
from kr_metrics.sql.engine import metric_over_windows

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def same(a, b) -> bool:
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    return bool(np.all(np.isclose(a, b, rtol=1e-9, atol=1e-9) | (np.isnan(a) & np.isnan(b))))


def as_float(value) -> float:
    return np.nan if value is None else float(value)


def check(spec, org, where, windows, basis, staging, *, with_reference=True):
    deals, customers, responses = frames(org)
    compiled = metric_over_windows(
        spec, METRICS, staging(deals, customers, responses), where, windows, basis=basis
    )
    data = prepare(deals, customers, responses, timezone="Europe/Berlin")
    oracle = metric_series(spec, METRICS, data, scope_for(data, where), windows, basis=basis)
    for field in ("value", "numerator", "denominator", "sample"):
        assert same(getattr(compiled, field), getattr(oracle, field)), (
            spec.name,
            field,
            compiled,
            oracle,
        )
    if with_reference:
        expected = [
            as_float(
                reference(
                    spec.name,
                    deals,
                    customers,
                    responses,
                    w.start,
                    w.end,
                    w.cycle_start,
                    where,
                    basis,
                )
            )
            for w in windows
        ]
        assert same(compiled.value, expected), (spec.name, compiled.value, expected)


def test_a_deal_closed_before_its_creation_day_is_never_open_pipeline(staging):
    """Created at 23:00 UTC on 23 Oct (24 Oct in Berlin) and closed on the 23rd: the close came
    before the creation day, and the pipeline went to -1,450 on the 23rd (both engines)."""
    deal = {
        "deal_id": "D1",
        "customer_id": "C0",
        "team": "sales-dach",
        "is_closed": "true",
        "is_won": "false",
        "amount": 653,
        "currency": "EUR",
        "amount_home": 1450,
        "created_at": "2026-10-23T23:00:00+00:00",
        "close_date": "2026-10-23",
        "deal_type": "new_business",
        "is_deleted": "false",
    }
    org = ([deal], [{"customer_id": "C0", "team": "sales-dach", "is_deleted": "false"}], [])
    start = dt.date(2026, 10, 20)
    windows = [
        window_for(start, dt.date(2026, 10, 30), start + dt.timedelta(days=i)) for i in range(8)
    ]
    check(METRICS["open_pipeline"], org, {}, windows, "count", staging)


@pytest.mark.parametrize("metric", sorted(METRICS))
@SETTINGS
@given(
    org=orgs(),
    where=filters,
    start_offset=st.integers(0, 30),
    length=st.integers(1, 40),
    basis=st.sampled_from(["count", "amount"]),
)
def test_every_metric_over_cycle_windows_equals_reference_and_pandas(
    staging, metric, org, where, start_offset, length, basis
):
    start = ORIGIN.date() + dt.timedelta(days=start_offset)
    cycle_end = start + dt.timedelta(days=length)
    windows = [
        window_for(start, cycle_end, start + dt.timedelta(days=i)) for i in range(length + 3)
    ]
    check(METRICS[metric], org, where, windows, basis if metric == "win_rate" else "count", staging)


@pytest.mark.parametrize("metric", sorted(METRICS))
@SETTINGS
@given(
    org=orgs(),
    where=filters,
    rolling=st.integers(1, 20),
    first=st.integers(0, 40),
    days=st.integers(1, 15),
)
def test_every_metric_over_rolling_windows_with_moving_anchor(
    staging, metric, org, where, rolling, first, days
):
    ends = [ORIGIN.date() + dt.timedelta(days=first + i) for i in range(days)]
    check(
        METRICS[metric],
        org,
        where,
        [rolling_window(rolling, end) for end in ends],
        "count",
        staging,
    )


CUSTOM = """\
cycle: {key: pilot, timezone: Europe/Berlin, start: START, end: END}
metrics:
  - {name: enterprise_revenue, type: simple, agg: sum, expr: amount_home, filter: {is_won: true, segment: Enterprise}}
  - {name: deals_created, type: simple, agg: count, date: created_day}
  - {name: mean_amount, type: simple, agg: average, expr: amount, filter: {is_won: true}}
  - {name: biggest_deal, type: simple, agg: max, expr: amount_home, filter: {is_won: true}}
  - {name: smallest_score, type: simple, entity: nps_responses, agg: min, expr: score}
  - {name: distinct_scores, type: simple, entity: nps_responses, agg: count_distinct, expr: score}
  - {name: promoter_count, type: simple, entity: nps_responses, agg: count, filter: {score: [9, 10]}}
  - {name: expansion_share, type: ratio, numerator: existing_customer_revenue, denominator: won_revenue}
  - {name: new_business_gap, type: derived, expr: "won_revenue - existing_customer_revenue",
     metrics: [won_revenue, existing_customer_revenue]}
  - {name: revenue_per_deal, type: derived, expr: "enterprise_revenue / won_deals + 1",
     metrics: [enterprise_revenue, won_deals]}
objectives:
  - key: o
    title: O
    level: company
    key_results:
KRS
kpis:
KPIS
"""
METRIC_CHOICES = sorted(METRICS) + [
    "enterprise_revenue",
    "deals_created",
    "mean_amount",
    "biggest_deal",
    "smallest_score",
    "distinct_scores",
    "promoter_count",
    "expansion_share",
    "new_business_gap",
    "revenue_per_deal",
]


def _flow(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


key_results = st.lists(
    st.fixed_dictionaries(
        {
            "metric": st.sampled_from(METRIC_CHOICES),
            "where": filters,
            "window": st.sampled_from(["cycle", "cycle", "rolling_7d", "rolling_20d"]),
            "baseline": st.sampled_from(["previous_cycle", 0.1]),
        }
    ),
    min_size=1,
    max_size=6,
)


def definitions_for(krs, cycle_start, cycle_end, folder: Path):
    lines, kpis = [], []
    for i, kr in enumerate(krs):
        where = kr["where"]
        lines.append(
            f"      - {{key: kr{i}, title: KR {i}, metric: {kr['metric']}, where: {_flow(where)}, "
            f"window: {kr['window']}, baseline: {kr['baseline']}, target: 0.5}}"
        )
        kpis.append(
            f"  - {{key: kpi{i}, title: KPI {i}, metric: {kr['metric']}, where: {_flow(where)}, "
            f"window: rolling_{10 + i}d, healthy: {{min: 0}}}}"
        )
    text = (
        CUSTOM.replace("START", cycle_start.isoformat())
        .replace("END", cycle_end.isoformat())
        .replace("KRS", "\n".join(lines))
        .replace("KPIS", "\n".join(kpis))
    )
    (folder / "defs.yaml").write_text(textwrap.dedent(text))
    return load_definitions(folder)


NUMBERS = [
    "value",
    "numerator",
    "denominator",
    "sample_size",
    "baseline",
    "target",
    "start_value",
    "margin_of_error",
]


@SETTINGS
@given(
    org=orgs(),
    krs=key_results,
    start_offset=st.integers(10, 40),
    length=st.integers(5, 30),
    span=st.integers(0, 12),
)
def test_whole_definition_sets_equal_the_pandas_engine(
    staging, org, krs, start_offset, length, span
):
    """Custom simple/ratio/derived metrics, filters, cycle and rolling windows, computed
    baselines, KPIs, history mode: the compiled engine's frame is the pandas engine's."""
    cycle_start = ORIGIN.date() + dt.timedelta(days=start_offset)
    cycle_end = cycle_start + dt.timedelta(days=length)
    with tempfile.TemporaryDirectory() as folder:
        try:
            definitions = definitions_for(krs, cycle_start, cycle_end, Path(folder))
        except (
            DefinitionError
        ):  # e.g. a filter contradicting a metric's own: rejected before any engine
            assume(False)
    deals, customers, responses = frames(org)
    first, last = cycle_start + dt.timedelta(days=2), cycle_start + dt.timedelta(days=2 + span)
    expected = evaluate_history(
        definitions, prepare(deals, customers, responses, timezone="Europe/Berlin"), first, last
    )
    actual = compiled_history(definitions, staging(deals, customers, responses), first, last)
    key = ["as_of", "kind", "key"]
    expected = expected.sort_values(key).reset_index(drop=True)
    actual = actual.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(actual.drop(columns=NUMBERS), expected.drop(columns=NUMBERS))
    for column in NUMBERS:
        assert same(actual[column], expected[column]), (
            column,
            actual[column].tolist(),
            expected[column].tolist(),
        )


DRILLABLE = sorted(METRICS)  # every built-in metric has records (none reduces or combines)


@pytest.mark.parametrize("metric", DRILLABLE)
@SETTINGS
@given(
    org=orgs(),
    where=filters,
    start_offset=st.integers(0, 30),
    length=st.integers(0, 40),
    basis=st.sampled_from(["count", "amount"]),
)
def test_the_records_behind_a_number_add_up_to_it(
    staging, metric, org, where, start_offset, length, basis
):
    """The drill-down selects with the compiled filters and measures: its records' contributions
    sum to the numerator, their weights to the denominator, and they are the sample."""
    from kr_metrics.sql.records import records_behind

    deals, customers, responses = frames(org)
    spec, basis = METRICS[metric], basis if metric == "win_rate" else "count"
    start = ORIGIN.date() + dt.timedelta(days=start_offset)
    window = window_for(start, start + dt.timedelta(days=length), start + dt.timedelta(days=length))
    staged = staging(deals, customers, responses)
    number = metric_over_windows(spec, METRICS, staged, where, [window], basis=basis)
    records = records_behind(spec, staged, where, window, basis=basis)
    assert same(records["contribution"].sum(), number.numerator[0])
    if metric == "revenue_per_existing_customer":
        return  # its denominator is customers, not records
    assert len(records) == number.sample[0]
    if spec.combine == "ratio":
        assert same(records["weight"].sum(), number.denominator[0])


@pytest.mark.parametrize("metric", DRILLABLE)
@SETTINGS
@given(
    org=orgs(),
    where=filters,
    start_offset=st.integers(0, 30),
    length=st.integers(0, 40),
    rolling=st.booleans(),
    basis=st.sampled_from(["count", "amount"]),
)
def test_the_compiled_records_are_the_oracles_records(
    staging, metric, org, where, start_offset, length, rolling, basis
):
    """The records the KR page and explain list (compiled, with their display columns) are
    exactly the records the pandas oracle's explanation lists: the same ids, contributions,
    days and customers, for cycle and rolling windows — listed for the KR's filters and for
    none in one statement, as the flow lists every KR's records at once."""
    from kr_metrics.explain import records_behind as oracle_records
    from kr_metrics.sql.explain import list_records
    from kr_metrics.sql.records import Listing

    deals, customers, responses = frames(org)
    spec, basis = METRICS[metric], basis if metric == "win_rate" else "count"
    start = ORIGIN.date() + dt.timedelta(days=start_offset)
    end = start + dt.timedelta(days=length)
    window = rolling_window(length + 1, end) if rolling else window_for(start, end, end)
    staged = staging(deals, customers, responses)
    listed = list_records(
        [Listing(spec, where, window, basis), Listing(spec, {}, window, basis)], staged
    )
    data = prepare(deals, customers, responses, timezone="Europe/Berlin")
    for (compiled, total), scoped in zip(listed, (where, {}), strict=True):
        expected = oracle_records(spec, data, scope_for(data, scoped), window, basis=basis)
        expected = expected.records
        assert total == len(compiled) == len(expected)
        key = ["source", "record_id"]
        compiled, expected = compiled.sort_values(key), expected.sort_values(key)
        assert compiled["record_id"].tolist() == expected["record_id"].tolist()
        assert same(compiled["contribution"], expected["contribution"])
        assert compiled["day"].tolist() == expected["day"].tolist()
        assert compiled["customer_name"].tolist() == expected["customer_name"].tolist()


@SETTINGS
@given(
    org=orgs(),
    krs=key_results,
    start_offset=st.integers(10, 40),
    length=st.integers(5, 30),
    day=st.integers(0, 35),
)
def test_the_drilldown_of_every_kr_adds_up_to_its_compiled_number(
    staging, org, krs, start_offset, length, day
):
    """What the KR pages store, for whole definition sets (custom metrics, filters, cycle and
    rolling windows): each KR's records sum to the number the flow computes for it — numerator,
    denominator and sample — and a metric without records (a reduction, a ratio of metrics, a
    derived one) says why instead of listing any."""
    from kr_metrics.pages import drilldown_rows

    cycle_start = ORIGIN.date() + dt.timedelta(days=start_offset)
    cycle_end = cycle_start + dt.timedelta(days=length)
    as_of = cycle_start + dt.timedelta(days=min(day, length))
    with tempfile.TemporaryDirectory() as folder:
        try:
            definitions = definitions_for(krs, cycle_start, cycle_end, Path(folder))
        except DefinitionError:
            assume(False)
    deals, customers, responses = frames(org)
    staged = staging(deals, customers, responses)
    numbers = compiled_history(definitions, staged, as_of, as_of)
    numbers = numbers[numbers["kind"] == "kr"].set_index("key")
    requests = [(loaded, kr, as_of) for loaded, kr in definitions.key_results()]
    for (_, kr, _), row in zip(
        requests, drilldown_rows(definitions, requests, staged), strict=True
    ):
        spec, number = definitions.library[kr.metric], numbers.loc[kr.key]
        if spec.reduce or spec.combine in ("metric_ratio", "derived"):
            assert row["reason"] and kr.metric in row["reason"] and row["records"] == []
            continue
        records = row["records"]
        assert row["reason"] is None and row["total"] == len(records)
        assert same(as_float(row["value"]), number["value"]), kr.metric
        assert same(sum(r["contribution"] for r in records), number["numerator"]), kr.metric
        if spec.combine == "per_constant":
            continue  # its denominator and sample are the existing customers, not records
        assert len(records) == number["sample_size"] == row["sample_size"], kr.metric
        if spec.combine == "ratio":
            assert same(sum(r["weight"] for r in records), number["denominator"]), kr.metric
        else:
            assert all(r["weight"] is None for r in records), kr.metric


def test_record_ids_that_look_like_numbers_stay_text(staging):
    """HubSpot ids are digits: PostgreSQL results used to be turned into numbers column by
    column, so record "00123" came back as 123.0 and survey "2026" as 2026.0."""
    from kr_metrics.sql.explain import list_records
    from kr_metrics.sql.records import Listing
    from tests.conftest import canonical

    responses = canonical(
        "nps_responses",
        [
            {
                "response_id": "00123",
                "customer_id": "0042",
                "score": 9,
                "survey_id": "2026",
                "submitted_at": "2026-10-02T10:00:00Z",
            }
        ],
    )
    customers = canonical("customers", [{"customer_id": "0042", "name": "007 Ltd", "team": "t"}])
    staged = staging(canonical("deals", []), customers, responses)
    window = window_for(dt.date(2026, 10, 1), dt.date(2026, 12, 31), dt.date(2026, 11, 1))
    ((records, total),) = list_records([Listing(METRICS["nps"], {}, window)], staged)
    assert total == 1
    (record,) = records.to_dict("records")
    assert (record["record_id"], record["customer_id"], record["survey_id"]) == (
        "00123",
        "0042",
        "2026",
    )
    assert record["customer_name"] == "007 Ltd" and record["score"] == 9


MANY_SCOPE_METRICS = ["won_revenue", "revenue_per_existing_customer", "new_customers", "win_rate"]


@settings(SETTINGS, max_examples=3)
@given(org=orgs())
def test_more_customer_conditions_than_a_signature_holds(staging, org):
    """A deal's customer conditions are bits of one BIGINT evaluated per customer (62 of them);
    the conditions past those compare the customer's text on the deal row: the values are
    the pandas engine's either way, `not:` conditions (true for a deal without a staged
    customer) included."""
    krs = [
        {
            "metric": MANY_SCOPE_METRICS[i % len(MANY_SCOPE_METRICS)],
            "where": (
                {"region": ["DACH", f"R{i}"]}
                if i % 3 == 0
                else {"segment": {"not": ["SMB", f"S{i}"]}}
                if i % 3 == 1
                else {"customer_team": ["sales-uk", f"T{i}"], "team": "sales-dach"}
            ),
            "window": "cycle" if i % 2 else "rolling_7d",
            "baseline": 0.1,
        }
        for i in range(70)
    ]
    cycle_start = ORIGIN.date() + dt.timedelta(days=20)
    cycle_end = cycle_start + dt.timedelta(days=20)
    with tempfile.TemporaryDirectory() as folder:
        definitions = definitions_for(krs, cycle_start, cycle_end, Path(folder))
    deals, customers, responses = frames(org)
    first, last = cycle_start + dt.timedelta(days=2), cycle_start + dt.timedelta(days=5)
    expected = evaluate_history(
        definitions, prepare(deals, customers, responses, timezone="Europe/Berlin"), first, last
    )
    actual = compiled_history(definitions, staging(deals, customers, responses), first, last)
    key = ["as_of", "kind", "key"]
    expected = expected.sort_values(key).reset_index(drop=True)
    actual = actual.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(actual.drop(columns=NUMBERS), expected.drop(columns=NUMBERS))
    for column in NUMBERS:
        assert same(actual[column], expected[column]), column


def test_a_customer_condition_past_the_signature_reads_the_text():
    from kr_metrics.sql.views import SIGNATURE_BITS, Views, staged_tables

    views = Views(staged_tables(), "Europe/Berlin")
    for i in range(SIGNATURE_BITS + 1):
        views.need_customer_condition("region", [f"R{i}"])
    assert len(views.customer_bits) == SIGNATURE_BITS
    assert "region" in views.needed["deals"]
    view = views.deals
    bits = views.customer_condition(view.c)
    assert bits("region", [f"R{SIGNATURE_BITS}"]) is None  # compared as text
    assert bits("region", ["R0"]) is not None
    assert {"region", "customer_signature"} <= set(view.c.keys())

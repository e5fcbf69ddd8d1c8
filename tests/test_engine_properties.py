"""The engine against the plain reference on random orgs, for every built-in metric and random filters."""

from __future__ import annotations

import datetime as dt

import hypothesis.strategies as st
import numpy as np
import pytest
from conftest import canonical
from hypothesis import HealthCheck, given, settings
from reference_metrics import reference

from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.engine import metric_over_windows, prepare, window_for
from kr_metrics.metrics import METRICS, Window, scope_for

TEAMS = ["sales-dach", "sales-uk", "sales-us"]
REGIONS = ["DACH", "UK&I", "North America"]
SEGMENTS = ["SMB", "Mid-Market", "Enterprise"]
ORIGIN = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)


@st.composite
def orgs(draw):
    n_customers = draw(st.integers(1, 6))
    customers = [
        {
            "customer_id": f"C{i}",
            "segment": draw(st.sampled_from(SEGMENTS)),
            "region": draw(st.sampled_from(REGIONS)),
            "team": draw(st.sampled_from(TEAMS)),
            "is_deleted": str(draw(st.booleans()) and draw(st.booleans())).lower(),
        }
        for i in range(n_customers)
    ]
    deals = []
    for i in range(draw(st.integers(0, 25))):
        created = ORIGIN + dt.timedelta(hours=draw(st.integers(0, 24 * 60)))
        closed = draw(st.booleans())
        close = (created + dt.timedelta(days=draw(st.integers(0, 40)))).date() if closed else None
        deals.append(
            {
                "deal_id": f"D{i:03d}",
                "customer_id": f"C{draw(st.integers(0, n_customers))}",
                "team": draw(st.sampled_from(TEAMS)),
                "is_closed": str(closed).lower(),
                "is_won": str(closed and draw(st.booleans())).lower(),
                "amount": draw(st.integers(0, 5000)),
                "currency": "EUR",
                "amount_home": draw(st.integers(0, 5000)),
                "created_at": created.isoformat(),
                "close_date": close.isoformat() if close else None,
                "deal_type": draw(st.sampled_from(["new_business", "existing_business", None])),
                "is_deleted": str(draw(st.integers(0, 9)) == 0).lower(),
            }
        )
    responses = [
        {
            "response_id": f"R{i}",
            "customer_id": f"C{draw(st.integers(0, n_customers))}",
            "score": draw(st.integers(0, 10)),
            "submitted_at": (
                ORIGIN + dt.timedelta(minutes=draw(st.integers(0, 60 * 24 * 80)))
            ).isoformat(),
            "is_deleted": str(draw(st.integers(0, 9)) == 0).lower(),
        }
        for i in range(draw(st.integers(0, 20)))
    ]
    return deals, customers, responses


filters = st.dictionaries(
    st.sampled_from(["team", "region", "segment"]),
    st.one_of(
        st.sampled_from(TEAMS + REGIONS + SEGMENTS),
        st.lists(st.sampled_from(TEAMS + REGIONS + SEGMENTS), min_size=1, max_size=2),
        st.fixed_dictionaries({"not": st.sampled_from(TEAMS + REGIONS + SEGMENTS)}),
    ),
    max_size=2,
)


def frames(org):
    deals, customers, responses = org
    return (
        canonical(DEALS, deals),
        canonical(CUSTOMERS, customers),
        canonical(NPS_RESPONSES, responses),
    )


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return np.isclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("metric", sorted(METRICS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    org=orgs(),
    where=filters,
    start_offset=st.integers(0, 30),
    length=st.integers(1, 40),
    basis=st.sampled_from(["count", "amount"]),
)
def test_engine_equals_the_reference(metric, org, where, start_offset, length, basis):
    deals, customers, responses = frames(org)
    data = prepare(deals, customers, responses, timezone="Europe/Berlin")
    start = ORIGIN.date() + dt.timedelta(days=start_offset)
    cycle_end = start + dt.timedelta(days=length)
    days = [start + dt.timedelta(days=i) for i in range(length + 1)]
    windows = [window_for(start, cycle_end, day) for day in days]
    basis = basis if metric == "win_rate" else "count"
    results = metric_over_windows(
        METRICS[metric], METRICS, data, scope_for(data, where), windows, basis=basis
    )
    for window, result in zip(windows, results, strict=True):
        expected = reference(
            metric, deals, customers, responses, window.start, window.end, start, where, basis
        )
        assert close(result.value, expected), (metric, window, result, expected)


@settings(max_examples=30, deadline=None)
@given(org=orgs(), where=filters, rolling=st.integers(1, 20))
def test_rolling_windows_with_moving_anchor_equal_the_reference(org, where, rolling):
    deals, customers, responses = frames(org)
    data = prepare(deals, customers, responses, timezone="Europe/Berlin")
    days = [ORIGIN.date() + dt.timedelta(days=20 + i) for i in range(15)]
    windows = [
        Window(d - dt.timedelta(days=rolling - 1), d, d - dt.timedelta(days=rolling - 1))
        for d in days
    ]
    spec = METRICS["revenue_per_existing_customer"]
    results = metric_over_windows(spec, METRICS, data, scope_for(data, where), windows)
    for window, result in zip(windows, results, strict=True):
        expected = reference(
            spec.name,
            deals,
            customers,
            responses,
            window.start,
            window.end,
            window.cycle_start,
            where,
        )
        assert close(result.value, expected)

"""The three foundation metrics on small hand-computed cases."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import canonical

from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.engine import metric_value, prepare, window_for
from kr_metrics.metrics import METRICS, scope_for

CYCLE_START = dt.date(2026, 10, 1)
CYCLE_END = dt.date(2026, 12, 31)
AS_OF = dt.date(2026, 11, 15)


def deal(
    deal_id, customer, *, won=None, close=None, amount=1000.0, deleted=False, team="sales-dach"
):
    closed = won is not None
    return {
        "deal_id": deal_id,
        "customer_id": customer,
        "team": team,
        "is_closed": str(closed).lower(),
        "is_won": str(bool(won)).lower(),
        "amount": amount,
        "currency": "EUR",
        "amount_home": amount,
        "created_at": "2025-01-01T00:00:00Z",
        "close_date": close,
        "is_deleted": str(deleted).lower(),
    }


def customer(customer_id, region="DACH", segment="SMB", team="sales-dach", deleted=False):
    return {
        "customer_id": customer_id,
        "region": region,
        "segment": segment,
        "team": team,
        "is_deleted": str(deleted).lower(),
    }


def response(response_id, score, submitted_at, customer_id="A"):
    return {
        "response_id": response_id,
        "customer_id": customer_id,
        "score": score,
        "submitted_at": submitted_at,
    }


def compute(metric, deals=(), customers=(), responses=(), where=None, as_of=AS_OF):
    data = prepare(
        canonical(DEALS, list(deals)),
        canonical(CUSTOMERS, list(customers)),
        canonical(NPS_RESPONSES, list(responses)),
        timezone="Europe/Berlin",
    )
    window = window_for(CYCLE_START, CYCLE_END, as_of)
    return metric_value(METRICS[metric], data, window, scope_for(data, where or {}))


# --- revenue_per_existing_customer -------------------------------------------------------------

HISTORY = [  # A and B became customers before the cycle; C only during it
    deal("h1", "A", won=True, close="2026-05-01"),
    deal("h2", "B", won=True, close="2026-09-30"),
    deal("h3", "C", won=False, close="2026-06-01"),
]
CUSTOMERS_ABC = [customer("A"), customer("B", region="UK&I"), customer("C")]


def test_revenue_per_existing_customer_divides_existing_revenue_by_existing_customers():
    deals = [
        *HISTORY,
        deal("d1", "A", won=True, close="2026-10-05", amount=1000),
        deal("d2", "A", won=True, close="2026-11-15", amount=500),  # on the as-of day: counts
        deal("d3", "B", won=False, close="2026-10-20", amount=700),  # lost: not revenue
        deal("d4", "C", won=True, close="2026-10-10", amount=900),  # C is not existing
        deal("d5", "B", won=True, close="2026-11-16", amount=999),  # after as-of
        deal("d6", "B", won=True, close="2026-10-02", amount=400, deleted=True),
    ]
    result = compute("revenue_per_existing_customer", deals, CUSTOMERS_ABC)
    assert result.numerator == 1500
    assert result.denominator == 2
    assert result.value == 750


def test_revenue_per_existing_customer_applies_filters_to_deals_and_customers():
    deals = [
        *HISTORY,
        deal("d1", "A", won=True, close="2026-10-05", amount=1000),
        deal("d2", "B", won=True, close="2026-10-06", amount=300),
    ]
    result = compute(
        "revenue_per_existing_customer", deals, CUSTOMERS_ABC, where={"region": "UK&I"}
    )
    assert (result.numerator, result.denominator, result.value) == (300, 1, 300)


def test_revenue_per_existing_customer_counts_the_same_customers_above_and_below_the_line():
    # Two existing customers, B deleted in the CRM: its revenue must not stay in the numerator
    # while B leaves the denominator (that read 9,000 + 1,000 = 10,000 per customer).
    deals = [
        *HISTORY,
        deal("d1", "A", won=True, close="2026-10-05", amount=1000),
        deal("d2", "B", won=True, close="2026-10-06", amount=9000),
    ]
    customers = [customer("A"), customer("B", deleted=True), customer("C")]
    result = compute("revenue_per_existing_customer", deals, customers)
    assert (result.numerator, result.denominator, result.value) == (1000, 1, 1000)


def test_revenue_per_existing_customer_ignores_deals_of_customers_not_staged():
    deals = [
        *HISTORY,
        deal("d1", "A", won=True, close="2026-10-05", amount=1000),
        deal("h9", "Z", won=True, close="2026-01-05"),  # Z existing, but never staged
        deal("d2", "Z", won=True, close="2026-10-06", amount=9000),
    ]
    result = compute("revenue_per_existing_customer", deals, CUSTOMERS_ABC)
    assert (result.numerator, result.denominator) == (1000, 2)


def test_revenue_per_existing_customer_selects_customers_by_the_customers_team():
    # A belongs to sales-dach; a deal of A booked by a sales-uk rep is still A's revenue.
    customers = [customer("A", team="sales-dach"), customer("B", team="sales-uk")]
    deals = [
        *HISTORY[:2],
        deal("d1", "A", won=True, close="2026-10-05", amount=1000, team="sales-uk"),
        deal("d2", "B", won=True, close="2026-10-06", amount=300, team="sales-uk"),
    ]
    dach = compute("revenue_per_existing_customer", deals, customers, where={"team": "sales-dach"})
    uk = compute("revenue_per_existing_customer", deals, customers, where={"team": "sales-uk"})
    assert (dach.numerator, dach.denominator) == (1000, 1)
    assert (uk.numerator, uk.denominator) == (300, 1)


def test_revenue_per_existing_customer_narrows_deals_by_deal_only_filters():
    deals = [
        *HISTORY,
        deal("d1", "A", won=True, close="2026-10-05", amount=1000),
        {**deal("d2", "A", won=True, close="2026-10-06", amount=300), "pipeline": "renewals"},
    ]
    result = compute(
        "revenue_per_existing_customer", deals, CUSTOMERS_ABC, where={"pipeline": "renewals"}
    )
    assert (result.numerator, result.denominator) == (300, 2)


def test_no_existing_customers_gives_null_not_zero():
    deals = [deal("d1", "C", won=True, close="2026-10-05", amount=900)]
    result = compute("revenue_per_existing_customer", deals, [customer("C")])
    assert result.value is None
    assert result.sample_size == 0


def test_existing_customer_without_revenue_in_window_is_zero_not_null():
    result = compute("revenue_per_existing_customer", HISTORY, CUSTOMERS_ABC)
    assert result.value == 0.0


# --- nps ---------------------------------------------------------------------------------------


def test_nps_is_promoters_minus_detractors_over_responses():
    scores = [10, 9, 8, 7, 6, 0, 10, 9]  # 4 promoters, 2 detractors, 8 responses
    responses = [response(f"r{i}", s, "2026-10-10T12:00:00Z") for i, s in enumerate(scores)]
    result = compute("nps", responses=responses, customers=[customer("A")])
    assert result.value == pytest.approx(100 * (4 - 2) / 8)
    assert result.sample_size == 8


def test_nps_window_uses_the_reporting_timezone():
    responses = [
        response("early", 10, "2026-09-30T22:30:00Z"),  # 00:30 on 1 Oct in Berlin: inside
        response("late", 0, "2026-09-30T21:30:00Z"),  # 23:30 on 30 Sep in Berlin: outside
    ]
    result = compute("nps", responses=responses, customers=[customer("A")])
    assert (result.value, result.sample_size) == (100.0, 1)


def test_nps_without_responses_is_null():
    result = compute(
        "nps", responses=[response("old", 9, "2026-03-01T10:00:00Z")], customers=[customer("A")]
    )
    assert result.value is None
    assert result.sample_size == 0


# --- win_rate ----------------------------------------------------------------------------------


def test_win_rate_counts_won_over_closed_in_window():
    deals = [
        deal("w1", "A", won=True, close="2026-10-02"),
        deal("w2", "A", won=True, close="2026-11-01"),
        deal("l1", "A", won=False, close="2026-10-03"),
        deal("l2", "B", won=False, close="2026-10-04"),
        deal("l3", "B", won=False, close="2026-10-05"),
        deal("open", "B"),  # open deals do not count
        deal("before", "B", won=True, close="2026-09-30"),  # before the window
    ]
    result = compute("win_rate", deals, CUSTOMERS_ABC)
    assert (result.value, result.numerator, result.denominator) == (0.4, 2, 5)


def test_win_rate_filters_by_deal_team():
    deals = [
        deal("w1", "A", won=True, close="2026-10-02", team="sales-uk"),
        deal("l1", "A", won=False, close="2026-10-03", team="sales-dach"),
    ]
    assert compute("win_rate", deals, CUSTOMERS_ABC, where={"team": "sales-uk"}).value == 1.0


def test_win_rate_without_closed_deals_is_null():
    assert compute("win_rate", [deal("open", "A")], CUSTOMERS_ABC).value is None


# --- the rest of the library ------------------------------------------------------------------

LIBRARY_DEALS = [
    *HISTORY,  # A and B existing; C's only deal before the cycle was lost
    deal("n1", "C", won=True, close="2026-10-03", amount=900) | {"deal_type": "new_business"},
    deal("e1", "A", won=True, close="2026-10-10", amount=1000) | {"deal_type": "existing_business"},
    deal("e2", "B", won=True, close="2026-11-01", amount=300)
    | {"deal_type": "existing_business", "created_at": "2026-10-02T08:00:00Z"},
    deal("l1", "B", won=False, close="2026-10-20", amount=700),
    deal("o1", "A", amount=2000) | {"created_at": "2026-10-05T10:00:00Z"},  # open
    deal(
        "x1", "C", won=True, close="2026-10-05", amount=5000, deleted=True
    ),  # deleted: never counts
]


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("won_revenue", 2200.0),  # n1 + e1 + e2
        ("new_business_revenue", 900.0),
        ("existing_customer_revenue", 1300.0),  # e1 + e2 (C was not existing)
        ("won_deals", 3),
        ("new_customers", 1),  # C's first win is n1 in the window; A and B won before
        ("average_deal_size", 2200.0 / 3),
        ("pipeline_created", 2300.0),  # created in the window: e2 (300) and o1 (2000)
        ("open_pipeline", 2000.0),  # o1 only; every other deal closed by the as-of day
        ("win_rate", 3 / 4),
    ],
)
def test_deal_metrics_on_a_hand_computed_org(metric, expected):
    assert compute(metric, LIBRARY_DEALS, CUSTOMERS_ABC).value == pytest.approx(expected)


def test_sales_cycle_days_counts_reporting_timezone_days_of_won_deals():
    # e2 was created on 2 Oct and won on 1 Nov: 30 days; n1/e1 were created on 1 Jan 2025.
    result = compute("sales_cycle_days", [LIBRARY_DEALS[5]], CUSTOMERS_ABC)
    assert (result.value, result.sample_size) == (30.0, 1)
    assert compute("sales_cycle_days", [deal("open", "A")], CUSTOMERS_ABC).value is None


def test_win_rate_by_amount():
    result = compute("win_rate", LIBRARY_DEALS, CUSTOMERS_ABC)
    by_amount = metric_value(
        METRICS["win_rate"],
        prepare(
            canonical(DEALS, LIBRARY_DEALS),
            canonical(CUSTOMERS, CUSTOMERS_ABC),
            canonical(NPS_RESPONSES, []),
            timezone="Europe/Berlin",
        ),
        window_for(CYCLE_START, CYCLE_END, AS_OF),
        scope_for(
            prepare(
                canonical(DEALS, LIBRARY_DEALS),
                canonical(CUSTOMERS, CUSTOMERS_ABC),
                canonical(NPS_RESPONSES, []),
                timezone="Europe/Berlin",
            ),
            {},
        ),
        basis="amount",
    )
    assert result.value == pytest.approx(0.75)
    assert by_amount.value == pytest.approx(2200 / 2900)


def test_open_pipeline_is_a_balance_at_the_as_of_day():
    deals = [
        deal("o1", "A", amount=100) | {"created_at": "2026-06-01T10:00:00Z"},
        deal("w1", "A", won=True, close="2026-11-20", amount=50)
        | {"created_at": "2026-06-01T10:00:00Z"},
    ]
    # On 15 Nov w1 is still open (it closes on the 20th), although it was created long ago.
    assert compute("open_pipeline", deals, CUSTOMERS_ABC).value == 150.0
    assert (
        compute("open_pipeline", deals, CUSTOMERS_ABC, as_of=dt.date(2026, 11, 20)).value == 100.0
    )


def test_response_metrics():
    responses = [response(f"r{i}", s, "2026-10-10T12:00:00Z") for i, s in enumerate([10, 7, 4])]
    assert compute("nps_responses", responses=responses, customers=[customer("A")]).value == 3
    assert compute("average_nps_score", responses=responses, customers=[customer("A")]).value == 7.0
    assert compute("average_nps_score", customers=[customer("A")]).value is None
    assert compute("nps_responses", customers=[customer("A")]).value == 0


def test_filters_accept_lists_and_negation():
    deals = [
        deal("w1", "A", won=True, close="2026-10-02", team="sales-uk"),
        deal("w2", "A", won=True, close="2026-10-02", team="sales-us"),
        deal("w3", "A", won=True, close="2026-10-02", team="sales-dach"),
    ]
    assert (
        compute("won_deals", deals, CUSTOMERS_ABC, where={"team": ["sales-uk", "sales-us"]}).value
        == 2
    )
    assert (
        compute("won_deals", deals, CUSTOMERS_ABC, where={"team": {"not": "sales-uk"}}).value == 2
    )


def test_nps_margin_of_error_from_promoter_and_detractor_shares():
    import numpy as np

    from kr_metrics.metrics import margin_of_error

    # 50 promoters, 20 passives, 30 detractors of 100: NPS 20; var = .5 + .3 - .2² = .76
    margin = margin_of_error(
        "nps", np.array([20.0]), np.array([100]), np.array([50.0]), np.array([30.0])
    )
    assert margin[0] == pytest.approx(1.96 * 100 * (0.76 / 100) ** 0.5)
    assert np.isnan(
        margin_of_error("nps", np.array([np.nan]), np.array([0]), np.array([0.0]), np.array([0.0]))[
            0
        ]
    )
    assert margin_of_error("win_rate", np.array([0.5]), np.array([100]))[0] == pytest.approx(0.098)

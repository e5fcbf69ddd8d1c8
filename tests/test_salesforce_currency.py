"""Salesforce money: advanced currency management's open-ended periods, the day whose rate
converts a deal, the as-of restatement of rates to the reporting currency, rates per source."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from fakes.salesforce import utc
from hypothesis import given, settings
from hypothesis import strategies as st
from salesforce_support import settings_for

from connectors.salesforce import SalesforceSource, rates_to_home
from core.canonical import DEALS, FX_RATES
from okr_store.staging import read_staged, stage

pytest_plugins = ["salesforce_support"]

FIRST_DAY = dt.date(1, 1, 1)  # advanced currency management opens every first period here
LAST_DAY = dt.date(9999, 12, 31)  # ... and closes none


def sync(server, engine, name="sf", **overrides):
    source = SalesforceSource(
        name, settings_for(server, **overrides).model_copy(update={"name": name})
    )
    return {r.object: r for r in stage(source, engine, home_currency="EUR")}


def opportunity(org, owner, account, *, currency, close, closed=True, created=None):
    return org.insert(
        "Opportunity",
        Name=f"{currency} {close}",
        AccountId=account,
        OwnerId=owner,
        StageName="Closed Won" if closed else "Proposal",
        IsClosed=closed,
        IsWon=closed,
        Amount=1_000.0,
        CloseDate=close,
        Type="New Business",
        CurrencyIsoCode=currency,
        CreatedDate=created or utc(2026, 1, 2),
    )


def just_switched_on(org, rates: dict[str, float]) -> None:
    """Advanced currency management switched on a moment ago: one period per currency, open at
    both ends, as the org's DatedConversionRate records look then."""
    org.set_rates(rates)
    for iso, rate in rates.items():
        org.insert(
            "DatedConversionRate",
            IsoCode=iso,
            ConversionRate=rate,
            StartDate=FIRST_DAY,
            NextStartDate=LAST_DAY,
        )


def test_an_org_that_just_switched_on_advanced_currency_management_converts_every_deal(
    salesforce, engine
):
    server = salesforce(multi_currency=True, dated_rates=True, corporate_currency="USD")
    org = server.org
    just_switched_on(org, {"USD": 1.0, "EUR": 0.9, "GBP": 0.75, "JPY": 150.0})
    owner = org.insert("User", Name="Cy", Email="cy@acme.example")
    account = org.insert("Account", Name="Multi plc", OwnerId=owner, CurrencyIsoCode="GBP")
    ids = {
        iso: opportunity(org, owner, account, currency=iso, close=dt.date(2026, 8, 1))
        for iso in ("USD", "EUR", "GBP", "JPY")
    }
    reports = sync(server, engine)
    assert reports[DEALS].quarantined == 0, reports[DEALS].quarantine_reasons
    deals = read_staged(engine, DEALS).set_index("deal_id")
    assert deals.loc[ids["GBP"], "amount_home"] == pytest.approx(1_200.0)  # 0.9 / 0.75
    assert deals.loc[ids["JPY"], "amount_home"] == pytest.approx(6.0)  # 0.9 / 150
    assert deals.loc[ids["USD"], "amount_home"] == pytest.approx(900.0)
    fx = read_staged(engine, FX_RATES)
    assert fx["valid_to"].isna().all()  # 9999-12-31 is "open", not a date that drops the row


def test_an_open_deal_converts_at_its_close_dates_rate_as_salesforce_does(salesforce, engine):
    server = salesforce(multi_currency=True, dated_rates=True, corporate_currency="EUR")
    org = server.org
    org.set_rates({"GBP": 0.8})
    org.add_dated_rate("GBP", 0.8, FIRST_DAY)
    org.add_dated_rate("GBP", 0.5, dt.date(2026, 12, 1))
    owner = org.insert("User", Name="Cy", Email="cy@acme.example")
    account = org.insert("Account", Name="Multi plc", OwnerId=owner)
    open_deal = opportunity(
        org,
        owner,
        account,
        currency="GBP",
        close=dt.date(2026, 12, 15),
        closed=False,
        created=utc(2026, 3, 1),
    )
    reports = sync(server, engine)
    assert reports[DEALS].details["open_deals_rate"] == "close_date"
    deals = read_staged(engine, DEALS).set_index("deal_id")
    assert deals.loc[open_deal, "amount_home"] == pytest.approx(2_000.0)  # 1,000 / 0.5
    # configurable: the rate of the day the deal was created
    sync(server, engine, name="sf-created", currency={"open_deals_rate": "created_date"})
    deals = read_staged(engine, DEALS, sources=["sf-created"]).set_index("deal_id")
    assert deals.loc[open_deal, "amount_home"] == pytest.approx(1_250.0)  # 1,000 / 0.8


def test_two_orgs_with_different_booked_rates_keep_their_own(salesforce, engine):
    first = salesforce(multi_currency=True, dated_rates=True, corporate_currency="EUR")
    second = salesforce(multi_currency=True, dated_rates=True, corporate_currency="EUR")
    deals = {}
    for server, rate in ((first, 0.8), (second, 0.5)):
        org = server.org
        org.set_rates({"GBP": rate})
        org.add_dated_rate("GBP", rate, FIRST_DAY)
        owner = org.insert("User", Name="Cy", Email="cy@acme.example")
        account = org.insert("Account", Name="Multi plc", OwnerId=owner)
        deals[server] = opportunity(org, owner, account, currency="GBP", close=dt.date(2026, 5, 1))
    sync(first, engine, name="sf-one")
    sync(second, engine, name="sf-two")
    sync(first, engine, name="sf-one")  # a later sync of the first must not take the second's
    fx = read_staged(engine, FX_RATES).set_index("source")
    assert fx.loc["sf-one", "rate_to_home"] == pytest.approx(1.25)
    assert fx.loc["sf-two", "rate_to_home"] == pytest.approx(2.0)
    one = read_staged(engine, DEALS, sources=["sf-one"]).set_index("deal_id")
    two = read_staged(engine, DEALS, sources=["sf-two"]).set_index("deal_id")
    assert one.loc[deals[first], "amount_home"] == pytest.approx(1_250.0)
    assert two.loc[deals[second], "amount_home"] == pytest.approx(2_000.0)


# -- the restatement, against the rate of each single day --------------------------------------

DAYS = [dt.date(2025, 1, 1) + dt.timedelta(days=n) for n in range(0, 400, 7)]


@st.composite
def dated_rates(draw):
    """Some currencies' periods: the first opens on 0001-01-01 or a real day, the last ends on
    9999-12-31, nothing, or a real day (a gap after it)."""
    rows = []
    for iso in draw(
        st.lists(st.sampled_from(["EUR", "USD", "GBP", "JPY"]), min_size=1, unique=True)
    ):
        starts = sorted(draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=5, unique=True)))
        if draw(st.booleans()):
            starts[0] = FIRST_DAY
        ends = [*starts[1:], draw(st.sampled_from([LAST_DAY, None, *DAYS]))]
        for start, end in zip(starts, ends, strict=True):
            if end is not None and end <= start:
                continue
            rate = draw(st.sampled_from([0.5, 0.8, 1.0, 1.25, 150.0]))
            rows.append(
                {
                    "IsoCode": iso,
                    "ConversionRate": rate,
                    "StartDate": start.isoformat(),
                    "NextStartDate": end.isoformat() if end else None,
                }
            )
    return pd.DataFrame(rows, columns=["IsoCode", "ConversionRate", "StartDate", "NextStartDate"])


def _rate_on(rates: pd.DataFrame, iso: str, day: dt.date) -> float | None:
    for row in rates[rates["IsoCode"] == iso].itertuples():
        start = dt.date.fromisoformat(row.StartDate)
        end = dt.date.fromisoformat(row.NextStartDate) if row.NextStartDate else LAST_DAY
        if start <= day < end:
            return row.ConversionRate
    return None


@settings(max_examples=150, deadline=None)
@given(dated_rates(), st.sampled_from(["EUR", "USD"]))
def test_the_restated_rate_of_every_day_is_the_quotient_of_that_days_rates(rates, home):
    fx = rates_to_home(rates, home, "EUR")
    assert not fx.duplicated(["currency", "valid_from"]).any()
    for iso in rates["IsoCode"].unique():
        if iso == home:
            continue
        periods = fx[fx["currency"] == iso]
        for day in DAYS:
            own = _rate_on(rates, iso, day)
            home_rate = (
                1.0
                if home == "EUR" and not (rates["IsoCode"] == home).any()
                else (_rate_on(rates, home, day))
            )
            text = day.isoformat()
            held = periods[
                (periods["valid_from"] <= text)
                & (periods["valid_to"].isna() | (periods["valid_to"] > text))
            ]
            if own is None or home_rate is None:
                assert held.empty, (iso, day)
            else:
                assert len(held) == 1, (iso, day, held)
                assert held["rate_to_home"].iloc[0] == pytest.approx(home_rate / own)

"""The HubSpot source against a fake portal: full and incremental sync, limits, faults, numbers."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa
from fakes.hubspot import TOKEN, Fault, Portal, rate_limit, running, standard_portal

from connectors.base import SourceError, SourceLimitReached
from connectors.hubspot import HubSpotSource, HubSpotSourceSettings
from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES, OWNERS
from kr_metrics.engine import metric_value, prepare
from kr_metrics.metrics import METRICS, Window, scope_for
from okr_store.db import create_engine
from okr_store.schema import upgrade
from okr_store.staging import read_cursor, read_quarantine, read_staged, stage

Q4 = Window(start=dt.date(2026, 10, 1), end=dt.date(2026, 11, 25), cycle_start=dt.date(2026, 10, 1))


@pytest.fixture
def portal() -> tuple[Portal, dict[str, str]]:
    portal = Portal()
    return portal, standard_portal(portal)


@pytest.fixture
def fake(portal):
    with running(portal[0]) as server:
        yield server


def make_source(fake, **overrides) -> tuple[HubSpotSource, list[float]]:
    waits: list[float] = []
    options = {
        "portal_currency": "EUR",
        "company_properties": {"segment": "customer_segment"},
        "teams": {"Sales UK&I": "sales-uk"},
        "backoff_seconds": 0.01,
        **overrides,
    }
    settings = HubSpotSourceSettings(
        name="hubspot", type="hubspot", base_url=fake.base_url, **options
    )
    return HubSpotSource("hubspot", settings, TOKEN, "Europe/Berlin", sleep=waits.append), waits


def sync(source: HubSpotSource, engine) -> dict:
    return {r.object: r for r in stage(source, engine, home_currency="EUR")}


def metric(engine, name: str, where: dict | None = None):
    frames = {t: read_staged(engine, t) for t in (DEALS, CUSTOMERS, NPS_RESPONSES)}
    data = prepare(
        frames[DEALS], frames[CUSTOMERS], frames[NPS_RESPONSES], timezone="Europe/Berlin"
    )
    return metric_value(METRICS[name], data, Q4, scope_for(data, where or {}))


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'hubspot.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_first_sync_lists_everything_and_yields_hand_computed_numbers(engine, fake, portal):
    _, ids = portal
    source, _ = make_source(fake)
    reports = sync(source, engine)

    assert reports[DEALS].details["mode"] == "full"
    assert (reports[DEALS].changed, reports[DEALS].quarantined) == (8, 2)
    assert set(reports[DEALS].quarantine_reasons) == {
        "amount is not a number",
        "dealstage 'retired-stage' is not a stage of pipeline 'default' (per the pipelines API)",
    }
    assert reports[NPS_RESPONSES].quarantine_reasons == {
        "score outside 0..10": 1,
        "missing score": 1,
    }
    assert reports[NPS_RESPONSES].details["other_survey_types_skipped"] == 1
    # Existing customers C1, C3; won in the window from them: 10,000 + 11,000 (USD deal, EUR home).
    assert metric(engine, "revenue_per_existing_customer").value == pytest.approx(10_500)
    assert metric(engine, "win_rate").value == pytest.approx(3 / 5)
    assert metric(engine, "win_rate", {"team": "sales-uk"}).value == pytest.approx(1 / 2)
    # F1 10 (C1), F2 9 (C3), F3 3 (C3), F4 7 (no company): (2 - 1) / 4.
    assert metric(engine, "nps").value == pytest.approx(25.0)
    assert metric(engine, "nps", {"team": "sales-uk"}).value == pytest.approx(0.0)
    assert metric(engine, "nps", {"segment": "SMB"}).sample_size == 3


def test_closed_and_won_come_from_stage_metadata_not_names(engine, fake, portal):
    _, ids = portal
    sync(make_source(fake)[0], engine)
    deals = read_staged(engine, DEALS).set_index("deal_id")
    signed = deals.loc[ids["D-before-3"]]
    assert (signed["stage"], signed["pipeline"], signed["is_closed"], signed["is_won"]) == (
        "Signed",
        "Renewals",
        True,
        True,
    )
    gone = deals.loc[ids["D-lost-c4-gbp"]]
    assert (gone["is_closed"], gone["is_won"]) == (True, False)
    assert deals.loc[ids["D-open-c1"], "is_closed"] == False  # noqa: E712
    assert deals.loc[ids["D-before-3"], "deal_type"] == "renewal"
    assert deals.loc[ids["D-won-c1"], "close_date"] == pd.Timestamp("2026-10-15")


def test_multi_currency_deals_keep_both_amounts(engine, fake, portal):
    _, ids = portal
    sync(make_source(fake)[0], engine)
    deals = read_staged(engine, DEALS).set_index("deal_id")
    usd = deals.loc[ids["D-won-c3-usd"]]
    assert (usd["amount"], usd["currency"], usd["amount_home"]) == (12_000, "USD", 11_000)
    gbp = deals.loc[ids["D-lost-c4-gbp"]]
    assert (gbp["amount"], gbp["currency"], gbp["amount_home"]) == (3_000, "GBP", 3_450)
    # An empty deal_currency_code is the portal's currency.
    assert deals.loc[ids["D-lost-c1"], "currency"] == "EUR"


def test_home_amounts_of_another_portal_currency_are_converted_or_quarantined(engine, fake, portal):
    # The portal books in GBP while krpulse reports in EUR: HubSpot's home amount is not ours,
    # and no FX rates are staged, so only EUR deals (and deals without an amount) pass.
    source, _ = make_source(fake, portal_currency="GBP")
    reports = sync(source, engine)
    reasons = reports[DEALS].quarantine_reasons
    assert reasons["unknown currency GBP (no FX rate to EUR)"] == 3
    assert reasons["unknown currency USD (no FX rate to EUR)"] == 1


def test_owners_and_their_teams(engine, fake):
    sync(make_source(fake)[0], engine)
    owners = read_staged(engine, OWNERS).set_index("owner_id")
    assert owners.loc["101", ["name", "email", "team"]].tolist() == [
        "Anna Schmidt",
        "anna@example.com",
        "sales-dach",
    ]
    assert owners.loc["102", "team"] == "sales-uk"  # the primary team, mapped by krpulse.yaml
    customers = read_staged(engine, CUSTOMERS).set_index("name")
    assert customers.loc["Crown Ltd", ["region", "segment", "team"]].tolist() == [
        "United Kingdom",
        "SMB",
        "sales-uk",
    ]


def test_incremental_sync_searches_only_what_changed(engine, fake, portal):
    hub, ids = portal
    source, _ = make_source(fake, lookback_minutes=0)
    sync(source, engine)
    cursor_before = read_cursor(engine.connect(), "hubspot", DEALS)
    hub.update("deals", ids["D-open-c1"], dealstage="closedwon", closedate="2026-11-20T10:00:00Z")
    hub.requests.clear()

    reports = sync(source, engine)

    assert reports[DEALS].details["mode"] == "incremental"
    assert reports[DEALS].changed == 1
    assert hub.calls("POST /crm/v3/objects/deals/search") == 1
    assert hub.calls("GET /crm/v3/objects/deals$") == 1  # the archived list, nothing else
    with engine.connect() as conn:
        assert read_cursor(conn, "hubspot", DEALS) > cursor_before
    assert metric(engine, "revenue_per_existing_customer").value == pytest.approx(20_500)
    # Nothing changed: the next run changes nothing.
    assert sync(source, engine)[DEALS].changed == 0


def test_an_archived_deal_leaves_the_numbers(engine, fake, portal):
    hub, ids = portal
    source, _ = make_source(fake)
    sync(source, engine)
    hub.archive("deals", ids["D-won-c1"])
    reports = sync(source, engine)
    assert reports[DEALS].deleted == 1
    deals = read_staged(engine, DEALS).set_index("deal_id")
    assert deals.loc[ids["D-won-c1"], "is_deleted"] == True  # noqa: E712
    assert metric(engine, "revenue_per_existing_customer").value == pytest.approx(5_500)
    assert metric(engine, "win_rate").value == pytest.approx(2 / 4)
    # The archived record stays deleted, not deleted again, on the next run.
    assert sync(source, engine)[DEALS].deleted == 0


def test_a_deal_whose_company_changes_moves_to_the_new_customer(engine, fake, portal):
    hub, ids = portal
    source, _ = make_source(fake)
    sync(source, engine)
    # D-won-c2 (new customer C2) moves to C1, an existing customer.
    hub.set_deal_company(ids["D-won-c2"], ids["C1"])
    reports = sync(source, engine)
    assert reports[DEALS].changed == 1
    deals = read_staged(engine, DEALS).set_index("deal_id")
    assert deals.loc[ids["D-won-c2"], "customer_id"] == ids["C1"]
    assert metric(engine, "revenue_per_existing_customer").value == pytest.approx(12_500)


def test_the_primary_company_wins_when_a_deal_has_several(engine, fake, portal):
    hub, ids = portal
    hub.associate("deals", ids["D-won-c1"], "companies", ids["C4"])  # a second, unlabeled one
    sync(make_source(fake)[0], engine)
    deals = read_staged(engine, DEALS).set_index("deal_id")
    assert deals.loc[ids["D-won-c1"], "customer_id"] == ids["C1"]


def test_nps_responses_map_to_the_submitting_contacts_primary_company(engine, fake, portal):
    _, ids = portal
    reports = sync(make_source(fake)[0], engine)
    responses = read_staged(engine, NPS_RESPONSES).set_index("response_id")
    assert responses.loc[ids["F1"], "customer_id"] == ids["C1"]
    assert responses.loc[ids["F2"], "customer_id"] == ids["C3"]  # K2's primary, not C4
    assert pd.isna(responses.loc[ids["F4"], "customer_id"])
    assert responses.loc[ids["F1"], "score"] == 10
    assert ids["F5"] not in responses.index  # a CSAT survey is not NPS
    assert reports[NPS_RESPONSES].details["responses_without_company"] == 1


def test_a_search_window_of_more_than_10000_changed_deals_restarts_on_object_id(
    sqlite_engine, fake, portal
):
    hub, ids = portal
    source, _ = make_source(fake, lookback_minutes=0)
    sync(source, sqlite_engine)
    for i in range(10_050):
        deal = hub.add(
            "deals",
            {
                "dealname": f"bulk {i}",
                "amount": "100",
                "deal_currency_code": "EUR",
                "amount_in_home_currency": "100",
                "dealstage": "closedwon",
                "pipeline": "default",
                "closedate": "2026-10-10T10:00:00Z",
                "hubspot_owner_id": "101",
                "dealtype": "newbusiness",
            },
        )
        hub.associate("deals", deal, "companies", ids["C2"], primary=True)
    hub.requests.clear()

    report = sync(source, sqlite_engine)[DEALS]

    assert report.changed == 10_050
    assert report.details["search_windows"] == 2
    # 10,051 results (the boundary deal again) at 200 a page: 50 pages + 1, never a 400.
    assert hub.calls("POST /crm/v3/objects/deals/search") == 51
    assert hub.calls("associations/deals/companies") == 11
    assert len(read_staged(sqlite_engine, DEALS)) == 8 + 10_050


def test_a_429_storm_in_the_middle_of_a_search_is_waited_out(engine, fake, portal):
    hub, ids = portal
    source, waits = make_source(fake, lookback_minutes=0)
    sync(source, engine)
    for i in range(450):  # three search pages
        hub.add(
            "deals",
            {
                "dealname": f"new {i}",
                "dealstage": "appointmentscheduled",
                "pipeline": "default",
                "deal_currency_code": "EUR",
            },
        )
    hub.faults.append(
        rate_limit("TEN_SECONDLY_ROLLING", path="deals/search", method="POST", skip=1, times=4)
    )
    hub.faults.append(rate_limit("TEN_SECONDLY_ROLLING", path="deals/search", retry_after=3))
    hub.requests.clear()

    report = sync(source, engine)[DEALS]

    assert report.changed == 450
    assert report.details["rate_limit_waits"] == 5
    assert waits[-1] == 3.0  # Retry-After honoured when HubSpot sends it
    assert waits[:4] == [0.01, 0.02, 0.04, 0.08]  # otherwise exponential backoff
    # Every request, the 429s included, counts as an API call of the deals sync.
    assert report.api_calls == hub.calls("deals") == 12


def test_the_daily_limit_stops_cleanly_with_the_cursor_unchanged(engine, fake, portal):
    hub, ids = portal
    source, _ = make_source(fake, lookback_minutes=0)
    sync(source, engine)
    with engine.connect() as conn:
        before = read_cursor(conn, "hubspot", DEALS)
    hub.update("deals", ids["D-open-c1"], dealstage="closedwon", closedate="2026-11-20T10:00:00Z")
    # Even with a Retry-After, a DAILY 429 is not retried: the budget is gone until tomorrow.
    hub.faults.append(rate_limit("DAILY", path="deals/search", method="POST", retry_after=30))
    hub.requests.clear()

    with pytest.raises(SourceLimitReached, match="DAILY"):
        stage(source, engine, home_currency="EUR")
    assert hub.calls("deals/search") == 1
    with engine.connect() as conn:
        assert read_cursor(conn, "hubspot", DEALS) == before
    deals = read_staged(engine, DEALS).set_index("deal_id")
    assert deals.loc[ids["D-open-c1"], "is_won"] == False  # noqa: E712

    # The next day the budget is back and the change arrives.
    assert sync(source, engine)[DEALS].changed == 1


def test_search_posts_are_retried_after_server_errors_and_timeouts(engine, fake, portal):
    hub, ids = portal
    source, _ = make_source(fake, lookback_minutes=0, timeout_seconds=0.5)
    sync(source, engine)
    hub.update("deals", ids["D-open-c1"], dealstage="closedwon")
    hub.faults.append(Fault("deals/search", status=503, method="POST", times=2))
    hub.faults.append(Fault("deals/search", status=200, method="POST", delay=1.0))
    hub.requests.clear()

    report = sync(source, engine)[DEALS]

    assert report.changed == 1
    assert hub.calls("POST /crm/v3/objects/deals/search") == 4
    # properties, pipelines, 4 search attempts, associations, the archived list.
    assert report.api_calls == hub.calls("deals") == 8


def test_persistent_server_errors_end_in_a_clear_error(engine, fake, portal):
    hub, _ = portal
    source, _ = make_source(fake, max_retries=2)
    hub.faults.append(Fault("/crm/v3/objects/companies$", status=502, times=10))
    with pytest.raises(SourceError, match="502 to list companies after 2 retries"):
        stage(source, engine, home_currency="EUR")
    assert hub.calls("GET /crm/v3/objects/companies") == 3


def test_a_rejected_token_names_its_environment_variable(engine, fake):
    settings = HubSpotSourceSettings(
        name="hubspot",
        type="hubspot",
        base_url=fake.base_url,
        access_token_env="HS_TOKEN",  # noqa: S106 - the variable's name, not a secret
    )
    with pytest.raises(SourceError, match=r"401 .*\$HS_TOKEN was rejected"):
        stage(HubSpotSource("hubspot", settings, "wrong", "UTC"), engine, home_currency="EUR")


def test_missing_scopes_are_named(engine, portal):
    hub, _ = portal
    hub.scopes -= {"crm.objects.companies.read", "crm.objects.owners.read"}
    with running(hub) as fake:
        source, _ = make_source(fake)
        with pytest.raises(SourceError, match="crm.objects.owners.read"):
            stage(source, engine, home_currency="EUR")


def test_properties_the_portal_lacks_are_named_before_any_record_is_read(engine, fake, portal):
    hub, _ = portal
    source, _ = make_source(fake, company_properties={"segment": "tier", "region": "country"})
    with pytest.raises(SourceError, match=r"no property companies\.tier .*company_properties"):
        stage(source, engine, home_currency="EUR")
    assert hub.calls("/crm/v3/objects/") == 0


def test_a_missing_token_variable_says_what_to_set(engine, monkeypatch):
    monkeypatch.delenv("HUBSPOT_TOKEN", raising=False)
    settings = HubSpotSourceSettings(name="hubspot", type="hubspot")
    with pytest.raises(SourceError, match="HUBSPOT_TOKEN is not set"):
        stage(HubSpotSource("hubspot", settings), engine, home_currency="EUR")


def test_quarantined_records_leave_quarantine_once_fixed_in_hubspot(engine, fake, portal):
    hub, ids = portal
    source, _ = make_source(fake, lookback_minutes=0)
    sync(source, engine)
    hub.update("deals", ids["D-bad-amount"], amount="12000")
    reports = sync(source, engine)
    assert reports[DEALS].changed == 1
    quarantine = read_quarantine(engine, source="hubspot")
    assert ids["D-bad-amount"] not in set(quarantine["record_id"])
    assert ids["D-bad-stage"] in set(quarantine["record_id"])


def test_the_token_never_reaches_reports_or_staging(engine, fake):
    reports = stage(make_source(fake)[0], engine, home_currency="EUR")
    assert TOKEN not in repr(reports)
    with engine.connect() as conn:
        states = conn.execute(sa.text("select last_report from sync_state")).scalars().all()
    assert all(TOKEN not in state for state in states)

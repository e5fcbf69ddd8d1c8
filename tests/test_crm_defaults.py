"""Defaults a real org passes on the first try: NPS detected, the portal's currency read, the
JWT audience of the login URL, client credentials at My Domain, queryAll counts, 401s final."""

from __future__ import annotations

import pytest
from fakes.hubspot import TOKEN, Portal, running, standard_portal
from fakes.salesforce import utc
from salesforce_support import ENV, populate_acme, settings_for

from connectors.base import SourceAuthError, SourceError
from connectors.hubspot import HubSpotSource, HubSpotSourceSettings
from connectors.salesforce import SalesforceSource
from connectors.salesforce.settings import SalesforceSourceSettings
from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from okr_store.staging import read_quarantine, read_staged, stage

pytest_plugins = ["salesforce_support"]


def sf_sync(server, engine, **overrides):
    source = SalesforceSource("sf", settings_for(server, **overrides))
    return {r.object: r for r in stage(source, engine, home_currency="EUR")}


def hubspot(fake, **options) -> HubSpotSource:
    options = {"teams": {"Sales UK&I": "sales-uk"}, "backoff_seconds": 0.01, **options}
    settings = HubSpotSourceSettings(
        name="hubspot", type="hubspot", base_url=fake.base_url, **options
    )
    return HubSpotSource("hubspot", settings, TOKEN, "Europe/Berlin", sleep=lambda _: None)


def hs_sync(source, engine) -> dict:
    return {r.object: r for r in stage(source, engine, home_currency="EUR")}


# -- Salesforce ------------------------------------------------------------------------------


def test_an_org_without_feedback_management_syncs_everything_else_and_says_why_no_nps(
    salesforce, engine, caplog
):
    server = salesforce(feedback_management=False)
    ids = populate_acme(server.org)
    reports = sf_sync(server, engine)
    assert len(read_staged(engine, DEALS)) == 8 and len(read_staged(engine, CUSTOMERS)) == 3
    nps = reports[NPS_RESPONSES]
    assert nps.details["nps_mode"] == "none"
    assert "Feedback Management" in nps.details["warning"]
    assert (
        "SurveyQuestionResponse" in nps.details["warning"] and "nps.mode" in nps.details["warning"]
    )
    assert "NPS responses are not synced" in caplog.text
    assert ids  # the org has deals; only NPS is missing


def test_an_org_with_feedback_management_reads_it_by_default(salesforce, engine):
    server = salesforce()
    populate_acme(server.org)
    reports = sf_sync(server, engine)
    assert reports[NPS_RESPONSES].details["nps_mode"] == "feedback_management"
    assert len(read_staged(engine, NPS_RESPONSES)) == 4


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        (None, "https://login.salesforce.com"),
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://test.salesforce.com/", "https://test.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        ("https://acme.my.site.com/customers", "https://acme.my.site.com/customers"),
    ],
)
def test_the_jwt_audience_follows_the_login_url(login_url, audience):
    settings = SalesforceSourceSettings.model_validate(
        {
            "name": "sf",
            "type": "salesforce",
            "login_url": login_url,
            "auth": {
                "method": "jwt",
                "username": "u@acme.example",
                "consumer_key_env": "K",
                "private_key_env": "P",
            },
        }
    )
    assert settings.audience == audience


def test_a_jwt_login_at_a_login_url_asserts_that_url_as_its_audience(salesforce, engine):
    server = salesforce()  # the fake wants its own URL as the audience, as a site would
    populate_acme(server.org)
    sf_sync(server, engine)
    assert server.org.logins == 1


@pytest.mark.parametrize(
    "url", [None, "https://login.salesforce.com", "https://test.salesforce.com"]
)
def test_client_credentials_need_the_my_domain_url(url):
    config = {
        "name": "sf",
        "type": "salesforce",
        "auth": {
            "method": "client_credentials",
            "consumer_key_env": "K",
            "consumer_secret_env": "S",
        },
    }
    if url:
        config["login_url"] = url
    with pytest.raises(ValueError, match="My Domain"):
        SalesforceSourceSettings.model_validate(config)
    config.pop("login_url", None)
    config["instance_url"] = "https://acme.my.salesforce.com"
    assert SalesforceSourceSettings.model_validate(config).token_base_url == config["instance_url"]


def test_a_sync_whose_only_changes_are_deletes_still_sees_them(salesforce, engine):
    server = salesforce()
    ids = populate_acme(server.org)
    sf_sync(server, engine)
    org = server.org
    before = len(org.requests)
    for key in ("o1", "o2", "o3"):
        org.delete("Opportunity", ids[key], at=utc(2026, 11, 20, 9))
    # a low threshold: the count decides between REST and Bulk, and must count the deletes
    reports = sf_sync(server, engine, sync={"bulk_threshold": 2})
    assert reports[DEALS].deleted == 3
    assert reports[DEALS].details["api_path"] == "bulk"
    deals = read_staged(engine, DEALS).set_index("deal_id")
    assert deals.loc[[ids["o1"], ids["o2"], ids["o3"]], "is_deleted"].all()
    counts = [p for _, p, q in org.requests[before:] if "COUNT" in q and "Opportunity" in q]
    assert counts and all(p.rstrip("/").endswith("/queryAll") for p in counts)


def test_a_refused_login_is_an_auth_error_that_is_not_worth_retrying(
    salesforce, engine, monkeypatch
):
    server = salesforce()
    populate_acme(server.org)
    monkeypatch.setenv(ENV["key"], "someone-elses-key")
    with pytest.raises(SourceAuthError, match="login \\(jwt\\).*failed"):
        sf_sync(server, engine)
    assert server.org.logins == 0


# -- HubSpot ---------------------------------------------------------------------------------


def test_the_portal_currency_comes_from_the_account_details(engine):
    portal = Portal(company_currency="EUR")
    ids = standard_portal(portal)
    with running(portal) as fake:
        reports = hs_sync(hubspot(fake), engine)  # no portal_currency in krpulse.yaml
    deals = read_staged(engine, DEALS).set_index("deal_id")
    # D-lost-c1 has no deal_currency_code: it is in the portal's currency
    assert deals.loc[ids["D-lost-c1"], "currency"] == "EUR"
    assert deals.loc[ids["D-lost-c1"], "amount_home"] == 5_000
    assert not any("portal" in reason for reason in reports[DEALS].quarantine_reasons)
    assert portal.calls("GET /account-info/v3/details") == 1


def test_a_token_without_the_feedback_scope_syncs_deals_and_warns_about_nps(engine, caplog):
    portal = Portal(scopes=Portal().scopes - {"crm.objects.feedback_submissions.read"})
    portal.scopes = set(portal.scopes)
    ids = standard_portal(portal)
    with running(portal) as fake:
        reports = hs_sync(hubspot(fake, portal_currency="EUR"), engine)
    assert ids["D-won-c1"] in set(read_staged(engine, DEALS)["deal_id"])
    assert reports[NPS_RESPONSES].details["nps_mode"] == "none"
    assert "crm.objects.feedback_submissions.read" in reports[NPS_RESPONSES].details["warning"]
    assert "NPS responses are not synced" in caplog.text
    assert read_staged(engine, NPS_RESPONSES).empty
    assert read_quarantine(engine, source="hubspot")["table_name"].ne(NPS_RESPONSES).all()


def test_a_rejected_hubspot_token_is_an_auth_error_asked_once(engine):
    portal = Portal()
    standard_portal(portal)
    with running(portal) as fake:
        source = hubspot(fake, portal_currency="EUR")
        source.access_token = "pat-revoked"  # noqa: S105 - a made-up token
        with pytest.raises(SourceAuthError, match="HUBSPOT_TOKEN"):
            hs_sync(source, engine)
    assert len(portal.requests) == 1  # no retry of a 401


def test_missing_scopes_other_than_feedback_still_stop_the_sync(engine):
    portal = Portal()
    portal.scopes -= {"crm.objects.owners.read"}
    standard_portal(portal)
    with running(portal) as fake, pytest.raises(SourceError, match="crm.objects.owners.read"):
        hs_sync(hubspot(fake, portal_currency="EUR"), engine)

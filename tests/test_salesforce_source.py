"""The Salesforce source against a fake org: sync, increments, deletes, limits, faults, Bulk, money."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from fakes.salesforce import utc
from salesforce_support import ENV, populate_acme, settings_for

from connectors.base import SourceError, SourceLimitReached
from connectors.salesforce import LegacyLoginWarning, SalesforceSource, rates_to_home
from connectors.salesforce.helpers import SalesforceClient, credentials_from_env
from core.canonical import CUSTOMERS, DEALS, FX_RATES, NPS_RESPONSES, OWNERS
from kr_metrics.engine import metric_value, prepare, window_for
from kr_metrics.metrics import METRICS, scope_for
from okr_store.staging import read_cursor, read_quarantine, read_staged, stage

# The fake org fixtures: `salesforce` (start an org), `tls_files`, `jwt_keys`.
pytest_plugins = ["salesforce_support"]


def sync(server, engine, **overrides):
    source = SalesforceSource("sf", settings_for(server, **overrides))
    return {r.object: r for r in stage(source, engine, home_currency="EUR")}


def staged(engine, table):
    frame = read_staged(engine, table, sources=["sf"])
    return frame.set_index(frame.columns[1])


def test_full_sync_maps_opportunities_accounts_users_and_survey_answers(salesforce, engine):
    server = salesforce()
    ids = populate_acme(server.org)
    reports = sync(server, engine)
    assert list(reports) == [FX_RATES, OWNERS, CUSTOMERS, DEALS, NPS_RESPONSES]
    assert reports[DEALS].fetched == 8 and reports[DEALS].changed == 8
    deals = staged(engine, DEALS)
    o5, o4 = deals.loc[ids["o5"]], deals.loc[ids["o4"]]
    # closed and won come from IsClosed/IsWon; Type goes through the deal-type map
    assert (o5["is_closed"], o5["is_won"], o5["deal_type"]) == (True, False, "renewal")
    assert o4["deal_type"] == "existing_business"
    assert o4["team"] == "sales-dach" and o4["currency"] == "EUR" and o4["amount_home"] == 12_000
    assert deals.loc[ids["o6"], "team"] == "sales-uk"
    customers = staged(engine, CUSTOMERS)
    assert customers.loc[ids["gamma"], ["region", "segment", "team"]].tolist() == [
        "UK&I",
        "SMB",
        "sales-uk",
    ]
    owners = staged(engine, OWNERS)
    assert owners.loc[ids["anna"], "team"] == "sales-dach"
    nps = staged(engine, NPS_RESPONSES)
    assert len(nps) == 4  # the FreeText answers are not NPS
    assert nps.loc[ids["nps0"], ["customer_id", "score"]].tolist() == [ids["alpha"], 10]
    assert nps.loc[ids["nps1"], "customer_id"] == ids["gamma"]  # subject on the response
    # every report carries the API calls it spent and the org's API usage
    assert all(r.api_calls > 0 for r in reports.values())
    assert reports[NPS_RESPONSES].details["api_usage_used"] == server.org.api_used
    assert reports[NPS_RESPONSES].details["api_usage_max"] == 15_000


def test_incremental_sync_fetches_only_what_changed_and_deletes_via_query_all(salesforce, engine):
    server = salesforce()
    ids = populate_acme(server.org)
    sync(server, engine, sync={"lookback_seconds": 60})
    org = server.org
    org.clock = utc(2026, 11, 14, 12, 0, 0)
    org.update("Opportunity", ids["o7"], IsClosed=True, IsWon=True, StageName="Closed Won")
    new = org.insert(
        "Opportunity",
        Name="O9",
        AccountId=ids["gamma"],
        OwnerId=ids["ben"],
        StageName="Proposal",
        IsClosed=False,
        IsWon=False,
        Amount=1.0,
        CloseDate=dt.date(2026, 12, 1),
        Type="Renewal",
    )
    org.delete("Opportunity", ids["o8"])
    before = len(org.requests)
    reports = sync(server, engine, sync={"lookback_seconds": 60})
    assert reports[DEALS].fetched == 3
    assert reports[DEALS].changed == 2 and reports[DEALS].deleted == 1
    # the lookback minute fetches the accounts stamped at the cursor again; none changed
    assert reports[CUSTOMERS].fetched == 3 and reports[CUSTOMERS].changed == 0
    deals = staged(engine, DEALS)
    assert deals.loc[ids["o7"], "is_won"] and new in deals.index
    assert deals.loc[ids["o8"], "is_deleted"]
    queries = [q for _, path, q in org.requests[before:] if path.endswith("/queryAll/")]
    assert any("Opportunity" in q and "SystemModstamp" in q for q in queries)
    with engine.connect() as conn:
        assert read_cursor(conn, "sf", DEALS) == utc(2026, 11, 14, 12, 0, 0)


def test_a_record_modified_in_the_cursors_second_is_not_missed(salesforce, engine):
    server = salesforce()
    ids = populate_acme(server.org)
    org = server.org
    org.update("Opportunity", ids["o1"], SystemModstamp=utc(2026, 11, 14, 9, 0, 0, 700_000))
    sync(server, engine, sync={"lookback_seconds": 0})
    # A transaction that started earlier commits after our query, stamped in the same second.
    org.update(
        "Opportunity", ids["o2"], Amount=5_500.0, SystemModstamp=utc(2026, 11, 14, 9, 0, 0, 200_000)
    )
    reports = sync(server, engine, sync={"lookback_seconds": 0})
    assert reports[DEALS].changed == 1
    assert staged(engine, DEALS).loc[ids["o2"], "amount"] == 5_500
    # and the record that set the cursor, fetched again, is not counted as a change
    assert reports[DEALS].fetched == 2


def test_a_deleted_opportunity_disappears_from_the_kr_numbers(salesforce, engine):
    server = salesforce()
    ids = populate_acme(server.org)
    cycle_start, as_of = dt.date(2026, 10, 1), dt.date(2026, 11, 15)

    def numbers():
        data = prepare(
            read_staged(engine, DEALS),
            read_staged(engine, CUSTOMERS),
            read_staged(engine, NPS_RESPONSES),
            timezone="Europe/Berlin",
        )
        window = window_for(cycle_start, dt.date(2026, 12, 31), as_of)
        scope = scope_for(data, {})
        return (
            metric_value(METRICS["revenue_per_existing_customer"], data, window, scope).value,
            metric_value(METRICS["win_rate"], data, window, scope).value,
        )

    sync(server, engine)
    assert numbers() == pytest.approx((27_000 / 3, 3 / 4))
    server.org.delete("Opportunity", ids["o8"], at=utc(2026, 11, 14, 13))
    sync(server, engine)
    assert numbers() == pytest.approx((18_000 / 3, 2 / 3))


def test_session_expiry_in_the_middle_of_pagination_reauthenticates_once(salesforce, engine):
    server = salesforce()
    ids = populate_acme(server.org)
    org = server.org
    org.clock = utc(2026, 11, 14, 9)
    for n in range(4_500):
        org.insert(
            "Opportunity",
            Name=f"Bulk {n}",
            AccountId=ids["alpha"],
            OwnerId=ids["anna"],
            StageName="Proposal",
            IsClosed=False,
            IsWon=False,
            Amount=100.0,
            CloseDate=dt.date(2026, 12, 1),
            Type="Renewal",
        )
    sync(server, engine)
    org.clock = utc(2026, 11, 20, 10)
    for record in list(org.records["Opportunity"].values())[:4_300]:
        org.update("Opportunity", record["Id"], Amount=200.0)
    # Ten REST calls in (limits, describes, currency, owner and account counts, the deals'
    # count and first page) the session dies: the next call is the deals' second page.
    org.expire_sessions_after(10)
    logins = org.logins
    reports = sync(server, engine)
    assert org.logins == logins + 2  # the sync's login and exactly one re-authentication
    assert reports[DEALS].details["reauthentications"] == 1
    assert reports[DEALS].changed == 4_300
    deals = staged(engine, DEALS)
    assert (deals["amount"] == 200.0).sum() == 4_300
    pages = [q for _, p, q in org.requests if "/query/01g" in p]
    assert len(pages) >= 2  # it really was paginating


def test_an_expired_bare_session_id_fails_with_a_clear_message(salesforce, engine, monkeypatch):
    server = salesforce()
    populate_acme(server.org)
    token = server.org.issue_token()
    monkeypatch.setenv("SF_SESSION", token)
    overrides = {"auth": {"method": "session", "session_id_env": "SF_SESSION"}, "login_url": None}
    settings = settings_for(server, instance_url=server.base_url, **overrides)
    stage(SalesforceSource("sf", settings), engine, home_currency="EUR")  # the session works
    server.org.expire_sessions()
    logins = server.org.logins
    with pytest.raises(SourceError, match=r"SF_SESSION is expired or invalid.*cannot be renewed"):
        stage(SalesforceSource("sf", settings), engine, home_currency="EUR")
    assert server.org.logins == logins  # no login attempted with a bare session


def test_request_limit_exceeded_stops_cleanly_leaving_cursor_and_staging_as_they_were(
    salesforce, engine
):
    server = salesforce()
    ids = populate_acme(server.org)
    org = server.org
    sync(server, engine)
    with engine.connect() as conn:
        cursor_before = read_cursor(conn, "sf", DEALS)
    org.clock = utc(2026, 11, 15, 9)
    org.update("Opportunity", ids["o5"], Amount=3_333.0)
    org.update("Account", ids["beta"], Region__c="Nordics")
    # The org runs out of API requests when the deals are about to be extracted.
    org.fail_next(403, path_contains="FROM+Opportunity")
    with pytest.raises(SourceLimitReached, match="REQUEST_LIMIT_EXCEEDED.*cursors of unfinished"):
        sync(server, engine)
    refused = [q for _, p, q in org.requests if "FROM+Opportunity" in q]
    assert len(refused) == 2 + 1  # sync 1's count and query, then one refused call: no retries
    with engine.connect() as conn:
        assert read_cursor(conn, "sf", DEALS) == cursor_before
    assert staged(engine, DEALS).loc[ids["o5"], "amount"] == 3_000  # unchanged
    assert staged(engine, CUSTOMERS).loc[ids["beta"], "region"] == "Nordics"  # committed before
    org.api_max = 15_000  # a new day
    reports = sync(server, engine)  # the next run picks the change up
    assert reports[DEALS].changed == 1
    assert staged(engine, DEALS).loc[ids["o5"], "amount"] == 3_333


def test_the_sync_refuses_to_start_above_the_configured_share_of_the_daily_limit(
    salesforce, engine
):
    server = salesforce(api_max=1_000, api_used=850)
    populate_acme(server.org)
    with pytest.raises(SourceLimitReached, match=r"851 of its 1,000 daily API requests \(85%\)"):
        sync(server, engine, sync={"max_api_usage_share": 0.8})
    assert read_staged(engine, DEALS).empty
    assert server.org.api_used == 851  # only the /limits call


def test_5xx_and_timeouts_are_retried_with_backoff_then_succeed(salesforce, engine):
    server = salesforce()
    populate_acme(server.org)
    server.org.fail_next(503, times=2, path_contains="FROM+Opportunity")
    server.org.fail_next(500, times=1, path_contains="sobjects/Account")
    server.org.delay_next(1.5, times=1, path_contains="FROM+User")
    reports = sync(server, engine, sync={"timeout_seconds": 0.5, "max_retries": 3})
    assert reports[DEALS].changed == 8 and reports[OWNERS].changed == 2


def test_a_server_that_keeps_failing_gives_a_clear_error_after_bounded_retries(salesforce, engine):
    server = salesforce()
    populate_acme(server.org)
    server.org.fail_next(500, times=100, path_contains="FROM+Opportunity")
    with pytest.raises(SourceError, match=r"HTTP 500 \(after 2 retries"):
        sync(server, engine, sync={"max_retries": 2})
    attempts = [q for _, p, q in server.org.requests if "FROM+Opportunity" in q]
    assert len(attempts) == 3  # the call and two retries, then stop
    with engine.connect() as conn:
        assert read_cursor(conn, "sf", DEALS) is None


def test_large_extractions_go_through_bulk_api_2_with_the_same_result(salesforce, engine, tmp_path):
    from okr_store.db import create_engine
    from okr_store.schema import upgrade

    server = salesforce()
    populate_acme(server.org)
    rest_engine = create_engine(f"sqlite:///{tmp_path / 'rest.db'}")
    upgrade(rest_engine)
    sync(server, rest_engine)
    jobs_before = len(server.jobs)
    reports = sync(server, engine, sync={"bulk_threshold": 3, "bulk_page_size": 3})
    assert reports[DEALS].details["api_path"] == "bulk"
    assert len(server.jobs) - jobs_before == 3  # customers, deals, NPS; 2 owners stay on REST
    locators = [q for _, p, q in server.org.requests if p.endswith("/results") and "locator=" in q]
    assert locators  # more than one Sforce-Locator page
    for table in (DEALS, CUSTOMERS, OWNERS, NPS_RESPONSES):
        bulk, rest = staged(engine, table), staged(rest_engine, table)
        pd.testing.assert_frame_equal(bulk.sort_index(), rest.sort_index())


def test_bulk_queries_leave_out_compound_fields(salesforce):
    server = salesforce()
    populate_acme(server.org)
    settings = settings_for(server, sync={"bulk_threshold": 1})
    client = SalesforceClient(settings, credentials_from_env(settings))
    types = client.field_types("Account")
    frame, path = client.extract(
        "Account", ["Id", "Name", "BillingAddress"], [], include_deleted=False, field_types=types
    )
    assert path == "bulk" and len(frame) == 3
    assert frame["BillingAddress"].isna().all()  # not requested: the fake would refuse it
    job_queries = [p for m, p, _ in server.org.requests if m == "POST" and p.endswith("jobs/query")]
    assert job_queries


def test_multi_currency_deals_convert_with_the_dated_rate_of_their_close_date(salesforce, engine):
    server = salesforce(multi_currency=True, dated_rates=True, corporate_currency="USD")
    org = server.org
    org.set_rates({"EUR": 0.9, "GBP": 0.75})
    org.add_dated_rate("USD", 1.0, dt.date(2020, 1, 1))
    org.add_dated_rate("EUR", 0.9, dt.date(2026, 1, 1))
    org.add_dated_rate("EUR", 0.8, dt.date(2026, 7, 1))
    org.add_dated_rate("GBP", 0.75, dt.date(2026, 1, 1))
    owner = org.insert("User", Name="Cy", Email="cy@acme.example")
    account = org.insert("Account", Name="Multi plc", OwnerId=owner, CurrencyIsoCode="GBP")
    ids = {}
    for key, currency, close in (
        ("gbp_march", "GBP", dt.date(2026, 3, 1)),
        ("gbp_august", "GBP", dt.date(2026, 8, 1)),
        ("usd_august", "USD", dt.date(2026, 8, 1)),
        ("eur", "EUR", dt.date(2026, 8, 1)),
        ("yen", "JPY", dt.date(2026, 8, 1)),
    ):
        ids[key] = org.insert(
            "Opportunity",
            Name=key,
            AccountId=account,
            OwnerId=owner,
            StageName="Closed Won",
            IsClosed=True,
            IsWon=True,
            Amount=1_000.0,
            CloseDate=close,
            Type="New Business",
            CurrencyIsoCode=currency,
            CreatedDate=utc(2026, 1, 2),
        )
    reports = sync(server, engine)
    assert reports[FX_RATES].details["rates_from"] == "DatedConversionRate"
    assert reports[FX_RATES].details["corporate_currency"] == "USD"
    deals = staged(engine, DEALS)
    assert deals.loc[ids["gbp_march"], "amount_home"] == pytest.approx(1_200.0)  # 0.9 / 0.75
    assert deals.loc[ids["gbp_august"], "amount_home"] == pytest.approx(1_066.67)  # 0.8 / 0.75
    assert deals.loc[ids["usd_august"], "amount_home"] == pytest.approx(800.0)
    assert deals.loc[ids["eur"], "amount_home"] == 1_000.0
    assert deals.loc[ids["gbp_march"], "currency"] == "GBP"
    assert reports[DEALS].quarantine_reasons == {"unknown currency JPY (no FX rate to EUR)": 1}
    # finance corrects the August EUR rate: staged deals are converted again
    rate = next(
        r
        for r in org.records["DatedConversionRate"].values()
        if r["IsoCode"] == "EUR" and r["StartDate"] == dt.date(2026, 7, 1)
    )
    org.update("DatedConversionRate", rate["Id"], ConversionRate=0.825)
    reports = sync(server, engine)
    assert reports[DEALS].details["reconverted_after_rate_change"] == 2
    assert staged(engine, DEALS).loc[ids["gbp_august"], "amount_home"] == pytest.approx(1_100.0)


def test_standard_rates_hold_from_the_start_when_the_org_has_no_dated_rates():
    rates = pd.DataFrame(
        {
            "IsoCode": ["USD", "EUR", "GBP"],
            "ConversionRate": [1.0, 0.9, 0.75],
            "StartDate": pd.Timestamp("1970-01-01"),
            "NextStartDate": pd.NaT,
        }
    )
    fx = rates_to_home(rates, "EUR", "USD").set_index("currency")
    assert fx.loc["GBP", "rate_to_home"] == pytest.approx(1.2)
    assert fx.loc["USD", "rate_to_home"] == pytest.approx(0.9)
    assert fx["valid_to"].isna().all()


def test_a_custom_nps_object_is_read_through_its_field_map(salesforce, engine):
    server = salesforce()
    ids = populate_acme(server.org)
    org = server.org
    org.define(
        "NPS_Response__c",
        {
            "Score__c": "double",
            "Account__c": "reference",
            "Submitted_At__c": "datetime",
            "Survey_Name__c": "string",
            "Comment__c": "textarea",
        },
    )
    good = org.insert(
        "NPS_Response__c",
        Score__c=9.0,
        Account__c=ids["beta"],
        Survey_Name__c="Q4 relationship",
        Submitted_At__c=utc(2026, 11, 3, 15),
        Comment__c="Great onboarding",
    )
    bad = org.insert(
        "NPS_Response__c",
        Score__c=11.0,
        Account__c=ids["beta"],
        Submitted_At__c=utc(2026, 11, 3, 15),
    )
    nps = {
        "mode": "custom_object",
        "object": "NPS_Response__c",
        "fields": {
            "score": "Score__c",
            "customer_id": "Account__c",
            "submitted_at": "Submitted_At__c",
            "survey_id": "Survey_Name__c",
            "comment": "Comment__c",
        },
    }
    reports = sync(server, engine, nps=nps)
    rows = staged(engine, NPS_RESPONSES)
    assert rows.loc[good, ["customer_id", "score", "survey_id", "comment"]].tolist() == [
        ids["beta"],
        9,
        "Q4 relationship",
        "Great onboarding",
    ]
    assert bad not in rows.index
    assert reports[NPS_RESPONSES].quarantine_reasons == {"score outside 0..10": 1}
    with pytest.raises(SourceError, match="nps.fields.comment names field Nope__c"):
        sync(server, engine, nps={**nps, "fields": {**nps["fields"], "comment": "Nope__c"}})


def test_a_malicious_configured_filter_value_stays_a_string_literal(salesforce, engine):
    server = salesforce()
    ids = populate_acme(server.org)
    evil = "Closed Won' OR Name != '"
    reports = sync(server, engine, deals={"where": {"StageName": evil}})
    assert reports[DEALS].fetched == 0  # not "every opportunity"
    sent = [q for _, _, q in server.org.requests if "FROM+Opportunity" in q]
    assert all("Closed+Won%5C%27+OR+Name+%21%3D+%5C%27" in q for q in sent)  # \' escaped
    reports = sync(server, engine, deals={"where": {"StageName": ["Closed Won", "Proposal"]}})
    assert set(staged(engine, DEALS).index) == {
        ids[k] for k in ("o1", "o2", "o3", "o4", "o6", "o7", "o8")
    }
    with pytest.raises(ValueError, match="is not a Salesforce API name"):
        settings_for(server, deals={"where": {"StageName) OR (Name": "x"}})


def test_jwt_client_credentials_and_legacy_password_logins_reach_the_org(
    salesforce, engine, monkeypatch
):
    server = salesforce()
    populate_acme(server.org)
    client_credentials = {
        "method": "client_credentials",
        "consumer_key_env": ENV["key"],
        "consumer_secret_env": ENV["secret"],
    }
    sync(server, engine, auth=client_credentials)
    monkeypatch.setenv("SF_PASSWORD", "pw")
    monkeypatch.setenv("SF_TOKEN", "tok")
    password = {
        "method": "password",
        "username": server.org.username,
        "password_env": "SF_PASSWORD",
        "security_token_env": "SF_TOKEN",
    }
    with pytest.warns(LegacyLoginWarning, match="retiring"):
        sync(server, engine, auth=password)
    assert server.org.logins == 2
    monkeypatch.setenv(ENV["secret"], "wrong")
    with pytest.raises(SourceError, match="login \\(client_credentials\\).*failed: invalid_client"):
        sync(server, engine, auth=client_credentials)


def test_missing_secrets_name_their_env_var_and_secrets_never_reach_reports(
    salesforce, engine, monkeypatch, jwt_keys
):
    server = salesforce()
    populate_acme(server.org)
    reports = sync(server, engine)
    text = repr([r.as_dict() for r in reports.values()])
    assert "PRIVATE KEY" not in text and "fake-consumer-key" not in text
    settings = settings_for(server)
    assert jwt_keys[0] not in repr(credentials_from_env(settings))
    monkeypatch.delenv(ENV["private_key"])
    with pytest.raises(SourceError, match="SF_PRIVATE_KEY not set"):
        sync(server, engine)


def test_an_owner_who_changes_team_takes_their_deals_and_accounts_along(salesforce, engine):
    server = salesforce()
    ids = populate_acme(server.org)
    sync(server, engine)
    org = server.org
    uk = next(r["Id"] for r in org.records["UserRole"].values() if r["Name"] == "UK Sales")
    org.clock = utc(2026, 11, 16, 9)
    org.update("User", ids["anna"], UserRoleId=uk)
    reports = sync(server, engine)
    assert reports[OWNERS].details["owners_moved_team"] == 1
    deals = staged(engine, DEALS)
    assert set(deals.loc[deals["owner_id"] == ids["anna"], "team"]) == {"sales-uk"}
    assert staged(engine, CUSTOMERS).loc[ids["alpha"], "team"] == "sales-uk"
    assert read_quarantine(engine, source="sf").empty


def test_owner_teams_can_come_from_a_mapping_file_by_id_or_email(salesforce, engine, tmp_path):
    server = salesforce()
    ids = populate_acme(server.org)
    (tmp_path / "owner-teams.csv").write_text(
        f"owner_id,email,team\n{ids['anna']},,sales-nordics\n,BEN@acme.example,sales-us\n"
    )
    settings = settings_for(
        server, owners={"team_from": "mapping_file", "mapping_file": "owner-teams.csv"}
    )
    stage(SalesforceSource("sf", settings, base_path=tmp_path), engine, home_currency="EUR")
    owners = staged(engine, OWNERS)
    assert owners.loc[ids["anna"], "team"] == "sales-nordics"
    assert owners.loc[ids["ben"], "team"] == "sales-us"  # matched by e-mail, any case
    assert staged(engine, DEALS).loc[ids["o6"], "team"] == "sales-us"

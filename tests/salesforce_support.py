"""Fixtures for the Salesforce tests: a fake org over HTTPS, its secrets in env vars, a small org."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from fakes.salesforce import FakeOrg, FakeSalesforce, make_jwt_keys, make_tls_files, utc

from connectors.salesforce import SalesforceSourceSettings

ENV = {"key": "SF_CONSUMER_KEY", "private_key": "SF_PRIVATE_KEY", "secret": "SF_CONSUMER_SECRET"}
TEAM_MAP = {"DACH Sales": "sales-dach", "UK Sales": "sales-uk"}


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("fake-salesforce-tls"))


@pytest.fixture(scope="session")
def jwt_keys() -> tuple[str, str]:
    return make_jwt_keys()


@pytest.fixture
def salesforce(tls_files, jwt_keys, monkeypatch) -> Callable[..., FakeSalesforce]:
    """Start a fake org (FakeOrg keyword arguments); the client trusts its certificate."""
    servers: list[FakeSalesforce] = []
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files[0]))
    monkeypatch.setenv(ENV["key"], "fake-consumer-key")
    monkeypatch.setenv(ENV["private_key"], jwt_keys[0])
    monkeypatch.setenv(ENV["secret"], "fake-consumer-secret")

    def start(**org_options) -> FakeSalesforce:
        org = FakeOrg(jwt_public_key=jwt_keys[1], **org_options)
        server = FakeSalesforce(org, tls_files, max_lifetime=120).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def settings_for(server: FakeSalesforce, **overrides) -> SalesforceSourceSettings:
    """Settings of source `sf` reaching `server` through JWT, fast retries and polls for tests."""
    config: dict = {
        "name": "sf",
        "type": "salesforce",
        "login_url": server.base_url,
        "auth": {
            "method": "jwt",
            "username": server.org.username,
            "consumer_key_env": ENV["key"],
            "private_key_env": ENV["private_key"],
        },
        "owners": {"team_from": "role", "team_map": TEAM_MAP},
        "customers": {"segment_field": "Segment__c", "region_field": "Region__c"},
        "sync": {"retry_backoff_seconds": 0.01, "bulk_poll_seconds": 0.01, "timeout_seconds": 5},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return SalesforceSourceSettings.model_validate(config)


def populate_acme(org: FakeOrg) -> dict[str, str]:
    """A small org whose KR numbers are easy to compute by hand (see test_salesforce_pipeline).

    Cycle 2026-Q4 (1 Oct - 31 Dec), as of 15 Nov: three existing customers (won before the
    cycle), four deals closed in the window (3 won, 1 lost), four NPS answers (10, 9, 7, 3).
    """
    ids: dict[str, str] = {}
    org.clock = utc(2026, 11, 14, 8, 0, 0)
    dach = org.insert("UserRole", Name="DACH Sales")
    uk = org.insert("UserRole", Name="UK Sales")
    ids["anna"] = org.insert("User", Name="Anna Adler", Email="anna@acme.example", UserRoleId=dach)
    ids["ben"] = org.insert("User", Name="Ben Baker", Email="ben@acme.example", UserRoleId=uk)
    for key, name, owner, region, segment in (
        ("alpha", "Alpha GmbH", "anna", "DACH", "SMB"),
        ("beta", "Beta AG", "anna", "DACH", "Mid-Market"),
        ("gamma", "Gamma Ltd", "ben", "UK&I", "SMB"),
    ):
        ids[key] = org.insert(
            "Account",
            Name=name,
            OwnerId=ids[owner],
            Region__c=region,
            Segment__c=segment,
            Industry="Manufacturing",
        )
    deals = (
        # key, account, owner, closed, won, amount, close date, type
        ("o1", "alpha", "anna", True, True, 10_000.0, dt.date(2026, 6, 10), "New Customer"),
        ("o2", "beta", "anna", True, True, 5_000.0, dt.date(2026, 7, 1), "New Customer"),
        ("o3", "gamma", "ben", True, True, 4_000.0, dt.date(2026, 8, 1), "New Customer"),
        (
            "o4",
            "alpha",
            "anna",
            True,
            True,
            12_000.0,
            dt.date(2026, 10, 15),
            "Existing Customer - Upgrade",
        ),
        ("o5", "beta", "anna", True, False, 3_000.0, dt.date(2026, 10, 20), "Renewal"),
        ("o6", "gamma", "ben", True, True, 6_000.0, dt.date(2026, 11, 1), "Renewal"),
        (
            "o7",
            "alpha",
            "anna",
            False,
            False,
            7_000.0,
            dt.date(2026, 12, 15),
            "Existing Customer - Upgrade",
        ),
        (
            "o8",
            "beta",
            "anna",
            True,
            True,
            9_000.0,
            dt.date(2026, 11, 10),
            "Existing Customer - Upgrade",
        ),
    )
    for minute, (key, account, owner, closed, won, amount, close, kind) in enumerate(deals):
        ids[key] = org.insert(
            "Opportunity",
            Name=key.upper(),
            AccountId=ids[account],
            OwnerId=ids[owner],
            StageName="Closed Won" if won else ("Closed Lost" if closed else "Proposal"),
            IsClosed=closed,
            IsWon=won,
            Amount=amount,
            CloseDate=close,
            Type=kind,
            CreatedDate=utc(2026, 1, 5, 9),
            SystemModstamp=utc(2026, 11, 14, 8, minute),
        )
    question = org.insert("SurveyQuestion", Name="How likely ...?", QuestionType="NPS")
    other = org.insert("SurveyQuestion", Name="What could we improve?", QuestionType="FreeText")
    answers = (("alpha", 10, 2), ("gamma", 9, 3), ("beta", 7, 4), ("alpha", 3, 5))
    for n, (account, score, day) in enumerate(answers):
        invitation = org.insert("SurveyInvitation", Name=f"inv-{n}")
        response = org.insert(
            "SurveyResponse",
            Status="Completed",
            CompletionDateTime=utc(2026, 11, day, 12),
            InvitationId=invitation,
        )
        # Alternate where the account hangs: on the invitation or on the response.
        parent = invitation if n % 2 == 0 else response
        org.insert(
            "SurveySubject", ParentId=parent, SubjectId=ids[account], SubjectEntityType="Account"
        )
        ids[f"nps{n}"] = org.insert(
            "SurveyQuestionResponse",
            NumberValue=score,
            QuestionId=question,
            ResponseId=response,
            InvitationId=invitation,
        )
        org.insert(
            "SurveyQuestionResponse",
            NumberValue=None,
            QuestionId=other,
            ResponseId=response,
            InvitationId=invitation,
        )
    org.clock = None
    return ids

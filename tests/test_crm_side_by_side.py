"""A Salesforce org and a HubSpot portal side by side: one set of KR numbers over both."""

from __future__ import annotations

import datetime as dt

import pytest
from fakes.hubspot import TOKEN, Portal, running, standard_portal
from salesforce_support import ENV, TEAM_MAP, populate_acme

from core.canonical import DEALS, NPS_RESPONSES
from okr_store.staging import read_staged
from pipelines import flow
from pipelines.settings import load_settings

pytest_plugins = ["salesforce_support"]

AS_OF = dt.date(2026, 11, 25)
DEFINITIONS = """\
cycle: {key: 2026-Q4, timezone: Europe/Berlin}
objectives:
  - key: grow
    title: Grow with the customers who already trust us
    level: company
    key_results:
      - {key: revenue, title: Revenue per existing customer, metric: revenue_per_existing_customer,
         baseline: 1000, target: 20000}
      - {key: nps, title: NPS, metric: nps, baseline: 0, target: 50}
      - {key: win-rate, title: Win rate, metric: win_rate, baseline: 0.2, target: 0.9}
"""


def salesforce_source(server) -> str:
    team_map = ", ".join(f"'{k}': {v}" for k, v in TEAM_MAP.items())
    return (
        "  - name: sf-main\n    type: salesforce\n"
        f"    login_url: {server.base_url}\n"
        f"    auth: {{method: jwt, username: {server.org.username}, "
        f"consumer_key_env: {ENV['key']}, private_key_env: {ENV['private_key']}}}\n"
        f"    owners: {{team_from: role, team_map: {{{team_map}}}}}\n"
        "    customers: {segment_field: Segment__c, region_field: Region__c}\n"
        "    sync: {retry_backoff_seconds: 0.01, bulk_poll_seconds: 0.01}\n"
    )


def hubspot_source(portal_server) -> str:
    return (
        "  - name: hubspot\n    type: hubspot\n    access_token_env: HUBSPOT_TOKEN\n"
        f"    base_url: {portal_server.base_url}\n    portal_currency: EUR\n"
        "    company_properties: {segment: customer_segment}\n"
        "    teams: {'Sales UK&I': sales-uk}\n"
    )


def compute(folder, sources: str):
    folder.mkdir()
    (folder / "definitions").mkdir()
    (folder / "definitions" / "2026-Q4.yaml").write_text(DEFINITIONS)
    (folder / "krpulse.yaml").write_text(
        "timezone: Europe/Berlin\nreporting_currency: EUR\n"
        f"database_url: sqlite:///{folder / 'krpulse.db'}\ndefinitions: definitions/\n"
        "sources:\n" + sources
    )
    settings = load_settings(folder / "krpulse.yaml")
    engine, _, _ = flow.upgrade_database(settings)
    flow.sync_sources(settings, engine)
    staged = flow.staged_data(settings, engine)
    _, progress, _ = flow.compute_day(settings, flow.load_definition_set(settings), staged, AS_OF)
    return progress.set_index("kr"), engine


def test_salesforce_and_hubspot_side_by_side_pool_their_numbers(tmp_path, salesforce, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    org = salesforce()
    populate_acme(org.org)
    portal = Portal()
    standard_portal(portal)
    with running(portal) as hubspot:
        sf, _ = compute(tmp_path / "sf", salesforce_source(org))
        hs, _ = compute(tmp_path / "hs", hubspot_source(hubspot))
        both, engine = compute(tmp_path / "both", salesforce_source(org) + hubspot_source(hubspot))

    # One set of numbers: numerators and denominators of both CRMs pooled, not averaged.
    for kr in ("revenue", "nps", "win-rate"):
        assert sf.loc[kr, "denominator"] > 0 and hs.loc[kr, "denominator"] > 0  # both contribute
        assert both.loc[kr, "numerator"] == pytest.approx(
            sf.loc[kr, "numerator"] + hs.loc[kr, "numerator"]
        )
        assert both.loc[kr, "denominator"] == pytest.approx(
            sf.loc[kr, "denominator"] + hs.loc[kr, "denominator"]
        )
    scale = {"revenue": 1.0, "nps": 100.0, "win-rate": 1.0}
    for kr, factor in scale.items():
        assert both.loc[kr, "value"] == pytest.approx(
            factor * both.loc[kr, "numerator"] / both.loc[kr, "denominator"]
        )
    assert (
        both.loc["nps", "sample_size"]
        == sf.loc["nps", "sample_size"] + hs.loc["nps", "sample_size"]
    )
    # ... and `source` tells the rows apart.
    assert set(read_staged(engine, DEALS)["source"]) == {"sf-main", "hubspot"}
    assert set(read_staged(engine, NPS_RESPONSES)["source"]) == {"sf-main", "hubspot"}

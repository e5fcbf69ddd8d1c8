"""A Salesforce org through the whole flow: `krpulse sync` + `krpulse run`, and the Dagster assets."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from click.testing import CliRunner
from salesforce_support import ENV, TEAM_MAP, populate_acme

from okr_store.db import create_engine
from okr_store.schema import upgrade
from pipelines.cli import cli
from pipelines.definitions import build_definitions
from pipelines.names import sync_asset_key

# The fake org fixtures: `salesforce` (start an org), `tls_files`, `jwt_keys`.
pytest_plugins = ["salesforce_support"]

DEFINITIONS = """\
cycle: {key: 2026-Q4, start: 2026-10-01, end: 2026-12-31, timezone: Europe/Berlin}
objectives:
  - key: grow-with-existing-customers
    title: Grow with the customers who already trust us
    level: company
    owner: Head of Sales
    ambition: roofshot
    key_results:
      - {key: revenue-per-existing-customer, title: Revenue per existing customer,
         metric: revenue_per_existing_customer, baseline: 5000, target: 12000, unit: EUR}
      - {key: nps-company, title: NPS from 0 to 50, metric: nps, baseline: 0, target: 50}
      - {key: win-rate, title: Win rate from 50 % to 90 %, metric: win_rate, baseline: 0.5,
         target: 0.9}
  - key: dach-win-more
    title: Win more of the deals we work on in DACH
    level: team
    team: sales-dach
    owner: Team lead DACH
    aligns_to: grow-with-existing-customers
    ambition: roofshot
    key_results:
      - {key: win-rate-dach, title: Win rate DACH, metric: win_rate, where: {team: sales-dach},
         baseline: 0.5, target: 0.9}
      - {key: nps-dach, title: NPS DACH, metric: nps, where: {team: sales-dach}, baseline: -10,
         target: 40}
"""


@pytest.fixture
def project(tmp_path, salesforce):
    server = salesforce()
    populate_acme(server.org)
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "2026-Q4.yaml").write_text(DEFINITIONS)
    team_map = ", ".join(f"'{k}': {v}" for k, v in TEAM_MAP.items())
    (tmp_path / "krpulse.yaml").write_text(
        "timezone: Europe/Berlin\n"
        "reporting_currency: EUR\n"
        f"database_url: sqlite:///{tmp_path / 'krpulse.db'}\n"
        "definitions: definitions/\n"
        "sources:\n"
        "  - name: sf-main\n"
        "    type: salesforce\n"
        f"    login_url: {server.base_url}\n"
        f"    auth: {{method: jwt, username: {server.org.username}, "
        f"consumer_key_env: {ENV['key']}, private_key_env: {ENV['private_key']}}}\n"
        f"    owners: {{team_from: role, team_map: {{{team_map}}}}}\n"
        "    customers: {segment_field: Segment__c, region_field: Region__c}\n"
        "    sync: {retry_backoff_seconds: 0.01, bulk_poll_seconds: 0.01}\n"
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'krpulse.db'}")
    upgrade(engine)  # as after `krpulse db upgrade`
    engine.dispose()
    return tmp_path, server


def test_krpulse_sync_then_run_yields_the_hand_computed_kr_values(project):
    folder, server = project
    runner = CliRunner()

    def krpulse(*args: str):
        result = runner.invoke(cli, ["--config", str(folder / "krpulse.yaml"), *args])
        assert result.exit_code == 0, result.output
        return result.output

    synced = json.loads(krpulse("sync", "--source", "sf-main", "--format", "json"))["sync"]
    assert {r["object"]: r["fetched"] for r in synced}["deals"] == 8
    assert all(r["api_calls"] > 0 for r in synced)
    report = json.loads(krpulse("run", "--as-of", "2026-11-15", "--format", "json"))
    values = {kr["kr"]: kr["value"] for kr in report["key_results"]}
    # Existing customers: Alpha, Beta, Gamma (won before 1 Oct). Won in the window from them:
    # 12,000 + 6,000 + 9,000 -> 27,000 / 3.
    assert values["revenue-per-existing-customer"] == pytest.approx(9_000)
    # Answers 10, 9, 7, 3: two promoters, one detractor, four answers.
    assert values["nps-company"] == pytest.approx(25.0)
    # Closed in the window: O4 won, O5 lost, O6 won, O8 won.
    assert values["win-rate"] == pytest.approx(0.75)
    # DACH (Anna's deals and accounts): O4 won, O5 lost, O8 won; answers 10, 7, 3.
    assert values["win-rate-dach"] == pytest.approx(2 / 3)
    assert values["nps-dach"] == pytest.approx(0.0)

    # An incremental run after a deletion moves the numbers, and costs few calls.
    server.org.delete(
        "Opportunity",
        next(r["Id"] for r in server.org.records["Opportunity"].values() if r["Name"] == "O8"),
    )
    synced = json.loads(krpulse("sync", "--format", "json"))["sync"]
    assert {r["object"]: r["deleted"] for r in synced}["deals"] == 1
    report = json.loads(krpulse("run", "--as-of", "2026-11-15", "--format", "json"))
    values = {kr["kr"]: kr["value"] for kr in report["key_results"]}
    assert values["revenue-per-existing-customer"] == pytest.approx(6_000)
    assert values["win-rate"] == pytest.approx(2 / 3)


def test_the_dagster_sync_asset_takes_its_secrets_from_the_salesforce_resource(
    project, monkeypatch
):
    folder, server = project
    defs = build_definitions(str(folder / "krpulse.yaml"))
    dg.Definitions.validate_loadable(defs)
    resource = defs.resources["sf_main_source"]
    assert isinstance(resource.consumer_key, dg.EnvVar)  # a reference, never the value
    assert resource.consumer_key.env_var_name == ENV["key"]
    sync_assets = defs.resolve_assets_def(dg.AssetKey(sync_asset_key("sf-main", "deals")))
    # The resolved asset comes bound to the definitions' resources, SalesforceResource included.
    result = dg.materialize([sync_assets], instance=dg.DagsterInstance.ephemeral())
    assert result.success
    metadata = {
        event.asset_key.path[-1]: event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    assert set(metadata) == {"fx_rates", "owners", "customers", "deals", "nps_responses"}
    deals = metadata["deals"]
    assert deals["rows_fetched"].value == 8 and deals["rows_changed"].value == 8
    assert deals["rows_deleted"].value == 0 and deals["rows_quarantined"].value == 0
    assert deals["api_calls"].value > 0
    assert deals["api_usage_used"].value <= server.org.api_used
    assert deals["api_usage_max"].value == 15_000
    text = repr({k: {n: v.value for n, v in m.items()} for k, m in metadata.items()})
    assert "PRIVATE KEY" not in text and "fake-consumer-key" not in text

"""HubSpot end to end: `krpulse sync` + `krpulse run` on a fake portal, next to a files source, and in Dagster."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from click.testing import CliRunner
from fakes.hubspot import TOKEN, Portal, running, standard_portal

from pipelines.cli import cli
from pipelines.definitions import build_definitions
from pipelines.names import sync_asset_key

DEFINITIONS = """\
cycle: {key: 2026-Q4, start: 2026-10-01, end: 2026-12-31, timezone: Europe/Berlin}
objectives:
  - key: grow
    title: Grow with the customers who already trust us
    level: company
    ambition: roofshot
    key_results:
      - {key: revenue-per-existing-customer, title: Revenue per existing customer,
         metric: revenue_per_existing_customer, baseline: 8000, target: 12000, unit: EUR}
      - {key: nps-company, title: NPS from 0 to 50, metric: nps, baseline: 0, target: 50}
  - key: uk
    title: Win more in UK&I
    level: team
    team: sales-uk
    ambition: roofshot
    key_results:
      - {key: win-rate-uk, title: Win rate UK&I, metric: win_rate, where: {team: sales-uk},
         baseline: 0.3, target: 0.6}
"""
# A second CRM exported to files: one existing customer with a won Q4 deal and one promoter.
FILES = {
    "customers.csv": "customer_id,name,region\nX1,Xylo Inc,North America\n",
    "deals.csv": (
        "deal_id,customer_id,team,is_closed,is_won,amount,currency,created_at,close_date\n"
        "XD1,X1,sales-us,true,true,2000,EUR,2026-03-01T09:00:00Z,2026-05-01\n"
        "XD2,X1,sales-us,true,true,3000,EUR,2026-09-01T09:00:00Z,2026-10-20\n"
    ),
    "nps_responses.csv": "response_id,customer_id,score,submitted_at\nXR1,X1,10,2026-10-21T09:00:00Z\n",
}


@pytest.fixture
def fake():
    portal = Portal()
    standard_portal(portal)
    with running(portal) as server:
        yield server


def write_project(tmp_path, fake, *, with_files: bool) -> str:
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "2026-Q4.yaml").write_text(DEFINITIONS)
    sources = (
        "  - name: hubspot\n    type: hubspot\n    access_token_env: HUBSPOT_TOKEN\n"
        f"    base_url: {fake.base_url}\n    portal_currency: EUR\n"
        "    company_properties: {segment: customer_segment}\n"
        "    teams: {'Sales UK&I': sales-uk}\n"
    )
    if with_files:
        (tmp_path / "crm-export").mkdir()
        for name, text in FILES.items():
            (tmp_path / "crm-export" / name).write_text(text)
        sources += "  - {name: crm-export, type: files, path: crm-export}\n"
    (tmp_path / "krpulse.yaml").write_text(
        "timezone: Europe/Berlin\nreporting_currency: EUR\n"
        f"database_url: sqlite:///{tmp_path / 'krpulse.db'}\n"
        "definitions: definitions/\nsources:\n" + sources
    )
    return str(tmp_path / "krpulse.yaml")


def invoke(config: str, *args: str):
    result = CliRunner().invoke(cli, ["--config", config, *args])
    assert result.exit_code == 0, result.output
    return result


def test_sync_then_run_on_the_fake_portal_matches_hand_computed_values(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    config = write_project(tmp_path, fake, with_files=False)
    if "db" in cli.commands:
        invoke(config, "db", "upgrade")
    synced = json.loads(invoke(config, "sync", "--source", "hubspot", "--format", "json").output)
    counts = {r["object"]: (r["changed"], r["quarantined"]) for r in synced["sync"]}
    assert counts == {
        "owners": (2, 0),
        "customers": (4, 0),
        "deals": (8, 2),
        "nps_responses": (4, 2),
    }
    assert all(r["api_calls"] > 0 for r in synced["sync"])

    report = json.loads(invoke(config, "run", "--as-of", "2026-11-25", "--format", "json").output)
    values = {kr["kr"]: kr["value"] for kr in report["key_results"]}
    # Existing customers C1 and C3: (10,000 + 11,000) / 2; NPS (2 promoters - 1 detractor) / 4;
    # UK&I closed: one won, one lost.
    assert values == pytest.approx(
        {"revenue-per-existing-customer": 10_500, "nps-company": 25.0, "win-rate-uk": 0.5}
    )


def test_hubspot_and_a_second_source_side_by_side_give_one_set_of_numbers(
    tmp_path, fake, monkeypatch
):
    from okr_store.staging import read_staged
    from pipelines import flow
    from pipelines.settings import load_settings

    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    config = write_project(tmp_path, fake, with_files=True)
    if "db" in cli.commands:
        invoke(config, "db", "upgrade")
    invoke(config, "sync")
    report = json.loads(invoke(config, "run", "--as-of", "2026-11-25", "--format", "json").output)
    values = {kr["kr"]: kr["value"] for kr in report["key_results"]}
    # Existing customers C1, C3 (HubSpot) and X1 (files): (10,000 + 11,000 + 3,000) / 3;
    # NPS (3 promoters - 1 detractor) / 5.
    assert values == pytest.approx(
        {"revenue-per-existing-customer": 8_000, "nps-company": 40.0, "win-rate-uk": 0.5}
    )
    settings = load_settings(config)
    deals = read_staged(flow.open_database(settings), "deals")
    assert deals.groupby("source").size().to_dict() == {"crm-export": 2, "hubspot": 8}


def test_the_dagster_sync_asset_takes_the_token_from_its_resource(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    config = write_project(tmp_path, fake, with_files=False)
    if "db" in cli.commands:
        invoke(config, "db", "upgrade")
    defs = build_definitions(config)
    keys = [
        dg.AssetKey(sync_asset_key("hubspot", t))
        for t in ("owners", "customers", "deals", "nps_responses")
    ]
    assert "hubspot_source" in defs.resolve_assets_def(keys[0]).required_resource_keys
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(asset_selection=keys, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    materialized = {
        m.asset_key: m.metadata for m in result.asset_materializations_for_node("sync_hubspot")
    }
    deals = materialized[dg.AssetKey(sync_asset_key("hubspot", "deals"))]
    assert deals["rows_changed"].value == 8
    assert deals["rows_quarantined"].value == 2
    assert deals["api_calls"].value == 4
    assert deals["mode"].text == "full"
    assert all(TOKEN not in str(m) for m in materialized.values())


def test_a_missing_token_variable_fails_the_cli_sync_with_its_name(tmp_path, fake, monkeypatch):
    monkeypatch.delenv("HUBSPOT_TOKEN", raising=False)
    config = write_project(tmp_path, fake, with_files=False)
    if "db" in cli.commands:
        invoke(config, "db", "upgrade")
    result = CliRunner().invoke(cli, ["--config", config, "sync", "--source", "hubspot"])
    assert result.exit_code == 1
    assert "HUBSPOT_TOKEN is not set" in result.output

"""`krpulse doctor` on the demo fakes: what each source will sync, and what is missing."""

from __future__ import annotations

import json

from click.testing import CliRunner
from fakes.hubspot import TOKEN, Portal, running, standard_portal
from salesforce_support import populate_acme
from test_crm_side_by_side import hubspot_source, salesforce_source

from pipelines.cli import cli

pytest_plugins = ["salesforce_support"]


def project(folder, sources: str):
    folder.mkdir(exist_ok=True)
    (folder / "krpulse.yaml").write_text(
        "timezone: Europe/Berlin\nreporting_currency: EUR\n"
        f"database_url: sqlite:///{folder / 'krpulse.db'}\ndefinitions: definitions/\n"
        "sources:\n" + sources
    )
    return folder / "krpulse.yaml"


def doctor(config, *args):
    return CliRunner().invoke(cli, ["--config", str(config), "doctor", *args])


def test_doctor_prints_what_each_crm_source_will_sync(tmp_path, salesforce, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    server = salesforce(feedback_management=False)
    populate_acme(server.org)
    portal = Portal(company_currency="EUR")
    portal.scopes.discard("crm.objects.feedback_submissions.read")
    standard_portal(portal)
    with running(portal) as hubspot:
        config = project(tmp_path, salesforce_source(server) + hubspot_source(hubspot))
        result = doctor(config)
        as_json = doctor(config, "--format", "json")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "sf-main (salesforce): ready" in out and "hubspot (hubspot): ready" in out
    assert "single currency, corporate EUR" in out
    assert "Opportunity, incremental" in out and "StageName" in out
    assert "NPS mode: none (nps.mode: auto)" in out
    assert "Feedback Management" in out  # the warning says why
    assert "NPS mode: none (the private app lacks the feedback-submissions scope)" in out
    assert "missing crm.objects.feedback_submissions.read" in out
    assert "id sweep every 7 days" in out
    sources = json.loads(as_json.output)["sources"]
    assert [s["source"] for s in sources] == ["sf-main", "hubspot"]
    assert all(s["ok"] for s in sources)
    assert nothing_synced(server)


def nothing_synced(server) -> bool:
    return not any("FROM+Opportunity" in q and "COUNT" not in q for _, _, q in server.org.requests)


def test_doctor_names_what_is_missing_and_exits_1(tmp_path, salesforce, monkeypatch):
    server = salesforce()
    populate_acme(server.org)
    sources = salesforce_source(server).replace(
        "region_field: Region__c", "region_field: Territory__c"
    )
    result = doctor(project(tmp_path, sources))
    assert result.exit_code == 1
    assert "customers.region_field names field Territory__c" in result.output


def test_sync_prints_a_sources_warning(tmp_path, salesforce):
    server = salesforce(feedback_management=False)
    populate_acme(server.org)
    config = project(tmp_path, salesforce_source(server))
    assert CliRunner().invoke(cli, ["--config", str(config), "db", "upgrade"]).exit_code == 0
    result = CliRunner().invoke(cli, ["--config", str(config), "sync"])
    assert result.exit_code == 0, result.output
    assert "warning: source 'sf-main': NPS responses are not synced" in result.output


def test_doctor_lists_the_files_a_files_source_reads(tmp_path):
    from connectors.demo_org import generate_demo_org

    generate_demo_org(tmp_path / "data")
    config = project(tmp_path, f"  - {{name: demo, type: files, path: {tmp_path / 'data'}}}\n")
    result = doctor(config)
    assert result.exit_code == 0, result.output
    assert "demo (files): ready" in result.output and "deals.csv" in result.output
    missing = doctor(project(tmp_path, "  - {name: demo, type: files, path: nowhere}\n"))
    assert missing.exit_code == 1 and "krpulse demo" in missing.output

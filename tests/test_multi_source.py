"""Two Salesforce orgs and a HubSpot portal side by side in Dagster; one org fails, the rest goes on."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from fakes.hubspot import TOKEN, Portal, running, standard_portal
from salesforce_support import ENV, TEAM_MAP, populate_acme

from okr_store.db import create_engine
from okr_store.repository import OkrStore
from okr_store.schema import upgrade
from pipelines import flow
from pipelines.definitions import build_definitions
from pipelines.names import (
    AFTER_FAILED_SYNC_SENSOR,
    AFTER_SYNC_SENSOR,
    DAILY_JOB,
    STAGED_SOURCES,
    SYNC_JOB,
    sync_asset_key,
)
from pipelines.schedules import DAY_TAG
from pipelines.settings import load_settings

pytest_plugins = ["salesforce_support"]

# Which sources each KR depends on: all of them, unless its `where` filters on `source`.
DEFINITIONS = """\
cycle: {{key: ops-cycle, start: 2026-10-01, end: {end}, timezone: Europe/Berlin}}
objectives:
  - key: grow
    title: Grow in every market we sell to
    level: company
    ambition: roofshot
    key_results:
      - {{key: win-rate-eu, title: Win rate EU org, metric: win_rate, where: {{source: sf-eu}},
         baseline: 0.5, target: 0.9}}
      - {{key: win-rate-us, title: Win rate US org, metric: win_rate, where: {{source: sf-us}},
         baseline: 0.5, target: 0.9}}
      - {{key: nps-hubspot, title: NPS of HubSpot customers, metric: nps,
         where: {{source: hubspot}}, baseline: 0, target: 50}}
      - {{key: win-rate-not-us, title: Win rate outside the US org, metric: win_rate,
         where: {{source: {{not: sf-us}}}}, baseline: 0.5, target: 0.9}}
  - key: revenue
    title: Win more revenue everywhere
    level: company
    ambition: roofshot
    key_results:
      - {{key: won-revenue, title: Won revenue, metric: won_revenue, baseline: 0,
         target: 500000, unit: EUR}}
      - {{key: won-deals, title: Won deals, metric: won_deals, baseline: 0, target: 100}}
"""
KPIS = """\
kpis:
  - {key: nps-90d, title: NPS over 90 days, metric: nps, healthy: {min: 30}}
  - {key: nps-hubspot-90d, title: NPS HubSpot, metric: nps, where: {source: hubspot},
     healthy: {min: 30}}
"""


def salesforce_source(name: str, server) -> str:
    team_map = ", ".join(f"'{k}': {v}" for k, v in TEAM_MAP.items())
    return (
        f"  - name: {name}\n    type: salesforce\n    login_url: {server.base_url}\n"
        f"    auth: {{method: jwt, username: {server.org.username}, "
        f"consumer_key_env: {ENV['key']}, private_key_env: {ENV['private_key']}}}\n"
        f"    owners: {{team_from: role, team_map: {{{team_map}}}}}\n"
        "    customers: {segment_field: Segment__c, region_field: Region__c}\n"
        "    sync: {retry_backoff_seconds: 0.01, bulk_poll_seconds: 0.01, timeout_seconds: 5, "
        "max_retries: 1}\n"
    )


@pytest.fixture
def three_crms(tmp_path, salesforce, monkeypatch):
    """sf-eu and sf-us (two fake orgs) and hubspot (a fake portal), all in one krpulse.yaml."""
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    eu, us = salesforce(), salesforce()
    populate_acme(eu.org)
    populate_acme(us.org)
    portal = Portal()
    standard_portal(portal)
    with running(portal) as hubspot:
        today = dt.datetime.now(dt.UTC).date()
        end = max(dt.date(2026, 12, 31), today + dt.timedelta(days=7))
        (tmp_path / "definitions").mkdir()
        (tmp_path / "definitions" / "ops-cycle.yaml").write_text(DEFINITIONS.format(end=end))
        (tmp_path / "definitions" / "kpis.yaml").write_text(KPIS)
        (tmp_path / "krpulse.yaml").write_text(
            "timezone: Europe/Berlin\nreporting_currency: EUR\n"
            f"database_url: sqlite:///{tmp_path / 'krpulse.db'}\n"
            "definitions: definitions/\n"
            "orchestration: {sync_retries: 0}\n"
            "sources:\n"
            + salesforce_source("sf-eu", eu)
            + salesforce_source("sf-us", us)
            + "  - name: hubspot\n    type: hubspot\n    access_token_env: HUBSPOT_TOKEN\n"
            f"    base_url: {hubspot.base_url}\n    portal_currency: EUR\n"
            "    company_properties: {segment: customer_segment}\n"
            "    teams: {'Sales UK&I': sales-uk}\n"
        )
        engine = create_engine(f"sqlite:///{tmp_path / 'krpulse.db'}")
        upgrade(engine)  # as after `krpulse db upgrade`
        engine.dispose()
        yield str(tmp_path / "krpulse.yaml"), us


def sync_then_compute(defs, instance, day: str) -> tuple[dg.ExecuteInProcessResult, ...]:
    """The daily schedule's path: a sync run, then the day its sensor requests."""
    synced = defs.resolve_job_def(SYNC_JOB).execute_in_process(
        instance=instance, tags={DAY_TAG: day}, raise_on_error=False
    )
    name = AFTER_SYNC_SENSOR if synced.success else AFTER_FAILED_SYNC_SENSOR
    run = instance.get_run_by_id(synced.run_id)
    event_type = (
        dg.DagsterEventType.RUN_SUCCESS if synced.success else dg.DagsterEventType.RUN_FAILURE
    )
    [record] = instance.get_records_for_run(synced.run_id, of_type=event_type).records
    context = dg.build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        repository_def=defs.get_repository_def(),
    )
    sensor = defs.resolve_sensor_def(name)
    request = sensor(context if synced.success else context.for_run_failure())
    assert request.partition_key == day
    computed = defs.resolve_job_def(DAILY_JOB).execute_in_process(
        instance=instance, partition_key=request.partition_key, raise_on_error=False
    )
    return synced, computed


def test_a_failing_source_leaves_the_others_materialised_and_its_krs_stale(three_crms):
    config, us_org = three_crms
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    settings = load_settings(config)
    today = settings.today()
    yesterday, day = (today - dt.timedelta(days=1)).isoformat(), today.isoformat()

    # Each source has its own sync step and assets whose keys carry the source's name.
    for source in ("sf-eu", "sf-us", "hubspot"):
        sync_assets = defs.resolve_assets_def(dg.AssetKey(sync_asset_key(source, "deals")))
        assert sync_assets.node_def.name == f"sync_{source.replace('-', '_')}"
        # CRM syncs are expected fresh daily, write through the database pool, and (in
        # production) retry with exponential backoff; this test sets no retries.
        for spec in sync_assets.specs:
            assert spec.freshness_policy.fail_window.to_timedelta() == dt.timedelta(hours=30)
            assert spec.group_name == "extract" and spec.kinds >= {"sqlalchemy"}
        assert sync_assets.op.pool == "krpulse_database"

    synced, computed = sync_then_compute(defs, instance, yesterday)
    assert synced.success and computed.success
    store = OkrStore(flow.open_database(settings))
    before = store.progress(as_of=dt.date.fromisoformat(yesterday), on_day_only=True).set_index(
        "kr"
    )
    assert "stale" not in set(before["status"])
    assert before.loc["win-rate-eu", "value"] == pytest.approx(0.75)  # O4, O6, O8 won; O5 lost
    assert before.loc["win-rate-us", "value"] == pytest.approx(0.75)
    assert before.loc["nps-hubspot", "value"] == pytest.approx(25.0)  # (2 - 1) / 4

    us_org.stop()  # the US org goes down
    synced, computed = sync_then_compute(defs, instance, day)

    # The US org's step failed; the EU org and HubSpot were materialised all the same.
    assert not synced.success
    failed_steps = {e.step_key for e in synced.all_events if e.is_step_failure}
    assert failed_steps == {"sync_sf_us"}
    materialized = {e.asset_key.path[1] for e in synced.get_asset_materialization_events()}
    assert materialized == {"sf-eu", "hubspot"}

    # The day was computed anyway, with the US org recorded as failing.
    assert computed.success
    staged = computed.asset_materializations_for_node(STAGED_SOURCES)[0].metadata
    assert staged["failing_sources"].text == "sf-us"
    after = store.progress(as_of=today, on_day_only=True).set_index("kr")
    stale = set(after.index[after["status"] == "stale"])
    # Stale: the US org's KR and those over every source; fresh: those that exclude the US org.
    assert stale == {"win-rate-us", "won-revenue", "won-deals"}
    assert after.loc["win-rate-us", "stale_reason"] == "source sf-us failed to sync"
    for kr in ("win-rate-us", "won-revenue", "won-deals"):  # last good value, never a 0
        assert after.loc[kr, "value"] == pytest.approx(before.loc[kr, "value"])
    assert after.loc["win-rate-eu", "value"] == pytest.approx(0.75)
    assert after.loc["nps-hubspot", "value"] == pytest.approx(25.0)
    # EU org 3 won of 4 closed, HubSpot 3 won of 5: 6 of 9.
    assert after.loc["win-rate-not-us", "value"] == pytest.approx(6 / 9)
    # A KPI over every source is not computed from partial data; HubSpot's own one is.
    assert set(store.kpi_values(as_of=today)["kpi"]) >= {"nps-hubspot-90d"}
    kpis_today = store.kpi_values(as_of=today)
    kpis_today = kpis_today[kpis_today["as_of"] == today]
    assert set(kpis_today["kpi"]) == {"nps-hubspot-90d"}


def test_a_failing_source_makes_days_stale_from_its_last_good_sync_on_in_local_time():
    import pandas as pd

    from pipelines import source_health

    states = pd.DataFrame(
        [
            # Never synced: no day of it is complete.
            {
                "source": "new-org",
                "type": "salesforce",
                "status": "failing",
                "reason": "401",
                "last_synced_at": None,
            },
            # Last good sync 00:30 on the 21st in Berlin (23:30 UTC on the 20th).
            {
                "source": "sf-us",
                "type": "salesforce",
                "status": "failing",
                "reason": "timeout",
                "last_synced_at": dt.datetime(2026, 11, 20, 23, 30, tzinfo=dt.UTC),
            },
            {
                "source": "hubspot",
                "type": "hubspot",
                "status": "ok",
                "reason": "",
                "last_synced_at": dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC),
            },
        ]
    )
    counts = pd.DataFrame(
        {
            "source": ["new-org", "sf-us", "hubspot"],
            "deals": [0, 8, 8],
            "customers": [0, 3, 4],
            "nps_responses": [0, 4, 4],
        }
    )
    days = [dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 22)]
    staged = source_health.staged_sources_frame(states, counts, days, "Europe/Berlin")
    assert source_health.failing_sources_by_day(staged) == {
        dt.date(2026, 11, 20): ["new-org"],
        dt.date(2026, 11, 21): ["new-org", "sf-us"],
        dt.date(2026, 11, 22): ["new-org", "sf-us"],
    }
    assert source_health.admitted_sources({"source": {"not": "sf-us"}}, ["a", "sf-us"]) == {"a"}
    assert source_health.admitted_sources({"team": "x"}, ["a", "sf-us"]) == {"a", "sf-us"}

"""The KR pages the daily flow stores for the dashboard: the records behind a number are the
engine's own (same window, filters and events), so the drill-down and the number agree on
every KR and every day; the chart's expected path is the scoring's."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import views, week
from dashboard.access import AccessPolicy
from dashboard.app import CSRF_PLACEHOLDER, create_app
from kr_metrics.display import number
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.cli.dashboard import dashboard_data
from pipelines.settings import load_settings
from tests.dashboard_support import CYCLE, make_demo_project

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

Q4_DAYS = st.dates(dt.date(2026, 10, 1), dt.date(2026, 11, 25))


@pytest.fixture(scope="module")
def synced(tmp_path_factory, demo_data):
    project = make_demo_project(tmp_path_factory.mktemp("pages"), demo_data)
    settings = load_settings(project / "krpulse.yaml")
    engine = flow.open_database(settings)
    flow.sync_sources(settings, engine)
    yield settings, engine
    engine.dispose()


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(day=Q4_DAYS)
def test_the_drilldown_of_every_kr_adds_up_to_its_stored_number(synced, day):
    settings_, engine = synced
    flow.run_days(settings_, engine, [day], validate=False)
    store = OkrStore(engine)
    progress = store.progress(as_of=day, on_day_only=True)
    assert len(progress) == 8
    explained = 0
    for row in progress.itertuples():
        stored = store.drilldown(row.cycle, row.kr, as_of=day)
        assert stored is not None and stored["as_of"] == day, row.kr
        if stored["reason"]:
            continue  # a metric without a record-level breakdown says so
        explained += 1
        if number(row.value) is None:  # no data yet (e.g. no closed deal on day one)
            assert number(stored["value"]) is None and stored["total"] == 0, row.kr
            continue
        assert number(stored["value"]) == pytest.approx(number(row.value), rel=1e-9), row.kr
        assert stored["total"] == len(stored["records"])
        records = stored["records"]
        if records and row.metric in ("win_rate", "nps"):
            weights = sum(r["weight"] for r in records)
            assert sum(r["contribution"] for r in records) / weights * (
                100 if row.metric == "nps" else 1
            ) == pytest.approx(row.value)
    assert explained >= 3


def test_the_kr_page_reads_what_the_flow_stored(synced):
    settings_, engine = synced
    flow.run_days(settings_, engine, [dt.date(2026, 11, 25)], validate=False)
    data = dashboard_data(settings_, engine)
    detail = views.kr_detail(data, CYCLE, "nps-uk")
    assert (detail["start"], detail["end"]) == (dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert detail["definition"]["current"] and detail["definition"]["filters"] == {
        "team": "sales-uk"
    }
    # A moonshot's linear expected path ends at 70 % of the way (the scoring's policy).
    assert detail["chart"]["expected"][-1] == pytest.approx(50 + 0.7 * 25)
    drill = views.drilldown(data, CYCLE, "win-rate-uk")
    assert drill["available"] and drill["matches_stored"] and drill["entity"] == "deals"


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def _kr_value(html: str) -> str:
    return re.search(r'id="kr-value">([^<]*)<', html).group(1)


def test_the_kr_page_is_cached_until_a_check_in_or_a_new_run_day(tmp_path, demo_data):
    """Built once per store change: a second view reuses the model and its HTML (with each
    visitor's own form token), and a check-in or a newly run day shows right after."""
    project = make_demo_project(tmp_path, demo_data)
    settings_ = load_settings(project / "krpulse.yaml")
    engine = flow.open_database(settings_)
    flow.sync_sources(settings_, engine)
    flow.run_days(settings_, engine, [dt.date(2026, 11, 23), dt.date(2026, 11, 24)], validate=False)
    now = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
    data = dataclasses.replace(dashboard_data(settings_, engine), now=lambda: now)
    app = create_app(data, AccessPolicy(open_access=True))
    url = f"/kr/{CYCLE}/win-rate-dach"
    first = week.cached_kr_page(data, CYCLE, "win-rate-dach")
    again = week.cached_kr_page(data, CYCLE, "win-rate-dach")
    assert again["records"] is first["records"] and again["html"] is first["html"]

    alice = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    bob = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    page = alice.get(url).text
    assert "as of <strong>2026-11-24</strong>" in page and "No check-ins yet." in page
    tokens = {_token(page), _token(bob.get(url).text)}
    assert len(tokens) == 2 and CSRF_PLACEHOLDER not in page
    saved = alice.post(f"{url}/check-in", data={
        "csrf_token": _token(page), "confidence": "4", "progress": "Two <i>big</i> wins",
        "problems": "", "next_steps": ""})  # fmt: skip
    assert saved.status_code == 303
    after = alice.get(url + "?saved=1").text
    assert "Check-in saved." in after and "Two &lt;i&gt;big&lt;/i&gt; wins" in after
    assert "Check-in saved." not in bob.get(url).text

    flow.run_days(settings_, engine, [dt.date(2026, 11, 25)], validate=False)
    fresh = views.kr_detail(data, CYCLE, "win-rate-dach")["kr"]
    newer = bob.get(url).text
    assert "as of <strong>2026-11-25</strong>" in newer
    assert _kr_value(newer) == fresh["value_text"]
    engine.dispose()


def test_warming_builds_every_kr_page_of_the_cycle_once_per_store_change(synced):
    settings_, engine = synced
    flow.run_days(settings_, engine, [dt.date(2026, 11, 25)], validate=False)
    data = dashboard_data(settings_, engine)
    version = week.store_version(engine)
    krs = list(OkrStore(engine).kr_charts(CYCLE)["kr"])
    assert week.warm_kr_pages(data, CYCLE, version) == len(krs) == 8
    assert week.warm_kr_pages(data, CYCLE, version) == 0  # all built: nothing to do
    warmed = {kr: week.cached_kr_page(data, CYCLE, kr)["records"] for kr in krs}
    # Served from what the warming built; equal to a page built from scratch.
    assert all(week.cached_kr_page(data, CYCLE, kr)["records"] is warmed[kr] for kr in krs)
    assert warmed["win-rate-uk"] == views.drilldown(data, CYCLE, "win-rate-uk")
    # A warming that finds the store changed stops (another dashboard: nothing built yet).
    flow.run_days(settings_, engine, [dt.date(2026, 11, 24)], validate=False)
    other = dashboard_data(settings_, engine)
    assert week.warm_kr_pages(other, CYCLE, version) == 0
    assert week.warm_kr_pages(other, CYCLE, week.store_version(engine)) == 8

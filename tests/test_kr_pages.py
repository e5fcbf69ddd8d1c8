"""The KR pages the daily flow stores for the dashboard: the records behind a number are the
engine's own (same window, filters and events), so the drill-down and the number agree on
every KR and every day; the chart's expected path is the scoring's."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import views
from kr_metrics.display import number
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.cli.dashboard import dashboard_data
from pipelines.settings import load_settings
from tests.dashboard_support import CYCLE, make_demo_project

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

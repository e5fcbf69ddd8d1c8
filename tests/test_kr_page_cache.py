"""The KR page's cached HTML never shows stale content: its body is rendered once per store
change (and warmed for the default view), and what depends on the clock — freshness, stale
reasons, this week's check-in form, whether the cycle still takes check-ins — is filled in per
request. Every check is over HTTP through the app, against a page built from scratch."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.checkins import make_check_in, week_label
from dashboard import views, week
from dashboard.access import AccessPolicy
from dashboard.app import create_app
from okr_store.checkins import CheckInStore
from okr_store.db import create_engine
from pipelines import flow
from pipelines.cli.dashboard import dashboard_data
from pipelines.settings import load_settings
from tests.dashboard_support import CYCLE, make_demo_project

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KR = "win-rate-dach"
URL = f"/kr/{CYCLE}/{KR}"
LOCAL = "http://127.0.0.1"
# The default view, another sort of the records, the print view, and right after a check-in.
VIEWS = ["", "?sort=amount&order=asc", "?view=print", "?saved=1"]


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(scope="module")
def store(tmp_path_factory, demo_data):
    project = make_demo_project(tmp_path_factory.mktemp("page-cache"), demo_data)
    settings_ = load_settings(project / "krpulse.yaml")
    engine = flow.open_database(settings_)
    flow.sync_sources(settings_, engine)
    flow.run_days(settings_, engine, [dt.date(2026, 11, 23), dt.date(2026, 11, 24)], validate=False)
    yield settings_, engine
    engine.dispose()


@pytest.fixture(scope="module")
def synced_at(store):
    settings_, engine = store
    return views.kr_detail(dashboard_data(settings_, engine), CYCLE, KR)["kr"]["data_synced_at"]


def _served(store, clock: Clock) -> tuple[views.DashboardData, TestClient]:
    settings_, engine = store
    data = dataclasses.replace(dashboard_data(settings_, engine), now=clock)
    app = create_app(data, AccessPolicy(open_access=True))
    return data, TestClient(app, base_url=LOCAL, follow_redirects=False)


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def _without_token(html: str) -> str:
    return re.sub(r'(name="csrf_token" value=")[0-9a-f]+"', r'\1"', html)


def _fresh_page(store, clock: Clock, view: str, keep: list) -> str:
    """The page as a new dashboard (nothing cached) shows it at the same moment."""
    data, client = _served(store, clock)
    keep.append(data)  # a cached model is keyed on id(data): keep the id from being reused
    return client.get(URL + view).text


def _lead(html: str) -> str:
    """The paragraph under the title: status, as-of day, freshness and stale reasons."""
    return re.search(r'<p class="lead">(.*?)</p>', html, re.S)[1]


def _stored(data: views.DashboardData) -> dict:
    return week.cached_kr_page(data, CYCLE, KR)["stored"]


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("minutes"), st.integers(1, 180)),
        st.tuples(st.just("days"), st.integers(1, 40)),
        st.tuples(st.just("check-in"), st.integers(1, 5), st.text("ab <&>", max_size=6)),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_the_cached_page_is_the_page_built_afresh_after_any_clock_move_or_check_in(
    store, synced_at, steps
):
    clock = Clock(synced_at + dt.timedelta(minutes=3))
    data, client = _served(store, clock)
    keep: list = []
    for view in VIEWS:
        assert _without_token(client.get(URL + view).text) == _without_token(
            _fresh_page(store, clock, view, keep)
        )
    for step in steps:
        before = _stored(data)
        bodies = dict(before["html"])
        if step[0] == "minutes":
            clock.now += dt.timedelta(minutes=step[1])
        elif step[0] == "days":
            clock.now += dt.timedelta(days=step[1])
        else:
            page = client.get(URL).text
            if 'id="check-in-form"' in page:
                posted = client.post(
                    f"{URL}/check-in",
                    data={
                        "csrf_token": _token(page),
                        "confidence": str(step[1]),
                        "progress": step[2],
                        "problems": "",
                        "next_steps": "",
                    },
                )
                assert posted.status_code == 303, posted.text
        for view in VIEWS:
            cached = client.get(URL + view).text
            assert _without_token(cached) == _without_token(
                _fresh_page(store, clock, view, keep)
            ), (step, view)
        if step[0] != "check-in":
            # Only the clock moved: the page came from the same rendered bodies.
            after = _stored(data)
            assert after is before
            assert all(after["html"][variant] is body for variant, body in bodies.items())


def test_the_freshness_and_this_weeks_check_in_follow_the_clock_on_a_warmed_page(store, synced_at):
    settings_, engine = store
    clock = Clock(synced_at + dt.timedelta(minutes=3))
    data, client = _served(store, clock)
    # The background warming builds the model and renders the default view and today's form.
    week.warm_kr_pages(data, CYCLE, week.store_version(engine), client.app.state.warm_kr_html)
    stored = _stored(data)
    assert len(stored["html"]) == 1 and len(stored["forms"]) == 1
    body = next(iter(stored["html"].values()))

    assert "data synced 3 min ago" in _lead(client.get(URL).text)
    clock.now += dt.timedelta(minutes=1)
    lead = _lead(client.get(URL).text)
    assert "data synced 4 min ago" in lead and "stale" not in lead
    clock.now = synced_at + dt.timedelta(hours=37)
    lead = _lead(client.get(URL).text)
    assert "data synced 37 h ago" in lead and "· stale: source data synced 37 h ago" in lead
    # Nothing rendered the page again: the warmed body served each view.
    assert stored["html"] == {next(iter(stored["html"])): body} and _stored(data) is stored

    # Checked in this week, the form shows it; next week it is empty again, with its week.
    today = week.org_today(data)
    form = client.get(URL).text
    saved = client.post(
        f"{URL}/check-in",
        data={
            "csrf_token": _token(form),
            "confidence": "2",
            "progress": "slow week",
            "problems": "",
            "next_steps": "",
        },
    )
    assert saved.status_code == 303
    page = client.get(URL).text
    assert "Update this week’s check-in" in page and ">slow week</textarea>" in page
    assert f"Weekly check-in · {week_label(today)}" in page
    clock.now += dt.timedelta(days=7)
    page = client.get(URL).text
    assert f"Weekly check-in · {week_label(today + dt.timedelta(days=7))}" in page
    assert "Update this week’s check-in" not in page and ">slow week</textarea>" not in page
    assert "slow week" in page.split('id="check-in-history"')[1]  # still in the history
    # After the cycle's last week the same cached page takes no check-ins.
    clock.now = dt.datetime(2027, 1, 11, 9, tzinfo=dt.UTC)
    page = client.get(URL).text
    assert 'id="check-ins-closed"' in page and 'id="check-in-form"' not in page


def test_a_write_by_another_process_shows_on_the_next_view(store, synced_at):
    settings_, engine = store
    clock = Clock(synced_at + dt.timedelta(minutes=3))
    data, client = _served(store, clock)
    week.warm_kr_pages(data, CYCLE, week.store_version(engine), client.app.state.warm_kr_html)
    before = client.get(URL).text
    # Another process writes: its own engine on the same database, nothing this one hears of.
    other = create_engine(settings_.effective_database_url)
    try:
        today = week.org_today(data)
        CheckInStore(other).record(
            make_check_in(
                cycle=CYCLE,
                kr=KR,
                day=today,
                today=today,
                confidence=5,
                progress="written elsewhere",
                author="elsewhere",
            ),
            on_day=today,
        )
        page = client.get(URL).text
        assert "written elsewhere" in page and "written elsewhere" not in before
        assert ">written elsewhere</textarea>" in page  # this week's form shows it too
        newest = dt.date.fromisoformat(re.search(r"as of <strong>([\d-]+)</strong>", page)[1])
        flow.run_days(settings_, other, [newest + dt.timedelta(days=1)], validate=False)
    finally:
        other.dispose()
    page = client.get(URL).text
    assert f"as of <strong>{newest + dt.timedelta(days=1)}</strong>" in page
    fresh = views.kr_detail(data, CYCLE, KR)["kr"]
    assert re.search(r'id="kr-value">([^<]*)<', page).group(1) == fresh["value_text"]

"""Check-ins through every door: the KR page form, the team form, the JSON API and the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import warnings

import pytest
from click.testing import CliRunner

from core.checkins import make_check_in
from dashboard.access import AccessPolicy
from dashboard.app import create_app
from okr_store.checkins import CheckInStore
from pipelines.cli import cli
from pipelines.cli.dashboard import dashboard_data
from tests.dashboard_support import CYCLE, filled_demo_store, make_demo_project

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LOCAL = "http://127.0.0.1"
# The demo's "today" (2026-11-25, a Wednesday, ISO week 2026-W48), in the morning in Berlin.
DEMO_NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_data):
    project = make_demo_project(tmp_path_factory.mktemp("checkins"), demo_data)
    settings, engine = filled_demo_store(
        project, "dashboard:\n  team_names: {sales-dach: DACH, sales-uk: UK & Ireland}\n"
    )
    data = dataclasses.replace(dashboard_data(settings, engine), now=lambda: DEMO_NOW)
    yield project, engine, data
    engine.dispose()


@pytest.fixture
def client(demo):
    return TestClient(
        create_app(demo[2], AccessPolicy(open_access=True)), base_url=LOCAL, follow_redirects=False
    )


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def test_the_kr_page_form_checks_in_and_the_overview_shows_the_confidence(client, demo):
    page = client.get(f"/kr/{CYCLE}/win-rate-dach")
    assert "Weekly check-in · 2026-W48" in page.text
    saved = client.post(
        f"/kr/{CYCLE}/win-rate-dach/check-in",
        data={
            "csrf_token": _token(page.text),
            "confidence": "2",
            "progress": "Kiel <b>won</b>",
            "problems": "",
            "next_steps": "Review the lost deals",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("saved=1#check-ins")
    stored = CheckInStore(demo[1]).check_ins(cycle=CYCLE, kr="win-rate-dach").iloc[0]
    assert stored["confidence"] == 2 and stored["author"] == "local"
    assert stored["value_as_of"] == dt.date(2026, 11, 25) and stored["value"] > 0
    after = client.get(f"/kr/{CYCLE}/win-rate-dach?saved=1").text
    assert "Kiel &lt;b&gt;won&lt;/b&gt;" in after and "Kiel <b>" not in after
    overview = client.get("/").text
    row = overview[overview.index("Win rate DACH") :][:3000]
    assert "2 · unlikely" in row
    # Team display names come from dashboard.team_names.
    assert ">DACH" in overview and "UK &amp; Ireland" in overview


def test_a_post_without_the_form_token_or_from_another_site_is_refused(client):
    page = client.get(f"/kr/{CYCLE}/nps-uk")
    token = _token(page.text)
    fields = {"confidence": "4", "progress": "forged"}
    assert client.post(f"/kr/{CYCLE}/nps-uk/check-in", data=fields).status_code == 403
    assert (
        client.post(
            f"/kr/{CYCLE}/nps-uk/check-in", data=fields | {"csrf_token": "0" * 64}
        ).status_code
        == 403
    )
    cross_site = client.post(
        f"/kr/{CYCLE}/nps-uk/check-in",
        data=fields | {"csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    # Another browser (no cookie) with a token copied from this page gets nowhere either.
    stranger = TestClient(client.app, base_url=LOCAL, follow_redirects=False)
    assert (
        stranger.post(
            f"/kr/{CYCLE}/nps-uk/check-in", data=fields | {"csrf_token": token}
        ).status_code
        == 403
    )


def test_the_team_form_checks_in_every_kr_given_a_confidence(client, demo):
    page = client.get(f"/check-in?cycle={CYCLE}&team=sales-uk")
    assert page.status_code == 200 and "Check in · UK &amp; Ireland · 2026-W48" in page.text
    krs = re.findall(r'name="kr" value="([^"]+)"', page.text)
    assert sorted(krs) == ["nps-uk", "win-rate-uk"]
    form = [("csrf_token", _token(page.text)), ("cycle", CYCLE), ("team", "sales-uk")]
    form += [("kr", "nps-uk"), ("confidence:nps-uk", "5"), ("progress:nps-uk", "9 promoters")]
    form += [("kr", "win-rate-uk"), ("confidence:win-rate-uk", "")]
    saved = client.post(
        "/check-in",
        content=_encode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert saved.status_code == 303 and "saved=1" in saved.headers["location"]
    stored = CheckInStore(demo[1]).check_ins(cycle=CYCLE, team="sales-uk")
    assert list(stored["kr"]) == ["nps-uk"] and stored.iloc[0]["progress"] == "9 promoters"


def _encode(pairs: list[tuple[str, str]]) -> str:
    from urllib.parse import urlencode

    return urlencode(pairs)


def test_the_json_api_checks_in_edits_and_lists(client):
    url = f"/api/cycles/{CYCLE}/key-results/nps-company/check-in"
    first = client.post(url, json={"confidence": 3, "progress": "Survey sent"})
    assert first.status_code == 200, first.text
    assert first.json()["revision"] == 1 and first.json()["week_label"] == "2026-W48"
    second = client.post(url, json={"confidence": 4, "progress": "Survey sent", "problems": "x"})
    assert second.json()["revision"] == 2 and second.json()["confidence"] == 4
    listed = client.get(f"/api/cycles/{CYCLE}/check-ins?kr=nps-company").json()
    assert len(listed) == 1 and listed[0]["problems"] == "x"
    assert client.post(url, json={"confidence": 9}).status_code == 422
    # A form-encoded (cross-site-able) body is not accepted by the JSON API.
    assert client.post(url, data={"confidence": "3"}).status_code == 415
    assert (
        client.post(
            url, json={"confidence": 3}, headers={"Origin": "https://evil.example"}
        ).status_code
        == 403
    )


def test_the_alignment_view_draws_team_objectives_under_the_company_one(client):
    html = client.get(f"/alignment?cycle={CYCLE}").text
    company = html.index("Grow with the customers who already trust us")
    for team_objective in (
        "Win more of the deals we work on in DACH",
        "Turn UK&amp;I customers into promoters",
    ):
        assert html.index(team_objective) > company
    assert html.count('class="align-node level-team"') == 3
    assert "average grade" in html


def test_the_overview_shows_the_week_change_sparkline_and_missing_check_ins(client):
    html = client.get(f"/?cycle={CYCLE}").text
    assert html.count('class="spark"') == 8
    assert "no check-in this week" in html
    assert re.search(r"[+−-]\d[\d.,]* pts|±0 pts", html)
    only_uk = client.get(f"/?cycle={CYCLE}&team=sales-uk").text
    # The filtered overview keeps the company KPIs beside the team's own.
    assert "KPIs" in only_uk and "all</td>" in only_uk


def test_the_retrospective_form_ranks_items_and_marks_quick_wins(client):
    page = client.get(f"/retro/{CYCLE}")
    token = _token(page.text)
    for text, benefit, effort in [("Check in on Mondays", 4, 1), ("New CRM", 5, 5)]:
        answer = client.post(
            f"/retro/{CYCLE}",
            data={"csrf_token": token, "text": text, "benefit": benefit, "effort": effort},
        )
        assert answer.status_code == 303
    items = client.get(f"/api/cycles/{CYCLE}/retrospective").json()
    assert [(i["text"], i["quick_win"]) for i in items] == [
        ("Check in on Mondays", True),
        ("New CRM", False),  # as much effort as benefit: never a quick win
    ]


def test_the_cli_checks_in_and_lists(demo, monkeypatch):
    project = demo[0]
    runner = CliRunner()
    config = ["--config", str(project / "krpulse.yaml")]
    # The CLI's today is the organisation's today: here the demo's (a week of 2026-Q4).
    monkeypatch.setattr("pipelines.settings.Settings.today", lambda self: DEMO_NOW.date())
    result = runner.invoke(
        cli,
        [
            *config,
            "checkin",
            CYCLE,
            "win-rate-us",
            "--confidence",
            "4",
            "--progress",
            "Pipeline review done",
            "--author",
            "sam",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Checked in: 2026-Q4 win-rate-us" in result.output and "4 · likely" in result.output
    again = runner.invoke(cli, [*config, "checkin", CYCLE, "win-rate-us", "--confidence", "3"])
    assert "Updated (version 2)" in again.output
    bad = runner.invoke(cli, [*config, "checkin", CYCLE, "win-rate-us", "--confidence", "7"])
    assert bad.exit_code == 1 and "1 (very unlikely)" in bad.output
    listed = runner.invoke(cli, [*config, "checkin", CYCLE, "--team", "sales-us"])
    assert "win-rate-us  confidence 3 · 50/50" in listed.output
    retro = runner.invoke(
        cli,
        [*config, "retro", CYCLE, "--add", "Shorter meeting", "--benefit", "3", "--effort", "1"],
    )
    assert retro.exit_code == 0 and "★ benefit 3 · effort 1  Shorter meeting" in retro.output


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port or subdomain of the same site
        {"Origin": "null"},  # a sandboxed frame elsewhere
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:9999"},
        {"Origin": "https://127.0.0.1"},
    ],
)
def test_a_form_from_anywhere_but_this_origin_is_refused_even_with_a_valid_token(client, headers):
    token = _token(client.get(f"/retro/{CYCLE}").text)
    fields = {"csrf_token": token, "text": "forged", "benefit": "5", "effort": "1"}
    assert client.post(f"/retro/{CYCLE}", data=fields, headers=headers).status_code == 403
    same = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}  # Chromium under no-referrer
    assert (
        client.post(f"/retro/{CYCLE}", data=fields | {"text": "ok"}, headers=same).status_code
        == 303
    )


def test_the_overview_is_built_once_per_store_change(demo):
    from dashboard import week

    data = demo[2]
    first = week.cached_overview(data, CYCLE, "sales-us")
    assert week.cached_overview(data, CYCLE, "sales-us") is first
    CheckInStore(demo[1]).record(
        make_check_in(
            cycle=CYCLE,
            kr="revenue-per-existing-customer-us",
            day=DEMO_NOW.date(),
            today=DEMO_NOW.date(),
            confidence=1,
            author="test",
        ),
        on_day=DEMO_NOW.date(),
    )
    again = week.cached_overview(data, CYCLE, "sales-us")
    assert again is not first
    row = next(
        k
        for t in again["teams"]
        for o in t["objectives"]
        for k in o["key_results"]
        if k["kr"] == "revenue-per-existing-customer-us"
    )
    assert row["check_in"]["confidence"] == 1 and row["checked_in"]


def test_checking_in_follows_the_dashboards_access_control(demo, monkeypatch):
    from dashboard.config import DashboardSettings

    token = "a-long-shared-token-for-check-ins"  # noqa: S105 - a test-only token
    monkeypatch.setenv("KRPULSE_TEST_CHECKIN_TOKEN", token)
    settings = DashboardSettings.model_validate(
        {
            "host": "0.0.0.0",  # noqa: S104 - never bound
            "allowed_hosts": ["okr.example.com"],
            "auth": {"token_env": "KRPULSE_TEST_CHECKIN_TOKEN"},
        }
    )
    app = create_app(demo[2], AccessPolicy.from_settings(settings))
    client = TestClient(app, base_url="http://okr.example.com", follow_redirects=False)
    url = f"/api/cycles/{CYCLE}/key-results/nps-company/check-in"
    assert client.post(url, json={"confidence": 4}).status_code == 401
    assert (
        client.post(f"/kr/{CYCLE}/nps-company/check-in", data={"confidence": "4"}).status_code
        == 303
    )
    assert (
        "/login"
        in client.post(f"/kr/{CYCLE}/nps-company/check-in", data={"confidence": "4"}).headers[
            "location"
        ]
    )
    answer = client.post(url, json={"confidence": 4}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["author"] == "token"


def test_owner_ids_read_as_the_crm_owners_names(demo):
    from dashboard import week

    names = week.owner_names(demo[2])
    assert week.owner_text("O-01", names) == "Lena Hoffmann"
    assert week.owner_text("Team lead DACH", names) == "Team lead DACH"
    assert week.owner_text(None, names) is None


def test_after_the_cycles_last_week_the_kr_page_takes_no_check_ins(demo):
    later = dataclasses.replace(demo[2], now=lambda: dt.datetime(2027, 1, 11, 9, tzinfo=dt.UTC))
    client = TestClient(
        create_app(later, AccessPolicy(open_access=True)), base_url=LOCAL, follow_redirects=False
    )
    page = client.get(f"/kr/{CYCLE}/nps-uk").text
    assert 'id="check-ins-closed"' in page and 'id="check-in-form"' not in page
    answer = client.post(f"/api/cycles/{CYCLE}/key-results/nps-uk/check-in", json={"confidence": 3})
    assert answer.status_code == 422 and "check-ins are closed" in answer.json()["detail"]

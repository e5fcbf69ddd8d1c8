"""The dashboard's pages, JSON API and access control, driven in-process over the demo store."""

from __future__ import annotations

import warnings

import pytest
from click.testing import CliRunner

from dashboard.access import SECURITY_HEADERS, AccessPolicy, safe_next
from dashboard.app import create_app
from dashboard.config import AccessError, DashboardSettings, resolve_record_urls
from pipelines.cli import cli
from pipelines.cli.dashboard import dashboard_data
from tests.dashboard_support import CYCLE, filled_demo_store, make_demo_project

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx versions
    from fastapi.testclient import TestClient

TOKEN = "a-long-shared-token-for-tests"  # noqa: S105 - a test-only token
LOCAL = "http://127.0.0.1"
RECORD_URLS = "dashboard:\n  record_urls:\n    demo: {deals: 'https://crm.example.com/deal/{id}'}\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_data):
    project = make_demo_project(tmp_path_factory.mktemp("dashboard"), demo_data)
    settings, engine = filled_demo_store(project, RECORD_URLS)
    yield settings, engine, dashboard_data(settings, engine)
    engine.dispose()


@pytest.fixture(scope="module")
def open_client(demo):
    # Loopback mode answers only to local Host names (DNS rebinding), not to "testserver".
    return TestClient(create_app(demo[2], AccessPolicy(open_access=True)), base_url=LOCAL)


@pytest.fixture
def token_client(demo, monkeypatch):
    monkeypatch.setenv("KRPULSE_DASHBOARD_TOKEN", TOKEN)
    settings = DashboardSettings.model_validate(
        {
            "host": "0.0.0.0",  # noqa: S104 - only validated, never bound
            "allowed_hosts": ["okr.example.com"],
            "auth": {"token_env": "KRPULSE_DASHBOARD_TOKEN"},
        }
    )
    app = create_app(demo[2], AccessPolicy.from_settings(settings))
    return TestClient(app, base_url="http://okr.example.com", follow_redirects=False)


def test_overview_shows_every_team_with_its_objectives_and_the_kpis_apart(open_client):
    html = open_client.get("/").text
    for team in ("Company", "sales-dach", "sales-uk", "sales-us"):
        assert f">{team}" in html
    assert "Turn UK&amp;I customers into promoters" in html
    assert "Moonshot" in html and "Roofshot" in html
    kpis = html.index('id="kpis-h"')
    assert html.index("NPS UK&amp;I from 50 to 75") < kpis < html.index("NPS, last 90 days")


def test_api_progress_is_the_store_latest_day_with_json_numbers(open_client, demo):
    body = open_client.get(f"/api/cycles/{CYCLE}/progress").json()
    assert body["as_of"] == "2026-11-25" and len(body["key_results"]) == 8
    nps = next(k for k in body["key_results"] if k["kr"] == "nps-company")
    stored = demo[2].store.latest_cycle_progress(CYCLE).set_index("kr").loc["nps-company"]
    assert nps["value"] == pytest.approx(stored["value"]) and nps["status"] == stored["status"]
    assert all(isinstance(k["progress"], float | None) for k in body["key_results"])
    assert {k["kpi"] for k in body["kpis"]} >= {"nps-90d"}
    uk = open_client.get(f"/api/cycles/{CYCLE}/progress", params={"team": "sales-uk"}).json()
    assert {k["kr"] for k in uk["key_results"]} == {"nps-uk", "win-rate-uk"}


def test_openapi_describes_the_json_api(open_client):
    spec = open_client.get("/api/openapi.json").json()
    assert {
        "/api/cycles",
        "/api/cycles/{cycle}/progress",
        "/api/cycles/{cycle}/key-results/{kr}",
        "/api/cycles/{cycle}/key-results/{kr}/records",
        "/api/digest",
    } <= set(spec["paths"])
    assert open_client.get("/docs").status_code == 404  # the CDN-backed docs page is off


def test_kr_detail_has_history_a_full_expected_path_and_a_forecast(open_client):
    body = open_client.get(f"/api/cycles/{CYCLE}/key-results/nps-uk").json()
    assert len(body["history"]) == 56 and body["history"][-1]["as_of"] == "2026-11-25"
    assert len(body["expected"]) == 92  # every day of the quarter
    # A moonshot's expected path ends at 70 % of the way from baseline (50) to target (75).
    assert body["expected"][-1] == pytest.approx(50 + 0.7 * 25)
    assert -100 <= body["forecast"]["projected_value"] <= 100
    assert body["definition"]["filters"] == {"team": "sales-uk"}
    assert open_client.get(f"/api/cycles/{CYCLE}/key-results/nope").status_code == 404


def test_drilldown_lists_the_deals_behind_the_number_with_crm_links(open_client):
    body = open_client.get(f"/api/cycles/{CYCLE}/key-results/win-rate-uk/records").json()
    assert body["available"] and body["entity"] == "deals" and body["total"] > 0
    won = sum(r["contribution"] for r in body["records"])
    closed = sum(r["weight"] for r in body["records"])
    status = open_client.get(f"/api/cycles/{CYCLE}/progress", params={"team": "sales-uk"}).json()
    value = next(k["value"] for k in status["key_results"] if k["kr"] == "win-rate-uk")
    assert won / closed == pytest.approx(value)
    first = body["records"][0]
    assert first["url"] == f"https://crm.example.com/deal/{first['record_id']}"
    assert first["customer_url"] is None  # no template for customers: the id, no link
    assert {r["team"] for r in body["records"]} == {"sales-uk"}
    page = open_client.get(f"/kr/{CYCLE}/win-rate-uk").text
    assert f'href="https://crm.example.com/deal/{first["record_id"]}"' in page
    # the drill-down says how teams are attributed (README: "Team attribution")
    assert "Teams are the owners' teams as of the latest sync" in page


def test_every_response_carries_strict_security_headers(open_client, token_client):
    for response in (
        open_client.get("/"),
        open_client.get("/static/app.css"),
        token_client.get("/api/cycles"),
        open_client.get("/kr/x/y"),
    ):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert open_client.get("/").headers["cache-control"] == "no-store"


def test_static_assets_are_local_and_no_page_loads_from_elsewhere(open_client):
    page = open_client.get(f"/kr/{CYCLE}/nps-uk").text
    assert "/static/vendor/uplot/uPlot.iife.min.js" in page
    assert "https://" not in page.split("<main", 1)[0]  # nothing in <head> leaves the server
    assert open_client.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200


def test_a_non_loopback_address_without_an_access_method_refuses_to_start(demo, monkeypatch):
    with pytest.raises(AccessError, match="refusing to serve on 0.0.0.0"):
        AccessPolicy.from_settings(DashboardSettings(), host="0.0.0.0")  # noqa: S104
    assert AccessPolicy.from_settings(DashboardSettings(), host="127.0.0.1").open_access
    config = str(demo[0].root / "krpulse.yaml")
    result = CliRunner().invoke(cli, ["--config", config, "serve", "--host", "0.0.0.0"])  # noqa: S104
    assert result.exit_code == 1 and "without an access method" in result.output
    monkeypatch.setenv("SHORT_TOKEN", "short")
    with pytest.raises(AccessError, match="at least 12"):
        AccessPolicy.from_settings(
            DashboardSettings.model_validate({"auth": {"token_env": "SHORT_TOKEN"}}),
            "0.0.0.0",  # noqa: S104
        )


def test_without_credentials_nothing_but_the_login_form_is_served(token_client):
    api = token_client.get(f"/api/cycles/{CYCLE}/progress")
    assert api.status_code == 401 and "nps" not in api.text.lower()
    assert token_client.get("/api/openapi.json").status_code == 401
    page = token_client.get(f"/kr/{CYCLE}/nps-uk")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=/kr/")
    login = token_client.get("/login")
    assert login.status_code == 200 and "NPS" not in login.text
    wrong = token_client.get("/api/cycles", headers={"Authorization": "Bearer nope-nope-nope"})
    assert wrong.status_code == 401


def test_a_bearer_token_or_a_login_session_opens_the_data(token_client):
    ok = token_client.get("/api/cycles", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()[0]["cycle"] == CYCLE
    failed = token_client.post(
        "/login",
        content="secret=wrong&next=/",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert failed.status_code == 401 and "krpulse_session" not in failed.headers.get(
        "set-cookie", ""
    )
    login = token_client.post(
        "/login",
        content=f"secret={TOKEN}&next=//evil.example",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert login.status_code == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert token_client.get("/").status_code == 200  # the client keeps the session cookie
    token_client.cookies.set("krpulse_session", "9999999999.forged")
    assert token_client.get("/").status_code == 303


def test_a_proxy_user_header_is_believed_only_from_a_trusted_proxy(demo):
    settings = DashboardSettings.model_validate(
        {
            "host": "0.0.0.0",  # noqa: S104 - only validated, never bound
            "allowed_hosts": ["okr.example.com"],
            "auth": {
                "proxy_user_header": "X-Forwarded-User",
                "trusted_proxies": ["10.0.0.0/8"],
            },
        }
    )
    app = create_app(demo[2], AccessPolicy.from_settings(settings))
    header = {"X-Forwarded-User": "lead@example.com"}
    via_proxy = TestClient(app, base_url=LOCAL, client=("10.1.2.3", 4000))
    assert via_proxy.get("/api/cycles", headers=header).status_code == 200
    assert via_proxy.get("/api/cycles").status_code == 401
    direct = TestClient(app, base_url=LOCAL, client=("192.0.2.7", 4000))
    assert direct.get("/api/cycles", headers=header).status_code == 401


def test_a_dns_rebinding_page_cannot_read_the_open_loopback_dashboard(open_client):
    """attacker.example resolves to 127.0.0.1 for a page the team lead opened: same origin for
    the browser, so only the Host header tells; every route answers it with a 400."""
    for path in (
        "/",
        f"/api/cycles/{CYCLE}/progress",
        f"/api/cycles/{CYCLE}/key-results/win-rate-uk/records",
    ):
        response = open_client.get(path, headers={"Host": "attacker.example:8000"})
        assert response.status_code == 400 and "nps" not in response.text.lower()
        assert "win-rate" not in response.text and "allowed_hosts" in response.text


def test_login_returns_only_to_local_paths():
    assert safe_next("/kr/2026-Q4/x?view=print") == "/kr/2026-Q4/x?view=print"
    for target in ("//evil.example/", "https://evil.example/", "/\\evil", "", None):
        assert safe_next(target) == "/"


def test_record_url_templates_fill_source_settings_and_must_be_http():
    urls = resolve_record_urls(
        {"sf": "{instance_url}/{id}"}, {"sf": {"instance_url": "https://acme.my.salesforce.com/"}}
    )
    assert urls["sf"]["deals"] == "https://acme.my.salesforce.com/{id}"
    with pytest.raises(AccessError, match="does not give an http"):
        resolve_record_urls({"demo": "javascript:alert(1)//{id}"}, {"demo": {}})
    with pytest.raises(AccessError, match="not a setting of source"):
        resolve_record_urls({"demo": "{secret}/{id}"}, {"demo": {}})

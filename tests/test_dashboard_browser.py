"""The dashboard in a real browser: Debian's Chromium driven by Playwright over the demo store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from dashboard import views
from dashboard.access import AccessPolicy
from dashboard.app import create_app
from dashboard.config import DashboardSettings
from dashboard.server import running
from okr_store.models import KrProgress
from pipelines.cli.dashboard import dashboard_data
from tests.dashboard_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CYCLE,
    filled_demo_store,
    make_demo_project,
)

# On CI the browser tests must run (CI installs chromium); elsewhere they need it installed.
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason=f"{CHROMIUM} is missing: `apt-get install chromium` to run the browser tests",
)

HOSTILE_TITLE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
TOKEN = "browser-test-shared-token"  # noqa: S105 - a test-only token


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_data):
    project = make_demo_project(tmp_path_factory.mktemp("browser"), demo_data)
    settings, engine = filled_demo_store(
        project, "dashboard:\n  record_urls:\n    demo: 'https://crm.example.com/r/{id}'\n"
    )
    # A KR title written by someone hostile (or careless) in the definitions.
    table = KrProgress.__table__
    with engine.begin() as conn:
        conn.execute(
            sa.update(table).where(table.c.kr == "win-rate-us").values(title=HOSTILE_TITLE)
        )
    yield dashboard_data(settings, engine)
    engine.dispose()


@pytest.fixture(scope="module")
def base_url(demo):
    with running(create_app(demo, AccessPolicy(open_access=True))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    yield page
    context.close()


def test_overview_renders_the_demo_org_teams(page, base_url):
    page.goto(base_url + "/")
    teams = page.locator("section.team h2").all_inner_texts()
    assert [t.split()[0] for t in teams] == ["Company", "sales-dach", "sales-uk", "sales-us"]
    assert page.locator("tr.kr-row").count() == 8
    assert page.locator("tr.kr-row svg.bar line.bar-expected").count() == 8
    assert page.locator("#kpis-h").is_visible()
    assert page.errors == []


def test_the_overview_fits_a_phone_and_is_keyboard_reachable(browser, base_url):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(base_url + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('kr-link')"):
            break
    else:
        pytest.fail("no KR link reachable with the keyboard")
    page.keyboard.press("Enter")
    page.wait_for_url("**/kr/**")
    context.close()


def test_a_kr_page_draws_its_chart(page, base_url):
    page.goto(f"{base_url}/kr/{CYCLE}/nps-uk")
    page.wait_for_selector("#kr-chart[data-drawn=true] canvas")
    # Pixels were painted: the canvas is not blank.
    painted = page.evaluate(
        """() => { const c = document.querySelector('#kr-chart canvas');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i]) n++; } return n; }"""
    )
    assert painted > 1000
    assert page.locator("#kr-chart .u-legend").inner_text().count("Forecast") == 1
    assert page.errors == []  # no CSP violation, no script error


def test_the_drilldown_lists_the_records_behind_the_number(page, base_url):
    page.goto(f"{base_url}/kr/{CYCLE}/nps-uk")
    rows = page.locator("#records tbody tr")
    total = int(page.locator("#records-summary").inner_text().split()[0])
    assert total > 0 and rows.count() == min(total, views.RECORDS_PER_PAGE)
    assert "responses" in page.locator("#records-numbers").inner_text()
    link = rows.first.locator("a").first
    assert link.get_attribute("href").startswith("https://crm.example.com/r/R-")
    assert link.get_attribute("rel") == "noopener noreferrer"


def _column(page, index: int) -> list[str]:
    return page.locator(f"#records tbody tr td:nth-child({index + 1})").all_inner_texts()


def test_clicking_a_records_header_sorts_and_next_pages(page, base_url):
    page.goto(f"{base_url}/kr/{CYCLE}/win-rate-uk")
    first_page = _column(page, 0)
    page.locator("#records thead a", has_text="Amount").click()
    page.wait_for_url("**sort=amount**")
    header = page.locator("#records thead th", has_text="Amount")
    assert header.get_attribute("aria-sort") == "descending"
    amounts = [float(a.replace(",", "")) for a in _column(page, 5) if a != "—"]
    assert len(amounts) > 1 and amounts == sorted(amounts, reverse=True)
    page.locator("#records thead a", has_text="Amount").click()  # again: the other way round
    page.wait_for_url("**order=asc**")
    ascending = [float(a.replace(",", "")) for a in _column(page, 5) if a != "—"]
    assert ascending == sorted(ascending) and ascending[0] <= amounts[-1]
    page.goto(f"{base_url}/kr/{CYCLE}/win-rate-uk")
    page.get_by_role("link", name="Next →").click()
    page.wait_for_url("**page=2**")
    assert page.locator("#records-page").inner_text().startswith("Page 2 of")
    assert not set(_column(page, 0)) & set(first_page)
    assert page.errors == []  # no CSP violation, no script error


def test_a_kr_title_with_a_script_tag_is_shown_as_text_and_runs_nothing(page, base_url):
    page.goto(base_url + "/")
    assert page.get_by_text(HOSTILE_TITLE, exact=True).count() == 1
    page.goto(f"{base_url}/kr/{CYCLE}/win-rate-us")
    assert page.locator("#kr-title").inner_text() == HOSTILE_TITLE
    page.wait_for_selector("#kr-chart[data-drawn=true]")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("h1 script, h1 img").count() == 0


def test_a_request_without_credentials_on_a_non_loopback_configuration_gets_no_data(
    browser, demo, monkeypatch
):
    monkeypatch.setenv("KRPULSE_TEST_DASHBOARD_TOKEN", TOKEN)
    settings = DashboardSettings.model_validate(
        {
            "host": "0.0.0.0",  # noqa: S104 - only validated; `running` binds 127.0.0.1
            "allowed_hosts": ["okr.example.com"],
            "auth": {"token_env": "KRPULSE_TEST_DASHBOARD_TOKEN"},
        }
    )
    app = create_app(demo, AccessPolicy.from_settings(settings))
    context = browser.new_context()
    page = context.new_page()
    with running(app) as url:
        page.goto(f"{url}/kr/{CYCLE}/nps-uk")
        assert "/login" in page.url
        assert "NPS" not in page.content()
        api = context.request.get(f"{url}/api/cycles/{CYCLE}/progress")
        assert api.status == 401 and "nps" not in api.text().lower()
        page.fill("#secret", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"**/kr/{CYCLE}/nps-uk")
        assert page.locator("#kr-title").inner_text() == "NPS UK&I from 50 to 75"
    context.close()

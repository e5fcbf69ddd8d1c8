"""A team lead's check-in in a real browser (Debian's Chromium via Playwright): enter, see, edit,
and what a hostile page or a hostile note cannot do."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.server
import os
import threading
from pathlib import Path

import pytest

from dashboard.access import AccessPolicy
from dashboard.app import create_app
from dashboard.server import running
from okr_store.checkins import CheckInStore
from pipelines.cli.dashboard import dashboard_data
from tests.dashboard_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CYCLE,
    filled_demo_store,
    make_demo_project,
)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason=f"{CHROMIUM} is missing: `apt-get install chromium` to run the browser tests",
)

DEMO_NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)  # Wednesday of 2026-W48
HOSTILE_NOTE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_data):
    project = make_demo_project(tmp_path_factory.mktemp("checkin-browser"), demo_data)
    settings, engine = filled_demo_store(project)
    yield engine, dataclasses.replace(dashboard_data(settings, engine), now=lambda: DEMO_NOW)
    engine.dispose()


@pytest.fixture(scope="module")
def base_url(demo):
    with running(create_app(demo[1], AccessPolicy(open_access=True))) as url:
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
    yield page
    context.close()


def _check_in(page, confidence: str, progress: str, next_steps: str = "") -> None:
    page.check(f"input[name=confidence][value='{confidence}']")
    page.fill("#ci-progress", progress)
    page.fill("#ci-next", next_steps)
    page.click("#check-in-form button[type=submit]")
    page.wait_for_selector("#check-in-saved")


def test_a_lead_checks_in_sees_it_on_the_overview_and_the_kr_page_and_edits_it(
    page, base_url, demo
):
    page.goto(f"{base_url}/kr/{CYCLE}/win-rate-dach")
    _check_in(page, "2", "Lost two deals to price", "Review discounts with finance")
    history = page.locator("#check-in-history li").first.inner_text()
    assert "2026-W48" in history and "2 · unlikely" in history
    assert "Lost two deals to price" in history
    page.wait_for_selector("#kr-chart[data-drawn=true]")
    assert "Check-in" in page.locator("#kr-chart .u-legend").inner_text()

    page.goto(base_url + "/")
    row = page.locator("tr.kr-row", has_text="Win rate DACH")
    assert "2 · unlikely" in row.inner_text()
    assert "no check-in this week" not in row.inner_text()
    assert "no check-in this week" in page.locator("tr.kr-row", has_text="NPS UK").inner_text()

    # Later the same week: the form comes back filled in, and saving edits the one check-in.
    page.goto(f"{base_url}/kr/{CYCLE}/win-rate-dach")
    assert page.input_value("#ci-progress") == "Lost two deals to price"
    _check_in(page, "3", "Won one back after the discount review")
    assert page.locator("#check-in-history li").count() == 1
    assert "2 versions" in page.locator("#check-in-history li").first.inner_text()
    stored = CheckInStore(demo[0]).revisions(CYCLE, "win-rate-dach", dt.date(2026, 11, 23))
    assert list(stored["confidence"]) == [2, 3]
    assert page.errors == []


@contextlib.contextmanager
def hostile_site(html: str):
    """Another site (localhost, not 127.0.0.1: a different site to the browser) serving `html`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # noqa: ANN002
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_check_in_cannot_be_submitted_from_another_site(page, base_url, demo):
    # The lead has the dashboard open (its CSRF cookie is set) ...
    page.goto(f"{base_url}/kr/{CYCLE}/nps-uk")
    token = page.input_value("input[name=csrf_token]")
    target = f"{base_url}/kr/{CYCLE}/nps-uk/check-in"
    forged = f"""<form id=f method=post action="{target}">
      <input name=confidence value=5><input name=progress value=forged>
      <input name=csrf_token value="{token}"></form>
      <script>document.getElementById('f').submit()</script>"""
    # ... and then opens a hostile page that posts the form, even with a stolen token.
    with hostile_site(forged) as evil:
        with page.expect_navigation(url=target) as navigation:
            page.goto(evil)
        assert navigation.value.status == 403
    assert "did not come from this dashboard" in page.content() or "Cross-site" in page.content()
    stored = CheckInStore(demo[0]).check_ins(cycle=CYCLE, kr="nps-uk")
    assert stored.empty


def test_html_in_a_note_is_shown_as_text_and_runs_nothing(page, base_url):
    page.goto(f"{base_url}/check-in?cycle={CYCLE}&team=sales-us")
    page.select_option("#conf-1", "4")
    page.fill("textarea[name^='progress:']", HOSTILE_NOTE)
    page.fill("textarea[name^='problems:']", "</textarea><script>window.__pwned = 3</script>")
    page.click("#team-check-in button[type=submit]")
    page.wait_for_selector("#team-saved")
    # The team form shows the notes back inside its textareas, as text.
    assert page.input_value("textarea[name^='progress:']") == HOSTILE_NOTE
    kr = page.locator("input[name=kr]").first.get_attribute("value")
    page.goto(f"{base_url}/kr/{CYCLE}/{kr}")
    assert HOSTILE_NOTE in page.locator("#check-in-history").inner_text()
    assert page.locator("#check-in-history script, #check-in-history img").count() == 0
    page.goto(f"{base_url}/")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.errors == []

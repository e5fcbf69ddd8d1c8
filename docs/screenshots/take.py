"""Retakes the README's dashboard screenshots with headless Debian Chromium over the demo org.

uv run python docs/screenshots/take.py
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    from playwright.sync_api import sync_playwright

    from connectors.demo_org import DEMO_AS_OF, generate_demo_org
    from core.checkins import make_check_in
    from dashboard.access import AccessPolicy
    from dashboard.app import create_app
    from dashboard.server import running
    from okr_store.checkins import CheckInStore
    from okr_store.db import create_engine
    from okr_store.schema import upgrade
    from pipelines import flow
    from pipelines.cli.dashboard import dashboard_data
    from pipelines.demo_checkins import seed_demo_check_ins
    from pipelines.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_demo_org(root / "demo-data")
        (root / "krpulse.yaml").write_text(
            f"timezone: Europe/Berlin\ndatabase_url: sqlite:///{root / 'krpulse.db'}\n"
            f"definitions: {REPO / 'definitions'}\n"
            "sources:\n  - {name: demo, type: files, path: demo-data}\n"
            "dashboard:\n  record_urls: {demo: 'https://crm.example.com/{id}'}\n"
            "  team_names: {sales-dach: DACH, sales-uk: UK & Ireland, sales-us: North America}\n"
        )
        upgrade(create_engine(f"sqlite:///{root / 'krpulse.db'}"))
        settings = load_settings(root / "krpulse.yaml")
        engine = flow.open_database(settings)
        flow.sync_sources(settings, engine)
        cycle = flow.load_definition_set(settings).cycles_at(DEMO_AS_OF)[0]
        flow.run_days(settings, engine, flow.date_range(cycle.start, DEMO_AS_OF), validate=False)
        # The weeks before the demo's "today" checked in; this week two KRs so far.
        seed_demo_check_ins(engine, [cycle.key], DEMO_AS_OF - dt.timedelta(days=7))
        for kr, confidence, note in (
            ("win-rate-dach", 4, "Closed the Kiel and Graz renewals."),
            ("nps-uk", 2, "Three detractors from one account."),
        ):
            CheckInStore(engine).record(
                make_check_in(
                    cycle=cycle.key,
                    kr=kr,
                    day=DEMO_AS_OF,
                    today=DEMO_AS_OF,
                    confidence=confidence,
                    progress=note,
                    author="Olivia Hughes",
                ),
                on_day=DEMO_AS_OF,
            )
        # The demo's "today" (a Wednesday): this week's check-ins are partly done.
        data = dataclasses.replace(
            dashboard_data(settings, engine),
            now=lambda: dt.datetime.combine(DEMO_AS_OF, dt.time(17), dt.UTC),
        )
        app = create_app(data, AccessPolicy(open_access=True))
        out = Path(__file__).parent
        with running(app) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/")
            page.screenshot(path=out / "overview.png", full_page=True)
            page.goto(f"{base}/kr/{cycle.key}/nps-uk")
            page.wait_for_selector("#kr-chart[data-drawn=true] canvas")
            page.set_viewport_size({"width": 1280, "height": 1100})
            page.screenshot(path=out / "kr.png")
            page.locator("#check-ins").screenshot(path=out / "check-in.png")
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(f"{base}/check-in?cycle={cycle.key}&team=sales-uk")
            page.screenshot(path=out / "team-check-in.png", full_page=True)
            page.goto(f"{base}/alignment?cycle={cycle.key}")
            page.screenshot(path=out / "alignment.png", full_page=True)
            browser.close()
        print(f"wrote overview, kr, check-in, team-check-in and alignment screenshots to {out}")


if __name__ == "__main__":
    main()

"""Helpers of the dashboard tests: a store filled by the demo's daily flow, an app over it."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import sqlalchemy as sa

from connectors.demo_org import DEMO_AS_OF
from okr_store.db import create_engine
from pipelines import flow
from pipelines.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
CYCLE = "2026-Q4"
CHROMIUM = "/usr/bin/chromium"
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


def make_demo_project(folder: Path, demo_data: Path) -> Path:
    """What the `demo_project` fixture builds, for module-scoped fixtures (one store per module)."""
    from okr_store.schema import upgrade

    shutil.copytree(REPO / "definitions", folder / "definitions")
    shutil.copytree(demo_data, folder / "demo-data")
    (folder / "krpulse.yaml").write_text(
        "timezone: Europe/Berlin\nreporting_currency: EUR\n"
        f"database_url: sqlite:///{folder / 'krpulse.db'}\ndefinitions: definitions/\n"
        "sources:\n  - {name: demo, type: files, path: demo-data}\n"
    )
    engine = create_engine(f"sqlite:///{folder / 'krpulse.db'}")
    upgrade(engine)
    engine.dispose()
    return folder


def filled_demo_store(project: Path, extra_config: str = "") -> tuple[Settings, sa.Engine]:
    """The demo project's store after the daily flow ran every day of 2026-Q4 up to the demo day."""
    config = project / "krpulse.yaml"
    if extra_config:
        config.write_text(config.read_text() + extra_config)
    settings = load_settings(config)
    engine = flow.open_database(settings)
    flow.sync_sources(settings, engine)
    # The validation gate is tested elsewhere; here it would only add seconds.
    flow.run_days(
        settings, engine, flow.date_range(dt.date(2026, 10, 1), DEMO_AS_OF), validate=False
    )
    return settings, engine

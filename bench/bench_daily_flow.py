"""Times the daily flow on the demo org: sync, one day, and the whole cycle so far."""

from __future__ import annotations

import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

from connectors.demo_org import DEMO_AS_OF, generate_demo_org
from pipelines import flow
from pipelines.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


def timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {label} | {seconds:.2f} s | {peak:.0f} MiB |")
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "krpulse.yaml").write_text(
            f"timezone: Europe/Berlin\ndatabase_url: sqlite:///{root / 'db.sqlite'}\n"
            f"definitions: {REPO / 'definitions'}\n"
            "sources:\n  - {name: demo, type: files, path: demo-data}\n"
        )
        settings = load_settings(root / "krpulse.yaml")
        print("| step | wall time | process peak RSS so far |\n|---|---|---|")
        timed("generate demo org", lambda: generate_demo_org(root / "demo-data"))
        engine = flow.open_database(settings, migrate=True)  # a fresh database: migrate it
        timed("sync (first, full)", lambda: flow.sync_sources(settings, engine))
        timed("sync (again, nothing changed)", lambda: flow.sync_sources(settings, engine))
        definitions = flow.load_definition_set(settings)
        data = timed("load + prepare staged data", lambda: flow.load_prepared(settings, engine))
        data = flow.staged_data(settings, engine, data)  # SQLite: DuckDB over these frames
        timed(
            "compute one day (8 KRs, 3 KPIs)",
            lambda: flow.compute_day(settings, definitions, data, DEMO_AS_OF),
        )
        flow.validate_values(
            flow.compute_day(settings, definitions, data, DEMO_AS_OF)[0]
        )  # warm GE
        timed(
            "validate one day (GE, warm)",
            lambda: flow.validate_values(
                flow.compute_day(settings, definitions, data, DEMO_AS_OF)[0]
            ),
        )
        days = flow.date_range(dt.date(2026, 10, 1), DEMO_AS_OF)
        timed(
            f"run {len(days)} days (compute + GE + push)",
            lambda: flow.run_days(settings, engine, days, definitions=definitions),
        )


if __name__ == "__main__":
    main()

"""Dashboard latency under load: 200 KRs with a year of daily history, a separate load generator.

    uv run python bench/bench_dashboard.py            # generate, serve, load, print the table

Builds a project in a temporary folder (the demo org staged in SQLite, a one-year cycle with
200 KRs, every day of it computed by the engine's history mode and written to the store),
starts `krpulse serve`'s app in a server process on 127.0.0.1, and runs bench/loadgen.py in a
third process against a static file of the same app (the floor), the overview and KR pages, and
prints each page's p95 as a multiple of the static file's. Request count and time are bounded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CYCLE_START, CYCLE_END = dt.date(2025, 11, 26), dt.date(2026, 11, 25)  # 365 days
KR_COUNT = 200
# (concurrent clients, requests per page kind): one team lead alone, then a busy Monday.
LOADS = [(1, 100), (8, 400)]
TIME_LIMIT_SECONDS = 120


def write_definitions(folder: Path) -> None:
    """A one-year cycle: 50 objectives × 4 KRs over teams, regions and segments."""
    metrics = [
        ("nps", 40, 60),
        ("win_rate", 0.28, 0.35),
        ("revenue_per_existing_customer", 60000, 72000),
        ("average_deal_size", 15000, 18000),
    ]
    filters = (
        [{"team": t} for t in ("sales-dach", "sales-uk", "sales-us")]
        + [{"region": r} for r in ("DACH", "UK&I", "North America")]
        + [{"segment": s} for s in ("SMB", "Mid-Market", "Enterprise")]
        + [{}]
    )
    lines = [
        f"cycle: {{key: bench-year, start: {CYCLE_START}, end: {CYCLE_END}, "
        "timezone: Europe/Berlin}",
        "objectives:",
    ]
    kr_number = itertools.count(1)
    for objective in range(KR_COUNT // 4):
        where = filters[objective % len(filters)]
        team = where.get("team", "sales-dach")
        lines += [
            f"  - key: objective-{objective:02d}",
            f"    title: Objective {objective}",
            "    level: team",
            f"    team: {team}",
            f"    ambition: {'moonshot' if objective % 3 == 0 else 'roofshot'}",
            "    key_results:",
        ]
        for metric, baseline, target in metrics:
            n = next(kr_number)
            lines += [
                f"      - key: kr-{n:03d}",
                f"        title: KR {n} {metric}",
                f"        metric: {metric}",
                f"        where: {json.dumps(where)}",
                f"        baseline: {baseline}",
                f"        target: {target}",
            ]
    (folder / "definitions").mkdir()
    (folder / "definitions" / "bench-year.yaml").write_text("\n".join(lines) + "\n")


def generate(folder: Path) -> dict:
    from connectors.demo_org import generate_demo_org
    from kr_metrics.scoring import score_key_results
    from kr_metrics.sql.engine import DuckDBStaged, evaluate_history
    from okr_store.db import create_engine
    from okr_store.repository import OkrStore
    from okr_store.schema import upgrade
    from pipelines import flow
    from pipelines.settings import load_settings

    generate_demo_org(folder / "demo-data")
    write_definitions(folder)
    (folder / "krpulse.yaml").write_text(
        f"timezone: Europe/Berlin\ndatabase_url: sqlite:///{folder / 'krpulse.db'}\n"
        "definitions: definitions/\nsources:\n  - {name: demo, type: files, path: demo-data}\n"
        "dashboard:\n  record_urls: {demo: 'https://crm.example.com/{id}'}\n"
    )
    engine = create_engine(f"sqlite:///{folder / 'krpulse.db'}")
    upgrade(engine)
    settings = load_settings(folder / "krpulse.yaml")
    flow.sync_sources(settings, engine)
    definitions = flow.load_definition_set(settings)
    data = flow.load_prepared(settings, engine)
    started = time.perf_counter()
    # The production engine: compiled SQL on embedded DuckDB over the staged frames.
    values = evaluate_history(definitions, DuckDBStaged.from_prepared(data), CYCLE_START, CYCLE_END)
    krs = values[values["kind"] == "kr"]
    scored = score_key_results(krs, settings.scoring.policy()).rename(columns={"key": "kr"})
    kpis = values[values["kind"] == "kpi"].iloc[0:0]
    store = OkrStore(engine)
    synced = flow.data_freshness(settings, engine)
    for as_of, day in scored.groupby("window_end"):
        flow.push_day(
            store, as_of, day.reset_index(drop=True), kpis, run_id="bench", data_synced_at=synced
        )
    # The KR pages as the daily flow stores them after a run (pipelines/flow.write_kr_pages):
    # each KR's chart basis and the records behind its number on the last day.
    from kr_metrics import pages

    charts = pages.chart_rows(definitions, settings.scoring.policy(), {"bench-year"})
    drilldowns = pages.drilldown_rows(
        definitions,
        [(loaded, kr, CYCLE_END) for loaded, kr in definitions.key_results()],
        flow.staged_for(data),
    )
    store.write_kr_pages({"bench-year"}, charts, drilldowns, run_id="bench")
    rows = store.count_progress_rows()
    # A year of weekly check-ins, so the overview reads them as it does in production.
    from pipelines.demo_checkins import seed_demo_check_ins

    check_ins = seed_demo_check_ins(engine, ["bench-year"], CYCLE_END)
    return {"rows": rows, "check_ins": check_ins, "seconds": time.perf_counter() - started}


def serve(folder: Path, port: int) -> None:
    import uvicorn

    from dashboard.access import AccessPolicy
    from dashboard.app import create_app
    from pipelines import flow
    from pipelines.cli.dashboard import dashboard_data
    from pipelines.settings import load_settings

    settings = load_settings(folder / "krpulse.yaml")
    # As `krpulse serve` does: a store change builds the cycle's KR pages in the background.
    data = dataclasses.replace(
        dashboard_data(settings, flow.open_database(settings)), warm_kr_pages=True
    )
    app = create_app(data, AccessPolicy(open_access=True))
    mark_when_warm(folder / WARM_MARKER)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


WARM_MARKER = "kr-pages-warm"


def mark_when_warm(marker: Path) -> None:
    """Write `marker` (the pages built) when the background warming of KR pages, started by the
    first KR page viewed, has finished: the load then measures a warm server, as `krpulse serve`
    is a while after a run, not one still building pages on the same cores."""
    from dashboard import week

    warm = week.warm_kr_pages

    def warm_and_mark(*args):  # noqa: ANN002, ANN202 - passes warm_kr_pages' arguments on
        built = 0
        try:
            built = warm(*args)
            return built
        finally:
            marker.write_text(str(built))

    # cached_kr_page starts its thread with the module's warm_kr_pages, looked up at the call.
    week.warm_kr_pages = warm_and_mark


def wait_for_warm_kr_pages(folder: Path, timeout: float = 600.0) -> tuple[float, int]:
    """Seconds waited for the server's background warming of KR pages, and the pages it built."""
    started = time.perf_counter()
    while not (folder / WARM_MARKER).exists():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"the KR pages were not warm after {timeout:.0f} s")
        time.sleep(0.2)
    time.sleep(0.1)  # the marker is written in one call; let it land
    return time.perf_counter() - started, int((folder / WARM_MARKER).read_text() or 0)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        made = generate(folder)
        print(
            f"store: {made['rows']:,} KR progress rows ({KR_COUNT} KRs × 365 days) and "
            f"{made['check_ins']:,} check-ins, written in {made['seconds']:.1f} s",
            flush=True,
        )
        port = 18000 + os.getpid() % 1000
        server = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, __file__, "serve", str(folder), str(port)]
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    requests.get(base + "/healthz", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.2)
            # The first KR page viewed builds itself and starts building the cycle's others in
            # the background (as `krpulse serve` does after a run); wait for that, as a
            # long-running server has long finished it.
            requests.get(base + "/kr/bench-year/kr-001", timeout=60)
            waited, built = wait_for_warm_kr_pages(folder)
            print(f"{built} KR pages built in the background; waited {waited:.1f} s", flush=True)
            for concurrency, requests_per_page in LOADS:
                result = subprocess.run(  # noqa: S603 - our own interpreter and script
                    [
                        sys.executable,
                        str(REPO / "bench" / "loadgen.py"),
                        base,
                        "--concurrency",
                        str(concurrency),
                        "--requests",
                        str(requests_per_page),
                        "--time-limit",
                        str(TIME_LIMIT_SECONDS),
                        "--krs",
                        str(KR_COUNT),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                lines = result.stdout.splitlines()
                print("\n".join(lines if concurrency == LOADS[0][0] else lines[2:]), flush=True)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        main()

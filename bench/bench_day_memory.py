"""Peak memory of the day run at a given number of deals, on PostgreSQL as in production.

    python bench/bench_day_memory.py setup FOLDER COPIES   # demo org x COPIES, migrated + synced
    /usr/bin/time -v krpulse --config FOLDER/krpulse.yaml run --as-of 2026-11-25   # the CLI's day
    /usr/bin/time -v python bench/bench_day_memory.py dagster FOLDER   # the Dagster day run

`setup` needs KRPULSE_DATABASE_URL (a PostgreSQL database or schema of its own); 333 copies of the
demo org are about one million deals. Each measured command is a process of its own, as a run pod
is: its "Maximum resident set size" is the figure docs/deploy.md sizes pods by.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bench_orchestration import scale_org

from connectors.demo_org import DEMO_AS_OF, generate_demo_org
from pipelines import flow
from pipelines.settings import DATABASE_URL_ENV, load_settings

REPO = Path(__file__).resolve().parents[1]


def setup(folder: Path, copies: int) -> None:
    url = os.environ[DATABASE_URL_ENV]
    generate_demo_org(folder / "demo-data")
    counts = scale_org(folder / "demo-data", copies)
    print(", ".join(f"{n:,} {t}" for t, n in counts.items()), flush=True)
    (folder / "krpulse.yaml").write_text(
        f"timezone: Europe/Berlin\ndatabase_url: {url}\n"
        f"definitions: {REPO / 'definitions'}\n"
        "sources:\n  - {name: demo, type: files, path: demo-data}\n"
    )
    settings = load_settings(folder / "krpulse.yaml")
    engine = flow.open_database(settings, migrate=True)
    start = time.perf_counter()
    flow.sync_sources(settings, engine)
    print(f"first sync: {time.perf_counter() - start:.0f} s", flush=True)


def dagster_day(folder: Path) -> None:
    """The daily job for one day, as a run pod executes it (in one process here)."""
    import dagster as dg

    from pipelines.definitions import build_definitions
    from pipelines.names import DAILY_JOB

    defs = build_definitions(str(folder / "krpulse.yaml"))
    job = defs.resolve_job_def(DAILY_JOB)
    start = time.perf_counter()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=DEMO_AS_OF.isoformat()
    )
    assert result.success
    print(f"dagster day run: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        dagster_day(Path(sys.argv[2]))

"""Peak memory of the day run at a given number of deals, on PostgreSQL as in production.

    python bench/bench_day_memory.py setup FOLDER COPIES   # demo org x COPIES, migrated + synced
    /usr/bin/time -v krpulse --config FOLDER/krpulse.yaml run --as-of 2026-11-25   # the CLI's day
    /usr/bin/time -v python bench/bench_day_memory.py dagster FOLDER   # the Dagster day run
    /usr/bin/time -v python bench/bench_day_memory.py day FOLDER duckdb|database    # run_days
    /usr/bin/time -v python bench/bench_day_memory.py compute FOLDER duckdb|database  # numbers only

`day` and `compute` choose where the compiled engine runs (`engine.compute` in krpulse.yaml):
`duckdb` reads the staged rows into the process (`flow.load_prepared`) and computes in embedded
DuckDB, `database` runs the compiled statements on the PostgreSQL staging tables. `compute` is
the numbers alone (`flow.compute_days` of one day, nothing written); `day` is the whole day run
(`flow.run_days`: gate, store, KR pages with their drill-downs).

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


def computed_in(folder: Path, compute: str):
    from pipelines.settings import EngineSettings

    settings = load_settings(folder / "krpulse.yaml")
    return settings.model_copy(update={"engine": EngineSettings(compute=compute)})


def run_day(folder: Path, compute: str) -> None:
    """`flow.run_days` for the one day, the engine where `compute` says."""
    settings = computed_in(folder, compute)
    engine = flow.open_database(settings)
    start = time.perf_counter()
    flow.run_days(settings, engine, [DEMO_AS_OF], publish=False)
    print(f"run_days ({compute}): {time.perf_counter() - start:.1f} s", flush=True)


def compute_day(folder: Path, compute: str) -> None:
    """The day's numbers alone: the staged rows where `compute` says, one compute_days."""
    settings = computed_in(folder, compute)
    engine = flow.open_database(settings)
    definitions = flow.load_definition_set(settings)
    start = time.perf_counter()
    staged = flow.staged_data(settings, engine)
    progress = flow.compute_days(settings, definitions, staged, [DEMO_AS_OF])[DEMO_AS_OF][1]
    took = time.perf_counter() - start
    print(f"compute_days ({compute}, {type(staged).__name__}): {took:.1f} s", flush=True)
    print(progress[["kr", "value"]].to_string(index=False), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(Path(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "day":
        run_day(Path(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "compute":
        compute_day(Path(sys.argv[2]), sys.argv[3])
    else:
        dagster_day(Path(sys.argv[2]))

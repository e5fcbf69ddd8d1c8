"""Times the Dagster daily job (sync run + the day's run) and a 90-day single-run backfill on the
demo org and on a generated 100,000-deal org."""

from __future__ import annotations

import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from connectors.demo_org import DEMO_AS_OF, generate_demo_org
from okr_store.db import create_engine
from okr_store.schema import upgrade
from pipelines.definitions import build_definitions
from pipelines.names import DAILY_JOB, SYNC_JOB
from pipelines.schedules import DAY_TAG

REPO = Path(__file__).resolve().parents[1]
ID_COLUMNS = {
    "deals.csv": ["deal_id", "customer_id"],
    "customers.csv": ["customer_id"],
    "nps_responses.csv": ["response_id", "customer_id"],
}


def scale_org(folder: Path, copies: int) -> dict[str, int]:
    """`copies` disjoint copies of the demo org in one folder: the same shape, N times the rows
    (ids suffixed per copy, so every copy's customers, deals and answers are distinct)."""
    counts = {}
    for name, columns in ID_COLUMNS.items():
        frame = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
        scaled = pd.concat(
            [
                frame.assign(
                    **{c: frame[c].where(frame[c] == "", frame[c] + f"-{i}") for c in columns}
                )
                for i in range(copies)
            ],
            ignore_index=True,
        )
        scaled.to_csv(folder / name, index=False, lineterminator="\n")
        counts[name] = len(scaled)
    return counts


def timed(label: str, fn) -> dg.ExecuteInProcessResult:
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert result.success, f"{label} failed"
    print(f"| {label} | {seconds:.1f} s | {peak:.0f} MiB |", flush=True)
    return result


def bench(org: str, copies: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_demo_org(root / "demo-data")
        counts = scale_org(root / "demo-data", copies) if copies > 1 else {}
        (root / "krpulse.yaml").write_text(
            f"timezone: Europe/Berlin\ndatabase_url: sqlite:///{root / 'db.sqlite'}\n"
            f"definitions: {REPO / 'definitions'}\n"
            "sources:\n  - {name: demo, type: files, path: demo-data}\n"
        )
        engine = create_engine(f"sqlite:///{root / 'db.sqlite'}")
        upgrade(engine)
        engine.dispose()
        defs = build_definitions(str(root / "krpulse.yaml"))
        instance = dg.DagsterInstance.ephemeral()
        sync_job, daily_job = defs.resolve_job_def(SYNC_JOB), defs.resolve_job_def(DAILY_JOB)
        day = DEMO_AS_OF.isoformat()
        if counts:
            print(f"\n{org}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
        timed(
            f"{org}: sync run (first, full)",
            lambda: sync_job.execute_in_process(instance=instance, tags={DAY_TAG: day}),
        )
        timed(
            f"{org}: daily job = sync run + day run",
            lambda: (
                sync_job.execute_in_process(instance=instance, tags={DAY_TAG: day})
                and daily_job.execute_in_process(instance=instance, partition_key=day)
            ),
        )
        start = DEMO_AS_OF - dt.timedelta(days=89)
        timed(
            f"{org}: 90-day backfill {start}..{day} (one run)",
            lambda: daily_job.execute_in_process(
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": start.isoformat(),
                    "dagster/asset_partition_range_end": day,
                },
            ),
        )


def main() -> None:
    print("| run | wall time | process peak RSS so far |\n|---|---|---|")
    bench("demo org", 1)
    bench("100k-deal org", int(sys.argv[1]) if len(sys.argv) > 1 else 34)


if __name__ == "__main__":
    main()

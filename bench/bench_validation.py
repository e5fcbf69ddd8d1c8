"""Validation gate benchmark: the data suites on 1 % of one million deals vs the full table, next
to the engine's time for the same as-of day (bench_engine.py's data and definitions).

    uv run python bench/bench_validation.py       # generate data once, run every mode, print table

Each mode runs in its own process. Importing Great Expectations and building its context is
timed once, apart (`ge_import`); every mode first validates a tiny frame so the figures are the
suites themselves. Reading the rows from staging is not timed (the engine mode likewise excludes
loading its frames).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_engine  # noqa: E402 - the same 1M-deal data and the same 100 KRs / 20 KPIs

CHANGED_SHARE = 0.01
# A sync time after every generated close date, so the plausibility rules judge real data.
SYNCED_AT = pd.Timestamp("2027-06-01 06:00", tz="UTC")


def _deals() -> pd.DataFrame:
    deals = pd.read_parquet(bench_engine.DATA / "deals.parquet")
    deals["close_date"] = deals["close_date"].astype("datetime64[ns]")
    return deals


def run_mode(mode: str) -> dict:
    from validation.data import validate_staged_rows, validate_sync_volume
    from validation.numbers import validate_metric_values
    from validation.thresholds import DataThresholds

    started = time.perf_counter()
    validate_staged_rows("deals", _deals().head(10), now=SYNCED_AT)  # GE import + context
    ge_import = time.perf_counter() - started

    if mode == "engine-day":
        return bench_engine.run_mode("engine-day") | {"ge_import_seconds": round(ge_import, 2)}

    deals = _deals()
    customers = pd.read_parquet(bench_engine.DATA / "customers.parquet")["customer_id"]
    if mode == "changed-1pct":
        rows = deals.sample(frac=CHANGED_SHARE, random_state=7).reset_index(drop=True)
    else:
        rows = deals
    history = pd.DataFrame({"changed": [len(rows)] * 14, "deleted": [0] * 14})
    sync = {
        "fetched": len(rows),
        "changed": len(rows),
        "deleted": 0,
        "quarantined": 0,
        "staged_before": len(deals),
    }
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    start = time.perf_counter()
    report = validate_staged_rows(
        "deals",
        rows,
        now=SYNCED_AT,
        known_currencies={"EUR"},
        customer_ids=customers,
        thresholds=DataThresholds(),
    )
    volume = validate_sync_volume(sync, history)
    data_seconds = time.perf_counter() - start

    # The number suites on the same day's values: 100 KRs and 20 KPIs, against the day before.
    rng = np.random.default_rng(1)
    keys = [k["key"] for k in bench_engine.key_results()] + [k["key"] for k in bench_engine.kpis()]
    metrics = [k["metric"] for k in bench_engine.key_results()] + [
        k["metric"] for k in bench_engine.kpis()
    ]
    values = pd.DataFrame({"key": keys, "metric": metrics, "value": rng.random(len(keys))})
    from kr_metrics.metrics import METRICS

    start = time.perf_counter()
    numbers = validate_metric_values(
        values,
        {n: s.valid_range for n, s in METRICS.items()},
        nullable_metrics=[n for n, s in METRICS.items() if s.nullable],
        previous=values.assign(value=values["value"] * 1.01),
    )
    number_seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "rows": len(rows),
        "seconds": round(data_seconds, 2),
        "numbers_seconds": round(number_seconds, 2),
        "failures": len(report.failures) + len(volume.failures) + len(numbers.failures),
        "ge_import_seconds": round(ge_import, 2),
        "rss_loaded_mib": round(rss_loaded),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(run_mode(sys.argv[1])))
        return
    if not (bench_engine.DATA / "deals.parquet").exists():
        print("generating 1M deals, 200k customers, 100k responses ...", file=sys.stderr)
        bench_engine.generate()
    results = {}
    for mode in ("changed-1pct", "full-table", "engine-day"):
        print(f"running {mode} ...", file=sys.stderr)
        out = subprocess.run(  # noqa: S603 - fixed argv: this script, our own interpreter
            [sys.executable, __file__, mode], capture_output=True, text=True, check=True
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    small, full, engine = results["changed-1pct"], results["full-table"], results["engine-day"]
    print(
        "| as-of day with … | rows validated | data suites | number suites | peak RSS (after loading) |"
    )
    print("|---|---|---|---|---|")
    for label, r in (("1 % of the deals changed", small), ("the full deals table", full)):
        print(
            f"| {label} | {r['rows']:,} | {r['seconds']} s | {r['numbers_seconds']} s | "
            f"{r['peak_rss_mib']} MiB ({r['rss_loaded_mib']} MiB) |"
        )
    print(
        f"| engine, same day (100 KRs + 20 KPIs) | 1,000,000 | {engine['seconds']} s "
        f"(of which prepare {engine['setup_seconds']} s) | — | {engine['peak_rss_mib']} MiB |"
    )
    print(
        f"\nGE import + context (once per process): {small['ge_import_seconds']} s", file=sys.stderr
    )
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    main()

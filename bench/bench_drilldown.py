"""Times the KR pages' drill-downs as the daily flow stores them (pages.drilldown_rows: every
KR's records, up to 1,000 each, with the count) over the engine benchmark's million deals and
100 KRs, against the pandas explanation (the test oracle) on the first `--pandas` KRs.

Reads the engine benchmark's data (`bench/bench_engine.py` writes it to bench/.data/engine
on its first run).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
import bench_engine as be  # noqa: E402

from kr_metrics import pages  # noqa: E402
from kr_metrics.sql.engine import DuckDBStaged  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pandas", type=int, default=10, help="KRs to explain with pandas")
    args = parser.parse_args()
    deals = pd.read_parquet(be.DATA / "deals.parquet")
    customers = pd.read_parquet(be.DATA / "customers.parquet")
    responses = pd.read_parquet(be.DATA / "nps_responses.parquet")
    deals["close_date"] = deals["close_date"].astype("datetime64[ns]")
    definitions = be.definition_set()
    requests = [(loaded, kr, be.AS_OF) for loaded, kr in definitions.key_results()]
    staged = DuckDBStaged(deals, customers, responses, timezone="Europe/Berlin")
    start = time.perf_counter()
    rows = pages.drilldown_rows(definitions, requests, staged)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stored = sum(len(r["records"]) for r in rows)
    counted = sum(r["total"] for r in rows)
    print("| path | KRs | wall time | peak RSS | records stored / counted |\n|---|---|---|---|---|")
    print(
        f"| compiled | {len(rows)} | {seconds:.1f} s | {peak:.0f} MiB | {stored:,} / {counted:,} |"
    )
    if args.pandas:
        from kr_metrics.engine import explain_key_result, prepare

        data = prepare(deals, customers, responses, timezone="Europe/Berlin")
        start = time.perf_counter()
        for loaded, kr, as_of in requests[: args.pandas]:
            explain_key_result(definitions, loaded, kr, data, as_of)
        seconds = time.perf_counter() - start
        per_all = seconds / args.pandas * len(requests)
        print(
            f"| pandas (oracle) | {args.pandas} | {seconds:.1f} s (≈{per_all:.0f} s for all) | | |"
        )


if __name__ == "__main__":
    main()

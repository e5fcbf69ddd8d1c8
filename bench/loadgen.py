"""Load generator for the dashboard: concurrent GETs on loopback, bounded; prints p50/p95 per page.

    python bench/loadgen.py http://127.0.0.1:8000 --concurrency 8 --requests 400 --time-limit 120

Only the standard library: it runs as its own process, so it neither shares the server's CPU
time slices in-process nor its Python interpreter lock.
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import threading
import time
from urllib.parse import urlsplit


def run(
    base: str, paths: list[str], concurrency: int, time_limit: float
) -> tuple[list[float], int]:
    """Fetch every path once with `concurrency` workers; latencies (s) of the 200s, error count."""
    parts = urlsplit(base)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load generator only targets loopback")
    queue = list(reversed(paths))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                if not queue:
                    break
                path = queue.pop()
            started = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400, help="per page kind")
    parser.add_argument("--time-limit", type=float, default=120, help="seconds per page kind")
    parser.add_argument("--krs", type=int, default=200)
    parser.add_argument("--cycle", default="bench-year")
    args = parser.parse_args()
    rng = random.Random(7)  # noqa: S311 - picks pages to load, not secrets
    # A static file served by the same app and server: the floor every page is measured against.
    pages = {
        "static file": ["/static/app.css"] * args.requests,
        "overview": [f"/?cycle={args.cycle}"] * args.requests,
        "KR page": [
            f"/kr/{args.cycle}/kr-{rng.randint(1, args.krs):03d}" for _ in range(args.requests)
        ],
    }
    print(
        "| page | requests | concurrency | p50 | p95 | max | throughput | errors | p95 ÷ static |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    static_p95 = None
    for name, paths in pages.items():
        started = time.perf_counter()
        latencies, errors = run(args.base, paths, args.concurrency, args.time_limit)
        wall = time.perf_counter() - started
        q = statistics.quantiles(latencies, n=100)
        static_p95 = static_p95 or q[94]
        print(
            f"| {name} | {len(latencies)} | {args.concurrency} | {q[49] * 1000:.1f} ms | "
            f"{q[94] * 1000:.1f} ms | {max(latencies) * 1000:.0f} ms | "
            f"{len(latencies) / wall:.1f} req/s | {errors} | {q[94] / static_p95:.1f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()

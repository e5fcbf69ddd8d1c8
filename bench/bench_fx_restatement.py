"""Restating Salesforce dated rates to the reporting currency: 10 currencies x 5 years of daily
DatedConversionRate periods (the home currency dated too), time and memory of rates_to_home."""

from __future__ import annotations

import datetime as dt
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from connectors.salesforce import rates_to_home  # noqa: E402

CURRENCIES = ["EUR", "GBP", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CAD", "AUD", "USD"]
YEARS = 5


def dated_rates(currencies: list[str], years: int) -> pd.DataFrame:
    """Daily periods per currency; the first opens on 0001-01-01, the last ends on 9999-12-31,
    as advanced currency management keeps them."""
    days = pd.date_range(dt.date(2022, 1, 1), periods=365 * years, freq="D")
    rng = np.random.default_rng(7)
    frames = []
    for iso in currencies:
        starts = days.strftime("%Y-%m-%d").to_numpy().astype(object)
        ends = np.append(starts[1:], "9999-12-31")
        starts[0] = "0001-01-01"
        frames.append(
            pd.DataFrame(
                {
                    "IsoCode": iso,
                    "ConversionRate": 1.0 + rng.random(len(days)),
                    "StartDate": starts,
                    "NextStartDate": ends,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    rates = dated_rates(CURRENCIES, YEARS)
    rates_to_home(rates.head(100), "EUR", "USD")  # warm imports and caches
    timings = []
    for _ in range(3):  # wall time without tracemalloc, which slows allocation-heavy code ~5x
        started = time.perf_counter()
        fx = rates_to_home(rates, "EUR", "USD")
        timings.append(time.perf_counter() - started)
    seconds = min(timings)
    tracemalloc.start()
    rates_to_home(rates, "EUR", "USD")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    others = len(CURRENCIES) - 1
    print(
        f"input: {len(rates):,} DatedConversionRate periods ({len(CURRENCIES)} currencies, home EUR dated too)"
    )
    print(f"output: {len(fx):,} fx_rates rows for {others} currencies")
    print(
        f"rates_to_home: {seconds:.3f} s (best of 3, worst {max(timings):.3f} s), peak traced allocations {peak / 2**20:.1f} MiB, process peak RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()

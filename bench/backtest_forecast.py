"""Back-test the forecast on the demo org's closed cycles (2026-Q1..Q3); prints a Markdown table.

The values come from the production engine (compiled SQL on embedded DuckDB over the staged
frames), in one history-mode run over the three quarters."""

from __future__ import annotations

import tempfile
from pathlib import Path

from connectors.demo_org import generate_demo_org
from connectors.files import FilesSource
from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.definitions import Cycle
from kr_metrics.forecast import backtest
from kr_metrics.loader import load_definitions
from kr_metrics.sql.engine import DuckDBStaged
from okr_store.db import create_engine
from okr_store.schema import upgrade
from okr_store.staging import read_staged, stage

REPO = Path(__file__).resolve().parents[1]


def demo_staged() -> DuckDBStaged:
    folder = Path(tempfile.mkdtemp())
    generate_demo_org(folder / "data")
    engine = create_engine(f"sqlite:///{folder / 'k.db'}")
    upgrade(engine)
    stage(FilesSource("demo", folder / "data"), engine, home_currency="EUR")
    frames = {t: read_staged(engine, t) for t in (DEALS, CUSTOMERS, NPS_RESPONSES)}
    return DuckDBStaged(
        frames[DEALS], frames[CUSTOMERS], frames[NPS_RESPONSES], timezone="Europe/Berlin"
    )


def main() -> None:
    definitions = load_definitions(REPO / "definitions" / "2026-Q4.yaml")
    cycles = [Cycle(key=key, timezone="Europe/Berlin") for key in ("2026-Q1", "2026-Q2", "2026-Q3")]
    result = backtest(definitions, demo_staged(), cycles)
    table = result.groupby(["metric", "day"]).agg(
        forecasts=("abs_pct_error", "size"),
        forecast_mape=("abs_pct_error", "mean"),
        value_so_far_mape=("naive_abs_pct_error", "mean"),
    )
    print(
        "| metric | forecast made on day | forecasts | mean abs. % error of the forecast | "
        "… of today's value as the end value |\n|---|---|---|---|---|"
    )
    for (metric, day), row in table.iterrows():
        print(
            f"| {metric} | {day} | {int(row.forecasts)} | {row.forecast_mape:.1%} | {row.value_so_far_mape:.1%} |"
        )
    overall = result.groupby("day")["abs_pct_error"].mean()
    print(
        "\nOverall mean absolute % error by day: "
        + ", ".join(f"day {d}: {e:.1%}" for d, e in overall.items())
    )


if __name__ == "__main__":
    main()

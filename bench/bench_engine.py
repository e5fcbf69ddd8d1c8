"""Engine benchmark: 100 KRs + 20 KPIs over 1M deals, against the same metrics as plain DuckDB SQL.

    uv run python bench/bench_engine.py            # generate data once, run every mode, print table

Each mode runs in its own process so its peak RSS is its own; data generation and loading are
not timed (`rss_loaded` is the RSS after loading the frames, before computing).
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).parent / ".data" / "engine"
N_DEALS, N_CUSTOMERS, N_RESPONSES = 1_000_000, 200_000, 100_000
TEAMS = [f"team-{i}" for i in range(10)]
REGIONS = ["DACH", "UK&I", "Nordics", "France", "North America"]
SEGMENTS = ["SMB", "Mid-Market", "Enterprise"]
CYCLE_START, CYCLE_END = dt.date(2026, 10, 1), dt.date(2026, 12, 31)
AS_OF = dt.date(2026, 12, 29)
HISTORY_DAYS = 90
KR_METRICS = ["win_rate", "nps", "revenue_per_existing_customer", "won_revenue"]


def generate() -> None:
    """Synthetic canonical frames, vectorised, seeded: the same files every time."""
    rng = np.random.default_rng(42)
    DATA.mkdir(parents=True, exist_ok=True)
    customer_ids = np.array([f"C{i:06d}" for i in range(N_CUSTOMERS)], dtype=object)
    customer_team = rng.integers(0, len(TEAMS), N_CUSTOMERS)
    customers = pd.DataFrame({
        "source": "bench", "customer_id": customer_ids, "name": customer_ids,
        "segment": np.array(SEGMENTS)[rng.integers(0, 3, N_CUSTOMERS)],
        "region": np.array(REGIONS)[customer_team % len(REGIONS)], "industry": "Software",
        "owner_id": "O1", "team": np.array(TEAMS)[customer_team],
        "created_at": pd.Timestamp("2024-01-01", tz="UTC"), "last_modified_at": pd.Timestamp("2026-12-01", tz="UTC"),
        "is_deleted": False,
    })  # fmt: skip
    owner = rng.integers(0, N_CUSTOMERS, N_DEALS)
    created = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 720 * 24, N_DEALS), unit="h"
    )
    closed = rng.random(N_DEALS) < 0.8
    close = created.tz_localize(None).normalize() + pd.to_timedelta(
        rng.integers(5, 120, N_DEALS), unit="D"
    )
    close = close.where(closed, pd.NaT)
    won = closed & (rng.random(N_DEALS) < 0.3)
    amount = rng.gamma(2.0, 5000.0, N_DEALS).round(2)
    deals = pd.DataFrame({
        "source": "bench", "deal_id": np.array([f"D{i:07d}" for i in range(N_DEALS)], dtype=object),
        "customer_id": customer_ids[owner], "name": "deal", "owner_id": "O1",
        "team": np.array(TEAMS)[customer_team[owner]], "pipeline": "default", "stage": "x",
        "is_closed": closed, "is_won": won, "amount": amount, "currency": "EUR", "amount_home": amount,
        "created_at": created, "close_date": close,
        "deal_type": np.array(["new_business", "existing_business"])[rng.integers(0, 2, N_DEALS)],
        "last_modified_at": created, "is_deleted": rng.random(N_DEALS) < 0.01,
    })  # fmt: skip
    responses = pd.DataFrame({
        "source": "bench", "response_id": np.array([f"R{i:07d}" for i in range(N_RESPONSES)], dtype=object),
        "customer_id": customer_ids[rng.integers(0, N_CUSTOMERS, N_RESPONSES)],
        "score": rng.integers(0, 11, N_RESPONSES),
        "submitted_at": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 730 * 24, N_RESPONSES), unit="h"),
        "survey_id": "nps", "comment": None, "last_modified_at": pd.Timestamp("2026-12-01", tz="UTC"), "is_deleted": False,
    })  # fmt: skip
    for name, frame in (("deals", deals), ("customers", customers), ("nps_responses", responses)):
        frame.to_parquet(DATA / f"{name}.parquet", index=False)


def key_results() -> list[dict]:
    """100 KRs: four metrics × 25 scopes (teams, regions, segments, combinations)."""
    scopes = [{}] + [{"team": t} for t in TEAMS] + [{"region": r} for r in REGIONS] + [
        {"segment": s} for s in SEGMENTS] + [{"region": r, "segment": "Enterprise"} for r in REGIONS] + [
        {"team": TEAMS[0], "segment": "SMB"}]  # fmt: skip
    assert len(scopes) == 25
    return [{"key": f"kr-{m}-{i}", "metric": m, "where": where}
            for m in KR_METRICS for i, where in enumerate(scopes)]  # fmt: skip


def kpis() -> list[dict]:
    return [{"key": f"kpi-{m}-{i}", "metric": m, "where": ({"region": REGIONS[i]} if i else {})}
            for m in KR_METRICS for i in range(5)]  # fmt: skip


def definition_set():
    from kr_metrics.definitions import (
        Cycle,
        DefinitionSet,
        HealthyRange,
        KeyResult,
        Kpi,
        LoadedObjective,
        Objective,
    )
    from kr_metrics.metrics import METRICS

    cycle = Cycle(key="2026-Q4", timezone="Europe/Berlin")
    krs = [KeyResult(key=k["key"], title=k["key"], metric=k["metric"], where=k["where"], baseline=0.1, target=0.9)
           for k in key_results()]  # fmt: skip
    objectives = [LoadedObjective(cycle, Objective(key=f"o{i}", title="o", level="company", key_results=krs[i:i + 4]), "bench")
                  for i in range(0, len(krs), 4)]  # fmt: skip
    kpi_models = [Kpi(key=k["key"], title=k["key"], metric=k["metric"], where=k["where"], healthy=HealthyRange(min=0))
                  for k in kpis()]  # fmt: skip
    return DefinitionSet(
        cycles={"2026-Q4": cycle}, objectives=objectives, kpis=kpi_models, library=dict(METRICS)
    )


# --- DuckDB: what a data engineer would write by hand ------------------------------------------


def _where_sql(where: dict, alias: str) -> tuple[str, list]:
    clauses, params = [], []
    for column, value in where.items():
        clauses.append(f"{alias}.{column} = ?")  # column names are ours; values are bound
        params.append(value)
    return (" AND " + " AND ".join(clauses)) if clauses else "", params


def duckdb_sql(
    metric: str, where: dict, start: dt.date, first_day: dt.date, last_day: dt.date
) -> tuple[str, list]:
    """One query per KR returning (day, value) for first_day..last_day, cumulative from `start`."""
    spine = "SELECT CAST(range AS DATE) AS day FROM range(CAST(? AS DATE), CAST(? AS DATE) + INTERVAL 1 DAY, INTERVAL 1 DAY)"
    deal_filter, deal_params = _where_sql(
        {k: v for k, v in where.items() if k != "team"}
        | ({"team": where["team"]} if "team" in where else {}),
        "d",
    )
    if metric == "nps":
        cond, params = _where_sql(where, "c")
        sql = f"""
        WITH daily AS (
          SELECT CAST(timezone('Europe/Berlin', r.submitted_at) AS DATE) AS day,
                 SUM(CASE WHEN score >= 9 THEN 1 WHEN score <= 6 THEN -1 ELSE 0 END) AS net, COUNT(*) AS n
          FROM nps_responses r JOIN customers c USING (source, customer_id)
          WHERE NOT r.is_deleted AND NOT c.is_deleted {cond} GROUP BY 1),
        spine AS ({spine})
        SELECT spine.day, 100.0 * SUM(net) / NULLIF(SUM(n), 0)
        FROM spine LEFT JOIN daily ON daily.day BETWEEN ? AND spine.day GROUP BY 1 ORDER BY 1"""
        return sql, [*params, first_day, last_day, start]
    if metric == "win_rate":
        sql = f"""
        WITH daily AS (
          SELECT d.close_date AS day, SUM(CAST(d.is_won AS INT)) AS won, COUNT(*) AS closed
          FROM deals d JOIN customers c USING (source, customer_id)
          WHERE NOT d.is_deleted AND d.is_closed {deal_filter.replace("d.region", "c.region").replace("d.segment", "c.segment")} GROUP BY 1),
        spine AS ({spine})
        SELECT spine.day, SUM(won) / NULLIF(SUM(closed), 0)
        FROM spine LEFT JOIN daily ON daily.day BETWEEN ? AND spine.day GROUP BY 1 ORDER BY 1"""
        return sql, [*deal_params, first_day, last_day, start]
    if metric == "won_revenue":
        sql = f"""
        WITH daily AS (
          SELECT d.close_date AS day, SUM(d.amount_home) AS revenue
          FROM deals d JOIN customers c USING (source, customer_id)
          WHERE NOT d.is_deleted AND d.is_won {deal_filter.replace("d.region", "c.region").replace("d.segment", "c.segment")} GROUP BY 1),
        spine AS ({spine})
        SELECT spine.day, COALESCE(SUM(revenue), 0)
        FROM spine LEFT JOIN daily ON daily.day BETWEEN ? AND spine.day GROUP BY 1 ORDER BY 1"""
        return sql, [*deal_params, first_day, last_day, start]
    # revenue_per_existing_customer
    cust_cond, cust_params = _where_sql(where, "c")
    sql = f"""
    WITH existing AS (
      SELECT DISTINCT source, customer_id FROM deals
      WHERE NOT is_deleted AND is_won AND close_date < ?),
    denominator AS (
      SELECT COUNT(*) AS n FROM customers c JOIN existing USING (source, customer_id)
      WHERE NOT c.is_deleted {cust_cond}),
    daily AS (
      SELECT d.close_date AS day, SUM(d.amount_home) AS revenue
      FROM deals d JOIN existing USING (source, customer_id) JOIN customers c USING (source, customer_id)
      WHERE NOT d.is_deleted AND d.is_won {deal_filter.replace("d.region", "c.region").replace("d.segment", "c.segment")} GROUP BY 1),
    spine AS ({spine})
    SELECT spine.day, COALESCE(SUM(revenue), 0) / NULLIF((SELECT n FROM denominator), 0)
    FROM spine LEFT JOIN daily ON daily.day BETWEEN ? AND spine.day GROUP BY 1 ORDER BY 1"""
    return sql, [start, *cust_params, *deal_params, first_day, last_day, start]


def run_mode(mode: str) -> dict:
    deals = pd.read_parquet(DATA / "deals.parquet")
    customers = pd.read_parquet(DATA / "customers.parquet")
    responses = pd.read_parquet(DATA / "nps_responses.parquet")
    deals["close_date"] = deals["close_date"].astype("datetime64[ns]")
    first_day = AS_OF if mode.endswith("day") else AS_OF - dt.timedelta(days=HISTORY_DAYS - 1)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    if mode.startswith("engine"):
        from kr_metrics.engine import evaluate_history, prepare

        data = prepare(deals, customers, responses, timezone="Europe/Berlin")
        prepared = time.perf_counter()
        result = evaluate_history(definition_set(), data, first_day, AS_OF)
        rows = len(result)
    else:
        import duckdb

        con = duckdb.connect()
        for name, frame in (
            ("deals", deals),
            ("customers", customers),
            ("nps_responses", responses),
        ):
            con.register(name, frame)
        prepared = time.perf_counter()
        rows = 0
        for kr in key_results():  # KRs run over the cycle; KPIs over 90-day rolling windows
            sql, params = duckdb_sql(
                kr["metric"], kr["where"], CYCLE_START, max(first_day, CYCLE_START), AS_OF
            )
            rows += len(con.execute(sql, params).fetchall())
        for kpi in kpis():
            for day in [
                first_day + dt.timedelta(days=i) for i in range((AS_OF - first_day).days + 1)
            ]:
                window_start = day - dt.timedelta(days=89)
                sql, params = duckdb_sql(kpi["metric"], kpi["where"], window_start, day, day)
                rows += len(con.execute(sql, params).fetchall())
    elapsed = time.perf_counter() - start
    return {
        "mode": mode,
        "seconds": round(elapsed, 2),
        "setup_seconds": round(prepared - start, 2),
        "rows": rows,
        "rss_loaded_mib": round(rss_loaded),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(run_mode(sys.argv[1])))
        return
    if not (DATA / "deals.parquet").exists():
        print("generating 1M deals, 200k customers, 100k responses ...", file=sys.stderr)
        generate()
    results = {}
    for mode in ("engine-day", "duckdb-day", "engine-history", "duckdb-history"):
        print(f"running {mode} ...", file=sys.stderr)
        out = subprocess.run(
            [sys.executable, __file__, mode], capture_output=True, text=True, check=True
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print("| run | krpulse engine | DuckDB SQL | engine ÷ DuckDB |\n|---|---|---|---|")
    for label, suffix in (("one as-of date", "day"), (f"{HISTORY_DAYS}-day history", "history")):
        e, d = results[f"engine-{suffix}"], results[f"duckdb-{suffix}"]
        print(f"| {label}: time | {e['seconds']} s (of which prepare {e['setup_seconds']} s) | "
              f"{d['seconds']} s | {e['seconds'] / d['seconds']:.2f} |")  # fmt: skip
        print(f"| {label}: peak RSS (after loading) | {e['peak_rss_mib']} MiB ({e['rss_loaded_mib']} MiB) | "
              f"{d['peak_rss_mib']} MiB ({d['rss_loaded_mib']} MiB) | {e['peak_rss_mib'] / d['peak_rss_mib']:.2f} |")  # fmt: skip
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    main()

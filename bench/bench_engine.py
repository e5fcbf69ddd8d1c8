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
BASE_DEALS, BASE_CUSTOMERS, BASE_RESPONSES = 1_000_000, 200_000, 100_000
TEAMS = [f"team-{i}" for i in range(10)]
REGIONS = ["DACH", "UK&I", "Nordics", "France", "North America"]
SEGMENTS = ["SMB", "Mid-Market", "Enterprise"]
CYCLE_START, CYCLE_END = dt.date(2026, 10, 1), dt.date(2026, 12, 31)
AS_OF = dt.date(2026, 12, 29)
HISTORY_DAYS = 90
KR_METRICS = ["win_rate", "nps", "revenue_per_existing_customer", "won_revenue"]


def data_folder(scale: int = 1) -> Path:
    return DATA if scale == 1 else DATA.with_name(f"engine-x{scale}")


def generate(scale: int = 1) -> None:
    """Synthetic canonical frames, vectorised, seeded: the same files every time. `scale`
    multiplies deals, customers and responses (10: ten million deals)."""
    rng = np.random.default_rng(42)
    N_DEALS, N_CUSTOMERS, N_RESPONSES = (
        n * scale for n in (BASE_DEALS, BASE_CUSTOMERS, BASE_RESPONSES)
    )  # noqa: N806
    folder = data_folder(scale)
    folder.mkdir(parents=True, exist_ok=True)
    customer_ids = np.array([f"C{i:06d}" for i in range(N_CUSTOMERS)], dtype=object)
    customer_team = rng.integers(0, len(TEAMS), N_CUSTOMERS)
    customers = pd.DataFrame(
        {
            "source": "bench",
            "customer_id": customer_ids,
            "name": customer_ids,
            "segment": np.array(SEGMENTS)[rng.integers(0, 3, N_CUSTOMERS)],
            "region": np.array(REGIONS)[customer_team % len(REGIONS)],
            "industry": "Software",
            "owner_id": "O1",
            "team": np.array(TEAMS)[customer_team],
            "created_at": pd.Timestamp("2024-01-01", tz="UTC"),
            "last_modified_at": pd.Timestamp("2026-12-01", tz="UTC"),
            "is_deleted": False,
        }
    )
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
    deals = pd.DataFrame(
        {
            "source": "bench",
            "deal_id": np.array([f"D{i:07d}" for i in range(N_DEALS)], dtype=object),
            "customer_id": customer_ids[owner],
            "name": "deal",
            "owner_id": "O1",
            "team": np.array(TEAMS)[customer_team[owner]],
            "pipeline": "default",
            "stage": "x",
            "is_closed": closed,
            "is_won": won,
            "amount": amount,
            "currency": "EUR",
            "amount_home": amount,
            "created_at": created,
            "close_date": close,
            "deal_type": np.array(["new_business", "existing_business"])[
                rng.integers(0, 2, N_DEALS)
            ],
            "last_modified_at": created,
            "is_deleted": rng.random(N_DEALS) < 0.01,
        }
    )
    responses = pd.DataFrame(
        {
            "source": "bench",
            "response_id": np.array([f"R{i:07d}" for i in range(N_RESPONSES)], dtype=object),
            "customer_id": customer_ids[rng.integers(0, N_CUSTOMERS, N_RESPONSES)],
            "score": rng.integers(0, 11, N_RESPONSES),
            "submitted_at": pd.Timestamp("2025-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 730 * 24, N_RESPONSES), unit="h"),
            "survey_id": "nps",
            "comment": None,
            "last_modified_at": pd.Timestamp("2026-12-01", tz="UTC"),
            "is_deleted": False,
        }
    )
    for name, frame in (("deals", deals), ("customers", customers), ("nps_responses", responses)):
        frame.to_parquet(folder / f"{name}.parquet", index=False)


def key_results() -> list[dict]:
    """100 KRs: four metrics × 25 scopes (teams, regions, segments, combinations)."""
    scopes = (
        [{}]
        + [{"team": t} for t in TEAMS]
        + [{"region": r} for r in REGIONS]
        + [{"segment": s} for s in SEGMENTS]
        + [{"region": r, "segment": "Enterprise"} for r in REGIONS]
        + [{"team": TEAMS[0], "segment": "SMB"}]
    )
    assert len(scopes) == 25
    return [
        {"key": f"kr-{m}-{i}", "metric": m, "where": where}
        for m in KR_METRICS
        for i, where in enumerate(scopes)
    ]


def kpis() -> list[dict]:
    return [
        {"key": f"kpi-{m}-{i}", "metric": m, "where": ({"region": REGIONS[i]} if i else {})}
        for m in KR_METRICS
        for i in range(5)
    ]


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
    krs = [
        KeyResult(
            key=k["key"],
            title=k["key"],
            metric=k["metric"],
            where=k["where"],
            baseline=0.1,
            target=0.9,
        )
        for k in key_results()
    ]
    objectives = [
        LoadedObjective(
            cycle,
            Objective(key=f"o{i}", title="o", level="company", key_results=krs[i : i + 4]),
            "bench",
        )
        for i in range(0, len(krs), 4)
    ]
    kpi_models = [
        Kpi(
            key=k["key"],
            title=k["key"],
            metric=k["metric"],
            where=k["where"],
            healthy=HealthyRange(min=0),
        )
        for k in kpis()
    ]
    return DefinitionSet(
        cycles={"2026-Q4": cycle}, objectives=objectives, kpis=kpi_models, library=dict(METRICS)
    )


# --- DuckDB: what a strong data engineer would write by hand ------------------------------------
# Set-based: one query per metric family computes every scope of every KR and KPI at once.
# Daily aggregates with one FILTERed column per scope, a dense day spine, cumulative sums from
# the cycle start and 90-day rolling sums as window functions. The moving "existing customer"
# anchor of a rolling window becomes, per deal, the interval of as-of days it counts on:
# window [D-89, D] with anchor D-89 counts a deal closed on c of a customer first won on f when
# D-89 <= c <= D and f < D-89, i.e. D in [max(c, f+90), c+89] — +amount at the start,
# -amount the day after the end, and a running sum turns those into every day's value.

ROLLING = 90
SCOPE_COLUMNS = ("team", "region", "segment")  # the deal's team; the customer's region, segment


def _condition(where: dict) -> tuple[str, list]:
    """`where` as SQL over our own column names; the values are bound parameters."""
    clauses, params = [], []
    for column, value in where.items():
        clauses.append(f"{SCOPE_COLUMNS[SCOPE_COLUMNS.index(column)]} = ?")
        params.append(value)
    return (" AND ".join(clauses) or "TRUE"), params


def _series(first_day: dt.date) -> list[tuple[str, str, dict, str]]:
    """(name, metric, where, window) of every value column: KRs over the cycle, KPIs rolling."""
    krs = [(k["key"], k["metric"], k["where"], "cycle") for k in key_results()]
    return krs + [(k["key"], k["metric"], k["where"], "rolling") for k in kpis()]


def _window_sum(column: str, window: str) -> str:
    if window == "cycle":  # cumulative from the cycle start (the spine starts at it or before)
        return (
            f"SUM(CASE WHEN day >= DATE '{CYCLE_START}' THEN {column} END) "
            "OVER (ORDER BY day ROWS UNBOUNDED PRECEDING)"
        )
    return f"SUM({column}) OVER (ORDER BY day ROWS BETWEEN {ROLLING - 1} PRECEDING AND CURRENT ROW)"


def _spine(lo: dt.date, hi: dt.date) -> str:
    return (
        f"SELECT CAST(range AS DATE) AS day FROM range(DATE '{lo}', DATE '{hi}' + 1, "
        "INTERVAL 1 DAY)"
    )


def _deal_family_sql(series, lo, hi, first_day) -> tuple[str, list]:
    """win_rate and won_revenue, every scope, one scan of the closed deals."""
    aggregates, outputs, params = [], [], []
    for i, (name, metric, where, window) in enumerate(series):
        cond, cond_params = _condition(where)
        if metric == "win_rate":
            aggregates += [
                f"COUNT(*) FILTER (WHERE {cond} AND is_closed) AS closed_{i}",
                f"COUNT(*) FILTER (WHERE {cond} AND is_closed AND is_won) AS won_{i}",
            ]
            params += cond_params * 2
            outputs.append(
                f"{_window_sum(f'won_{i}', window)} / "
                f'NULLIF({_window_sum(f"closed_{i}", window)}, 0) AS "{name}"'
            )
        else:
            aggregates.append(
                f"COALESCE(SUM(amount_home) FILTER (WHERE {cond} AND is_won), 0) AS revenue_{i}"
            )
            params += cond_params
            outputs.append(f'COALESCE({_window_sum(f"revenue_{i}", window)}, 0) AS "{name}"')
    sql = f"""
    WITH closed AS (
      SELECT CAST(d.close_date AS DATE) AS day, d.is_closed, d.is_won, COALESCE(d.amount_home, 0) AS amount_home,
             d.team, c.region, c.segment
      FROM deals d LEFT JOIN customers c
        ON c.source = d.source AND c.customer_id = d.customer_id AND NOT c.is_deleted
      WHERE NOT d.is_deleted AND (d.is_closed OR d.is_won) AND d.close_date BETWEEN ? AND ?),
    daily AS (SELECT day, {", ".join(aggregates)} FROM closed GROUP BY day),
    filled AS (SELECT * FROM ({_spine(lo, hi)}) spine LEFT JOIN daily USING (day)),
    windowed AS (SELECT day, {", ".join(outputs)} FROM filled)
    SELECT * FROM windowed WHERE day >= ? ORDER BY day"""
    return sql, [lo, hi, *params, first_day]


def _nps_family_sql(series, lo, hi, first_day) -> tuple[str, list]:
    aggregates, outputs, params = [], [], []
    for i, (name, _, where, window) in enumerate(series):
        cond, cond_params = _condition(where)
        aggregates += [
            f"SUM(net) FILTER (WHERE {cond}) AS net_{i}",
            f"COUNT(*) FILTER (WHERE {cond}) AS n_{i}",
        ]
        params += cond_params * 2
        outputs.append(
            f"100.0 * {_window_sum(f'net_{i}', window)} / "
            f'NULLIF({_window_sum(f"n_{i}", window)}, 0) AS "{name}"'
        )
    sql = f"""
    WITH responses AS (
      SELECT CAST(timezone('Europe/Berlin', r.submitted_at) AS DATE) AS day,
             CASE WHEN r.score >= 9 THEN 1 WHEN r.score <= 6 THEN -1 ELSE 0 END AS net,
             c.team, c.region, c.segment
      FROM nps_responses r LEFT JOIN customers c
        ON c.source = r.source AND c.customer_id = r.customer_id AND NOT c.is_deleted
      WHERE NOT r.is_deleted AND r.score IS NOT NULL),
    daily AS (SELECT day, {", ".join(aggregates)} FROM responses WHERE day BETWEEN ? AND ? GROUP BY day),
    filled AS (SELECT * FROM ({_spine(lo, hi)}) spine LEFT JOIN daily USING (day)),
    windowed AS (SELECT day, {", ".join(outputs)} FROM filled)
    SELECT * FROM windowed WHERE day >= ? ORDER BY day"""
    return sql, [*params, lo, hi, first_day]


def _existing_family_sql(series, lo, hi, first_day) -> tuple[str, list]:
    """revenue_per_existing_customer: cycle KRs anchored at the cycle start, rolling KPIs at
    each day's window start (the interval of days each deal and customer counts on)."""
    day_aggs, outputs, params = [], [], []
    for i, (name, _, where, window) in enumerate(series):
        cond, cond_params = _condition(where)
        if window == "cycle":
            day_aggs += [
                f"SUM(amount_home) FILTER (WHERE kind = 'deal' AND {cond} AND first_won < DATE '{CYCLE_START}') AS rev_{i}",
                f"COUNT(*) FILTER (WHERE kind = 'customer' AND {cond} AND first_won < DATE '{CYCLE_START}') AS cust_{i}",
            ]
            revenue = _window_sum(f"rev_{i}", "cycle")
            customers = f"SUM(cust_{i}) OVER ()"
        else:
            day_aggs += [
                f"SUM(rolling_amount) FILTER (WHERE kind = 'rolling' AND {cond}) AS rev_{i}",
                f"SUM(rolling_customers) FILTER (WHERE kind = 'rolling' AND {cond}) AS cust_{i}",
            ]
            revenue = f"SUM(rev_{i}) OVER (ORDER BY day ROWS UNBOUNDED PRECEDING)"
            customers = f"SUM(cust_{i}) OVER (ORDER BY day ROWS UNBOUNDED PRECEDING)"
        params += cond_params * 2
        outputs.append(f'COALESCE({revenue}, 0) / NULLIF({customers}, 0) AS "{name}"')
    n = ROLLING
    sql = f"""
    WITH first_won AS (
      SELECT source, customer_id, MIN(CAST(close_date AS DATE)) AS first_won FROM deals
      WHERE NOT is_deleted AND is_won AND close_date IS NOT NULL AND customer_id IS NOT NULL
      GROUP BY source, customer_id),
    existing AS (
      SELECT c.source, c.customer_id, c.team, c.region, c.segment, f.first_won
      FROM customers c JOIN first_won f USING (source, customer_id) WHERE NOT c.is_deleted),
    won AS (
      SELECT CAST(d.close_date AS DATE) AS close_date, COALESCE(d.amount_home, 0) AS amount_home, e.*
      FROM deals d JOIN existing e USING (source, customer_id)
      WHERE NOT d.is_deleted AND d.is_won AND d.close_date IS NOT NULL),
    events AS (
      -- cycle KRs: deals closed from the cycle start; every existing customer once
      SELECT 'deal' AS kind, close_date AS day, amount_home, NULL AS rolling_amount,
             NULL AS rolling_customers, team, region, segment, first_won
      FROM won WHERE close_date BETWEEN DATE '{CYCLE_START}' AND ?
      UNION ALL
      SELECT 'customer', DATE '{CYCLE_START}', NULL, NULL, NULL, team, region, segment, first_won
      FROM existing
      UNION ALL  -- rolling KPIs: +amount from max(c, f+{n}), -amount from c+{n}; clamped to the spine
      SELECT 'rolling', GREATEST(GREATEST(close_date, first_won + {n}), ?), NULL, amount_home, NULL,
             team, region, segment, NULL
      FROM won WHERE first_won < close_date AND close_date + {n} > ? AND GREATEST(close_date, first_won + {n}) <= ?
      UNION ALL
      SELECT 'rolling', GREATEST(close_date + {n}, ?), NULL, -amount_home, NULL, team, region, segment, NULL
      FROM won WHERE first_won < close_date AND close_date + {n} > ? AND close_date + {n} <= ?
      UNION ALL
      SELECT 'rolling', GREATEST(first_won + {n}, ?), NULL, NULL, 1, team, region, segment, NULL
      FROM existing WHERE first_won + {n} <= ?),
    daily AS (SELECT day, {", ".join(day_aggs)} FROM events GROUP BY day),
    filled AS (SELECT * FROM ({_spine(lo, hi)}) spine LEFT JOIN daily USING (day)),
    windowed AS (SELECT day, {", ".join(outputs)} FROM filled)
    SELECT * FROM windowed WHERE day >= ? ORDER BY day"""
    return sql, [hi, lo, lo, hi, lo, lo, hi, lo, hi, *params, first_day]


def duckdb_values(con, first_day: dt.date) -> pd.DataFrame:
    """Every KR (cycle) and KPI (rolling 90 days) value for first_day..AS_OF: one row per day,
    one column per KR/KPI key. Three queries in all."""
    lo = min(first_day - dt.timedelta(days=ROLLING - 1), CYCLE_START)
    frames = []
    for metrics, build in (
        (("win_rate", "won_revenue"), _deal_family_sql),
        (("nps",), _nps_family_sql),
        (("revenue_per_existing_customer",), _existing_family_sql),
    ):
        family = [s for s in _series(first_day) if s[1] in metrics]
        sql, params = build(family, lo, AS_OF, first_day)
        frames.append(con.execute(sql, params).df().set_index("day"))
    wide = pd.concat(frames, axis=1)
    wide.index = pd.to_datetime(wide.index).date
    return wide


def engine_values(result: pd.DataFrame) -> pd.DataFrame:
    """The engine's result in the same shape as duckdb_values."""
    return result.pivot(index="as_of", columns="key", values="value")


def run_parquet_mode(mode: str, scale: int) -> dict:
    """The compiled engine straight from the Parquet files (Arrow, only the columns it reads):
    how it runs on data too big to hold as pandas frames."""
    from kr_metrics.sql.engine import DuckDBStaged, evaluate_history

    first_day = AS_OF if mode.endswith("day") else AS_OF - dt.timedelta(days=HISTORY_DAYS - 1)
    start = time.perf_counter()
    staged = DuckDBStaged.from_parquet(data_folder(scale), timezone="Europe/Berlin")
    result = evaluate_history(definition_set(), staged, first_day, AS_OF)
    return {
        "mode": f"{mode}-x{scale}",
        "seconds": round(time.perf_counter() - start, 2),
        "rows": len(result),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident since start or the last reset), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def release_loaded() -> None:
    """Hand back the memory reading the Parquet files left behind, then restart the peak count.

    pd.read_parquet leaves a varying amount of freed-but-kept memory in Arrow's pool and in
    glibc's heap (identical loads measured 446–607 MiB afterwards); returning it makes every
    mode start computing from the same resident level. Done identically in every mode; it is
    not part of any engine. Then the kernel's peak counter is reset (`/proc/self/clear_refs`,
    5), so the peak measured afterwards is the peak while computing."""
    import ctypes

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def run_mode(mode: str) -> dict:
    if "-x" in mode:
        base, scale = mode.rsplit("-x", 1)
        return run_parquet_mode(base, int(scale))
    deals = pd.read_parquet(DATA / "deals.parquet")
    customers = pd.read_parquet(DATA / "customers.parquet")
    responses = pd.read_parquet(DATA / "nps_responses.parquet")
    deals["close_date"] = deals["close_date"].astype("datetime64[ns]")
    first_day = AS_OF if mode.endswith("day") else AS_OF - dt.timedelta(days=HISTORY_DAYS - 1)
    load_peak = _status_mib("VmHWM")
    release_loaded()
    rss_loaded = _status_mib("VmRSS")
    start = time.perf_counter()
    if mode.startswith("compiled"):
        from kr_metrics.sql.engine import DuckDBStaged, evaluate_history

        staged = DuckDBStaged(deals, customers, responses, timezone="Europe/Berlin")
        prepared = time.perf_counter()
        result = evaluate_history(definition_set(), staged, first_day, AS_OF)
        rows = len(result)
    elif mode.startswith("engine"):
        from kr_metrics.engine import evaluate_history, prepare

        data = prepare(deals, customers, responses, timezone="Europe/Berlin")
        prepared = time.perf_counter()
        result = evaluate_history(definition_set(), data, first_day, AS_OF)
        rows = len(result)
    else:
        import duckdb

        # DuckDB's defaults (both cores); "duckdb1" gives the hand SQL the compiled engine's one
        # thread (kr_metrics.sql.engine.duckdb_config), to show what that setting alone is worth.
        con = duckdb.connect(config={"threads": 1} if mode.startswith("duckdb1") else {})
        for name, frame in (
            ("deals", deals),
            ("customers", customers),
            ("nps_responses", responses),
        ):
            con.register(name, frame)
        prepared = time.perf_counter()
        result = duckdb_values(con, first_day)
        rows = int(result.notna().sum().sum() + result.isna().sum().sum())
    elapsed = time.perf_counter() - start
    return {
        "mode": mode,
        "seconds": round(elapsed, 2),
        "setup_seconds": round(prepared - start, 2),
        "rows": rows,
        "load_peak_mib": round(load_peak),
        "rss_loaded_mib": round(rss_loaded),
        "peak_rss_mib": round(_status_mib("VmHWM")),
    }


def run_measured(mode: str) -> dict:
    """One mode in its own process under /usr/bin/time -v: its peak RSS is its own."""
    out = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, __file__, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for line in out.stderr.splitlines():
        if "Maximum resident set size" in line:
            result["time_v_peak_rss_mib"] = round(int(line.split(":")[1]) / 1024)
        if "Elapsed (wall clock)" in line:
            result["time_v_wall"] = line.split(": ")[1].strip()
    return result


def verify() -> None:
    """The strong SQL against the engine, every value of the 90-day history (10,800 values)."""
    import duckdb

    from kr_metrics.engine import evaluate_history, prepare

    deals = pd.read_parquet(DATA / "deals.parquet")
    customers = pd.read_parquet(DATA / "customers.parquet")
    responses = pd.read_parquet(DATA / "nps_responses.parquet")
    first_day = AS_OF - dt.timedelta(days=HISTORY_DAYS - 1)
    con = duckdb.connect()
    for name, frame in (("deals", deals), ("customers", customers), ("nps_responses", responses)):
        con.register(name, frame)
    sql = duckdb_values(con, first_day)
    from kr_metrics.sql.engine import DuckDBStaged
    from kr_metrics.sql.engine import evaluate_history as compiled_history

    compiled = engine_values(
        compiled_history(
            definition_set(),
            DuckDBStaged(deals, customers, responses, timezone="Europe/Berlin"),
            first_day,
            AS_OF,
        )
    )
    data = prepare(deals, customers, responses, timezone="Europe/Berlin")
    engine = engine_values(evaluate_history(definition_set(), data, first_day, AS_OF))
    engine = engine.reindex(index=sql.index, columns=sql.columns)
    compiled = compiled.reindex(index=sql.index, columns=sql.columns)
    c = compiled.to_numpy(dtype="float64")
    same_compiled = np.isclose(c, sql.to_numpy(dtype="float64"), rtol=1e-9, atol=1e-9) | (
        np.isnan(c) & np.isnan(sql.to_numpy(dtype="float64"))
    )
    print(
        json.dumps(
            {"compiled_vs_sql_equal": int(same_compiled.sum()), "of": int(same_compiled.size)}
        )
    )
    a, b = engine.to_numpy(dtype="float64"), sql.to_numpy(dtype="float64")
    same = np.isclose(a, b, rtol=1e-9, atol=1e-9) | (np.isnan(a) & np.isnan(b))
    print(
        json.dumps(
            {"values": int(same.size), "equal": int(same.sum()), "nulls": int(np.isnan(b).sum())}
        )
    )
    if not same.all():
        rows, cols = np.nonzero(~same)
        for r, c in list(zip(rows, cols, strict=True))[:10]:
            print(sql.index[r], sql.columns[c], a[r, c], b[r, c])
        raise SystemExit(1)


def _median(values: list[float]) -> float:
    return float(np.median(values))


def main() -> None:
    if sys.argv[1:] == ["verify"]:
        verify()
        return
    if len(sys.argv) > 1 and not sys.argv[1].startswith("--"):
        print(json.dumps(run_mode(sys.argv[1])))
        return
    if not (DATA / "deals.parquet").exists():
        print("generating 1M deals, 200k customers, 100k responses ...", file=sys.stderr)
        generate()
    rounds = int(next((a.split("=")[1] for a in sys.argv if a.startswith("--rounds=")), "3"))
    # Interleaved: every round runs each compared mode once, each in a fresh process, the
    # order of compiled and hand SQL alternating between rounds, so that load on the machine
    # falls on both sides alike. The pandas engine (the slow oracle) runs in the first round.
    compared = ["compiled", "duckdb", "duckdb1"]
    runs: dict[str, list[dict]] = {}
    for r in range(rounds):
        for suffix in ("day", "history"):
            order = compared if r % 2 == 0 else list(reversed(compared))
            modes = [f"{m}-{suffix}" for m in order] + ([f"engine-{suffix}"] if r == 0 else [])
            for mode in modes:
                print(f"round {r + 1}: {mode} ...", file=sys.stderr)
                runs.setdefault(mode, []).append(run_measured(mode))
    if (
        "--x10" in sys.argv
    ):  # ten times the data, straight from Parquet (pandas frames would not fit)
        if not (data_folder(10) / "deals.parquet").exists():
            generate(10)
        runs["compiled-history-x10"] = [run_measured("compiled-history-x10")]

    def cell(mode: str, field: str, unit: str) -> str:
        values = [run[field] for run in runs[mode]]
        shown = "/".join(f"{v:g}" for v in values)
        return (
            f"{_median(values):g} {unit} ({shown})" if len(values) > 1 else f"{values[0]:g} {unit}"
        )

    def ratios(field: str, suffix: str, hand: str = "duckdb") -> str:
        pairs = zip(runs[f"compiled-{suffix}"], runs[f"{hand}-{suffix}"], strict=True)
        each = [c[field] / d[field] for c, d in pairs]
        return f"{_median(each):.2f} ({'/'.join(f'{x:.2f}' for x in each)})"

    for run_list in runs.values():
        for run in run_list:
            if "rss_loaded_mib" in run:
                run["added_mib"] = run["peak_rss_mib"] - run["rss_loaded_mib"]
                run["process_peak_mib"] = max(run["peak_rss_mib"], run["load_peak_mib"])
    print(f"{rounds} interleaved rounds; median (each round)\n")
    print(
        "| run | compiled engine (SQL on DuckDB, 1 thread) | strong DuckDB SQL (default threads) "
        "| compiled ÷ DuckDB | strong DuckDB SQL, 1 thread | compiled ÷ DuckDB 1 thread "
        "| pandas engine |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, suffix in (("one as-of date", "day"), (f"{HISTORY_DAYS}-day history", "history")):
        c, d, d1, e = (f"{m}-{suffix}" for m in ("compiled", "duckdb", "duckdb1", "engine"))
        for what, field, unit in (
            ("time", "seconds", "s"),
            ("peak RSS while computing", "peak_rss_mib", "MiB"),
            ("added over the loaded frames", "added_mib", "MiB"),
            ("process peak incl. loading", "process_peak_mib", "MiB"),
        ):
            print(
                f"| {label}: {what} | {cell(c, field, unit)} | {cell(d, field, unit)} | "
                f"{ratios(field, suffix)} | {cell(d1, field, unit)} | "
                f"{ratios(field, suffix, 'duckdb1')} | {cell(e, field, unit)} |"
            )
    loaded = [
        run["rss_loaded_mib"] for rs in runs.values() for run in rs if "rss_loaded_mib" in run
    ]
    print(f"\nloaded frames after the release: {min(loaded)}–{max(loaded)} MiB in every mode")
    if "compiled-history-x10" in runs:
        x = runs["compiled-history-x10"][0]
        print(
            f"\n10 M deals, {HISTORY_DAYS}-day history (from Parquet): {x['seconds']} s, "
            f"{x['time_v_peak_rss_mib']} MiB peak"
        )
    print(json.dumps(runs), file=sys.stderr)


if __name__ == "__main__":
    main()

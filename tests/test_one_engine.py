"""One engine in production: the paths that called the pandas engine — the run-time lint's
`previous_cycle` baseline warning and the forecast back-test — now compute through the compiled
engine, and give what the pandas engine (the test oracle) gave, on the demo org and on random
orgs, on embedded DuckDB and on PostgreSQL staging tables."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from hypothesis import assume, given
from test_compiled_engine import SETTINGS, definitions_for, key_results, same
from test_engine_properties import ORIGIN, frames, orgs

from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.definitions import Cycle, DefinitionError, DefinitionSet, LoadedObjective
from kr_metrics.engine import _baseline, evaluate_history, prepare
from kr_metrics.forecast import add_forecasts, backtest
from kr_metrics.lint import check_against_data
from kr_metrics.loader import load_definitions
from kr_metrics.metrics import scope_for
from kr_metrics.sql.engine import DuckDBStaged, computed_baselines

TIMEZONE = "Europe/Berlin"


# --- the oracles: what these paths computed before, with the pandas engine ----------------------


def pandas_backtest(definitions, data, cycles, checkpoints=(30, 45, 60)) -> pd.DataFrame:
    """kr_metrics.forecast.backtest as it was: one pandas history per cycle, row by row."""
    rows = []
    for cycle in cycles:
        moved = DefinitionSet(
            cycles={cycle.key: cycle},
            objectives=[
                LoadedObjective(cycle, lo.objective, lo.file) for lo in definitions.objectives
            ],
            library=definitions.library,
        )
        history = add_forecasts(
            evaluate_history(moved, data, cycle.start, cycle.end), moved.library
        )
        history = history[history["kind"] == "kr"]
        actual = history[history["as_of"] == cycle.end].set_index("key")["value"]
        for day in checkpoints:
            as_of = cycle.start + dt.timedelta(days=day - 1)
            made = history[history["as_of"] == as_of].set_index("key")
            for key, row in made.iterrows():
                rows.append(
                    {
                        "cycle": cycle.key,
                        "kr": key,
                        "metric": row["metric"],
                        "day": day,
                        "forecast": row["forecast_value"],
                        "naive": row["value"],
                        "actual": actual.get(key, np.nan),
                    }
                )
    result = pd.DataFrame(rows)
    result["error"] = result["forecast"] - result["actual"]
    with np.errstate(divide="ignore", invalid="ignore"):
        result["abs_pct_error"] = (result["error"].abs() / result["actual"].abs()).replace(
            np.inf, np.nan
        )
        result["naive_abs_pct_error"] = (
            (result["naive"] - result["actual"]).abs() / result["actual"].abs()
        ).replace(np.inf, np.nan)
    return result


def pandas_baselines(definitions, data) -> dict[tuple[str, str], float | None]:
    """Every KR's baseline through the pandas engine, as the lint computed it before."""
    return {
        (lo.cycle.key, kr.key): _baseline(
            kr,
            lo.cycle,
            definitions.library[kr.metric],
            definitions.library,
            data,
            scope_for(data, kr.where),
        )
        for lo, kr in definitions.key_results()
    }


def flagged(warnings) -> dict[str, str]:
    """KR key -> the baseline a relative-target warning quotes."""
    found = {}
    for problem in warnings:
        if problem.code == "relative-target-baseline":
            key, baseline = re.match(
                r"KR '([^']+)': its previous_cycle baseline is (\S+),", problem.message
            ).groups()
            found[key] = baseline
    return found


def assert_same_backtest(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(actual) == len(expected)
    for column in ("cycle", "kr", "metric", "day"):
        assert actual[column].tolist() == expected[column].tolist(), column
    for column in ("forecast", "naive", "actual", "error", "abs_pct_error", "naive_abs_pct_error"):
        assert same(actual[column], expected[column]), (
            column,
            actual[column].tolist(),
            expected[column].tolist(),
        )


# --- the demo org ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_frames(demo_data, tmp_path_factory):
    from connectors.files import FilesSource
    from okr_store.db import create_engine
    from okr_store.schema import upgrade
    from okr_store.staging import read_staged, stage

    folder = tmp_path_factory.mktemp("one-engine")
    engine = create_engine(f"sqlite:///{folder / 'k.db'}")
    upgrade(engine)
    stage(FilesSource("demo", demo_data), engine, home_currency="EUR")
    frames = tuple(read_staged(engine, t) for t in (DEALS, CUSTOMERS, NPS_RESPONSES))
    engine.dispose()
    return frames


def test_the_backtest_on_the_demo_org_is_the_pandas_backtest_and_the_documented_table(
    demo_frames,
):
    definitions = load_definitions(REPO / "definitions" / "2026-Q4.yaml")
    cycles = [Cycle(key=k, timezone=TIMEZONE) for k in ("2026-Q1", "2026-Q2", "2026-Q3")]
    result = backtest(definitions, DuckDBStaged(*demo_frames, timezone=TIMEZONE), cycles)
    oracle = pandas_backtest(definitions, prepare(*demo_frames, timezone=TIMEZONE), cycles)
    assert_same_backtest(result, oracle)
    # docs/forecast.md's overall figures, from the production engine
    overall = result.groupby("day")["abs_pct_error"].mean().round(3)
    assert overall.to_dict() == {30: 0.246, 45: 0.177, 60: 0.121}


def test_the_baseline_warning_on_the_demo_org_is_the_pandas_engines(demo_frames, tmp_path):
    """The demo's definitions with every baseline computed from the previous cycle (and its
    relative targets kept): the compiled baselines are the pandas ones, KR by KR, and the lint
    warns about exactly the KRs whose pandas baseline is zero or negative."""
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    for path in (tmp_path / "definitions").glob("2026-Q*.yaml"):
        path.write_text(re.sub(r"baseline: [0-9.]+", "baseline: previous_cycle", path.read_text()))
    definitions = load_definitions(tmp_path / "definitions")
    data = prepare(*demo_frames, timezone=TIMEZONE)
    compiled = computed_baselines(
        list(definitions.key_results()), definitions.library, DuckDBStaged.from_prepared(data)
    )
    oracle = pandas_baselines(definitions, data)
    assert compiled.keys() == oracle.keys() and len(compiled) == 16
    for key, value in oracle.items():
        assert same(
            np.nan if compiled[key] is None else compiled[key], np.nan if value is None else value
        ), key
    relative = {kr.key for _, kr in definitions.key_results() if isinstance(kr.target, str)}
    expected = {
        key: f"{value:g}"
        for (_, key), value in oracle.items()
        if key in relative and value is not None and value <= 0
    }
    assert flagged(check_against_data(definitions, data)) == expected


# --- random orgs ----------------------------------------------------------------------------------


def relative_definitions(krs, targets, cycle_start, cycle_end, folder: Path):
    """The compiled engine's random definition sets, with relative or absolute targets."""
    definitions_for(krs, cycle_start, cycle_end, folder)
    path = folder / "defs.yaml"
    lines = path.read_text().splitlines()
    kr_lines = [i for i, line in enumerate(lines) if line.lstrip().startswith("- {key: kr")]
    for i, target in zip(kr_lines, targets, strict=False):
        lines[i] = lines[i].replace("target: 0.5}", f"target: {target}}}")
    path.write_text("\n".join(lines) + "\n")
    return load_definitions(folder)


@SETTINGS
@given(
    org=orgs(),
    krs=key_results,
    targets=st.lists(st.sampled_from(["+10%", "-20%", "0.5"]), min_size=6, max_size=6),
    start_offset=st.integers(5, 40),
    length=st.integers(3, 30),
)
def test_the_baseline_warning_equals_the_pandas_oracle(
    staging, org, krs, targets, start_offset, length
):
    cycle_start = ORIGIN.date() + dt.timedelta(days=start_offset)
    with tempfile.TemporaryDirectory() as folder:
        try:
            definitions = relative_definitions(
                krs, targets, cycle_start, cycle_start + dt.timedelta(days=length), Path(folder)
            )
        except DefinitionError:  # e.g. a filter contradicting a metric's own
            assume(False)
    deals, customers, responses = frames(org)
    data = prepare(deals, customers, responses, timezone=TIMEZONE)
    staged = staging(deals, customers, responses)
    compiled = computed_baselines(list(definitions.key_results()), definitions.library, staged)
    oracle = pandas_baselines(definitions, data)
    assert compiled.keys() == oracle.keys()
    for key, value in oracle.items():
        assert same(
            np.nan if compiled[key] is None else compiled[key], np.nan if value is None else value
        ), (key, compiled[key], value)
    relative = {
        kr.key
        for _, kr in definitions.key_results()
        if kr.baseline_is_computed and isinstance(kr.target, str)
    }
    expected = {
        key: f"{value:g}"
        for (_, key), value in oracle.items()
        if key in relative and value is not None and value <= 0
    }
    warnings = check_against_data(definitions, data, staged)
    assert flagged(warnings) == expected
    assert warnings == check_against_data(definitions, data)  # DuckDB over the prepared frames


@SETTINGS
@given(
    org=orgs(),
    krs=key_results,
    first=st.integers(0, 30),
    lengths=st.lists(st.integers(12, 30), min_size=1, max_size=3),
    checkpoints=st.lists(st.integers(1, 12), min_size=1, max_size=3, unique=True),
)
def test_the_backtest_equals_the_pandas_oracle(staging, org, krs, first, lengths, checkpoints):
    """Random KRs moved into one to three consecutive cycles; forecasts made on random days."""
    start = ORIGIN.date() + dt.timedelta(days=first)
    cycles = []
    for i, length in enumerate(lengths):
        end = start + dt.timedelta(days=length - 1)
        cycles.append(Cycle(key=f"c{i}", start=start, end=end, timezone=TIMEZONE))
        start = end + dt.timedelta(days=1)
    with tempfile.TemporaryDirectory() as folder:
        try:
            definitions = definitions_for(krs, cycles[0].start, cycles[0].end, Path(folder))
        except DefinitionError:
            assume(False)
    deals, customers, responses = frames(org)
    result = backtest(definitions, staging(deals, customers, responses), cycles, checkpoints)
    oracle = pandas_backtest(
        definitions, prepare(deals, customers, responses, timezone=TIMEZONE), cycles, checkpoints
    )
    assert_same_backtest(result, oracle)

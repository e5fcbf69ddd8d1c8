"""The engine over whole definition sets: history mode, custom metrics, computed baselines."""

from __future__ import annotations

import datetime as dt
import textwrap

import pandas as pd
import pytest
from conftest import REPO

from connectors.files import FilesSource
from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.engine import evaluate, evaluate_history, explain_key_result, prepare
from kr_metrics.loader import load_definitions
from okr_store.db import create_engine
from okr_store.schema import upgrade
from okr_store.staging import read_staged, stage


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_data):
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'k.db'}")
    upgrade(engine)
    stage(FilesSource("demo", demo_data), engine, home_currency="EUR")
    frames = {t: read_staged(engine, t) for t in (DEALS, CUSTOMERS, NPS_RESPONSES)}
    return prepare(
        frames[DEALS], frames[CUSTOMERS], frames[NPS_RESPONSES], timezone="Europe/Berlin"
    )


def test_history_mode_equals_day_by_day_evaluation(demo):
    definitions = load_definitions(REPO / "definitions")
    start, end = dt.date(2026, 10, 1), dt.date(2026, 11, 25)
    history = evaluate_history(definitions, demo, start, end)
    days = pd.concat(
        [evaluate(definitions, demo, start + dt.timedelta(days=i)) for i in range(56)],
        ignore_index=True,
    )
    key = ["as_of", "kind", "key"]
    pd.testing.assert_frame_equal(
        history.sort_values(key).reset_index(drop=True),
        days.sort_values(key).reset_index(drop=True),
    )
    assert len(history) == 56 * (8 + 3)


def write(tmp_path, text):
    (tmp_path / "defs.yaml").write_text(textwrap.dedent(text))
    return load_definitions(tmp_path)


def test_custom_simple_ratio_and_derived_metrics(demo, tmp_path):
    definitions = write(
        tmp_path,
        """\
        cycle: {key: 2026-Q4, timezone: Europe/Berlin}
        metrics:
          - {name: enterprise_won_revenue, type: simple, agg: sum, expr: amount_home,
             filter: {is_won: true, segment: Enterprise}}
          - {name: expansion_share, type: ratio, numerator: existing_customer_revenue, denominator: won_revenue}
          - {name: new_business_gap, type: derived, expr: "won_revenue - existing_customer_revenue",
             metrics: [won_revenue, existing_customer_revenue]}
          - {name: biggest_deal, type: simple, agg: max, expr: amount_home, filter: {is_won: true}}
        objectives:
          - key: o
            title: O
            level: company
            key_results:
              - {key: ent, title: Enterprise revenue, metric: enterprise_won_revenue, baseline: 1, target: 2}
              - {key: share, title: Expansion share, metric: expansion_share, baseline: 0.5, target: 0.6}
              - {key: gap, title: Gap, metric: new_business_gap, baseline: 1, target: 2}
              - {key: big, title: Biggest deal, metric: biggest_deal, baseline: 1, target: 2}
              - {key: won, title: Won, metric: won_revenue, baseline: 1, target: 2}
              - {key: nb, title: New business, metric: new_business_revenue, baseline: 1, target: 2}
        """,
    )
    values = evaluate(definitions, demo, dt.date(2026, 11, 25)).set_index("key")["value"]
    won = demo.deals[
        demo.deals["is_won"].fillna(False)
        & (demo.deals["close_date"] >= "2026-10-01")
        & (demo.deals["close_date"] <= "2026-11-25")
    ]
    assert values["ent"] == pytest.approx(
        won.loc[won["segment"] == "Enterprise", "amount_home"].sum()
    )
    assert values["big"] == pytest.approx(won["amount_home"].max())
    assert values["won"] == pytest.approx(won["amount_home"].sum())
    assert 0 < values["share"] < 1
    assert values["gap"] == pytest.approx(values["won"] * (1 - values["share"]))


def test_counts_of_a_text_column_count_its_values_not_zero(demo, tmp_path):
    """`count_distinct(customer_id)` counted 0: the text column was read as numbers."""
    from kr_metrics.sql.engine import DuckDBStaged
    from kr_metrics.sql.engine import evaluate as compiled_evaluate

    definitions = write(
        tmp_path,
        """\
        cycle: {key: 2026-Q4, timezone: Europe/Berlin}
        metrics:
          - {name: buying_customers, type: simple, agg: count_distinct, expr: customer_id,
             filter: {is_won: true}}
          - {name: won_with_customer, type: simple, agg: count, expr: customer_id,
             filter: {is_won: true}}
        objectives:
          - key: o
            title: O
            level: company
            key_results:
              - {key: buyers, title: Buying customers, metric: buying_customers, baseline: 1, target: 2}
              - {key: won, title: Won deals, metric: won_with_customer, baseline: 1, target: 2}
        """,
    )
    won = demo.deals[
        demo.deals["is_won"].fillna(False)
        & (demo.deals["close_date"] >= "2026-10-01")
        & (demo.deals["close_date"] <= "2026-11-25")
    ]
    for computed in (evaluate, compiled_evaluate):
        data = demo if computed is evaluate else DuckDBStaged.from_prepared(demo)
        values = computed(definitions, data, dt.date(2026, 11, 25)).set_index("key")["value"]
        assert values["buyers"] == won["customer_id"].nunique() > 0
        assert values["won"] == won["customer_id"].notna().sum() > 0


def test_previous_cycle_baseline_and_relative_target(demo, tmp_path):
    definitions = write(
        tmp_path,
        """\
        cycle: {key: 2026-Q4, timezone: Europe/Berlin}
        objectives:
          - key: o
            title: O
            level: company
            key_results:
              - {key: nps, title: NPS, metric: nps, baseline: previous_cycle, target: +10%}
              - {key: wr, title: Win rate, metric: win_rate, baseline: previous_cycle, target: 0.4}
        """,
    )
    row = evaluate(definitions, demo, dt.date(2026, 11, 25)).set_index("key")
    assert row.loc["nps", "baseline"] == pytest.approx(
        50.256, abs=1e-3
    )  # 2026-Q3, see the demo's docstring
    assert row.loc["nps", "target"] == pytest.approx(row.loc["nps", "baseline"] * 1.1)
    assert row.loc["wr", "baseline"] == pytest.approx(0.282, abs=1e-3)


def test_explain_lists_the_records_behind_the_number(demo):
    definitions = load_definitions(REPO / "definitions")
    loaded, kr = definitions.find_key_result("nps-uk", "2026-Q4")
    explanation = explain_key_result(definitions, loaded, kr, demo, dt.date(2026, 11, 25))
    records = explanation["records"]
    assert explanation["denominator"] == len(records) == explanation["sample_size"] == 33
    net = (records["score"] >= 9).sum() - (records["score"] <= 6).sum()
    assert explanation["value"] == pytest.approx(100 * net / len(records))
    assert set(records["team"]) == {"sales-uk"}


def test_nps_rows_carry_a_margin_of_error(demo):
    definitions = load_definitions(REPO / "definitions")
    row = evaluate(definitions, demo, dt.date(2026, 11, 25)).set_index("key").loc["nps-uk"]
    # 33 responses: a wide interval, which is why the sample size travels with the value
    assert 15 < row["margin_of_error"] < 35

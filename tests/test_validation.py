"""Tests for the Great Expectations checks on key-result values."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import canonical
from validation.data import validate_staged_rows, validate_sync_volume
from validation.numbers import validate_metric_values
from validation.report import ERROR, WARNING, ExpectationFailure, ValidationReport
from validation.thresholds import ChangeLimit, DataThresholds, NumberThresholds

RANGES = {
    "nps": (-100.0, 100.0),
    "win_rate": (0.0, 1.0),
    "pipeline_value": (0.0, None),
}
NULLABLE = ("nps",)


def frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["key", "metric", "value"])


def good_rows() -> list[tuple[str, str, float]]:
    return [
        ("kr_nps", "nps", 42.0),
        ("kr_win_rate", "win_rate", 0.31),
        ("kpi_pipeline", "pipeline_value", 1_250_000.0),
        ("kpi_calls", "calls", 87.0),  # no range configured: only finiteness/nullness apply
    ]


def only_failure(report: ValidationReport) -> ExpectationFailure:
    assert not report.success
    assert len(report.failures) == 1, report.summary()
    return report.failures[0]


def test_good_frame_passes() -> None:
    report = validate_metric_values(frame(good_rows()), RANGES, nullable_metrics=NULLABLE)
    assert report.success, report.summary()
    assert report.suite == "kr_values"
    assert report.evaluated_rows == 4
    assert report.failures == []
    assert "OK" in report.summary()


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_infinite_value_fails_naming_the_key(bad: float) -> None:
    rows = good_rows() + [("kpi_conversion", "calls", bad)]
    report = validate_metric_values(frame(rows), RANGES, nullable_metrics=NULLABLE)
    failure = only_failure(report)
    assert "inf" in failure.expectation
    assert failure.column == "value"
    assert failure.unexpected_count == 1
    assert [ex["key"] for ex in failure.examples] == ["kpi_conversion"]
    json.dumps(failure.examples, allow_nan=False)  # inf must not leak into the JSON
    assert "kpi_conversion" in report.summary()


def test_nps_out_of_range_fails_with_metric_and_record() -> None:
    rows = good_rows()
    rows[0] = ("kr_nps", "nps", 140.0)
    # A non-default index: examples must still come from the right original row.
    values = frame(rows).set_index(pd.Index([7, 3, 3, 9]))
    report = validate_metric_values(values, RANGES, nullable_metrics=NULLABLE)
    failure = only_failure(report)
    assert failure.expectation == "expect_column_values_to_be_between(value, -100..100) [nps]"
    assert failure.column == "value"
    assert failure.unexpected_count == 1
    assert failure.examples == [{"key": "kr_nps", "metric": "nps", "value": 140.0}]
    assert "[nps]" in report.summary()
    assert "kr_nps" in report.summary()


def test_open_ended_range_and_extra_columns() -> None:
    values = frame(good_rows() + [("kpi_pipeline_eu", "pipeline_value", -5.0)])
    values["as_of"] = pd.Timestamp("2024-06-30")
    values["note"] = None
    report = validate_metric_values(values, RANGES, nullable_metrics=NULLABLE)
    failure = only_failure(report)
    assert failure.expectation == "expect_column_values_to_be_between(value, 0..) [pipeline_value]"
    assert failure.examples == [
        {
            "key": "kpi_pipeline_eu",
            "metric": "pipeline_value",
            "value": -5.0,
            "as_of": "2024-06-30T00:00:00",
            "note": None,
        }
    ]


def test_null_in_non_nullable_metric_fails() -> None:
    rows = good_rows()
    rows[1] = ("kr_win_rate", "win_rate", math.nan)
    report = validate_metric_values(frame(rows), RANGES, nullable_metrics=NULLABLE)
    failure = only_failure(report)
    assert failure.expectation.startswith("expect_column_values_to_not_be_null(value)")
    assert failure.unexpected_count == 1
    assert failure.examples == [{"key": "kr_win_rate", "metric": "win_rate", "value": None}]


def test_null_in_nullable_metric_passes() -> None:
    rows = good_rows()
    rows[0] = ("kr_nps", "nps", math.nan)  # no survey responses yet
    report = validate_metric_values(frame(rows), RANGES, nullable_metrics=NULLABLE)
    assert report.success, report.summary()


def test_duplicate_key_fails() -> None:
    rows = good_rows() + [("kr_win_rate", "win_rate", 0.4)]
    report = validate_metric_values(frame(rows), RANGES, nullable_metrics=NULLABLE)
    failure = only_failure(report)
    assert failure.expectation == "expect_column_values_to_be_unique(key)"
    assert failure.column == "key"
    assert failure.unexpected_count == 2
    assert {ex["value"] for ex in failure.examples} == {0.31, 0.4}


def test_null_key_fails() -> None:
    rows = good_rows()
    values = frame(rows)
    values.loc[3, "key"] = None
    failure = only_failure(validate_metric_values(values, RANGES, nullable_metrics=NULLABLE))
    assert failure.expectation == "expect_column_values_to_not_be_null(key)"
    assert failure.examples == [{"key": None, "metric": "calls", "value": 87.0}]


def test_empty_frame_passes() -> None:
    report = validate_metric_values(frame([]), RANGES, nullable_metrics=NULLABLE)
    assert report == ValidationReport(
        suite="kr_values", success=True, evaluated_rows=0, failures=[]
    )


def test_several_failures_are_all_reported() -> None:
    rows = [
        ("kr_nps", "nps", 140.0),
        ("kr_win_rate", "win_rate", math.nan),
        ("kr_win_rate", "win_rate", 1.5),
    ]
    report = validate_metric_values(frame(rows), RANGES, nullable_metrics=NULLABLE)
    assert not report.success
    names = [f.expectation for f in report.failures]
    assert "expect_column_values_to_be_unique(key)" in names
    assert any("[nps]" in n for n in names)
    assert any("[win_rate]" in n for n in names)
    assert any(n.startswith("expect_column_values_to_not_be_null(value)") for n in names)
    # One header line plus one line per failure.
    assert len(report.summary().splitlines()) == 1 + len(report.failures)


def test_validate_twice_in_one_process() -> None:
    bad = frame(good_rows() + [("kr_nps_2", "nps", -101.0)])
    first = validate_metric_values(bad, RANGES, nullable_metrics=NULLABLE)
    second = validate_metric_values(bad, RANGES, nullable_metrics=NULLABLE)
    good = validate_metric_values(frame(good_rows()), RANGES, nullable_metrics=NULLABLE)
    assert first == second
    assert not first.success
    assert good.success


def test_missing_column_is_an_error() -> None:
    with pytest.raises(ValueError, match="value"):
        validate_metric_values(pd.DataFrame({"key": ["a"], "metric": ["nps"]}), RANGES)


def test_loading_the_dagster_definitions_and_starting_the_cli_do_not_import_great_expectations():
    # The one subprocess of the suite that imports Dagster: a fresh interpreter is the only way
    # to see what an import pulls in. It never imports great_expectations by construction.
    code = (
        "import sys\n"
        "import validation.data, validation.numbers, pipelines.gate, pipelines.checks\n"
        "from pipelines.definitions import defs\n"
        "assert defs.resolve_asset_graph() is not None\n"
        "from pipelines.cli import cli\n"
        "try:\n"
        "    cli.main(['--help'], prog_name='krpulse', standalone_mode=False)\n"
        "    cli.main(['validate', '--help'], prog_name='krpulse', standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'great_expectations')\n"
        "print('GE_LOADED', loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "GE_LOADED []" in result.stdout


# --- Data suites --------------------------------------------------------------------------------

NOW = pd.Timestamp("2026-11-25 06:00", tz="UTC")


def deals(**changes) -> pd.DataFrame:
    frame = canonical(
        "deals",
        [
            {
                "deal_id": f"D-{i}",
                "customer_id": "C-1",
                "is_closed": "true",
                "is_won": "true",
                "amount": "1000",
                "currency": "EUR",
                "amount_home": "1000",
                "created_at": "2026-10-01T10:00:00Z",
                "close_date": "2026-11-02",
            }
            for i in range(4)
        ],
        source="crm",
    )
    for column, value in changes.items():
        frame[column] = frame[column].astype(object)
        frame.loc[0, column] = value
    return frame


def responses(**changes) -> pd.DataFrame:
    frame = canonical(
        "nps_responses",
        [
            {
                "response_id": f"R-{i}",
                "customer_id": "C-1",
                "score": "9",
                "submitted_at": "2026-11-20T10:00:00Z",
            }
            for i in range(3)
        ],
        source="crm",
    )
    for column, value in changes.items():
        frame[column] = frame[column].astype(object)
        frame.loc[0, column] = value
    return frame


def check_deals(frame: pd.DataFrame) -> ValidationReport:
    return validate_staged_rows(
        "deals", frame, now=NOW, known_currencies={"EUR", "USD"}, customer_ids={"C-1"}
    )


@pytest.mark.parametrize(
    ("frame", "rule", "severity"),
    [
        (deals(deal_id=None), "ids present", ERROR),
        (deals(deal_id="D-1"), "ids unique per source", ERROR),
        (deals(amount=-1.0), "amounts not negative", ERROR),
        (deals(amount=math.inf), "amounts finite", ERROR),
        (deals(amount_home=math.inf), "amounts finite", ERROR),
        (deals(currency="euro"), "currencies known", ERROR),
        (deals(currency="CHF"), "currencies known", ERROR),
        (deals(amount_home=None), "currencies convertible", ERROR),
        (deals(close_date=pd.Timestamp("1970-01-01")), "close dates plausible", ERROR),
        (
            deals(close_date=pd.Timestamp("2045-01-01"), is_closed=False, is_won=False),
            "close dates plausible",
            ERROR,
        ),
        (
            deals(close_date=pd.Timestamp("2026-12-24")),
            "closed deals not closed in the future",
            ERROR,
        ),
        (deals(customer_id="C-404"), "deals point at customers that exist", WARNING),
    ],
    ids=[
        "no id",
        "duplicate id",
        "negative amount",
        "infinite amount",
        "infinite home amount",
        "currency not a code",
        "currency without FX rate",
        "not converted",
        "close date decades ago",
        "expected close decades ahead",
        "closed in the future",
        "missing customer",
    ],
)
def test_each_bad_deal_fails_its_rule_with_its_severity(frame, rule, severity):
    report = check_deals(frame)
    # A currency that is no code at all is also not among the known ones: two failures, one rule.
    assert {f.rule for f in report.failures} == {rule}
    for failure in report.failures:
        assert failure.severity == severity
        assert failure.unexpected_count >= 1 and failure.examples
        assert failure.examples[0]["deal_id"] in (None, "D-0", "D-1")
    assert report.blocked == (severity == ERROR)


def test_good_deals_pass_and_open_deals_may_close_in_the_next_years():
    report = check_deals(
        deals(close_date=pd.Timestamp("2028-03-31"), is_closed=False, is_won=False)
    )
    assert report.success, report.summary()


def test_deleted_rows_are_checked_for_their_ids_only():
    assert check_deals(deals(amount=-1.0, is_deleted=True)).success


@pytest.mark.parametrize(
    ("frame", "rule"),
    [
        (responses(score=11), "NPS scores integers 0–10"),
        (responses(score=None), "NPS scores integers 0–10"),
        (
            responses(submitted_at=pd.Timestamp("2026-11-27T10:00", tz="UTC")),
            "submission times plausible",
        ),
        (
            responses(submitted_at=pd.Timestamp("1980-01-01", tz="UTC")),
            "submission times plausible",
        ),
        (responses(response_id=None), "ids present"),
    ],
    ids=["score 11", "no score", "a day ahead", "decades ago", "no id"],
)
def test_each_bad_nps_response_blocks(frame, rule):
    failure = only_failure(validate_staged_rows("nps_responses", frame, now=NOW))
    assert (failure.rule, failure.severity) == (rule, ERROR)


def test_a_submission_within_the_tolerance_passes():
    early = responses(submitted_at=pd.Timestamp("2026-11-25T20:00", tz="UTC"))
    assert validate_staged_rows("nps_responses", early, now=NOW).success
    strict = DataThresholds(future_tolerance_hours=1)
    assert not validate_staged_rows("nps_responses", early, now=NOW, thresholds=strict).success


def volume(history_changes: list[int], **sync) -> ValidationReport:
    history = pd.DataFrame({"changed": history_changes, "deleted": [0] * len(history_changes)})
    base = {"fetched": 200, "changed": 200, "deleted": 0, "quarantined": 0, "staged_before": 1000}
    return validate_sync_volume({**base, **sync}, history)


def test_a_mass_deletion_is_an_error():
    failure = only_failure(volume([200] * 5, changed=0, deleted=300))
    assert (failure.rule, failure.severity) == ("no mass deletion", ERROR)
    assert failure.examples[0]["deleted_share"] == 0.3


def test_a_high_quarantined_share_is_an_error():
    failure = only_failure(volume([200] * 5, fetched=200, quarantined=20))
    assert (failure.rule, failure.severity) == ("quarantined share", ERROR)


def test_an_empty_sync_warns_only_when_hundreds_of_changes_are_usual():
    failure = only_failure(volume([300, 250, 400], changed=0, fetched=0))
    assert failure.severity == WARNING and "empty sync" in failure.rule
    assert volume([5, 3, 8], changed=0, fetched=0).success  # a quiet source is quiet
    assert volume([300, 250], changed=0, fetched=0).success  # not enough history yet


def test_small_tables_are_not_judged_by_shares():
    assert volume([], fetched=10, quarantined=5, staged_before=10, deleted=9).success


# --- Number suites: day-over-day changes --------------------------------------------------------


def test_a_jump_against_the_published_value_warns_by_default():
    previous = pd.DataFrame({"key": ["kr_win_rate", "kpi_pipeline"], "value": [0.30, 1_000_000.0]})
    values = frame(good_rows())
    values.loc[1, "value"] = 0.95  # 65 % of the rate's 0..1 range in one day
    report = validate_metric_values(values, RANGES, nullable_metrics=NULLABLE, previous=previous)
    failure = only_failure(report)
    assert failure.severity == WARNING and not report.blocked
    assert failure.examples == [
        {
            "key": "kr_win_rate",
            "metric": "win_rate",
            "value": 0.95,
            "previous_value": 0.3,
            "daily_change": 0.65,
        }
    ]
    # The pipeline went from 1.0M to 1.25M: 20 % of the larger value, under the 50 % limit.


def test_a_jump_is_an_error_when_its_metric_says_so():
    previous = pd.DataFrame({"key": ["kpi_pipeline"], "value": [100_000.0]})
    thresholds = NumberThresholds(metrics={"pipeline_value": ChangeLimit(0.5, ERROR)})
    report = validate_metric_values(
        frame(good_rows()), RANGES, previous=previous, thresholds=thresholds
    )
    assert report.blocked
    assert only_failure(report).rule == "day-over-day change above max_daily_change"


def test_changes_inside_a_backfill_range_are_judged_day_by_day():
    values = pd.DataFrame(
        {
            "as_of": pd.to_datetime(["2026-11-01", "2026-11-02", "2026-11-03"] * 1).date,
            "kind": "kr",
            "cycle": "2026-Q4",
            "key": "nps-uk",
            "metric": "nps",
            "value": [40.0, 45.0, -80.0],
        }
    )
    report = validate_metric_values(values, RANGES)
    failure = only_failure(report)
    assert failure.severity == WARNING
    assert [ex["value"] for ex in failure.examples] == [-80.0]
    assert failure.examples[0]["previous_value"] == 45.0


def test_zero_and_null_are_not_judged_as_jumps():
    previous = pd.DataFrame({"key": ["kpi_pipeline", "kr_nps"], "value": [0.0, None]})
    report = validate_metric_values(
        frame(good_rows()), RANGES, nullable_metrics=NULLABLE, previous=previous
    )
    assert report.success, report.summary()


def test_reports_survive_a_round_trip_through_json():
    report = check_deals(deals(amount=-1.0, customer_id="C-404"))
    again = ValidationReport.from_dict(json.loads(json.dumps(report.as_dict())))
    assert again == report
    assert again.status == "failed" and len(again.errors) == 1 and len(again.warnings) == 1
    assert "amounts not negative (1 rows: D-0)" in again.reason()

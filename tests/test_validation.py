"""Tests for the Great Expectations checks on key-result values."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kr_metrics.validation import ExpectationFailure, ValidationReport, validate_metric_values

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


def test_importing_module_does_not_import_great_expectations() -> None:
    code = (
        "import sys, kr_metrics.validation; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'great_expectations'); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

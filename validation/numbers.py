"""The number suites: each day's KR and KPI values checked before they are pushed."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

from validation.expectations import Check, import_gx, run_checks
from validation.report import SEVERITIES, ValidationReport
from validation.thresholds import NumberThresholds

SUITE_NAME = "kr_values"
REQUIRED_COLUMNS = ("key", "metric", "value")


def validate_metric_values(
    values: pd.DataFrame,
    ranges: Mapping[str, tuple[float | None, float | None]],
    *,
    nullable_metrics: Collection[str] = (),
    previous: pd.DataFrame | None = None,
    thresholds: NumberThresholds | None = None,
) -> ValidationReport:
    """Validate metric values (columns key, metric, value; optionally as_of, kind, cycle) with GE.

    Checks (ERROR): keys not null and unique (per as_of, kind and cycle when present); `value`
    never +/-inf; `value` not null outside `nullable_metrics`; each metric's non-null values
    within its `ranges` bounds (either bound may be None for open-ended). With `previous` (the
    last published values: key, value, and cycle/kind when present) each value's change since
    then is held against `thresholds` (WARNING unless a metric's limit says ERROR).
    """
    # Nothing to check, and no reason to pay for importing GE.
    if len(values) == 0:
        return ValidationReport(suite=SUITE_NAME, success=True, evaluated_rows=0, failures=[])

    missing = [c for c in REQUIRED_COLUMNS if c not in values.columns]
    if missing:
        raise ValueError(f"values frame is missing column(s): {', '.join(missing)}")
    for metric, (lower, upper) in ranges.items():
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"range for metric {metric!r} has lower {lower} > upper {upper}")

    # Positional labels make GE's unexpected_index_list map back to exactly one original
    # row, even if the caller's index has duplicate or non-integer labels.
    original = values.reset_index(drop=True)
    frame = original.copy()
    # Non-numeric garbage is an upstream bug, not a data-quality finding: fail loudly here.
    # None/pd.NA become NaN, which the null checks below treat as "no value".
    frame["value"] = pd.to_numeric(frame["value"], errors="raise").astype("float64")

    gx = import_gx()
    expect = gx.expectations
    key_columns = [c for c in ("as_of", "kind", "cycle") if c in frame.columns]
    checks = [
        Check(
            frame,
            expect.ExpectColumnValuesToNotBeNull(column="key"),
            "expect_column_values_to_not_be_null(key)",
            "key",
            rule="key missing",
        ),
        _unique(expect, frame, [*key_columns, "key"]),
        # GE has no "finite" expectation; NaN counts as missing and is ignored by this one,
        # so it catches exactly +/-inf.
        Check(
            frame,
            expect.ExpectColumnValuesToNotBeInSet(column="value", value_set=[math.inf, -math.inf]),
            "expect_column_values_to_not_be_in_set(value, {inf, -inf})",
            "value",
            rule="infinite value",
        ),
    ]

    # Nullable metrics mean "no data -> null" (e.g. NPS with no responses), so only the
    # other rows must carry a value.
    required = frame[~frame["metric"].isin(set(nullable_metrics))]
    if len(required):
        checks.append(
            Check(
                required,
                expect.ExpectColumnValuesToNotBeNull(column="value"),
                "expect_column_values_to_not_be_null(value) [non-nullable metrics]",
                "value",
                rule="no value where the metric never lacks one",
            )
        )

    for metric, (lower, upper) in ranges.items():
        if lower is None and upper is None:
            continue  # GE rejects a between-expectation without bounds; nothing to check
        subset = frame[(frame["metric"] == metric) & frame["value"].notna()]
        if subset.empty:
            continue
        checks.append(
            Check(
                subset,
                expect.ExpectColumnValuesToBeBetween(
                    column="value", min_value=lower, max_value=upper
                ),
                f"expect_column_values_to_be_between(value, {_bounds(lower, upper)}) [{metric}]",
                "value",
                rule=f"{metric} outside {_bounds(lower, upper)}",
            )
        )

    several_days = "as_of" in frame.columns and frame["as_of"].nunique() > 1
    if (previous is not None and len(previous)) or several_days:
        checks += _daily_change_checks(expect, frame, original, previous, ranges, thresholds)

    failures = run_checks(gx, SUITE_NAME, original, checks)
    return ValidationReport(
        suite=SUITE_NAME, success=not failures, evaluated_rows=len(original), failures=failures
    )


def _unique(expect: Any, frame: pd.DataFrame, columns: list[str]) -> Check:
    if len(columns) == 1:
        return Check(
            frame,
            expect.ExpectColumnValuesToBeUnique(column=columns[0]),
            f"expect_column_values_to_be_unique({columns[0]})",
            columns[0],
            rule="duplicate keys",
        )
    # Cycle is null for KPIs; compound uniqueness must still compare those rows.
    keyed = frame[columns].astype("string").fillna("")
    return Check(
        keyed,
        expect.ExpectCompoundColumnsToBeUnique(column_list=columns),
        f"expect_compound_columns_to_be_unique({', '.join(columns)})",
        columns[-1],
        rule="duplicate keys",
    )


def _daily_change_checks(
    expect: Any,
    frame: pd.DataFrame,
    original: pd.DataFrame,
    previous: pd.DataFrame | None,
    ranges: Mapping[str, tuple[float | None, float | None]],
    thresholds: NumberThresholds | None,
) -> list[Check]:
    """Day-over-day changes beyond each metric's limit, one check per severity.

    A value's previous one is the same KR's (or KPI's) value on the day before inside the frame
    (a backfill's range), else the last published value in `previous`.
    """
    thresholds = thresholds or NumberThresholds()
    join = [c for c in ("kind", "cycle", "key") if c in frame.columns]
    # String keys: a null cycle (KPIs) must match a null cycle.
    keys = frame[join].astype("string").fillna("")
    prior = np.full(len(frame), np.nan)
    if previous is not None and len(previous):
        on = [c for c in join if c in previous.columns]
        before = previous[on].astype("string").fillna("")
        before = before.assign(
            previous_value=pd.to_numeric(previous["value"]).astype("float64").to_numpy()
        )
        before = before.drop_duplicates(on, keep="last")
        prior = keys.merge(before, on=on, how="left")["previous_value"].to_numpy()
    if "as_of" in frame.columns:
        ordered = keys.assign(
            _day=pd.to_datetime(frame["as_of"]), _value=frame["value"]
        ).sort_values("_day")
        grouped = ordered.groupby(join, sort=False)
        earlier = (grouped.cumcount() > 0).reindex(frame.index).to_numpy()
        day_before = grouped["_value"].shift().reindex(frame.index).to_numpy()
        prior = np.where(earlier, day_before, prior)

    value = frame["value"].to_numpy()
    low = frame["metric"].map({m: lo for m, (lo, _) in ranges.items()}).astype("float64")
    high = frame["metric"].map({m: hi for m, (_, hi) in ranges.items()}).astype("float64")
    span = (high - low).to_numpy()
    bounded = np.isfinite(span) & (span > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(bounded, span, np.maximum(np.abs(prior), np.abs(value)))
        change = np.abs(value - prior) / scale
    # Zero or null on either side has no meaningful relative change; the null rules judge nulls.
    judged = np.isfinite(change) & (bounded | ((prior != 0) & (value != 0)))
    limits = {m: thresholds.limit(m) for m in frame["metric"].unique()}
    max_change = frame["metric"].map({m: lim.max_change for m, lim in limits.items()})
    severity = frame["metric"].map({m: lim.severity for m, lim in limits.items()})
    shown = original.assign(previous_value=prior, daily_change=np.round(change, 4))
    excess = pd.DataFrame({"daily_change_over_limit": change - max_change.to_numpy()})
    checks = []
    for level in SEVERITIES:
        rows = excess[judged & (severity == level).to_numpy()]
        if len(rows):
            checks.append(
                Check(
                    rows,
                    expect.ExpectColumnValuesToBeBetween(
                        column="daily_change_over_limit", max_value=0
                    ),
                    "expect_daily_change_within_limit(value) [max_daily_change]",
                    "value",
                    severity=level,
                    examples=shown,
                    rule="day-over-day change above max_daily_change",
                )
            )
    return checks


def _bounds(lower: float | None, upper: float | None) -> str:
    low = "" if lower is None else f"{lower:g}"
    high = "" if upper is None else f"{upper:g}"
    return f"{low}..{high}"

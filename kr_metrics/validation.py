"""Great Expectations suites on staged data (per sync) and on each day's KR / KPI values."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import threading
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.canonical import ID_COLUMNS

if TYPE_CHECKING:
    # Only for type checkers: importing great_expectations costs seconds, and the Dagster
    # definitions and the CLI import this module without ever validating anything.
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import AbstractDataContext

SUITE_NAME = "kr_values"
REQUIRED_COLUMNS = ("key", "metric", "value")
MAX_EXAMPLES = 5
ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)

NPS_SCORES = list(range(11))
CURRENCY_CODE = r"^[A-Z]{3}$"

# Fixed names inside our private GE context; looked up before being created, so repeated
# calls in one process reuse them instead of failing with "already exists".
_DATASOURCE_NAME = "krpulse_validation"
_ASSET_NAME = "kr_values_frame"
_BATCH_DEFINITION_NAME = "whole_dataframe"
# Our own label travels with each expectation, so results map back whatever GE's order.
_LABEL = "krpulse_label"

# COMPLETE is what gives unexpected_index_list (index labels of the offending rows) for
# pandas; the frames are the rows of one sync or one day, so the lists stay affordable.
_RESULT_FORMAT = {"result_format": "COMPLETE"}

_context: AbstractDataContext | None = None
# Creating the context is guarded so two threads never build two contexts.
_context_lock = threading.Lock()
# The pandas execution engine is shared per data source and keeps the loaded batch as state,
# so concurrent validations (e.g. Dagster's in-process executor with threads) are serialised.
_validate_lock = threading.Lock()


# --- Reports ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed expectation, with a few offending records from the caller's frame."""

    expectation: str
    column: str | None
    unexpected_count: int
    examples: list[dict] = field(default_factory=list)
    severity: str = ERROR
    rule: str = ""  # what it means in words, e.g. "amounts not negative"

    @property
    def short(self) -> str:
        """The rule and the keys (or ids) of a few offending records, for a stale reason."""
        ids = [str(ex.get("key") or _record_id(ex)) for ex in self.examples[:3]]
        ids = [i for i in ids if i and i != "None"]
        what = self.rule or self.expectation
        return (
            f"{what} ({self.unexpected_count} rows" + (f": {', '.join(ids)}" if ids else "") + ")"
        )


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of one suite: `success` means no failure at all; `blocked` means an ERROR one."""

    suite: str
    success: bool
    evaluated_rows: int
    failures: list[ExpectationFailure] = field(default_factory=list)

    @property
    def errors(self) -> list[ExpectationFailure]:
        return [f for f in self.failures if f.severity == ERROR]

    @property
    def warnings(self) -> list[ExpectationFailure]:
        return [f for f in self.failures if f.severity == WARNING]

    @property
    def blocked(self) -> bool:
        """An ERROR failure: the push below this suite must not happen."""
        return bool(self.errors)

    @property
    def status(self) -> str:
        return "failed" if self.blocked else "warned" if self.failures else "passed"

    def summary(self) -> str:
        """Human-readable report: a header line, then one line per failed expectation."""
        if self.success:
            return f"{self.suite}: OK ({self.evaluated_rows} rows)"
        verdict = "FAILED" if self.blocked else "WARNING"
        lines = [
            f"{self.suite}: {verdict} ({len(self.failures)} failing expectation(s), "
            f"{self.evaluated_rows} rows)"
        ]
        for failure in self.failures:
            tag = "" if failure.severity == ERROR else "[warning] "
            line = f"  - {tag}{failure.expectation}: {failure.unexpected_count} unexpected"
            if failure.examples:
                line += ", e.g. " + "; ".join(_describe_example(ex) for ex in failure.examples)
            lines.append(line)
        return "\n".join(lines)

    def reason(self, limit: int = 300) -> str:
        """One line for a stale KR: which suite blocked and on which expectations."""
        shown = self.errors or self.failures
        text = f"{self.suite}: " + "; ".join(f.short for f in shown)
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationReport:
        failures = [ExpectationFailure(**f) for f in data.get("failures", [])]
        return cls(data["suite"], bool(data["success"]), int(data["evaluated_rows"]), failures)


def combine(suite: str, reports: list[ValidationReport]) -> ValidationReport:
    """Several reports on the same rows as one (e.g. row checks and volume checks of a sync)."""
    failures = [f for r in reports for f in r.failures]
    rows = max((r.evaluated_rows for r in reports), default=0)
    return ValidationReport(
        suite=suite, success=not failures, evaluated_rows=rows, failures=failures
    )


# --- Thresholds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataThresholds:
    """Limits of the data suites (krpulse.yaml `validation.data`; defaults in the README)."""

    future_tolerance_hours: float = 24.0  # closed deals' close dates, NPS submission times
    max_age_years: float = 30.0  # older dates are "decades off"
    max_years_ahead: float = 5.0  # expected close dates of open deals
    max_deleted_share: float = 0.2  # of the rows staged before the sync: a mass deletion
    max_quarantined_share: float = 0.05  # of the records the sync fetched
    min_rows_for_shares: int = 50  # smaller tables/syncs are not judged by shares
    usual_changes: int = 100  # a median this high over recent syncs makes an empty sync odd
    history_syncs: int = 14  # how many earlier syncs make "recent history"
    min_history_syncs: int = 3  # fewer earlier syncs: no history to compare with yet


@dataclass(frozen=True)
class ChangeLimit:
    """The largest day-over-day change of a metric, and what exceeding it is."""

    max_change: float
    severity: str = WARNING


@dataclass(frozen=True)
class NumberThresholds:
    """Limits of the number suites (krpulse.yaml `validation.numbers`).

    A day-over-day change is measured against the metric's scale: for metrics with a bounded
    range (NPS −100..100, rates 0..1) as a share of that range; otherwise relative to the
    larger of the two values. A change to or from zero or null is not judged.
    """

    max_daily_change: float = 0.5
    daily_change_severity: str = WARNING
    metrics: Mapping[str, ChangeLimit] = field(default_factory=dict)

    def limit(self, metric: str) -> ChangeLimit:
        return self.metrics.get(metric) or ChangeLimit(
            self.max_daily_change, self.daily_change_severity
        )


# --- The number suites --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    """One expectation on a subset of the rows (index labels are positions in the frame)."""

    rows: pd.DataFrame
    expectation: Any
    label: str
    column: str | None
    severity: str = ERROR
    # Where examples come from; defaults to the caller's original frame.
    examples: pd.DataFrame | None = None
    # In words; defaults to the bracketed part of the label.
    rule: str = ""


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

    gx = _import_gx()
    expect = gx.expectations
    key_columns = [c for c in ("as_of", "kind", "cycle") if c in frame.columns]
    checks = [
        _Check(frame, expect.ExpectColumnValuesToNotBeNull(column="key"),
               "expect_column_values_to_not_be_null(key)", "key", rule="key missing"),
        _unique(expect, frame, [*key_columns, "key"]),
        # GE has no "finite" expectation; NaN counts as missing and is ignored by this one,
        # so it catches exactly +/-inf.
        _Check(frame, expect.ExpectColumnValuesToNotBeInSet(column="value", value_set=[math.inf, -math.inf]),
               "expect_column_values_to_not_be_in_set(value, {inf, -inf})", "value", rule="infinite value"),
    ]  # fmt: skip

    # Nullable metrics mean "no data -> null" (e.g. NPS with no responses), so only the
    # other rows must carry a value.
    required = frame[~frame["metric"].isin(set(nullable_metrics))]
    if len(required):
        checks.append(
            _Check(required, expect.ExpectColumnValuesToNotBeNull(column="value"),
                   "expect_column_values_to_not_be_null(value) [non-nullable metrics]", "value",
                   rule="no value where the metric never lacks one")
        )  # fmt: skip

    for metric, (lower, upper) in ranges.items():
        if lower is None and upper is None:
            continue  # GE rejects a between-expectation without bounds; nothing to check
        subset = frame[(frame["metric"] == metric) & frame["value"].notna()]
        if subset.empty:
            continue
        checks.append(
            _Check(subset, expect.ExpectColumnValuesToBeBetween(column="value", min_value=lower, max_value=upper),
                   f"expect_column_values_to_be_between(value, {_bounds(lower, upper)}) [{metric}]", "value",
                   rule=f"{metric} outside {_bounds(lower, upper)}")
        )  # fmt: skip

    several_days = "as_of" in frame.columns and frame["as_of"].nunique() > 1
    if (previous is not None and len(previous)) or several_days:
        checks += _daily_change_checks(expect, frame, original, previous, ranges, thresholds)

    failures = _run(gx, SUITE_NAME, original, checks)
    return ValidationReport(
        suite=SUITE_NAME, success=not failures, evaluated_rows=len(original), failures=failures
    )


def _unique(expect: Any, frame: pd.DataFrame, columns: list[str]) -> _Check:
    if len(columns) == 1:
        return _Check(frame, expect.ExpectColumnValuesToBeUnique(column=columns[0]),
                      f"expect_column_values_to_be_unique({columns[0]})", columns[0], rule="duplicate keys")  # fmt: skip
    # Cycle is null for KPIs; compound uniqueness must still compare those rows.
    keyed = frame[columns].astype("string").fillna("")
    return _Check(keyed, expect.ExpectCompoundColumnsToBeUnique(column_list=columns),
                  f"expect_compound_columns_to_be_unique({', '.join(columns)})", columns[-1], rule="duplicate keys")  # fmt: skip


def _daily_change_checks(
    expect: Any,
    frame: pd.DataFrame,
    original: pd.DataFrame,
    previous: pd.DataFrame | None,
    ranges: Mapping[str, tuple[float | None, float | None]],
    thresholds: NumberThresholds | None,
) -> list[_Check]:
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
                _Check(rows, expect.ExpectColumnValuesToBeBetween(column="daily_change_over_limit", max_value=0),
                       "expect_daily_change_within_limit(value) [max_daily_change]", "value",
                       severity=level, examples=shown, rule="day-over-day change above max_daily_change")
            )  # fmt: skip
    return checks


# --- The data suites ----------------------------------------------------------------------------


def validate_staged_rows(
    table: str,
    rows: pd.DataFrame,
    *,
    suite: str | None = None,
    now: dt.datetime | None = None,
    known_currencies: Collection[str] | None = None,
    customer_ids: Collection[str] | None = None,
    thresholds: DataThresholds | None = None,
) -> ValidationReport:
    """Validate canonical rows of `table` (the rows one sync changed) with GE.

    ERROR: ids present and unique per source; amounts finite and not negative; currencies
    3-letter codes, among `known_currencies` when given, and converted (an amount has a
    home-currency amount); close dates and NPS submission times plausible against `now`
    (not more than max_age_years back; closed deals and responses not in the future beyond the
    tolerance, open deals' expected close not beyond max_years_ahead); NPS scores integers
    0–10. WARNING: deals whose customer is not among `customer_ids` (when given). Rows marked
    deleted are checked for their ids only.
    """
    suite = suite or f"staging_{table}"
    if len(rows) == 0:
        return ValidationReport(suite=suite, success=True, evaluated_rows=0, failures=[])
    thresholds = thresholds or DataThresholds()
    now = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    original = rows.reset_index(drop=True)
    frame = original.copy()
    gx = _import_gx()
    expect = gx.expectations
    checks: list[_Check] = []

    id_column = ID_COLUMNS.get(table)
    if id_column:
        checks.append(_Check(frame, expect.ExpectColumnValuesToNotBeNull(column=id_column),
                             f"expect_column_values_to_not_be_null({id_column}) [ids present]", id_column))  # fmt: skip
        keyed = frame[["source", id_column]].astype("string").fillna("")
        checks.append(_Check(keyed, expect.ExpectCompoundColumnsToBeUnique(column_list=["source", id_column]),
                             f"expect_compound_columns_to_be_unique(source, {id_column}) [ids unique per source]",
                             id_column))  # fmt: skip

    deleted = _flag(frame["is_deleted"]) if "is_deleted" in frame else False
    live = frame[~deleted] if "is_deleted" in frame else frame
    earliest = now - pd.Timedelta(days=365.25 * thresholds.max_age_years)
    tolerance = now + pd.Timedelta(hours=thresholds.future_tolerance_hours)

    if table == "deals" and len(live):
        for column in ("amount", "amount_home"):
            numbers = live.assign(**{column: pd.to_numeric(live[column]).astype("float64")})
            checks += [
                _Check(numbers, expect.ExpectColumnValuesToNotBeInSet(column=column, value_set=[math.inf, -math.inf]),
                       f"expect_column_values_to_not_be_in_set({column}, {{inf, -inf}}) [amounts finite]", column),
                _Check(numbers, expect.ExpectColumnValuesToBeBetween(column=column, min_value=0),
                       f"expect_column_values_to_be_between({column}, 0..) [amounts not negative]", column),
            ]  # fmt: skip
        checks += [
            _Check(live, expect.ExpectColumnValuesToNotBeNull(column="currency"),
                   "expect_column_values_to_not_be_null(currency) [currencies known]", "currency"),
            _Check(live.assign(currency=live["currency"].astype("string").fillna("")),
                   expect.ExpectColumnValuesToMatchRegex(column="currency", regex=CURRENCY_CODE),
                   "expect_column_values_to_match_regex(currency, ISO 4217 code) [currencies known]", "currency"),
        ]  # fmt: skip
        if known_currencies:
            known = sorted(set(known_currencies))
            checks.append(
                _Check(live[live["currency"].notna()], expect.ExpectColumnValuesToBeInSet(column="currency", value_set=known),
                       f"expect_column_values_to_be_in_set(currency, {{{', '.join(known)}}}) [currencies known]",
                       "currency")
            )  # fmt: skip
        priced = live[live["amount"].notna()]
        if len(priced):
            checks.append(
                _Check(priced, expect.ExpectColumnValuesToNotBeNull(column="amount_home"),
                       "expect_column_values_to_not_be_null(amount_home) [currencies convertible]", "amount_home")
            )  # fmt: skip
        # close_date is a plain date in the reporting timezone: compare it as a naive day.
        close = pd.to_datetime(live["close_date"])
        dated = live.assign(close_date=close)[close.notna()]
        closed = _flag(dated["is_closed"])
        today = tolerance.tz_convert(None).normalize()
        ahead = (now + pd.Timedelta(days=365.25 * thresholds.max_years_ahead)).tz_convert(None)
        checks.append(
            _Check(dated, expect.ExpectColumnValuesToBeBetween(column="close_date",
                   min_value=earliest.tz_convert(None).to_pydatetime(), max_value=ahead.to_pydatetime()),
                   f"expect_column_values_to_be_between(close_date, {earliest:%Y-%m-%d}..{ahead:%Y-%m-%d}) "
                   "[close dates plausible]", "close_date")
        )  # fmt: skip
        if closed.any():
            checks.append(
                _Check(dated[closed], expect.ExpectColumnValuesToBeBetween(column="close_date",
                       max_value=today.to_pydatetime()),
                       f"expect_column_values_to_be_between(close_date, ..{today:%Y-%m-%d}) "
                       "[closed deals not closed in the future]", "close_date")
            )  # fmt: skip
        if customer_ids is not None:
            linked = live[live["customer_id"].notna()]
            exists = linked.assign(customer_exists=linked["customer_id"].isin(set(customer_ids)))
            checks.append(
                _Check(exists, expect.ExpectColumnValuesToBeInSet(column="customer_exists", value_set=[True]),
                       "expect_column_values_to_be_in_set(customer_id, staged customers) [deals point at "
                       "customers that exist]", "customer_id", severity=WARNING)
            )  # fmt: skip

    if table == "nps_responses" and len(live):
        scores = live.assign(score=pd.to_numeric(live["score"]).astype("float64"))
        submitted = pd.to_datetime(live["submitted_at"], utc=True)
        checks += [
            _Check(scores, expect.ExpectColumnValuesToNotBeNull(column="score"),
                   "expect_column_values_to_not_be_null(score) [NPS scores integers 0–10]", "score"),
            _Check(scores, expect.ExpectColumnValuesToBeInSet(column="score", value_set=NPS_SCORES),
                   "expect_column_values_to_be_in_set(score, 0..10) [NPS scores integers 0–10]", "score"),
            _Check(live.assign(submitted_at=submitted),
                   expect.ExpectColumnValuesToBeBetween(column="submitted_at", min_value=earliest.to_pydatetime(),
                                                        max_value=tolerance.to_pydatetime()),
                   f"expect_column_values_to_be_between(submitted_at, {earliest:%Y-%m-%d}..{tolerance:%Y-%m-%d %H:%M}) "
                   "[submission times plausible]", "submitted_at"),
        ]  # fmt: skip

    if table == "fx_rates":
        rates = frame.assign(rate_to_home=pd.to_numeric(frame["rate_to_home"]).astype("float64"))
        checks += [
            _Check(rates, expect.ExpectColumnValuesToBeBetween(column="rate_to_home", min_value=0, strict_min=True),
                   "expect_column_values_to_be_between(rate_to_home, >0) [currencies convertible]", "rate_to_home"),
            _Check(rates, expect.ExpectColumnValuesToNotBeInSet(column="rate_to_home", value_set=[math.inf]),
                   "expect_column_values_to_not_be_in_set(rate_to_home, {inf}) [currencies convertible]",
                   "rate_to_home"),
        ]  # fmt: skip

    failures = _run(gx, suite, original, checks)
    return ValidationReport(suite=suite, success=not failures, evaluated_rows=len(original), failures=failures)  # fmt: skip


def validate_sync_volume(
    sync: Mapping[str, Any],
    history: pd.DataFrame,
    *,
    suite: str | None = None,
    thresholds: DataThresholds | None = None,
) -> ValidationReport:
    """Judge one sync's volumes against the source's recent syncs of the same object.

    `sync` holds fetched, changed, deleted, quarantined and staged_before (rows staged and not
    deleted before the sync); `history` the same columns of earlier syncs, newest first.
    ERROR: a mass deletion (deleted share of staged_before above max_deleted_share) or a share
    of quarantined records above max_quarantined_share. WARNING: nothing changed although the
    median of recent syncs is at least `usual_changes`.
    """
    thresholds = thresholds or DataThresholds()
    suite = suite or "sync_volume"
    fetched, staged_before = int(sync.get("fetched") or 0), int(sync.get("staged_before") or 0)
    changes = int(sync.get("changed") or 0) + int(sync.get("deleted") or 0)
    recent = history.head(thresholds.history_syncs)
    usual = float((recent["changed"] + recent["deleted"]).median()) if len(recent) else 0.0
    row = {
        **{k: sync.get(k) for k in ("source", "object", "sync_id", "fetched", "changed", "deleted",
                                    "quarantined", "staged_before")},
        "deleted_share": (int(sync.get("deleted") or 0) / staged_before) if staged_before else 0.0,
        "quarantined_share": (int(sync.get("quarantined") or 0) / fetched) if fetched else 0.0,
        "changes": changes,
        "usual_changes": usual,
    }  # fmt: skip
    frame = pd.DataFrame([row])
    gx = _import_gx()
    expect = gx.expectations
    checks = []
    if staged_before >= thresholds.min_rows_for_shares:
        checks.append(
            _Check(frame, expect.ExpectColumnValuesToBeBetween(column="deleted_share", max_value=thresholds.max_deleted_share),
                   f"expect_column_values_to_be_between(deleted_share, ..{thresholds.max_deleted_share:g}) "
                   "[no mass deletion]", "deleted_share")
        )  # fmt: skip
    if fetched >= thresholds.min_rows_for_shares:
        checks.append(
            _Check(frame, expect.ExpectColumnValuesToBeBetween(column="quarantined_share",
                   max_value=thresholds.max_quarantined_share),
                   f"expect_column_values_to_be_between(quarantined_share, ..{thresholds.max_quarantined_share:g}) "
                   "[quarantined share]", "quarantined_share")
        )  # fmt: skip
    if len(recent) >= thresholds.min_history_syncs and usual >= thresholds.usual_changes:
        checks.append(
            _Check(frame, expect.ExpectColumnValuesToBeBetween(column="changes", min_value=1),
                   f"expect_column_values_to_be_between(changes, 1..) [empty sync; usually {usual:g} changes]",
                   "changes", severity=WARNING)
        )  # fmt: skip
    failures = _run(gx, suite, frame, checks) if checks else []
    return ValidationReport(suite=suite, success=not failures, evaluated_rows=1, failures=failures)


# --- Running suites with GE ---------------------------------------------------------------------


def _run(gx: ModuleType, suite_name: str, original: pd.DataFrame, checks: list[_Check]) -> list[ExpectationFailure]:  # fmt: skip
    """Run the checks batch by batch (one batch per distinct row subset); failures in order."""
    batches: dict[int, tuple[pd.DataFrame, list[_Check]]] = {}
    for check in checks:
        batches.setdefault(id(check.rows), (check.rows, []))[1].append(check)
    found: dict[str, ExpectationFailure] = {}
    batch_definition = _batch_definition()
    with _validate_lock:
        for rows, group in batches.values():
            for check in group:
                check.expectation.meta = {_LABEL: check.label}
            # Built per call and never saved to the context, so nothing accumulates there.
            suite = gx.ExpectationSuite(
                name=suite_name, expectations=[c.expectation for c in group]
            )
            batch = batch_definition.get_batch(batch_parameters={"dataframe": rows})
            results = batch.validate(suite, result_format=_RESULT_FORMAT).results
            by_label = {r.expectation_config.meta.get(_LABEL): r for r in results}
            for check in group:
                result = by_label[check.label]
                if not result.success:
                    source = original if check.examples is None else check.examples
                    found[check.label] = _to_failure(result, check, source)
    # Walk our own list so failures come out in check order, whatever GE's order.
    return [found[c.label] for c in checks if c.label in found]


def _import_gx() -> ModuleType:
    """Import great_expectations lazily (seconds of import time) with analytics off."""
    # Must be set before GE is first imported: older 1.x releases (our range allows >=1.5)
    # read it when their analytics client initialises. GE 1.24 no longer ships an analytics
    # client at all, so there it is inert, but it keeps the "no network" promise portable.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _get_context() -> AbstractDataContext:
    """Process-wide ephemeral GE context, created on first use."""
    global _context
    if _context is not None:
        return _context
    with _context_lock:
        if _context is None:
            gx = _import_gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            # Belt and braces with the env var set in _import_gx (GE disables analytics if
            # either is False); ephemeral contexts take it as a runtime variable.
            context.variables.analytics_enabled = False
            # tqdm bars on stderr would clutter Dagster logs and CLI output.
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _context = context
    return _context


def _batch_definition() -> BatchDefinition:
    """Get-or-create the whole-dataframe batch definition in the shared context."""
    context = _get_context()
    with _context_lock:
        try:
            datasource = context.data_sources.get(_DATASOURCE_NAME)
        except KeyError:
            datasource = context.data_sources.add_pandas(name=_DATASOURCE_NAME)
        try:
            asset = datasource.get_asset(_ASSET_NAME)
        except LookupError:
            asset = datasource.add_dataframe_asset(name=_ASSET_NAME)
        try:
            return asset.get_batch_definition(_BATCH_DEFINITION_NAME)
        except KeyError:
            return asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION_NAME)


def _to_failure(result: Any, check: _Check, original: pd.DataFrame) -> ExpectationFailure:
    """Turn a failed ExpectationValidationResult into our report type."""
    label = check.label
    # A raising expectation also comes back as success=False; keep its message visible
    # instead of reporting a bare "0 unexpected".
    error = _exception_message(result.exception_info)
    if error:
        label = f"{label} raised: {error}"
    details = result.result or {}
    indexes = details.get("unexpected_index_list") or []
    examples = []
    for label_or_row in indexes[:MAX_EXAMPLES]:
        # Without unexpected_index_column_names GE returns plain index labels for pandas.
        index = label_or_row if not isinstance(label_or_row, dict) else None
        if index is not None and index in original.index:
            examples.append(_json_safe_record(original.loc[index]))
    return ExpectationFailure(
        expectation=label,
        column=check.column,
        unexpected_count=int(details.get("unexpected_count") or 0),
        examples=examples,
        severity=check.severity,
        rule=check.rule or _bracketed(check.label),
    )


def _flag(column: pd.Series) -> pd.Series:
    """A nullable boolean column as plain booleans, null meaning False."""
    return column.astype("boolean").fillna(False).astype(bool)


def _bracketed(label: str) -> str:
    match = re.search(r"\[([^\]]+)\]$", label)
    return match.group(1) if match else ""


def _record_id(example: dict) -> str:
    return next((str(example[c]) for c in ID_COLUMNS.values() if c and example.get(c)), "")


def _exception_message(info: Any) -> str | None:
    """GE puts either one exception dict or a dict of them (keyed by metric) here."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    for nested in info.values():
        message = _exception_message(nested)
        if message:
            return message
    return None


def _json_safe_record(row: pd.Series) -> dict:
    return {str(name): _json_safe(value) for name, value in row.items()}


def _json_safe(value: Any) -> Any:
    """Make one cell JSON-serialisable without losing what made the row fail."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64 | np.timedelta64):
        # .item() would turn nanosecond values into bare ints; go through pandas instead.
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        if value is pd.NaT:
            return None
    elif isinstance(value, np.generic):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            # JSON has no infinity; a string keeps it distinguishable from null.
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):  # includes pd.Timestamp
        return value.isoformat()
    if isinstance(value, dt.timedelta):  # includes pd.Timedelta
        return str(value)
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return str(value)


def _bounds(lower: float | None, upper: float | None) -> str:
    low = "" if lower is None else f"{lower:g}"
    high = "" if upper is None else f"{upper:g}"
    return f"{low}..{high}"


def _describe_example(example: dict) -> str:
    columns = (*REQUIRED_COLUMNS, "previous_value", "daily_change")
    shown = {k: example[k] for k in columns if k in example} or example
    return " ".join(f"{k}={v}" for k, v in shown.items())

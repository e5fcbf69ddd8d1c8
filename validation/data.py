"""The data suites: the rows changed since the last state that passed, and the staged state's
volumes (deletions, quarantine) against that state."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping
from typing import Any

import pandas as pd

from core.canonical import ID_COLUMNS
from validation.expectations import Check, import_gx, run_checks
from validation.report import WARNING, ValidationReport
from validation.thresholds import DataThresholds

NPS_SCORES = list(range(11))
CURRENCY_CODE = r"^[A-Z]{3}$"


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
    gx = import_gx()
    expect = gx.expectations
    checks: list[Check] = []

    id_column = ID_COLUMNS.get(table)
    if id_column:
        checks.append(
            Check(
                frame,
                expect.ExpectColumnValuesToNotBeNull(column=id_column),
                f"expect_column_values_to_not_be_null({id_column}) [ids present]",
                id_column,
            )
        )
        keyed = frame[["source", id_column]].astype("string").fillna("")
        checks.append(
            Check(
                keyed,
                expect.ExpectCompoundColumnsToBeUnique(column_list=["source", id_column]),
                f"expect_compound_columns_to_be_unique(source, {id_column}) [ids unique per source]",
                id_column,
            )
        )

    deleted = _flag(frame["is_deleted"]) if "is_deleted" in frame else False
    live = frame[~deleted] if "is_deleted" in frame else frame
    earliest = now - pd.Timedelta(days=365.25 * thresholds.max_age_years)
    tolerance = now + pd.Timedelta(hours=thresholds.future_tolerance_hours)

    if table == "deals" and len(live):
        for column in ("amount", "amount_home"):
            numbers = live.assign(**{column: pd.to_numeric(live[column]).astype("float64")})
            checks += [
                Check(
                    numbers,
                    expect.ExpectColumnValuesToNotBeInSet(
                        column=column, value_set=[math.inf, -math.inf]
                    ),
                    f"expect_column_values_to_not_be_in_set({column}, {{inf, -inf}}) [amounts finite]",
                    column,
                ),
                Check(
                    numbers,
                    expect.ExpectColumnValuesToBeBetween(column=column, min_value=0),
                    f"expect_column_values_to_be_between({column}, 0..) [amounts not negative]",
                    column,
                ),
            ]
        checks += [
            Check(
                live,
                expect.ExpectColumnValuesToNotBeNull(column="currency"),
                "expect_column_values_to_not_be_null(currency) [currencies known]",
                "currency",
            ),
            Check(
                live.assign(currency=live["currency"].astype("string").fillna("")),
                expect.ExpectColumnValuesToMatchRegex(column="currency", regex=CURRENCY_CODE),
                "expect_column_values_to_match_regex(currency, ISO 4217 code) [currencies known]",
                "currency",
            ),
        ]
        if known_currencies:
            known = sorted(set(known_currencies))
            checks.append(
                Check(
                    live[live["currency"].notna()],
                    expect.ExpectColumnValuesToBeInSet(column="currency", value_set=known),
                    f"expect_column_values_to_be_in_set(currency, {{{', '.join(known)}}}) [currencies known]",
                    "currency",
                )
            )
        priced = live[live["amount"].notna()]
        if len(priced):
            checks.append(
                Check(
                    priced,
                    expect.ExpectColumnValuesToNotBeNull(column="amount_home"),
                    "expect_column_values_to_not_be_null(amount_home) [currencies convertible]",
                    "amount_home",
                )
            )
        # close_date is a plain date in the reporting timezone: compare it as a naive day.
        close = pd.to_datetime(live["close_date"])
        dated = live.assign(close_date=close)[close.notna()]
        closed = _flag(dated["is_closed"])
        today = tolerance.tz_convert(None).normalize()
        ahead = (now + pd.Timedelta(days=365.25 * thresholds.max_years_ahead)).tz_convert(None)
        checks.append(
            Check(
                dated,
                expect.ExpectColumnValuesToBeBetween(
                    column="close_date",
                    min_value=earliest.tz_convert(None).to_pydatetime(),
                    max_value=ahead.to_pydatetime(),
                ),
                f"expect_column_values_to_be_between(close_date, {earliest:%Y-%m-%d}..{ahead:%Y-%m-%d}) "
                "[close dates plausible]",
                "close_date",
            )
        )
        if closed.any():
            checks.append(
                Check(
                    dated[closed],
                    expect.ExpectColumnValuesToBeBetween(
                        column="close_date", max_value=today.to_pydatetime()
                    ),
                    f"expect_column_values_to_be_between(close_date, ..{today:%Y-%m-%d}) "
                    "[closed deals not closed in the future]",
                    "close_date",
                )
            )
        if customer_ids is not None:
            linked = live[live["customer_id"].notna()]
            exists = linked.assign(customer_exists=linked["customer_id"].isin(set(customer_ids)))
            checks.append(
                Check(
                    exists,
                    expect.ExpectColumnValuesToBeInSet(column="customer_exists", value_set=[True]),
                    "expect_column_values_to_be_in_set(customer_id, staged customers) [deals point at "
                    "customers that exist]",
                    "customer_id",
                    severity=WARNING,
                )
            )

    if table == "nps_responses" and len(live):
        scores = live.assign(score=pd.to_numeric(live["score"]).astype("float64"))
        submitted = pd.to_datetime(live["submitted_at"], utc=True)
        checks += [
            Check(
                scores,
                expect.ExpectColumnValuesToNotBeNull(column="score"),
                "expect_column_values_to_not_be_null(score) [NPS scores integers 0–10]",
                "score",
            ),
            Check(
                scores,
                expect.ExpectColumnValuesToBeInSet(column="score", value_set=NPS_SCORES),
                "expect_column_values_to_be_in_set(score, 0..10) [NPS scores integers 0–10]",
                "score",
            ),
            Check(
                live.assign(submitted_at=submitted),
                expect.ExpectColumnValuesToBeBetween(
                    column="submitted_at",
                    min_value=earliest.to_pydatetime(),
                    max_value=tolerance.to_pydatetime(),
                ),
                f"expect_column_values_to_be_between(submitted_at, {earliest:%Y-%m-%d}..{tolerance:%Y-%m-%d %H:%M}) "
                "[submission times plausible]",
                "submitted_at",
            ),
        ]

    if table == "fx_rates":
        rates = frame.assign(rate_to_home=pd.to_numeric(frame["rate_to_home"]).astype("float64"))
        checks += [
            Check(
                rates,
                expect.ExpectColumnValuesToBeBetween(
                    column="rate_to_home", min_value=0, strict_min=True
                ),
                "expect_column_values_to_be_between(rate_to_home, >0) [currencies convertible]",
                "rate_to_home",
            ),
            Check(
                rates,
                expect.ExpectColumnValuesToNotBeInSet(column="rate_to_home", value_set=[math.inf]),
                "expect_column_values_to_not_be_in_set(rate_to_home, {inf}) [currencies convertible]",
                "rate_to_home",
            ),
        ]

    failures = run_checks(gx, suite, original, checks)
    return ValidationReport(
        suite=suite, success=not failures, evaluated_rows=len(original), failures=failures
    )


def _usual_changes(history: pd.DataFrame, thresholds: DataThresholds) -> tuple[int, float]:
    """(how many recent syncs, their median changes) of `history`, newest first."""
    recent = history.head(thresholds.history_syncs)
    usual = float((recent["changed"] + recent["deleted"]).median()) if len(recent) else 0.0
    return len(recent), usual


def _volume_report(
    suite: str,
    row: dict[str, Any],
    thresholds: DataThresholds,
    *,
    judge_deleted: bool,
    judge_quarantined: bool,
    recent: int,
) -> ValidationReport:
    """The volume expectations on one row (deleted_share, quarantined_share, changes,
    usual_changes), each where there is enough to judge it."""
    frame = pd.DataFrame([row])
    gx = import_gx()
    expect = gx.expectations
    usual = row["usual_changes"]
    checks = []
    if judge_deleted:
        checks.append(
            Check(
                frame,
                expect.ExpectColumnValuesToBeBetween(
                    column="deleted_share", max_value=thresholds.max_deleted_share
                ),
                f"expect_column_values_to_be_between(deleted_share, ..{thresholds.max_deleted_share:g}) "
                "[no mass deletion]",
                "deleted_share",
            )
        )
    if judge_quarantined:
        checks.append(
            Check(
                frame,
                expect.ExpectColumnValuesToBeBetween(
                    column="quarantined_share", max_value=thresholds.max_quarantined_share
                ),
                f"expect_column_values_to_be_between(quarantined_share, ..{thresholds.max_quarantined_share:g}) "
                "[quarantined share]",
                "quarantined_share",
            )
        )
    if recent >= thresholds.min_history_syncs and usual >= thresholds.usual_changes:
        checks.append(
            Check(
                frame,
                expect.ExpectColumnValuesToBeBetween(column="changes", min_value=1),
                f"expect_column_values_to_be_between(changes, 1..) [empty sync; usually {usual:g} changes]",
                "changes",
                severity=WARNING,
            )
        )
    failures = run_checks(gx, suite, frame, checks) if checks else []
    return ValidationReport(suite=suite, success=not failures, evaluated_rows=1, failures=failures)


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
    recent, usual = _usual_changes(history, thresholds)
    row = {
        **{
            k: sync.get(k)
            for k in (
                "source",
                "object",
                "sync_id",
                "fetched",
                "changed",
                "deleted",
                "quarantined",
                "staged_before",
            )
        },
        "deleted_share": (int(sync.get("deleted") or 0) / staged_before) if staged_before else 0.0,
        "quarantined_share": (int(sync.get("quarantined") or 0) / fetched) if fetched else 0.0,
        "changes": changes,
        "usual_changes": usual,
    }
    return _volume_report(
        suite,
        row,
        thresholds,
        judge_deleted=staged_before >= thresholds.min_rows_for_shares,
        judge_quarantined=fetched >= thresholds.min_rows_for_shares,
        recent=recent,
    )


def _flag(column: pd.Series) -> pd.Series:
    """A nullable boolean column as plain booleans, null meaning False."""
    return column.astype("boolean").fillna(False).astype(bool)


def validate_staged_state(
    state: Mapping[str, Any],
    history: pd.DataFrame,
    *,
    suite: str | None = None,
    thresholds: DataThresholds | None = None,
) -> ValidationReport:
    """Judge the staged state of one (source, object) against the last state that passed.

    `state` (okr_store.staging.staged_state plus source, object, sync_id, baseline_sync_id):
    live rows now, the quarantine now, and per sync since the baseline (`syncs`) its fetched
    records and the rows it deleted and the records it quarantined that are still so.
    ERROR: a mass deletion — the rows deleted since the baseline, of the rows known since it,
    or those one sync deleted, of the rows staged before it, above max_deleted_share; a
    quarantined share — the records quarantined since the baseline and still there, of the
    records staged, or those of one sync, of the records it fetched, above
    max_quarantined_share. Syncing the same broken data again changes neither: evidence stays
    until the CRM is fixed or an operator accepts the sync. WARNING: the newest sync changed
    nothing although the median of recent syncs (`history`) is at least `usual_changes`.
    """
    thresholds = thresholds or DataThresholds()
    suite = suite or "staged_state"
    syncs = state["syncs"]
    live, deleted = int(state["live"]), int(state["deleted_since"])
    quarantined, quarantined_now = int(state["quarantined_since"]), int(state["quarantined_now"])
    known, records = live + deleted, live + quarantined_now
    per_sync_deleted = [
        (int(r.still_deleted) / int(r.staged_before), int(r.id))
        for r in syncs.itertuples()
        if int(r.staged_before) >= thresholds.min_rows_for_shares
    ]
    per_sync_quarantined = [
        (int(r.still_quarantined) / int(r.fetched), int(r.id))
        for r in syncs.itertuples()
        if int(r.fetched) >= thresholds.min_rows_for_shares
    ]
    deleted_share, deleted_by = max(
        [
            *per_sync_deleted,
            *([(deleted / known, None)] if known >= thresholds.min_rows_for_shares else []),
        ],
        default=(0.0, None),
        key=lambda pair: pair[0],
    )
    quarantined_share, quarantined_by = max(
        [
            *per_sync_quarantined,
            *([(quarantined / records, None)] if records >= thresholds.min_rows_for_shares else []),
        ],
        default=(0.0, None),
        key=lambda pair: pair[0],
    )
    newest = syncs.iloc[-1] if len(syncs) else None
    changes = int(newest["changed"] + newest["deleted"]) if newest is not None else 0
    recent, usual = _usual_changes(history, thresholds)
    row = {
        "source": state.get("source"),
        "object": state.get("object"),
        "sync_id": state.get("sync_id"),
        "judged_against_sync": state.get("baseline_sync_id") or None,
        "live_rows": live,
        "deleted_since": deleted,
        "deleted_share": deleted_share,
        "worst_deleting_sync": deleted_by,
        "quarantined_since": quarantined,
        "quarantined_now": quarantined_now,
        "quarantined_share": quarantined_share,
        "worst_quarantining_sync": quarantined_by,
        "changes": changes,
        "usual_changes": usual,
    }
    return _volume_report(
        suite,
        row,
        thresholds,
        judge_deleted=bool(per_sync_deleted) or known >= thresholds.min_rows_for_shares,
        judge_quarantined=bool(per_sync_quarantined) or records >= thresholds.min_rows_for_shares,
        recent=recent,
    )

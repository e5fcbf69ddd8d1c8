"""The validation gate's side effects: run the suites (validation/) on staged rows and stored
values, record each sync's verdict, mark the KRs of blocked days stale.

`krpulse run`, `krpulse validate` and the Dagster checks all go through here, so a number is
judged the same way everywhere. Great Expectations is imported only when a suite runs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from core.canonical import CUSTOMERS, DEALS
from kr_metrics.definitions import DefinitionSet
from okr_store.repository import OkrStore
from okr_store.staging import accept_sync as accept
from okr_store.staging import (
    baseline_sync,
    latest_syncs,
    quarantine_counts,
    read_acceptances,
    read_sync,
    read_synced_rows,
    record_validation,
    staged_currencies,
    staged_ids,
    staged_state,
    sync_history,
)
from pipelines.settings import Settings
from validation.data import validate_staged_rows, validate_staged_state
from validation.numbers import validate_metric_values
from validation.report import ValidationReport, combine
from validation.verdicts import (
    DayVerdict,
    SyncVerdict,
    data_block_reason,
    day_verdict,
    number_rules,
)

# --- Data suites --------------------------------------------------------------------------------


def validate_sync(
    settings: Settings, engine: sa.Engine, sync: Mapping[str, Any]
) -> ValidationReport:
    """Judge the staged state of the sync's (source, object) against the last state that passed
    (or that an operator accepted): the data suites on every row written since then, and the
    deletions and quarantine since then. Record the verdict on the sync.

    Judging the state rather than the sync alone means syncing the same broken data again
    passes nothing: rows deleted or quarantined by a failed sync stay counted until the CRM is
    fixed or the sync is accepted (`krpulse validate --accept`).
    """
    source, table, sync_id = sync["source"], sync["object"], int(sync["id"])
    thresholds = settings.validation.data.thresholds()
    suite = f"{source}/{table}"
    with engine.connect() as conn:
        baseline = baseline_sync(conn, source, table, before=sync_id)
        rows = read_synced_rows(conn, table, source=source, since=baseline)
        state = staged_state(conn, source, table, since=baseline, until=sync_id)
        history = sync_history(conn, source, table, before=sync_id, limit=thresholds.history_syncs)
        currencies = customers = None
        if table == DEALS:
            fx = staged_currencies(conn)
            # Without staged FX rates the CRM converts itself: then only the code is checked.
            currencies = fx | {settings.reporting_currency} if fx else None
            customers = staged_ids(conn, CUSTOMERS, source=source)
    state = {
        **state,
        "source": source,
        "object": table,
        "sync_id": sync_id,
        "baseline_sync_id": baseline,
    }
    report = combine(
        suite,
        [
            validate_staged_rows(
                table,
                rows,
                suite=suite,
                now=sync["synced_at"],
                known_currencies=currencies,
                customer_ids=customers,
                thresholds=thresholds,
            ),
            validate_staged_state(state, history, suite=suite, thresholds=thresholds),
        ],
    )
    with engine.begin() as conn:
        record_validation(conn, sync_id, report.status, report.as_dict())
    return report


def data_gate(
    settings: Settings, engine: sa.Engine, *, only: str | None = None, revalidate: bool = False
) -> list[SyncVerdict]:
    """The verdict on the staged state of each (source, object) of the configured sources,
    recorded on its newest sync.

    A sync is judged once and its verdict recorded in sync_history; later calls read it back
    (`revalidate=True` judges again, as `krpulse validate` does). A sync an operator accepted
    blocks nothing; its verdict says who accepted it and why.
    """
    names = [settings.source(only).name] if only else [s.name for s in settings.sources]
    newest = latest_syncs(engine, names).to_dict("records")
    accepted = _acceptances(engine, [int(s["id"]) for s in newest])
    verdicts = []
    for sync in newest:
        sync_id = int(sync["id"])
        stored = sync.get("validation_report")
        if stored and (sync_id in accepted or not revalidate):  # an acceptance is final
            report = ValidationReport.from_dict(json.loads(stored))
        else:
            report = validate_sync(settings, engine, sync)
        verdicts.append(
            SyncVerdict(
                sync["source"],
                sync["object"],
                sync_id,
                sync["synced_at"],
                report,
                accepted=accepted.get(sync_id),
            )
        )
    return verdicts


def _acceptances(engine: sa.Engine, sync_ids: list[int]) -> dict[int, str]:
    """{sync id: "accepted by WHO at WHEN: WHY"} of the syncs an operator accepted."""
    if not sync_ids:
        return {}
    frame = read_acceptances(engine, sync_ids)
    return {
        int(row.sync_id): f"accepted by {row.accepted_by} at {row.accepted_at:%Y-%m-%d %H:%M} UTC: "
        f"{row.reason}"
        for row in frame.iloc[::-1].itertuples()  # the newest acceptance wins
    }


class AcceptError(ValueError):
    """`krpulse validate --accept` cannot accept that sync; the message says why."""


def accept_sync(
    settings: Settings, engine: sa.Engine, sync_id: int, *, accepted_by: str, reason: str
) -> ValidationReport:
    """An operator accepts the state after sync `sync_id` although the gate failed it: it becomes
    the reference later syncs are judged against, and days computed from it are pushed again.
    Audited in gate_acceptances (who, why, when, the verdict accepted). Returns that verdict."""
    if not accepted_by.strip() or not reason.strip():
        raise AcceptError("say who accepts (--by NAME) and why (--why TEXT): both are audited")
    sync = read_sync(engine, sync_id)
    names = [s.name for s in settings.sources]
    if sync is None or sync["source"] not in names:
        raise AcceptError(
            f"sync {sync_id} is not a sync of a configured source; `krpulse validate` lists "
            "the failing syncs with their ids"
        )
    stored = sync.get("validation_report")
    report = (
        ValidationReport.from_dict(json.loads(stored))
        if isinstance(stored, str)
        else validate_sync(settings, engine, sync)
    )
    if not report.blocked:
        raise AcceptError(
            f"sync {sync_id} ({sync['source']}/{sync['object']}) did not fail the gate "
            f"({report.status}): there is nothing to accept"
        )
    with engine.begin() as conn:
        accept(
            conn,
            sync_id,
            accepted_by=accepted_by.strip(),
            reason=reason.strip(),
            report=report.as_dict(),
        )
    return report


def quarantine_notes(settings: Settings, engine: sa.Engine) -> list[str]:
    """What the quarantine holds per source/object, for the day's report: records that are not
    counted, and the updates among them whose earlier good row stays in effect."""
    counts = quarantine_counts(engine, [s.name for s in settings.sources])
    return [
        f"{row.source}/{row.object}: {row.quarantined} quarantined, not counted"
        + (
            f" ({row.shadowing} of them updates whose earlier good row is kept)"
            if row.shadowing
            else ""
        )
        for row in counts.itertuples()
    ]


# --- Number suites ------------------------------------------------------------------------------


def previous_values(store: OkrStore, as_of: dt.date) -> pd.DataFrame:
    """The last published value of every KR and KPI before `as_of` (kind, cycle, key, value)."""
    day_before = as_of - dt.timedelta(days=1)
    krs = store.progress(as_of=day_before)
    kpis = store.kpi_values(as_of=day_before)
    frames = [
        pd.DataFrame(
            {
                "kind": "kr",
                "cycle": krs.get("cycle"),
                "key": krs.get("kr"),
                "value": krs.get("value"),
            }
        ),
        pd.DataFrame(
            {"kind": "kpi", "cycle": None, "key": kpis.get("kpi"), "value": kpis.get("value")}
        ),
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["kind", "cycle", "key", "value"])
    return pd.concat(frames, ignore_index=True)


def check_numbers(
    settings: Settings,
    definitions: DefinitionSet | None,
    values: pd.DataFrame,
    previous: pd.DataFrame | None = None,
) -> ValidationReport:
    """The number suites on one day's values (KRs and/or KPIs) against the last published ones."""
    ranges, nullable = number_rules(definitions)
    return validate_metric_values(
        values,
        ranges,
        nullable_metrics=nullable,
        previous=previous,
        thresholds=settings.validation.numbers.thresholds(),
    )


def judge_day(
    values: pd.DataFrame,
    as_of: dt.date,
    settings: Settings,
    definitions: DefinitionSet,
    store: OkrStore,
    verdicts: list[SyncVerdict],
) -> DayVerdict:
    """The data gate's verdicts on the staged data, then the number suites on the day's
    `values` against the last published ones: one verdict for the day."""
    numbers = None
    if not data_block_reason(verdicts):
        numbers = check_numbers(settings, definitions, values, previous_values(store, as_of))
    return day_verdict(verdicts, numbers)


# --- Consequences -------------------------------------------------------------------------------


def key_results_on(definitions: DefinitionSet, day: dt.date) -> list[tuple[str, str]]:
    """(cycle, kr) of every KR whose cycle runs on `day`."""
    return [
        (loaded.cycle.key, kr.key)
        for loaded, kr in definitions.key_results()
        if loaded.cycle.contains(day)
    ]


def mark_blocked(
    store: OkrStore,
    definitions: DefinitionSet,
    days: Iterable[dt.date],
    reason: str,
    run_id: str,
    *,
    frozen_cycles: Iterable[str] = (),
) -> int:
    """Mark every KR of the blocked `days` stale with `reason`: the push of those days did not
    happen, so each keeps its last good value. Closed (frozen) cycles stay as stored."""
    frozen = set(frozen_cycles)
    marked = 0
    for day in sorted(set(days)):
        keys = [k for k in key_results_on(definitions, day) if k[0] not in frozen]
        marked += len(store.mark_stale(day, keys, reason, run_id))
    return marked

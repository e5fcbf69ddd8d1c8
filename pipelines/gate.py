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
from okr_store.staging import (
    latest_syncs,
    read_synced_rows,
    record_validation,
    staged_currencies,
    staged_ids,
    sync_history,
)
from pipelines.settings import Settings
from validation.data import validate_staged_rows, validate_sync_volume
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
    """Run the data suites on the rows one sync wrote and on its volumes; record the verdict."""
    source, table, sync_id = sync["source"], sync["object"], int(sync["id"])
    thresholds = settings.validation.data.thresholds()
    suite = f"{source}/{table}"
    with engine.connect() as conn:
        rows = read_synced_rows(conn, table, source=source, sync_id=sync_id)
        history = sync_history(conn, source, table, before=sync_id, limit=thresholds.history_syncs)
        currencies = customers = None
        if table == DEALS:
            fx = staged_currencies(conn)
            # Without staged FX rates the CRM converts itself: then only the code is checked.
            currencies = fx | {settings.reporting_currency} if fx else None
            customers = staged_ids(conn, CUSTOMERS, source=source)
    report = combine(
        suite,
        [
            validate_staged_rows(table, rows, suite=suite, now=sync["synced_at"],
                                 known_currencies=currencies, customer_ids=customers,
                                 thresholds=thresholds),
            validate_sync_volume({**sync, "sync_id": sync_id}, history, suite=suite,
                                 thresholds=thresholds),
        ],
    )  # fmt: skip
    with engine.begin() as conn:
        record_validation(conn, sync_id, report.status, report.as_dict())
    return report


def data_gate(
    settings: Settings, engine: sa.Engine, *, only: str | None = None, revalidate: bool = False
) -> list[SyncVerdict]:
    """The verdict on the newest sync of each (source, object) of the configured sources.

    A sync is validated once and its verdict recorded in sync_history; later calls read it
    back (`revalidate=True` runs the suites again, as `krpulse validate` does).
    """
    names = [settings.source(only).name] if only else [s.name for s in settings.sources]
    verdicts = []
    for sync in latest_syncs(engine, names).to_dict("records"):
        stored = sync.get("validation_report")
        if stored and not revalidate:
            report = ValidationReport.from_dict(json.loads(stored))
        else:
            report = validate_sync(settings, engine, sync)
        verdicts.append(
            SyncVerdict(sync["source"], sync["object"], int(sync["id"]), sync["synced_at"], report)
        )
    return verdicts


# --- Number suites ------------------------------------------------------------------------------


def previous_values(store: OkrStore, as_of: dt.date) -> pd.DataFrame:
    """The last published value of every KR and KPI before `as_of` (kind, cycle, key, value)."""
    day_before = as_of - dt.timedelta(days=1)
    krs = store.progress(as_of=day_before)
    kpis = store.kpi_values(as_of=day_before)
    frames = [
        pd.DataFrame(
            {"kind": "kr", "cycle": krs.get("cycle"), "key": krs.get("kr"), "value": krs.get("value")}
        ),
        pd.DataFrame({"kind": "kpi", "cycle": None, "key": kpis.get("kpi"), "value": kpis.get("value")}),
    ]  # fmt: skip
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

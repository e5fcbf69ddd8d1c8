"""Which sources are failing, and which KRs and KPIs depend on them (so they go stale, not wrong).

The rule, kept simple on purpose: a KR (or KPI) depends on every configured source unless its
`where:` filters on `source`; then on the sources that filter admits. A source is failing when
its latest sync attempt failed after its last successful sync (the sync asset records each
failed attempt as an AssetObservation with `sync_status: failed`).
"""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from core.canonical import CUSTOMERS, DEALS, NPS_RESPONSES
from kr_metrics.definitions import DefinitionSet
from okr_store.staging import STAGING_TABLES
from pipelines import flow
from pipelines.names import sync_asset_key
from pipelines.settings import Settings

SYNC_FAILED = "failed"
STALE_REASON = "source {sources} failed to sync"
STAGED_SOURCES_COLUMNS = [
    "as_of", "source", "type", "status", "reason", "last_synced_at", "stale_from",
    "deals", "customers", "nps_responses",
]  # fmt: skip


def sync_failure_observation(key: dg.AssetKey, error: BaseException, attempt: int):
    """What a failing sync step records on each of its assets before it raises."""
    return dg.AssetObservation(
        asset_key=key,
        metadata={
            "sync_status": SYNC_FAILED,
            # The connectors' errors name settings and env var names, never secret values.
            "error": f"{type(error).__name__}: {error}"[:500],
            "attempt": attempt,
        },
    )


def source_states(instance: dg.DagsterInstance, settings: Settings) -> pd.DataFrame:
    """One row per configured source: status `ok`/`failing`, the error, its last good sync."""
    rows = []
    for source in settings.sources:
        objects = flow.source_for(settings, source).objects
        status, reason, last_success = "ok", "", None
        for obj in objects:  # a handful of objects per source
            key = dg.AssetKey(sync_asset_key(source.name, obj))
            materialized = instance.get_latest_materialization_event(key)
            observed = instance.fetch_observations(key, limit=1).records
            if materialized is not None:
                stamp = dt.datetime.fromtimestamp(materialized.timestamp, dt.UTC)
                last_success = stamp if last_success is None else min(last_success, stamp)
            if not observed:
                continue
            entry = observed[0].event_log_entry
            metadata = entry.asset_observation.metadata if entry.asset_observation else {}
            failed = getattr(metadata.get("sync_status"), "value", None) == SYNC_FAILED
            if failed and (materialized is None or entry.timestamp > materialized.timestamp):
                status = "failing"
                reason = getattr(metadata.get("error"), "value", "") or "sync failed"
        rows.append(
            {"source": source.name, "type": source.type, "status": status, "reason": reason,
             "last_synced_at": last_success}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["source", "type", "status", "reason", "last_synced_at"])


def staged_counts(engine: sa.Engine, sources: list[str]) -> pd.DataFrame:
    """Rows staged (not deleted) per source in the tables the metrics read."""
    counts = pd.DataFrame({"source": sources}).set_index("source")
    with engine.connect() as conn:
        for table in (DEALS, CUSTOMERS, NPS_RESPONSES):
            staged = STAGING_TABLES[table]
            query = (
                sa.select(staged.c.source, sa.func.count().label("rows"))
                .where(sa.func.coalesce(staged.c.is_deleted, sa.false()) == sa.false())
                .group_by(staged.c.source)
            )
            found = pd.DataFrame(conn.execute(query).all(), columns=["source", "rows"])
            counts[table] = found.set_index("source")["rows"].reindex(counts.index).fillna(0)
    return counts.astype(int).reset_index()


def staged_sources_frame(
    states: pd.DataFrame, counts: pd.DataFrame, days: list[dt.date], timezone: str
) -> pd.DataFrame:
    """The `staged_sources` asset: per day and source, its status and what is staged.

    A failing source makes a day stale from the local day of its last good sync on: earlier
    days were complete when that sync read them.
    """
    merged = states.merge(counts, on="source", how="left")
    last = pd.to_datetime(merged["last_synced_at"], utc=True)
    # Never synced successfully: no day is complete (an empty stale_from means "every day").
    merged["stale_from"] = last.dt.tz_convert(ZoneInfo(timezone)).dt.date.astype(object)
    merged["stale_from"] = merged["stale_from"].where(last.notna(), None)
    merged["last_synced_at"] = last
    frame = pd.DataFrame({"as_of": days}).merge(merged, how="cross")
    return frame.reindex(columns=STAGED_SOURCES_COLUMNS)


def failing_sources_by_day(staged: pd.DataFrame) -> dict[dt.date, list[str]]:
    """Day -> the sources that make it stale (failing, and the day not older than the failure)."""
    if staged.empty:
        return {}
    as_of = pd.to_datetime(staged["as_of"])
    stale_from = pd.to_datetime(staged["stale_from"])
    failing = staged[(staged["status"] == "failing") & (stale_from.isna() | (as_of >= stale_from))]
    return {day: sorted(group["source"]) for day, group in failing.groupby("as_of")}


def admitted_sources(where: dict, sources: list[str]) -> set[str]:
    """The sources a `where:` admits: all of them unless it filters on `source`."""
    wanted = where.get("source")
    if wanted is None:
        return set(sources)
    if isinstance(wanted, dict):
        excluded = wanted.get("not", [])
        excluded = excluded if isinstance(excluded, list) else [excluded]
        return set(sources) - {str(s) for s in excluded}
    wanted = wanted if isinstance(wanted, list) else [wanted]
    return {str(s) for s in wanted} & set(sources)


def dependencies(definitions: DefinitionSet, sources: list[str]) -> pd.DataFrame:
    """One row per (kind, cycle, key, source it depends on), for KRs and KPIs."""
    rows = [
        {"kind": "kr", "cycle": loaded.cycle.key, "key": kr.key, "source": source}
        for loaded, kr in definitions.key_results()
        for source in admitted_sources(kr.where, sources)
    ] + [
        {"kind": "kpi", "cycle": None, "key": kpi.key, "source": source}
        for kpi in definitions.kpis
        for source in admitted_sources(kpi.where, sources)
    ]
    return pd.DataFrame(rows, columns=["kind", "cycle", "key", "source"])


def depending_on(deps: pd.DataFrame, failing: list[str], kind: str) -> pd.DataFrame:
    """The (cycle, key) of `kind` that depend on any of the `failing` sources."""
    hit = deps[(deps["kind"] == kind) & deps["source"].isin(failing)]
    return hit[["cycle", "key"]].drop_duplicates().reset_index(drop=True)

"""Which sources are failing, and which KRs and KPIs depend on them (so they go stale, not wrong).

The rule, kept simple on purpose: a KR (or KPI) depends on every configured source unless its
`where:` filters on `source`; then on the sources that filter admits. A source is failing when
its newest failed sync attempt (okr_store's sync_failures, written by every sync) is later than
its last good sync. Everything here reads the store, so `krpulse run` and the Dagster assets see
the same failing sources; Dagster's event log only shows them.
"""

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from core.canonical import METRIC_TABLES
from kr_metrics.definitions import DefinitionSet
from okr_store.staging import STAGING_TABLES, last_synced, latest_sync_failures
from pipelines.settings import Settings

STALE_REASON = "source {sources} failed to sync"
STATE_COLUMNS = ["source", "type", "status", "reason", "last_synced_at"]
# Per day and source: its state, the day it is stale from, and its rows staged per metric table.
STAGED_SOURCES_COLUMNS = ["as_of", *STATE_COLUMNS, "stale_from", *METRIC_TABLES]


def source_states(settings: Settings, engine: sa.Engine) -> pd.DataFrame:
    """One row per configured source: status `ok`/`failing`, the error, its last good sync."""
    names = [s.name for s in settings.sources]
    synced = last_synced(engine, names)
    failures = latest_sync_failures(engine, names)
    rows = []
    for source in settings.sources:
        last_success = synced.get(source.name)
        failed_at, error = failures.get(source.name, (None, ""))
        failing = failed_at is not None and (last_success is None or failed_at > last_success)
        rows.append(
            {
                "source": source.name,
                "type": source.type,
                "status": "failing" if failing else "ok",
                "reason": (error or "sync failed") if failing else "",
                "last_synced_at": last_success,
            }
        )
    return pd.DataFrame(rows, columns=STATE_COLUMNS)


def failing_sources(
    settings: Settings, engine: sa.Engine, days: list[dt.date]
) -> dict[dt.date, list[str]]:
    """Day -> the failing sources that make it stale, read from the store."""
    states = source_states(settings, engine)
    if not (states["status"] == "failing").any():
        return {}
    counts = pd.DataFrame({"source": states["source"]})
    return failing_sources_by_day(staged_sources_frame(states, counts, days, settings.timezone))


def staged_counts(engine: sa.Engine, sources: list[str]) -> pd.DataFrame:
    """Rows staged (not deleted) per source in the tables the metrics read."""
    counts = pd.DataFrame({"source": sources}).set_index("source")
    with engine.connect() as conn:
        for table in METRIC_TABLES:
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

"""Which days a Dagster run computes, from its partition or a single-run backfill's range."""

import datetime as dt

import dagster as dg

from core.calendar import each_day


def partition_days(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> list[dt.date]:
    """The days a run computes: its one partition, or the whole range of a single-run backfill;
    none when the run is not partitioned (e.g. a sync of its own outside the daily job)."""
    if context.has_partition_key_range:
        window = context.partition_key_range
        start, end = dt.date.fromisoformat(window.start), dt.date.fromisoformat(window.end)
    elif context.has_partition_key:
        start = end = dt.date.fromisoformat(context.partition_key)
    else:
        return []
    return each_day(start, end)

"""Reads for the team's week: each KR's stored values on a few chosen days (sparklines, weekly change)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from okr_store.models import CheckInRevision, KrChart, KrProgress, RetroItemRow, RunDay


def values_on_days(
    engine: sa.Engine,
    cycle: str,
    days: Iterable[dt.date],
    *,
    team: str | None = None,
    with_company: bool = False,
) -> pd.DataFrame:
    """(kr, as_of, value) of `cycle` on exactly `days`, by KR and day.

    A handful of days per KR, read through the (cycle, kr, as_of) index, instead of the whole
    daily history: the overview draws a weekly sparkline and the change since the same day last
    week for every KR on every request. `team` keeps one team's KRs (and the company's with
    `with_company`).
    """
    table = KrProgress.__table__
    wanted = sorted(set(days))
    query = sa.select(table.c.kr, table.c.team, table.c.as_of, table.c.value).where(
        table.c.cycle == cycle, table.c.as_of.in_(wanted)
    )
    if team is not None:
        mine = table.c.team == team
        query = query.where(sa.or_(mine, table.c.team.is_(None)) if with_company else mine)
    with engine.connect() as conn:
        frame = pd.read_sql(query.order_by(table.c.kr, table.c.as_of), conn)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    return frame


def weekly_days(first_day: dt.date, as_of: dt.date, *, at_most: int = 16) -> list[dt.date]:
    """`as_of` and days a whole number of weeks before it, back to `first_day`: the same weekday
    each time, every week for a quarter, every few weeks for a long cycle (`at_most` days)."""
    weeks = (as_of - first_day).days // 7
    step = max(1, -(-weeks // (at_most - 1))) if at_most > 1 else max(weeks, 1)
    return [as_of - dt.timedelta(days=7 * n) for n in range(weeks - weeks % step, -1, -step)]


def store_version(engine: sa.Engine) -> tuple:
    """A value that changes whenever the store's numbers, check-ins or retrospectives change.

    Every write of KR progress (a day written or marked stale) records a run day, every check-in
    write a revision and every retrospective item a row, and every write of the KR pages (chart
    basis and drill-downs, one transaction after the run's days) stamps its charts, so their
    counts and newest times change with each write. Small aggregate reads; a page built from
    the store can be cached under this key until the next write.
    """
    with engine.connect() as conn:
        return tuple(conn.execute(_version_query()).one())


@functools.cache
def _version_query() -> sa.Select:
    """store_version's statement, built once: every part is a count or the max of an indexed
    column (migration 0010), so the read costs a few index lookups, not table scans."""
    days, revisions, retro = RunDay.__table__, CheckInRevision.__table__, RetroItemRow.__table__
    charts = KrChart.__table__
    return sa.select(
        sa.select(sa.func.count()).select_from(days).scalar_subquery(),
        sa.select(sa.func.max(days.c.recorded_at)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(revisions).scalar_subquery(),
        sa.select(sa.func.max(revisions.c.recorded_at)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(retro).scalar_subquery(),
        sa.select(sa.func.count()).select_from(charts).scalar_subquery(),
        sa.select(sa.func.max(charts.c.computed_at)).scalar_subquery(),
    )

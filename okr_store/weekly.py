"""Reads for the team's week: each KR's stored values on a few chosen days (sparklines, weekly change)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from okr_store.models import KrProgress


def values_on_days(
    engine: sa.Engine, cycle: str, days: Iterable[dt.date], *, team: str | None = None,
    with_company: bool = False,
) -> pd.DataFrame:  # fmt: skip
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


def weekly_days(first_day: dt.date, as_of: dt.date) -> list[dt.date]:
    """`as_of` and every seventh day before it, back to `first_day`: the same weekday each week."""
    count = (as_of - first_day).days // 7
    return [as_of - dt.timedelta(days=7 * n) for n in range(count, -1, -1)]

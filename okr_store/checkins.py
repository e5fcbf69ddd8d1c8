"""Check-ins and retrospectives in the OKR store: one check-in per KR and week, every edit audited."""

from __future__ import annotations

import datetime as dt
import zlib

import pandas as pd
import sqlalchemy as sa

from core.checkins import CheckIn, CheckInError, RetroItem, quick_win_order
from okr_store.db import kr_rows, read_frame, write_transaction
from okr_store.models import CheckInRevision, CheckInRow, KrProgress, RetroItemRow

CHECK_IN_COLUMNS = [c.name for c in CheckInRow.__table__.columns]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lock_key(cycle: str, kr: str, week: dt.date) -> int:
    # Writers of one KR's week queue behind each other (PostgreSQL advisory lock); a collision
    # with another key only makes a writer wait, never corrupts anything.
    return zlib.crc32(f"checkin/{cycle}/{kr}/{week}".encode()) & 0x7FFFFFFF


class CheckInStore:
    """Writes and reads check-ins and retrospective items through one SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # --- check-ins ------------------------------------------------------------------------------

    def record(self, check_in: CheckIn, *, on_day: dt.date, now: dt.datetime | None = None) -> dict:
        """Create or replace `check_in` for its week, with the KR's value on `on_day` beside it.

        The KR must be in the store (its newest row up to `on_day` gives the value and team).
        Returns the stored check-in as a dict, with its revision number (1 for the first).
        """
        now = now or _now()
        table, revisions = CheckInRow.__table__, CheckInRevision.__table__
        progress = KrProgress.__table__
        lock = _lock_key(check_in.cycle, check_in.kr, check_in.week)
        with write_transaction(self.engine, lock_key=lock) as conn:
            measured = conn.execute(
                sa.select(progress.c.value, progress.c.as_of, progress.c.team)
                .where(
                    progress.c.cycle == check_in.cycle,
                    progress.c.kr == check_in.kr,
                    progress.c.as_of <= on_day,
                )
                .order_by(progress.c.as_of.desc())
                .limit(1)
            ).first()
            if measured is None:
                known = conn.execute(
                    sa.select(progress.c.kr)
                    .where(progress.c.cycle == check_in.cycle, progress.c.kr == check_in.kr)
                    .limit(1)
                ).first()
                if known is None:
                    raise CheckInError(
                        f"no key result '{check_in.kr}' in cycle '{check_in.cycle}' in the OKR store"
                    )
            value = None if measured is None else measured.value
            value_as_of = None if measured is None else measured.as_of
            team = None if measured is None else measured.team
            notes = {
                "confidence": check_in.confidence,
                "progress": check_in.progress,
                "problems": check_in.problems,
                "next_steps": check_in.next_steps,
                "value": value,
                "value_as_of": value_as_of,
                "author": check_in.author,
            }
            existing = conn.execute(
                sa.select(table.c.id, table.c.revision).where(
                    table.c.cycle == check_in.cycle,
                    table.c.kr == check_in.kr,
                    table.c.week == check_in.week,
                )
            ).first()
            if existing is None:
                revision = 1
                check_in_id = conn.execute(
                    sa.insert(table)
                    .values(
                        cycle=check_in.cycle,
                        kr=check_in.kr,
                        week=check_in.week,
                        team=team,
                        revision=revision,
                        created_at=now,
                        updated_at=now,
                        **notes,
                    )
                    .returning(table.c.id)
                ).scalar_one()
            else:
                check_in_id, revision = existing.id, existing.revision + 1
                conn.execute(
                    sa.update(table)
                    .where(table.c.id == check_in_id)
                    .values(revision=revision, updated_at=now, team=team, **notes)
                )
            conn.execute(
                sa.insert(revisions).values(
                    check_in_id=check_in_id, revision=revision, recorded_at=now, **notes
                )
            )
        return {
            "id": check_in_id,
            "cycle": check_in.cycle,
            "kr": check_in.kr,
            "week": check_in.week,
            "team": team,
            "revision": revision,
            "updated_at": now,
            **notes,
        }

    def check_ins(
        self,
        *,
        cycle: str | None = None,
        kr: str | None = None,
        team: str | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> pd.DataFrame:
        """Check-ins (current versions) by KR and week, oldest week first; weeks by their Monday."""
        query = kr_rows(
            CheckInRow.__table__, "week", cycle=cycle, kr=kr, team=team, start=start, end=end
        )
        with self.engine.connect() as conn:
            return read_frame(conn, query)

    def latest_check_ins(self, cycle: str, *, up_to: dt.date | None = None) -> pd.DataFrame:
        """Each KR's newest check-in of `cycle` (week up to `up_to`'s week), one row per KR."""
        table = CheckInRow.__table__
        latest = sa.select(table.c.kr, sa.func.max(table.c.week).label("latest")).where(
            table.c.cycle == cycle
        )
        if up_to is not None:
            latest = latest.where(table.c.week <= up_to)
        latest = latest.group_by(table.c.kr).subquery()
        query = (
            sa.select(table)
            .join(latest, sa.and_(table.c.kr == latest.c.kr, table.c.week == latest.c.latest))
            .where(table.c.cycle == cycle)
            .order_by(table.c.kr)
        )
        with self.engine.connect() as conn:
            return read_frame(conn, query)

    def revisions(self, cycle: str, kr: str, week: dt.date) -> pd.DataFrame:
        """Every version of one check-in, first to last (the audit trail)."""
        table, revisions = CheckInRow.__table__, CheckInRevision.__table__
        query = (
            sa.select(revisions)
            .join(table, table.c.id == revisions.c.check_in_id)
            .where(table.c.cycle == cycle, table.c.kr == kr, table.c.week == week)
            .order_by(revisions.c.revision)
        )
        with self.engine.connect() as conn:
            return read_frame(conn, query)

    # --- retrospective --------------------------------------------------------------------------

    def add_retro_item(self, item: RetroItem, *, now: dt.datetime | None = None) -> int:
        table = RetroItemRow.__table__
        with write_transaction(self.engine) as conn:
            return conn.execute(
                sa.insert(table)
                .values(
                    cycle=item.cycle,
                    text=item.text,
                    benefit=item.benefit,
                    effort=item.effort,
                    author=item.author,
                    recorded_at=now or _now(),
                )
                .returning(table.c.id)
            ).scalar_one()

    def retro_items(self, cycle: str) -> list[dict]:
        """The cycle's retrospective items, best first, the top quick wins marked."""
        table = RetroItemRow.__table__
        query = sa.select(table).where(table.c.cycle == cycle).order_by(table.c.id)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return quick_win_order(rows)

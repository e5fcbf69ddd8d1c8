"""The OKR store's repository: write a day's progress atomically, read what readers need."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from okr_store.db import kr_rows, process_alive, read_frame, upsert, write_transaction
from okr_store.models import (
    CycleDefinition,
    KeyResultDefinition,
    KpiDefinition,
    KpiValue,
    KrChart,
    KrDrilldown,
    KrProgress,
    ObjectiveDefinition,
    PushState,
    Run,
    RunDay,
)

KR_PROGRESS_COLUMNS = [c.name for c in KrProgress.__table__.columns if c.name != "id"]
KPI_VALUE_COLUMNS = [c.name for c in KpiValue.__table__.columns if c.name != "id"]
STALE = "stale"
# Run statuses in the runs table.
RUNNING, SUCCEEDED, PARTIAL, FAILED = "running", "succeeded", "partial", "failed"
# A run on another host that has shown no sign of life for this long is taken for dead.
REAP_AFTER = dt.timedelta(hours=2)


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    out = frame.reindex(columns=columns)
    return out.astype(object).where(out.notna(), None).to_dict("records")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _latest_per_key(
    table: sa.Table,
    keys: list[str],
    *,
    as_of: dt.date | None,
    team: str | None,
    where: Iterable[sa.ColumnElement[bool]] = (),
) -> sa.Select:
    """Each key's newest row up to `as_of`: max(as_of) per key in SQL, joined back.

    The max runs over the (key..., as_of) unique index, so a reader fetches one row per KR or
    KPI however long the history is.
    """
    latest = sa.select(*(table.c[k] for k in keys), sa.func.max(table.c.as_of).label("latest"))
    if as_of is not None:
        latest = latest.where(table.c.as_of <= as_of)
    if team is not None:
        latest = latest.where(table.c.team == team)
    latest = latest.where(*where).group_by(*(table.c[k] for k in keys)).subquery()
    on = [table.c[k] == latest.c[k] for k in keys] + [table.c.as_of == latest.c.latest]
    return sa.select(table).join(latest, sa.and_(*on))


class OkrStore:
    """Reads and writes the OKR store through one SQLAlchemy engine.

    The repository API the CLI, the Dagster assets, the dashboard and the review report share:
    writes are idempotent per (KR, day) and audited per run; reads return pandas frames.
    """

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # --- Writing ------------------------------------------------------------------------------

    def write_day(
        self,
        as_of: dt.date,
        progress: pd.DataFrame,
        kpis: pd.DataFrame,
        *,
        frozen_cycles: Iterable[str] = (),
    ) -> None:
        """Replace everything stored for `as_of` with these rows, in one transaction.

        Rows of `frozen_cycles` (closed cycles whose grades are final) are neither written nor
        removed: the caller leaves them out and they stay exactly as stored.

        Upserts by (cycle, kr, as_of) and (kpi, as_of); rows of that day for KRs or KPIs that
        are no longer defined are removed, so rerunning a day after an edit converges to the
        same contents as a fresh run. Writers of the same day are serialised (an advisory lock
        on PostgreSQL, the write lock on SQLite), so two runs writing one day at once leave the
        whole day from one of them; writers of different days do not wait for each other on
        PostgreSQL. The run and its day are recorded in the same transaction.
        """
        kr_table, kpi_table = KrProgress.__table__, KpiValue.__table__
        # A stable row order means concurrent writers lock rows in the same order.
        progress = progress.assign(as_of=as_of)
        if len(progress):
            progress = progress.sort_values(["cycle", "kr"])
        kpis = kpis.assign(as_of=as_of)
        if len(kpis):
            kpis = kpis.sort_values("kpi")
        self._record_versions(progress, kpis)
        with write_transaction(self.engine, lock_key=as_of.toordinal()) as conn:
            upsert(conn, kr_table, _rows(progress, KR_PROGRESS_COLUMNS))
            upsert(conn, kpi_table, _rows(kpis, KPI_VALUE_COLUMNS))
            removed_krs = sa.delete(kr_table).where(kr_table.c.as_of == as_of)
            frozen = list(frozen_cycles)
            if frozen:
                removed_krs = removed_krs.where(kr_table.c.cycle.not_in(frozen))
            if len(progress):
                kept = sa.tuple_(kr_table.c.cycle, kr_table.c.kr).in_(
                    list(zip(progress["cycle"], progress["kr"], strict=True))
                )
                removed_krs = removed_krs.where(~kept)
            conn.execute(removed_krs)
            removed_kpis = sa.delete(kpi_table).where(kpi_table.c.as_of == as_of)
            if len(kpis):
                removed_kpis = removed_kpis.where(kpi_table.c.kpi.not_in(list(kpis["kpi"])))
            conn.execute(removed_kpis)
            self._record_run_day(conn, as_of, "written", progress, kpis)

    def mark_stale(
        self,
        as_of: dt.date,
        keys: Iterable[tuple[str, str]],
        reason: str,
        run_id: str,
    ) -> list[tuple[str, str]]:
        """Record the (cycle, kr) `keys` as `stale` on `as_of`, with `reason`.

        Each KR's row for the day carries its last good value and score forward (the newest
        earlier row that is not stale) — never zeros; earlier rows stay untouched. A KR that
        already has a good (not stale) row on the day keeps it: a rerun of a past day while bad
        data is staged never replaces a good value with a carried-forward one, and the day's
        KPIs, written with it, stay consistent with it. A KR with no earlier good row but a
        stale row on the day keeps that row's identity without a number. KRs the store has
        never seen cannot be described and are left out; the keys actually marked are returned.
        """
        keys = sorted({(str(c), str(k)) for c, k in keys})
        if not keys:
            return []
        table = KrProgress.__table__
        with write_transaction(self.engine, lock_key=as_of.toordinal()) as conn:
            good_today = {
                (cycle, kr)
                for cycle, kr in conn.execute(
                    # (A row this same run wrote moments ago is its own to mark: a KR computed
                    # from a failing source's partial data.)
                    sa.select(table.c.cycle, table.c.kr).where(
                        table.c.as_of == as_of, table.c.status != STALE, table.c.run_id != run_id
                    )
                ).all()
            }
            keys = [key for key in keys if key not in good_today]
            if not keys:
                return []
            wanted = sa.tuple_(table.c.cycle, table.c.kr).in_(keys)
            carried = read_frame(
                conn,
                _latest_per_key(
                    table,
                    ["cycle", "kr"],
                    as_of=as_of - dt.timedelta(days=1),
                    team=None,
                    where=[wanted, table.c.status != STALE],
                ),
            )
            same_day = read_frame(conn, sa.select(table).where(wanted, table.c.as_of == as_of))
            carried_keys = pd.MultiIndex.from_frame(carried[["cycle", "kr"]])
            without_history = same_day[
                ~pd.MultiIndex.from_frame(same_day[["cycle", "kr"]]).isin(carried_keys)
            ].assign(
                value=None,
                numerator=None,
                denominator=None,
                progress=None,
                grade=None,
                sample_size=0,
            )
            frames = [f for f in (carried, without_history) if len(f)]
            if not frames:
                return []
            stale = pd.concat(frames, ignore_index=True).sort_values(["cycle", "kr"])
            # The carried value's own status reason and verdict belonged to its day, not this.
            stale = stale.assign(
                as_of=as_of,
                status=STALE,
                stale_reason=reason,
                status_reason=None,
                verdict=None,
                run_id=run_id,
                computed_at=_now(),
            )
            upsert(conn, table, _rows(stale, KR_PROGRESS_COLUMNS))
            self._record_run_day(conn, as_of, STALE, stale, pd.DataFrame(columns=["run_id"]))
        return list(zip(stale["cycle"], stale["kr"], strict=True))

    def write_kr_pages(
        self, cycles: Iterable[str], charts: list[dict], drilldowns: list[dict], *, run_id: str
    ) -> None:
        """Replace the KR pages of `cycles` (a KR no longer defined loses its page) and store the
        drill-downs, each replacing its (cycle, kr, day); one transaction."""
        cycles = list(cycles)
        stamp = {"run_id": run_id, "computed_at": _now()}
        charts_table, drilldowns_table = KrChart.__table__, KrDrilldown.__table__
        with write_transaction(self.engine) as conn:
            if cycles:
                gone = sa.delete(charts_table).where(charts_table.c.cycle.in_(cycles))
                if charts:
                    kept = [(c["cycle"], c["kr"]) for c in charts]
                    gone = gone.where(~sa.tuple_(charts_table.c.cycle, charts_table.c.kr).in_(kept))
                conn.execute(gone)
            upsert(conn, charts_table, [{**row, **stamp} for row in charts])
            upsert(conn, drilldowns_table, [{**row, **stamp} for row in drilldowns])

    def record_definitions(
        self,
        *,
        cycles: list[dict],
        objectives: list[dict],
        key_results: list[dict],
        kpis: list[dict],
    ) -> None:
        """Record the cycles and objectives with their definition versions, and attach the full
        definition (filters included) to the KR and KPI versions the stored rows reference.

        The rows come from kr_metrics.versions.definition_records: the store does not derive
        versions itself."""
        now = _now()
        cycles = [{**row, "recorded_at": now} for row in cycles]
        objectives = [{**row, "recorded_at": now} for row in objectives]
        # Bound parameters of an UPDATE may not share the names of the table's columns.
        kr_definitions = [
            {"c": r["cycle"], "k": r["kr"], "v": r["definition_version"], "d": r["definition"]}
            for r in key_results
        ]
        kpi_definitions = [
            {"k": r["kpi"], "v": r["definition_version"], "d": r["definition"]} for r in kpis
        ]
        kr_table, kpi_table = KeyResultDefinition.__table__, KpiDefinition.__table__
        with write_transaction(self.engine) as conn:
            upsert(conn, CycleDefinition.__table__, cycles, on_conflict="nothing")
            upsert(conn, ObjectiveDefinition.__table__, objectives, on_conflict="nothing")
            if kr_definitions:
                conn.execute(
                    sa.update(kr_table)
                    .where(
                        kr_table.c.cycle == sa.bindparam("c"),
                        kr_table.c.kr == sa.bindparam("k"),
                        kr_table.c.definition_version == sa.bindparam("v"),
                        kr_table.c.definition.is_(None),
                    )
                    .values(definition=sa.bindparam("d")),
                    kr_definitions,
                )
            if kpi_definitions:
                conn.execute(
                    sa.update(kpi_table)
                    .where(
                        kpi_table.c.kpi == sa.bindparam("k"),
                        kpi_table.c.definition_version == sa.bindparam("v"),
                        kpi_table.c.definition.is_(None),
                    )
                    .values(definition=sa.bindparam("d")),
                    kpi_definitions,
                )

    def start_run(
        self,
        run_id: str,
        *,
        origin: str,
        days_requested: int | None = None,
        data_synced_at: dt.datetime | None = None,
    ) -> None:
        """Open the run's audit row (status `running`, this process's pid and host), after
        reaping the runs a killed process left `running` (see reap_abandoned_runs)."""
        self.reap_abandoned_runs()
        now = _now()
        row = {
            "run_id": run_id,
            "origin": origin,
            "status": RUNNING,
            "started_at": now,
            "finished_at": None,
            "days_requested": days_requested,
            "data_synced_at": data_synced_at,
            "message": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "heartbeat_at": now,
        }
        with write_transaction(self.engine) as conn:
            upsert(conn, Run.__table__, [row])

    def heartbeat(self, run_id: str) -> None:
        """The run is alive (called after each day): keeps it from being reaped."""
        table = Run.__table__
        with write_transaction(self.engine) as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.run_id == run_id, table.c.status == RUNNING)
                .values(heartbeat_at=_now())
            )

    def reap_abandoned_runs(self, *, stale_after: dt.timedelta = REAP_AFTER) -> list[str]:
        """Mark failed the runs left `running` by a process that is gone: on this host, one whose
        pid no longer exists; anywhere, one with no sign of life (heartbeat, else start) for
        `stale_after`. Returns their ids. A kill -9 leaves no other trace."""
        table = Run.__table__
        now = _now()
        here = socket.gethostname()
        with self.engine.connect() as conn:
            running = read_frame(conn, sa.select(table).where(table.c.status == RUNNING))
        reaped = []
        for run in running.to_dict("records"):
            last_seen = run["heartbeat_at"] if pd.notna(run["heartbeat_at"]) else run["started_at"]
            if run["host"] == here and pd.notna(run["pid"]) and not process_alive(int(run["pid"])):
                why = f"process {int(run['pid'])} on {here} ended without finishing the run"
            elif pd.notna(last_seen) and now - last_seen > stale_after:
                why = f"no sign of life since {last_seen:%Y-%m-%d %H:%M} UTC"
            else:
                continue
            message = f"abandoned: {why} (killed?); reaped at {now:%Y-%m-%d %H:%M:%S} UTC"
            with write_transaction(self.engine) as conn:
                done = conn.execute(
                    sa.update(table)
                    .where(table.c.run_id == run["run_id"], table.c.status == RUNNING)
                    .values(status=FAILED, finished_at=now, message=message)
                )
            if done.rowcount:
                reaped.append(run["run_id"])
        return reaped

    def finish_run(
        self, run_id: str, *, status: str, message: str | None = None, origin: str = "unknown"
    ) -> None:
        """Close the run's audit row with its outcome (succeeded, partial or failed)."""
        table = Run.__table__
        now = _now()
        with write_transaction(self.engine) as conn:
            updated = conn.execute(
                sa.update(table)
                .where(table.c.run_id == run_id)
                .values(status=status, finished_at=now, message=message)
            )
            if updated.rowcount == 0:
                conn.execute(
                    sa.insert(table),
                    [
                        {
                            "run_id": run_id,
                            "origin": origin,
                            "status": status,
                            "started_at": now,
                            "finished_at": now,
                            "message": message,
                        }
                    ],
                )

    def _record_versions(self, progress: pd.DataFrame, kpis: pd.DataFrame) -> None:
        """Insert the KR and KPI definition versions these rows were computed with, if new.

        Its own short transaction, insert-if-missing: writers of different days share these
        rows and must not hold locks on them for the length of a day's write.
        """
        now = _now()
        kr_versions = (
            progress.drop_duplicates(["cycle", "kr", "definition_version"])
            if len(progress)
            else progress
        )
        kpi_versions = kpis.drop_duplicates(["kpi", "definition_version"]) if len(kpis) else kpis
        kr_rows = _rows(
            kr_versions.rename(columns={"run_id": "first_run_id"}).assign(recorded_at=now),
            [c.name for c in KeyResultDefinition.__table__.columns],
        )
        kpi_rows = _rows(
            kpi_versions.rename(columns={"run_id": "first_run_id"}).assign(recorded_at=now),
            [c.name for c in KpiDefinition.__table__.columns],
        )
        if not kr_rows and not kpi_rows:
            return
        with write_transaction(self.engine) as conn:
            upsert(conn, KeyResultDefinition.__table__, kr_rows, on_conflict="nothing")
            upsert(conn, KpiDefinition.__table__, kpi_rows, on_conflict="nothing")

    def _record_run_day(
        self,
        conn: sa.Connection,
        as_of: dt.date,
        action: str,
        progress: pd.DataFrame,
        kpis: pd.DataFrame,
    ) -> None:
        """Audit, inside the day's transaction: which run wrote the day, from which definition
        versions, with which data freshness."""
        columns = [
            "run_id",
            "version_key",
            "definition_version",
            "kr_rows",
            "kpi_rows",
            "data_synced_at",
        ]
        parts = []
        if len(progress):
            parts.append(
                progress.assign(
                    version_key=progress["cycle"] + "/" + progress["kr"], kr_rows=1, kpi_rows=0
                ).reindex(columns=columns)
            )
        if len(kpis):
            parts.append(
                kpis.assign(version_key="kpi:" + kpis["kpi"], kr_rows=0, kpi_rows=1).reindex(
                    columns=columns
                )
            )
        if not parts:
            return
        both = pd.concat(parts, ignore_index=True)
        now = _now()
        both["data_synced_at"] = pd.to_datetime(both["data_synced_at"], utc=True)
        per_run = both.groupby("run_id").agg(
            kr_rows=("kr_rows", "sum"),
            kpi_rows=("kpi_rows", "sum"),
            data_synced_at=("data_synced_at", "min"),
        )
        versions = both.groupby("run_id")[["version_key", "definition_version"]].apply(
            lambda g: dict(zip(g["version_key"], g["definition_version"], strict=True))
        )
        days = per_run.assign(
            definition_versions=versions, as_of=as_of, action=action, recorded_at=now
        ).reset_index()
        runs = days[["run_id"]].assign(origin="unknown", status=RUNNING, started_at=now)
        upsert(
            conn,
            Run.__table__,
            _rows(runs, [c.name for c in Run.__table__.columns]),
            on_conflict="nothing",
        )
        upsert(conn, RunDay.__table__, _rows(days, [c.name for c in RunDay.__table__.columns]))

    def record_push(
        self, sink: str, cycle: str, kr: str, target_id: str, value: float, as_of: dt.date
    ) -> None:
        """The tool `sink` now holds `value` (of day `as_of`) for the KR: failures cleared."""
        now = _now()
        row = {
            "sink": sink,
            "cycle": cycle,
            "kr": kr,
            "target_id": target_id,
            "last_pushed_value": value,
            "last_pushed_as_of": as_of,
            "last_pushed_at": now,
            "last_attempt_at": now,
            "failures": 0,
            "last_error": None,
        }
        with write_transaction(self.engine) as conn:
            upsert(conn, PushState.__table__, [row])

    def record_push_failure(
        self, sink: str, cycle: str, kr: str, target_id: str, error: str
    ) -> None:
        """A push failed: count it and keep the error; what the tool last received stays."""
        table = PushState.__table__
        now = _now()
        with write_transaction(self.engine) as conn:
            updated = conn.execute(
                sa.update(table)
                .where(table.c.sink == sink, table.c.cycle == cycle, table.c.kr == kr)
                .values(
                    # A new target id has received nothing yet, whatever the old one holds.
                    last_pushed_value=sa.case(
                        (table.c.target_id == target_id, table.c.last_pushed_value), else_=None
                    ),
                    target_id=target_id,
                    last_attempt_at=now,
                    failures=table.c.failures + 1,
                    last_error=error,
                )
            )
            if updated.rowcount == 0:
                conn.execute(
                    sa.insert(table),
                    [
                        {
                            "sink": sink,
                            "cycle": cycle,
                            "kr": kr,
                            "target_id": target_id,
                            "last_attempt_at": now,
                            "failures": 1,
                            "last_error": error,
                        }
                    ],
                )

    # --- Reading ------------------------------------------------------------------------------

    def progress(
        self, *, as_of: dt.date | None = None, team: str | None = None, on_day_only: bool = False
    ) -> pd.DataFrame:
        """Current progress: each KR's latest row up to `as_of` (or exactly on it with
        on_day_only), optionally of one team, ordered by cycle, objective and KR."""
        table = KrProgress.__table__
        if on_day_only and as_of is not None:
            query = sa.select(table).where(table.c.as_of == as_of)
            if team is not None:
                query = query.where(table.c.team == team)
        else:
            query = _latest_per_key(table, ["cycle", "kr"], as_of=as_of, team=team)
        query = query.order_by(table.c.cycle, table.c.objective, table.c.kr)
        with self.engine.connect() as conn:
            return read_frame(conn, query)

    def kpi_values(self, *, as_of: dt.date | None = None, team: str | None = None) -> pd.DataFrame:
        """Each KPI's latest value up to `as_of`, optionally of one team."""
        table = KpiValue.__table__
        query = _latest_per_key(table, ["kpi"], as_of=as_of, team=team).order_by(table.c.kpi)
        with self.engine.connect() as conn:
            return read_frame(conn, query)

    def progress_history(
        self,
        *,
        cycle: str | None = None,
        kr: str | None = None,
        team: str | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> pd.DataFrame:
        """Daily KR rows between `start` and `end` (inclusive), ordered by KR and day."""
        query = kr_rows(
            KrProgress.__table__, "as_of", cycle=cycle, kr=kr, team=team, start=start, end=end
        )
        with self.engine.connect() as conn:
            return read_frame(conn, query)

    def kr_history(
        self, cycle: str, kr: str, *, start: dt.date | None = None, end: dt.date | None = None
    ) -> pd.DataFrame:
        """One KR's daily rows, oldest first (served by the (cycle, kr, as_of) index)."""
        return self.progress_history(cycle=cycle, kr=kr, start=start, end=end)

    def kpi_history(
        self,
        kpi: str | None = None,
        *,
        team: str | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> pd.DataFrame:
        """Daily KPI rows (one KPI, or all), ordered by KPI and day."""
        table = KpiValue.__table__
        query = sa.select(table)
        if kpi is not None:
            query = query.where(table.c.kpi == kpi)
        if team is not None:
            query = query.where(table.c.team == team)
        if start is not None:
            query = query.where(table.c.as_of >= start)
        if end is not None:
            query = query.where(table.c.as_of <= end)
        with self.engine.connect() as conn:
            return read_frame(conn, query.order_by(table.c.kpi, table.c.as_of))

    def runs(self, *, limit: int = 50) -> pd.DataFrame:
        """The newest runs first: origin, status, timing, requested days, data freshness."""
        table = Run.__table__
        query = sa.select(table).order_by(table.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return read_frame(conn, query)

    def run_days(self, *, run_id: str | None = None, as_of: dt.date | None = None) -> pd.DataFrame:
        """Which run wrote (or marked stale) which day, from which definition versions."""
        table = RunDay.__table__
        query = sa.select(table)
        if run_id is not None:
            query = query.where(table.c.run_id == run_id)
        if as_of is not None:
            query = query.where(table.c.as_of == as_of)
        with self.engine.connect() as conn:
            return read_frame(conn, query.order_by(table.c.as_of, table.c.recorded_at))

    def definitions(self, kind: str) -> pd.DataFrame:
        """Recorded definition versions: kind is cycles, objectives, key_results or kpis."""
        models = {
            "cycles": CycleDefinition,
            "objectives": ObjectiveDefinition,
            "key_results": KeyResultDefinition,
            "kpis": KpiDefinition,
        }
        table = models[kind].__table__
        with self.engine.connect() as conn:
            return read_frame(conn, sa.select(table).order_by(*table.primary_key.columns))

    def push_state(self) -> pd.DataFrame:
        """What each OKR tool last received per KR, and the failures since."""
        table = PushState.__table__
        with self.engine.connect() as conn:
            return read_frame(
                conn, sa.select(table).order_by(table.c.sink, table.c.cycle, table.c.kr)
            )

    def count_progress_rows(self, as_of: dt.date | None = None) -> int:
        table = KrProgress.__table__
        query = sa.select(sa.func.count()).select_from(table)
        if as_of is not None:
            query = query.where(table.c.as_of == as_of)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # --- Read API of the dashboard and the weekly digest ---------------------------------------

    def cycles(self) -> pd.DataFrame:
        """Each cycle in the store: first and last stored day, number of KRs; newest first."""
        table = KrProgress.__table__
        last_day = sa.func.max(table.c.as_of)
        query = (
            sa.select(
                table.c.cycle,
                sa.func.min(table.c.as_of).label("first_day"),
                last_day.label("last_day"),
                sa.func.count(sa.distinct(table.c.kr)).label("key_results"),
            )
            .group_by(table.c.cycle)
            .order_by(last_day.desc(), table.c.cycle)
        )
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        for column in ("first_day", "last_day"):
            frame[column] = pd.to_datetime(frame[column]).dt.date
        return frame

    def latest_cycle_progress(
        self, cycle: str, *, as_of: dt.date | None = None, team: str | None = None
    ) -> pd.DataFrame:
        """Each KR of `cycle` at its latest stored day up to `as_of`, one row per KR.

        The latest day is chosen in SQL (max per KR over the (cycle, kr, as_of) unique index),
        so a page reads as many rows as the cycle has KRs, not its whole history.
        """
        table = KrProgress.__table__
        latest = sa.select(table.c.kr, sa.func.max(table.c.as_of).label("latest")).where(
            table.c.cycle == cycle
        )
        if as_of is not None:
            latest = latest.where(table.c.as_of <= as_of)
        latest = latest.group_by(table.c.kr).subquery()
        query = (
            sa.select(table)
            .join(latest, sa.and_(table.c.kr == latest.c.kr, table.c.as_of == latest.c.latest))
            .where(table.c.cycle == cycle)
            .order_by(table.c.objective, table.c.kr)
        )
        if team is not None:
            query = query.where(table.c.team == team)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
        return frame

    def kr_charts(self, cycle: str) -> pd.DataFrame:
        """The KR pages of `cycle` (kr_charts): dates, objective, definition, expected path."""
        table = KrChart.__table__
        with self.engine.connect() as conn:
            return read_frame(
                conn, sa.select(table).where(table.c.cycle == cycle).order_by(table.c.kr)
            )

    def drilldown(self, cycle: str, kr: str, *, as_of: dt.date) -> dict | None:
        """The records behind the KR's number: the drill-down of its newest day up to `as_of`
        (a stale day carries an earlier day's number, and so its records), or None.

        The one read API of the staged records the dashboard shows: the daily flow stored them
        from the engine's own explanation of the number."""
        table = KrDrilldown.__table__
        query = (
            sa.select(table)
            .where(table.c.cycle == cycle, table.c.kr == kr, table.c.as_of <= as_of)
            .order_by(table.c.as_of.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def cycle_history(
        self,
        cycle: str,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        team: str | None = None,
        kr: str | None = None,
    ) -> pd.DataFrame:
        """The stored daily rows of `cycle` between `start` and `end` (inclusive), by KR and day."""
        table = KrProgress.__table__
        query = sa.select(table).where(table.c.cycle == cycle)
        if start is not None:
            query = query.where(table.c.as_of >= start)
        if end is not None:
            query = query.where(table.c.as_of <= end)
        if team is not None:
            query = query.where(table.c.team == team)
        if kr is not None:
            query = query.where(table.c.kr == kr)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query.order_by(table.c.kr, table.c.as_of), conn)
        frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
        return frame

    def definition_changes(self, cycle: str, kr: str | None = None) -> pd.DataFrame:
        """Mid-cycle definition changes of `cycle`'s KRs: old and new values, and when they took effect.

        Derived from what the store already keeps — every progress row names the definition
        version it was computed with, and `key_results` holds each version's baseline, target
        and full definition — so a change is recorded by the first day computed with it and
        cannot drift from the rows. `effective_from` is that first day.
        """
        rows = self.cycle_history(cycle, kr=kr)
        columns = [
            "cycle",
            "kr",
            "effective_from",
            "old_version",
            "new_version",
            "old_baseline",
            "new_baseline",
            "old_target",
            "new_target",
            "old_definition",
            "new_definition",
        ]
        if rows.empty:
            return pd.DataFrame(columns=columns)
        first_days = (
            rows.groupby(["kr", "definition_version"], as_index=False)["as_of"]
            .min()
            .sort_values(["kr", "as_of"])
        )
        table = KeyResultDefinition.__table__
        with self.engine.connect() as conn:
            versions = read_frame(conn, sa.select(table).where(table.c.cycle == cycle))
        versions = versions.set_index(["kr", "definition_version"])
        changes = []
        for key, group in first_days.groupby("kr", sort=True):  # a few versions per KR
            ordered = group.to_dict("records")
            for old, new in zip(ordered, ordered[1:], strict=False):
                before = (
                    versions.loc[(key, old["definition_version"])]
                    if (key, old["definition_version"]) in versions.index
                    else None
                )
                after = (
                    versions.loc[(key, new["definition_version"])]
                    if (key, new["definition_version"]) in versions.index
                    else None
                )
                changes.append(
                    {
                        "cycle": cycle,
                        "kr": key,
                        "effective_from": new["as_of"],
                        "old_version": old["definition_version"],
                        "new_version": new["definition_version"],
                        "old_baseline": None if before is None else before["baseline"],
                        "new_baseline": None if after is None else after["baseline"],
                        "old_target": None if before is None else before["target"],
                        "new_target": None if after is None else after["target"],
                        "old_definition": None if before is None else before["definition"],
                        "new_definition": None if after is None else after["definition"],
                    }
                )
        return pd.DataFrame(changes, columns=columns)

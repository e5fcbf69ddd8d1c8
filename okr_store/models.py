"""OKR store tables: definitions by version, KR progress, KPI values, runs, and push state."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# ---------------------------------------------------------------------------------------------
# Definitions, one row per (key, definition version) ever used: a progress row's
# definition_version always finds the exact definition it was computed with.


class CycleDefinition(Base):
    __tablename__ = "cycles"

    key: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    definition_version: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    start: Mapped[dt.date] = mapped_column(sa.Date)
    end: Mapped[dt.date] = mapped_column(sa.Date)
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    recorded_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class ObjectiveDefinition(Base):
    __tablename__ = "objectives"

    cycle: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    definition_version: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    title: Mapped[str] = mapped_column(sa.Text)
    level: Mapped[str] = mapped_column(sa.String(20))
    team: Mapped[str | None] = mapped_column(sa.String(120))
    ambition: Mapped[str] = mapped_column(sa.String(20))
    aligns_to: Mapped[str | None] = mapped_column(sa.String(80))
    definition: Mapped[Any | None] = mapped_column(sa.JSON)
    recorded_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class KeyResultDefinition(Base):
    __tablename__ = "key_results"

    cycle: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    kr: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    definition_version: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    objective: Mapped[str] = mapped_column(sa.String(80))
    title: Mapped[str] = mapped_column(sa.Text)
    team: Mapped[str | None] = mapped_column(sa.String(120))
    metric: Mapped[str] = mapped_column(sa.String(80))
    unit: Mapped[str | None] = mapped_column(sa.String(20))
    baseline: Mapped[float] = mapped_column(sa.Float)
    target: Mapped[float] = mapped_column(sa.Float)
    definition: Mapped[Any | None] = mapped_column(sa.JSON)
    first_run_id: Mapped[str | None] = mapped_column(sa.String(80))
    recorded_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class KpiDefinition(Base):
    __tablename__ = "kpis"

    kpi: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    definition_version: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    title: Mapped[str] = mapped_column(sa.Text)
    team: Mapped[str | None] = mapped_column(sa.String(120))
    metric: Mapped[str] = mapped_column(sa.String(80))
    healthy_min: Mapped[float | None] = mapped_column(sa.Float)
    healthy_max: Mapped[float | None] = mapped_column(sa.Float)
    definition: Mapped[Any | None] = mapped_column(sa.JSON)
    first_run_id: Mapped[str | None] = mapped_column(sa.String(80))
    recorded_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


# ---------------------------------------------------------------------------------------------
# Measurements


class KrProgress(Base):
    """A KR's value and score on one day. Rerunning the day replaces the row."""

    __tablename__ = "kr_progress"
    __table_args__ = (
        sa.UniqueConstraint("cycle", "kr", "as_of", name="uq_kr_progress_cycle_kr_as_of"),
        sa.Index("ix_kr_progress_team_as_of", "team", "as_of"),
        sa.Index("ix_kr_progress_as_of", "as_of"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    cycle: Mapped[str] = mapped_column(sa.String(80))
    objective: Mapped[str] = mapped_column(sa.String(80))
    kr: Mapped[str] = mapped_column(sa.String(80))
    as_of: Mapped[dt.date] = mapped_column(sa.Date)
    title: Mapped[str] = mapped_column(sa.Text)
    team: Mapped[str | None] = mapped_column(sa.String(120))
    level: Mapped[str] = mapped_column(sa.String(20))
    ambition: Mapped[str] = mapped_column(sa.String(20))
    metric: Mapped[str] = mapped_column(sa.String(80))
    unit: Mapped[str | None] = mapped_column(sa.String(20))
    value: Mapped[float | None] = mapped_column(sa.Float)
    numerator: Mapped[float | None] = mapped_column(sa.Float)
    denominator: Mapped[float | None] = mapped_column(sa.Float)
    sample_size: Mapped[int] = mapped_column(sa.Integer)
    baseline: Mapped[float | None] = mapped_column(sa.Float)
    target: Mapped[float | None] = mapped_column(sa.Float)
    progress: Mapped[float | None] = mapped_column(sa.Float)
    grade: Mapped[float | None] = mapped_column(sa.Float)
    expected_progress: Mapped[float] = mapped_column(sa.Float)
    forecast_value: Mapped[float | None] = mapped_column(sa.Float)
    forecast_grade: Mapped[float | None] = mapped_column(sa.Float)
    margin_of_error: Mapped[float | None] = mapped_column(sa.Float)
    status: Mapped[str] = mapped_column(sa.String(20))
    stale_reason: Mapped[str | None] = mapped_column(sa.Text)
    definition_version: Mapped[str] = mapped_column(sa.String(40))
    run_id: Mapped[str] = mapped_column(sa.String(80))
    # Progress semantics (migration 0005): where the bar starts, the value expected by the day,
    # the metric's kind, the reason behind the status and a closed cycle's verdict.
    start_value: Mapped[float | None] = mapped_column(sa.Float)
    expected_value: Mapped[float | None] = mapped_column(sa.Float)
    metric_kind: Mapped[str | None] = mapped_column(sa.String(20))
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    verdict: Mapped[str | None] = mapped_column(sa.String(30))
    data_synced_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    computed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class KpiValue(Base):
    """A standing KPI's value and health on one day; kept apart from KR progress on purpose."""

    __tablename__ = "kpi_values"
    __table_args__ = (sa.UniqueConstraint("kpi", "as_of", name="uq_kpi_values_kpi_as_of"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kpi: Mapped[str] = mapped_column(sa.String(80))
    as_of: Mapped[dt.date] = mapped_column(sa.Date, index=True)
    title: Mapped[str] = mapped_column(sa.Text)
    team: Mapped[str | None] = mapped_column(sa.String(120))
    metric: Mapped[str] = mapped_column(sa.String(80))
    value: Mapped[float | None] = mapped_column(sa.Float)
    sample_size: Mapped[int] = mapped_column(sa.Integer)
    healthy_min: Mapped[float | None] = mapped_column(sa.Float)
    healthy_max: Mapped[float | None] = mapped_column(sa.Float)
    health: Mapped[str] = mapped_column(sa.String(20))
    definition_version: Mapped[str] = mapped_column(sa.String(40))
    run_id: Mapped[str] = mapped_column(sa.String(80))
    data_synced_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    computed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


# ---------------------------------------------------------------------------------------------
# What the dashboard's KR page shows besides the daily rows, written by the daily flow so the
# dashboard reads the store and never runs the engine.


class KrChart(Base):
    """A KR's page: its cycle dates, objective, definition, metric unit and formula, and the
    linear expected path for every day of the cycle. One row per KR still defined."""

    __tablename__ = "kr_charts"

    cycle: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    kr: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    objective: Mapped[str] = mapped_column(sa.String(80))
    objective_title: Mapped[str] = mapped_column(sa.Text)
    objective_owner: Mapped[str | None] = mapped_column(sa.String(200))
    cycle_start: Mapped[dt.date] = mapped_column(sa.Date)
    cycle_end: Mapped[dt.date] = mapped_column(sa.Date)
    success_grade: Mapped[float] = mapped_column(sa.Float)
    unit: Mapped[str | None] = mapped_column(sa.String(20))
    formula: Mapped[str | None] = mapped_column(sa.Text)
    definition: Mapped[Any] = mapped_column(sa.JSON)
    expected_path: Mapped[Any] = mapped_column(sa.JSON)  # expected progress per cycle day
    run_id: Mapped[str] = mapped_column(sa.String(80))
    # Indexed: the store's version reads the newest (okr_store.weekly.store_version).
    computed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), index=True)


class KrDrilldown(Base):
    """The records behind a KR's number on a day, from the engine's own explanation (the same
    window, filters and events as the number): the newest records and the full count."""

    __tablename__ = "kr_drilldowns"

    cycle: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    kr: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    entity: Mapped[str | None] = mapped_column(sa.String(40))
    window_start: Mapped[dt.date | None] = mapped_column(sa.Date)
    window_end: Mapped[dt.date | None] = mapped_column(sa.Date)
    value: Mapped[float | None] = mapped_column(sa.Float)
    sample_size: Mapped[int | None] = mapped_column(sa.Integer)
    total: Mapped[int] = mapped_column(sa.Integer)
    reason: Mapped[str | None] = mapped_column(sa.Text)  # why there are no records to show
    records: Mapped[Any] = mapped_column(sa.JSON)
    run_id: Mapped[str] = mapped_column(sa.String(80))
    computed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


# ---------------------------------------------------------------------------------------------
# Audit: which run wrote which day, from which definitions, with which data freshness


class Run(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    origin: Mapped[str] = mapped_column(sa.String(20))  # cli | dagster | backfill | unknown
    status: Mapped[str] = mapped_column(sa.String(20))  # running | succeeded | partial | failed
    started_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    days_requested: Mapped[int | None] = mapped_column(sa.Integer)
    data_synced_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(sa.Text)
    # Who runs it and when it last showed life: a run left `running` by a killed process is
    # reaped (marked failed) by the next run that starts (OkrStore.reap_abandoned_runs).
    pid: Mapped[int | None] = mapped_column(sa.Integer)
    host: Mapped[str | None] = mapped_column(sa.String(255))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class RunDay(Base):
    """One day a run wrote (or marked stale): the definition versions and data freshness used."""

    __tablename__ = "run_days"

    run_id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True, index=True)
    action: Mapped[str] = mapped_column(sa.String(20))  # written | stale
    kr_rows: Mapped[int] = mapped_column(sa.Integer)
    kpi_rows: Mapped[int] = mapped_column(sa.Integer)
    definition_versions: Mapped[Any] = mapped_column(sa.JSON)
    data_synced_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # Indexed: the store's version reads the newest (okr_store.weekly.store_version).
    recorded_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), index=True)


# ---------------------------------------------------------------------------------------------
# Pushes to OKR tools


class PushState(Base):
    """What each OKR tool last received for a KR, and the failures since, so unchanged values
    are skipped and failed pushes are retried on the next run."""

    __tablename__ = "push_state"

    sink: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    cycle: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    kr: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    target_id: Mapped[str] = mapped_column(sa.String(200))
    last_pushed_value: Mapped[float | None] = mapped_column(sa.Float)
    last_pushed_as_of: Mapped[dt.date | None] = mapped_column(sa.Date)
    last_pushed_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    failures: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


# ---------------------------------------------------------------------------------------------
# The people's side of the week (migration 0008): check-ins and the cycle's retrospective


class CheckInRow(Base):
    """One KR's check-in for one ISO week: confidence, three notes, and the value it was made at.

    Editable until the week ends; every write is also kept in `check_in_revisions`.
    """

    __tablename__ = "check_ins"
    __table_args__ = (
        sa.UniqueConstraint("cycle", "kr", "week", name="uq_check_ins_cycle_kr_week"),
        sa.Index("ix_check_ins_cycle_week", "cycle", "week"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    cycle: Mapped[str] = mapped_column(sa.String(80))
    kr: Mapped[str] = mapped_column(sa.String(80))
    week: Mapped[dt.date] = mapped_column(sa.Date)  # Monday of the ISO week
    team: Mapped[str | None] = mapped_column(sa.String(120))
    confidence: Mapped[int] = mapped_column(sa.Integer)
    progress: Mapped[str] = mapped_column(sa.Text, default="")
    problems: Mapped[str] = mapped_column(sa.Text, default="")
    next_steps: Mapped[str] = mapped_column(sa.Text, default="")
    # The KR's stored value on the day of the check-in (its newest day up to then).
    value: Mapped[float | None] = mapped_column(sa.Float)
    value_as_of: Mapped[dt.date | None] = mapped_column(sa.Date)
    author: Mapped[str] = mapped_column(sa.String(120))
    revision: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class CheckInRevision(Base):
    """Every version a check-in ever had, who wrote it and when (the audit trail)."""

    __tablename__ = "check_in_revisions"

    check_in_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    confidence: Mapped[int] = mapped_column(sa.Integer)
    progress: Mapped[str] = mapped_column(sa.Text)
    problems: Mapped[str] = mapped_column(sa.Text)
    next_steps: Mapped[str] = mapped_column(sa.Text)
    value: Mapped[float | None] = mapped_column(sa.Float)
    value_as_of: Mapped[dt.date | None] = mapped_column(sa.Date)
    author: Mapped[str] = mapped_column(sa.String(120))
    # Indexed: the store's version reads the newest (okr_store.weekly.store_version).
    recorded_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), index=True)


class RetroItemRow(Base):
    """One item of a cycle's retrospective: what to change, its benefit and its effort (1–5)."""

    __tablename__ = "retro_items"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    cycle: Mapped[str] = mapped_column(sa.String(80), index=True)
    text: Mapped[str] = mapped_column(sa.Text)
    benefit: Mapped[int] = mapped_column(sa.Integer)
    effort: Mapped[int] = mapped_column(sa.Integer)
    author: Mapped[str] = mapped_column(sa.String(120))
    recorded_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))

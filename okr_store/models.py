"""OKR store tables: KR progress and KPI values, one row per (KR or KPI, as-of date)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


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
    baseline: Mapped[float] = mapped_column(sa.Float)
    target: Mapped[float] = mapped_column(sa.Float)
    progress: Mapped[float | None] = mapped_column(sa.Float)
    grade: Mapped[float | None] = mapped_column(sa.Float)
    expected_progress: Mapped[float] = mapped_column(sa.Float)
    status: Mapped[str] = mapped_column(sa.String(20))
    stale_reason: Mapped[str | None] = mapped_column(sa.Text)
    definition_version: Mapped[str] = mapped_column(sa.String(40))
    run_id: Mapped[str] = mapped_column(sa.String(80))
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

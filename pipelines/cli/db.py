"""`krpulse db ...`, `krpulse export` and `krpulse push`: the OKR store's schema, exports, pushes."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click
import pandas as pd
from rich.table import Table

from okr_store import schema
from okr_store.db import create_engine
from okr_store.repository import OkrStore
from okr_store.sinks import FAILED, outcomes_frame
from pipelines import flow
from pipelines.cli.output import Context, console, format_option, parse_date

EXPORT_FORMATS = ("csv", "parquet")


@click.group()
def db() -> None:
    """The database schema: migrate it, see where it stands."""


@db.command("upgrade")
@click.option(
    "--revision",
    default="head",
    show_default=True,
    help="Migrate to this revision instead of the newest.",
)
@click.pass_obj
def upgrade(obj: Context, revision: str) -> None:
    """Migrate the configured database (KRPULSE_DATABASE_URL or database_url) to the schema
    this krpulse needs; a database created before migrations is adopted."""
    settings = obj.settings()
    engine, before, after = flow.upgrade_database(settings, revision)
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"{where}: already at schema revision {after}; nothing to do")
    else:
        click.echo(f"{where}: upgraded from {before or 'an empty database'} to revision {after}")
    engine.dispose()


@db.command("current")
@click.option("--check", is_flag=True, help="Exit 1 when the schema is not the one needed.")
@format_option
@click.pass_obj
def current(obj: Context, check: bool, output_format: str) -> None:
    """Show the database's schema revision against the one this krpulse needs."""
    settings = obj.settings()
    engine = create_engine(settings.effective_database_url)
    status = schema.schema_status(engine)
    engine.dispose()
    if output_format == "json":
        click.echo(
            json.dumps(
                {
                    "database": status.url,
                    "current": status.current,
                    "head": status.head,
                    "up_to_date": status.up_to_date,
                    "problem": status.problem(),
                },
                indent=2,
            )
        )
    else:
        click.echo(f"database: {status.url}")
        click.echo(f"current:  {status.current or '(none)'}")
        click.echo(f"needed:   {status.head}")
        click.echo("up to date" if status.up_to_date else status.problem())
    if check and not status.up_to_date:
        sys.exit(1)


@click.command("export")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(EXPORT_FORMATS),
    default="csv",
    show_default=True,
    help="File format of the export.",
)
@click.option(
    "--output",
    "output",
    default="krpulse-export",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder to write the files into.",
)
@click.option("--from", "start", default=None, help="First day to export (YYYY-MM-DD).")
@click.option("--to", "end", default=None, help="Last day to export (YYYY-MM-DD).")
@click.option("--team", default=None, help="Only this team's KRs and KPIs.")
@click.pass_obj
def export(
    obj: Context,
    export_format: str,
    output: str,
    start: str | None,
    end: str | None,
    team: str | None,
) -> None:
    """Export KR progress history and KPI history: kr_progress.<format>, kpi_values.<format>."""
    settings = obj.settings()
    store = OkrStore(flow.open_database(settings))
    first, last = parse_date(start), parse_date(end)
    frames = {
        "kr_progress": store.progress_history(team=team, start=first, end=last),
        "kpi_values": store.kpi_history(team=team, start=first, end=last),
    }
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        path = folder / f"{name}.{export_format}"
        write_export(frame.drop(columns=["id"], errors="ignore"), path, export_format)
        click.echo(f"{path}: {len(frame):,} rows")


def write_export(frame: pd.DataFrame, path: Path, export_format: str) -> None:
    """One history frame to CSV (ISO dates and timestamps) or Parquet (typed columns)."""
    if export_format == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")


@click.command("push")
@format_option
@click.pass_obj
def push(obj: Context, output_format: str) -> None:
    """Push each configured KR's current value to its OKR tools now (see `sinks:`).

    Unchanged values are skipped; failures are recorded and tried again on the next run.
    Exits 1 when a push failed.
    """
    settings = obj.settings()
    if not settings.sinks.configured:
        raise click.ClickException(
            "no OKR tools configured: add a `sinks:` section to krpulse.yaml"
        )
    store = OkrStore(flow.open_database(settings))
    outcomes = outcomes_frame(flow.push_to_okr_tools(settings, store))
    if output_format == "json":
        records = outcomes.astype(object).where(outcomes.notna(), None).to_dict("records")
        click.echo(json.dumps({"pushes": records}, indent=2, default=_json_default))
    else:
        table = Table(title="Pushes to OKR tools", title_justify="left", title_style="bold")
        for column in ("sink", "KR", "tool id", "value", "outcome", "error"):
            table.add_column(column, justify="right" if column == "value" else "left")
        for row in outcomes.itertuples():
            value = "" if pd.isna(row.value) else f"{row.value:g}"
            table.add_row(
                row.sink,
                f"{row.cycle}/{row.kr}",
                row.target_id,
                value,
                row.outcome,
                row.error or "",
            )
        console.print(table)
    if (outcomes["outcome"] == FAILED).any():
        sys.exit(1)


def _json_default(value: object) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)

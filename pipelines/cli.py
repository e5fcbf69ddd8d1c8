"""The `krpulse` command line: demo, sync, run, preview, status and definitions check."""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Any

import click
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connectors.base import SourceError
from kr_metrics.definitions import DefinitionError
from kr_metrics.display import format_percent, format_value, shown_status, value_with_margin
from kr_metrics.scoring import VERDICTS, is_uncertain
from okr_store.repository import OkrStore
from okr_store.schema import SchemaOutOfDateError
from pipelines import flow
from pipelines.settings import ConfigError, Settings, load_settings

KR_FIELDS = [
    "cycle", "objective", "kr", "title", "team", "metric", "metric_kind", "value", "start", "baseline",
    "target", "progress", "grade", "expected_progress", "expected_value", "status",
    "status_reason", "verdict", "sample_size", "margin_of_error", "forecast_value",
    "forecast_grade", "stale_reason",
]  # fmt: skip
# Store columns under the names the JSON contract uses (DESIGN.md: start, baseline, target).
KR_JSON_NAMES = {"start_value": "start"}
KPI_FIELDS = ["kpi", "title", "team", "metric", "value", "health", "sample_size"]
STATUS_STYLE = {
    "on_track": "green", "at_risk": "yellow", "off_track": "red", "no_data": "dim", "stale": "magenta",
    "healthy": "green", "unhealthy": "red", "low_sample": "cyan", "achieved": "green",
    "partially_achieved": "yellow", "missed": "red",
}  # fmt: skip

# Piped output (CI logs, `| less`) gets a fixed, wide layout instead of rich's 80 columns.
console = Console(width=None if Console().is_terminal else 132)
err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 132)
LEVEL_ORDER = {"company": 0, "team": 1, "individual": 2}


class Context:
    def __init__(self, config: str | None):
        self.config = config

    def settings(self) -> Settings:
        return load_settings(self.config)


def _date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"'{value}' is not a date; use YYYY-MM-DD") from exc


format_option = click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table",
    show_default=True, help="How to print the numbers.",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Output


def _number(value: Any) -> float | int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, int | bool):
        return int(value)
    return float(value)


def _records(frame: pd.DataFrame, fields: list[str], numeric: set[str]) -> list[dict]:
    out = []
    for row in frame.reindex(columns=fields).astype(object).to_dict("records"):
        out.append(
            {
                k: (_number(v) if k in numeric else (None if pd.isna(v) else v))
                for k, v in row.items()
            }
        )
    return out


def report_json(as_of: dt.date, progress: pd.DataFrame, kpis: pd.DataFrame) -> dict:
    """The one JSON shape every number-showing command prints (see DESIGN.md)."""
    kr_numeric = {
        "value",
        "start",
        "baseline",
        "target",
        "progress",
        "grade",
        "expected_progress",
        "expected_value",
        "sample_size",
        "margin_of_error",
        "forecast_value",
        "forecast_grade",
    }
    progress = progress.rename(columns=KR_JSON_NAMES)
    return {
        "as_of": as_of.isoformat(),
        "key_results": _records(progress, KR_FIELDS, kr_numeric),
        "kpis": _records(kpis, KPI_FIELDS, {"value", "sample_size"}),
    }


def print_progress(
    as_of: dt.date, progress: pd.DataFrame, kpis: pd.DataFrame, output_format: str
) -> None:
    if output_format == "json":
        click.echo(json.dumps(report_json(as_of, progress, kpis), indent=2))
        return
    if progress.empty and kpis.empty:
        console.print(f"Nothing to show as of {as_of}.")
        return
    if not progress.empty:
        order = progress["level"].map(LEVEL_ORDER).fillna(9)
        progress = progress.assign(_order=order).sort_values(
            ["cycle", "_order", "team", "objective", "kr"]
        )
    for (cycle, objective), rows in progress.groupby(["cycle", "objective"], sort=False):
        first = rows.iloc[0]
        table = Table(
            title=f"{cycle} · {objective} · {first.get('team') or 'company'} · {first['ambition']}",
            title_justify="left", title_style="bold",
        )  # fmt: skip
        columns = ("KR", "value", "baseline", "start", "target", "progress",
                   "expected by today", "forecast", "status")  # fmt: skip
        for column in columns:
            table.add_column(column, justify="left" if column in ("KR", "status") else "right")
        for row in rows.to_dict("records"):
            table.add_row(
                f"{row['title']} [dim]{row['kr']}[/]",
                value_with_margin(row),
                format_value(row["baseline"], row["metric"], row["unit"]),
                format_value(row.get("start_value"), row["metric"], row["unit"]),
                format_value(row["target"], row["metric"], row["unit"]),
                format_percent(row["progress"]),
                _expected_cell(row),
                format_value(row.get("forecast_value"), row["metric"], row["unit"]),
                _status_cell(row),
            )
        notes = [f"* {row['kr']}: {escape(_reason(row))}" for row in rows.to_dict("records")
                 if _reason(row)]  # fmt: skip
        if notes:
            table.caption = "\n".join(notes)
            table.caption_justify = "left"
        console.print(table)
    if not kpis.empty:
        table = Table(title="KPIs (standing health metrics, not key results)", title_justify="left",
                      title_style="bold")  # fmt: skip
        for column in ("KPI", "team", "value", "healthy range", "health"):
            table.add_column(column)
        for row in kpis.itertuples():
            low = (
                format_value(row.healthy_min, row.metric)
                if _number(row.healthy_min) is not None
                else ""
            )
            high = (
                format_value(row.healthy_max, row.metric)
                if _number(row.healthy_max) is not None
                else ""
            )
            table.add_row(
                f"{row.title} [dim]{row.kpi}[/]", row.team or "all", format_value(row.value, row.metric),
                f"{low} – {high}", f"[{STATUS_STYLE.get(row.health, '')}]{row.health}[/]",
            )  # fmt: skip
        console.print(table)
    console.print(f"as of {as_of}")


def _expected_cell(row: dict) -> str:
    """The value expected by today on the KR's path, with the share of the way it stands for."""
    expected = format_value(row.get("expected_value"), row["metric"], row["unit"])
    return f"{expected} ({format_percent(row['expected_progress'])})"


def _status_cell(row: dict) -> str:
    """The status (a closed cycle's verdict); a mark points at its reason below the table."""
    shown = shown_status(row)
    text = f"[{STATUS_STYLE.get(shown, '')}]{shown}[/]"
    if shown in VERDICTS:
        return text + f" [dim](grade {format_percent(row.get('grade'))})[/]"
    return text + (" *" if _reason(row) else "")


def _reason(row: dict) -> str | None:
    """Why a KR is not plainly on track (or on track with too small a sample to tell)."""
    shown = shown_status(row)
    reason = row.get("stale_reason") if shown == "stale" else row.get("status_reason")
    if not isinstance(reason, str) or shown in VERDICTS:
        return None
    return reason if shown != "on_track" or is_uncertain(reason) else None


# --------------------------------------------------------------------------------------------
# Commands


class KrpulseGroup(click.Group):
    """Turns the errors users can fix (config, definitions, sources) into one clear message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, DefinitionError, SourceError, SchemaOutOfDateError) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=KrpulseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", envvar="KRPULSE_CONFIG", default=None, metavar="PATH",
              help="krpulse.yaml to use (default: ./krpulse.yaml; env KRPULSE_CONFIG).")  # fmt: skip
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """krpulse: sales key results measured from CRM data, every day."""
    ctx.obj = Context(config)


@cli.command()
@format_option
@click.pass_obj
def demo(obj: Context, output_format: str) -> None:
    """Set up the demo org, run the daily job over its cycle so far, print the progress."""
    from connectors import demo_org

    settings = obj.settings()
    try:
        source = settings.source("demo")
    except ConfigError as exc:
        raise click.ClickException(
            f"krpulse demo needs a files source named 'demo': {exc}"
        ) from exc
    folder = settings.resolve(source.path)
    counts = demo_org.generate_demo_org(folder)
    say = err_console.print if output_format == "json" else console.print
    say(f"Demo org written to {folder}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    # The demo sets its database up itself; everywhere else `krpulse db upgrade` is explicit.
    engine, before, after = flow.upgrade_database(settings)
    if before != after:
        say(f"Database schema upgraded from {before or 'empty'} to {after} (krpulse db upgrade)")
    reports = flow.sync_sources(settings, engine, only="demo")
    reasons = [
        f"{r.object}: {reason} ({n})" for r in reports for reason, n in r.quarantine_reasons.items()
    ]
    say(
        f"Synced into staging; {len(reasons)} kinds of bad records quarantined, not counted: "
        + "; ".join(reasons)
    )
    definitions = flow.load_definition_set(settings)
    cycle = next(iter(definitions.cycles_at(demo_org.DEMO_AS_OF)), None)
    if cycle is None:
        raise click.ClickException(
            f"no cycle in {settings.definitions_path} contains {demo_org.DEMO_AS_OF}"
        )
    # Every demo cycle up to the demo's "today": the closed one before it gives `krpulse review`
    # a whole cycle, the current one its progress so far.
    first_day = min(c.start for c in definitions.cycles.values() if c.start <= demo_org.DEMO_AS_OF)
    days = flow.date_range(first_day, demo_org.DEMO_AS_OF)
    cycles = ", ".join(sorted(c.key for c in definitions.cycles.values() if c.start <= days[-1]))
    say(f"Running the daily job for cycles {cycles}: {days[0]} .. {days[-1]} ({len(days)} days)")

    def on_day(result: flow.DayResult) -> None:
        if result.blocked:
            err_console.print(
                f"  {result.as_of}: blocked by validation: {result.validation_failures}"
            )
        elif result.as_of.day == 1 or result.as_of == days[-1] or result.as_of.weekday() == 0:
            say(f"  {result.as_of}: {len(result.progress)} KRs, {len(result.kpis)} KPIs pushed")

    results = flow.run_days(
        settings, engine, days, definitions=definitions, progress_callback=on_day
    )
    last = results[-1]
    from pipelines.demo_checkins import seed_demo_check_ins, seed_demo_retro

    ran = sorted(c.key for c in definitions.cycles.values() if c.start <= days[-1])
    check_ins = seed_demo_check_ins(engine, ran, demo_org.DEMO_AS_OF)
    closed = [c for c in ran if definitions.cycles[c].end < demo_org.DEMO_AS_OF]
    retro = sum(seed_demo_retro(engine, c) for c in closed)
    say(f"Weekly check-ins of the demo team leads: {check_ins}; retrospective items: {retro}")
    if output_format == "table":
        first = next(r for r in results if r.as_of == cycle.start)
        movement = Table(title=f"How the KRs moved from {first.as_of} to {last.as_of}",
                         title_justify="left", title_style="bold")  # fmt: skip
        for column in ("KR", str(first.as_of), str(last.as_of)):
            movement.add_column(column, justify="left" if column == "KR" else "right")
        start = first.progress.set_index("kr")
        for row in last.progress.itertuples():
            movement.add_row(row.kr, format_value(start.loc[row.kr, "value"], row.metric, row.unit),
                             format_value(row.value, row.metric, row.unit))  # fmt: skip
        console.print(movement)
    store = OkrStore(engine)
    progress = store.progress(as_of=last.as_of)
    progress = progress[progress["cycle"] == cycle.key]
    print_progress(last.as_of, progress, store.kpi_values(as_of=last.as_of), output_format)


@cli.command()
@click.option("--source", "source_name", default=None, help="Sync only this source.")
@format_option
@click.pass_obj
def sync(obj: Context, source_name: str | None, output_format: str) -> None:
    """Extract the configured sources into the staging tables."""
    settings = obj.settings()
    reports = flow.sync_sources(settings, flow.open_database(settings), only=source_name)
    if output_format == "json":
        click.echo(json.dumps({"sync": [r.as_dict() for r in reports]}, indent=2))
        return
    table = Table(title="Sync", title_justify="left")
    for column in ("source", "object", "fetched", "changed", "deleted", "quarantined", "reasons"):
        table.add_column(
            column, justify="left" if column in ("source", "object", "reasons") else "right"
        )
    for r in reports:
        reasons = "; ".join(f"{k}: {v}" for k, v in r.quarantine_reasons.items())
        table.add_row(r.source, r.object, str(r.fetched), str(r.changed), str(r.deleted),
                      str(r.quarantined), reasons)  # fmt: skip
    console.print(table)


def warn_about_data(definitions, data) -> None:
    """What only the staged data can tell about the definitions (a filter value never seen)."""
    from kr_metrics.lint import check_against_data

    for warning in check_against_data(definitions, data):
        click.echo(str(warning), err=True)  # unwrapped: one `file:line: warning: ...` per line


def _days(
    settings: Settings, as_of: str | None, start: str | None, end: str | None
) -> list[dt.date]:
    if as_of and (start or end):
        raise click.UsageError("use either --as-of or --from/--to")
    if start or end:
        if not (start and end):
            raise click.UsageError("--from and --to go together")
        return flow.date_range(_date(start), _date(end))
    return [_date(as_of) or settings.today()]


@cli.command()
@click.option("--as-of", default=None, help="Day to compute (YYYY-MM-DD; default today).")
@click.option("--from", "start", default=None, help="First day of a range (backfill).")
@click.option("--to", "end", default=None, help="Last day of a range (backfill).")
@format_option
@click.pass_obj
def run(
    obj: Context, as_of: str | None, start: str | None, end: str | None, output_format: str
) -> None:
    """Compute, validate and push KR progress for a day or a range of days."""
    settings = obj.settings()
    days = _days(settings, as_of, start, end)
    engine = flow.open_database(settings)
    say = err_console.print if output_format == "json" else console.print

    def on_day(result: flow.DayResult) -> None:
        if result.blocked:
            err_console.print(f"{result.as_of}: [red]blocked[/] by validation, nothing pushed; "
                              "its KRs are marked stale:")  # fmt: skip
            for line in result.validation_failures:
                err_console.print(f"  {escape(line)}")
        for line in result.validation_warnings:
            err_console.print(f"{result.as_of}: [yellow]{escape(line)}[/]")
        if not result.blocked and len(days) > 1:
            say(f"{result.as_of}: {len(result.progress)} KRs, {len(result.kpis)} KPIs pushed")

    definitions = flow.load_definition_set(settings)
    data = flow.load_prepared(settings, engine)
    warn_about_data(definitions, data)
    results = flow.run_days(settings, engine, days, definitions=definitions, data=data,
                            progress_callback=on_day)  # fmt: skip
    last = results[-1]
    store = OkrStore(engine)
    print_progress(last.as_of, store.progress(as_of=last.as_of), store.kpi_values(as_of=last.as_of),
                   output_format)  # fmt: skip
    if any(r.blocked for r in results):
        sys.exit(1)


@cli.command()
@click.option("--as-of", default=None, help="Day to compute (YYYY-MM-DD; default today).")
@click.option("--definitions", "definitions_path", default=None, type=click.Path(exists=True),
              help="Definitions file or folder to preview instead of the configured ones.")  # fmt: skip
@format_option
@click.pass_obj
def preview(
    obj: Context, as_of: str | None, definitions_path: str | None, output_format: str
) -> None:
    """Compute from staged data and print; push nothing."""
    settings = obj.settings()
    day = _date(as_of) or settings.today()
    engine = flow.open_database(settings)
    definitions = flow.load_definition_set(
        settings, Path(definitions_path) if definitions_path else None
    )
    data = flow.load_prepared(settings, engine)
    warn_about_data(definitions, data)
    if data.deals.empty and data.nps_responses.empty:
        err_console.print("[yellow]No staged data yet: run `krpulse sync` first.[/]")
    _, progress, kpis = flow.compute_day(settings, definitions, data, day)
    print_progress(day, progress, kpis, output_format)


@cli.command()
@click.option("--team", default=None, help="Only this team's KRs and KPIs.")
@click.option(
    "--as-of", default=None, help="Show the store as it was on this day (default: latest)."
)
@click.option("--cycle", "cycle_key", default=None,
              help="Only this cycle's KRs (default: the cycles running on the shown day).")  # fmt: skip
@format_option
@click.pass_obj
def status(obj: Context, team: str | None, as_of: str | None, cycle_key: str | None,
           output_format: str) -> None:  # fmt: skip
    """Show what the OKR store holds: each KR's latest progress and each KPI's latest value."""
    settings = obj.settings()
    store = OkrStore(flow.open_database(settings))
    day = _date(as_of)
    progress = store.progress(as_of=day, team=team)
    kpis = store.kpi_values(as_of=day, team=team)
    if progress.empty and kpis.empty:
        raise click.ClickException(
            "the OKR store is empty: run `krpulse run` (or `krpulse demo`) first"
        )
    shown = day or max(progress["as_of"].max() if not progress.empty else dt.date.min,
                       kpis["as_of"].max() if not kpis.empty else dt.date.min)  # fmt: skip
    if cycle_key:
        progress = progress[progress["cycle"] == cycle_key]
    elif not progress.empty:
        progress = progress[progress["cycle"].isin(_cycles_running(settings, shown, progress))]
    print_progress(shown, progress, kpis, output_format)


def _cycles_running(settings: Settings, day: dt.date, progress: pd.DataFrame) -> list[str]:
    """Cycles running on `day` per the definitions; else the newest cycle in the store."""
    try:
        running = [c.key for c in flow.load_definition_set(settings).cycles_at(day)]
    except DefinitionError:
        running = []
    if running and progress["cycle"].isin(running).any():
        return running
    return [progress.sort_values("as_of")["cycle"].iloc[-1]]


def main() -> None:
    cli.main(prog_name="krpulse")


# Commands of other areas live in their own modules and register here, so each area's CLI
# grows without everyone editing this file. (Imported last: they use the helpers above.)
from pipelines.cli_definitions import definitions  # noqa: E402

cli.add_command(definitions)

from pipelines.cli_dashboard import digest, serve  # noqa: E402

cli.add_command(serve)
cli.add_command(digest)

from pipelines.cli_db import db, export, push  # noqa: E402

cli.add_command(db)
cli.add_command(export)
cli.add_command(push)
from pipelines.cli_lifecycle import new_cycle_command, review_command  # noqa: E402

cli.add_command(review_command)
cli.add_command(new_cycle_command)

from pipelines.cli_validate import validate_command  # noqa: E402

cli.add_command(validate_command)

from pipelines.cli_config import config  # noqa: E402

cli.add_command(config)
from pipelines.cli_checkin import checkin, retro  # noqa: E402

cli.add_command(checkin)
cli.add_command(retro)

"""The daily commands: demo, sync, run, preview and status."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click
import pandas as pd
from rich.markup import escape
from rich.table import Table

from kr_metrics.definitions import DefinitionError
from kr_metrics.display import format_value
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.cli.output import (
    Context,
    console,
    err_console,
    format_option,
    parse_date,
    print_progress,
)
from pipelines.settings import ConfigError, Settings


@click.command()
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
        movement = Table(
            title=f"How the KRs moved from {first.as_of} to {last.as_of}",
            title_justify="left",
            title_style="bold",
        )
        for column in ("KR", str(first.as_of), str(last.as_of)):
            movement.add_column(column, justify="left" if column == "KR" else "right")
        start = first.progress.set_index("kr")
        for row in last.progress.itertuples():
            movement.add_row(
                row.kr,
                format_value(start.loc[row.kr, "value"], row.metric, row.unit),
                format_value(row.value, row.metric, row.unit),
            )
        console.print(movement)
    store = OkrStore(engine)
    progress = store.progress(as_of=last.as_of)
    progress = progress[progress["cycle"] == cycle.key]
    print_progress(last.as_of, progress, store.kpi_values(as_of=last.as_of), output_format)


@click.command()
@click.option("--source", "source_name", default=None, help="Sync only this source.")
@format_option
@click.pass_obj
def sync(obj: Context, source_name: str | None, output_format: str) -> None:
    """Extract the configured sources into the staging tables."""
    settings = obj.settings()
    reports = flow.sync_sources(settings, flow.open_database(settings), only=source_name)
    for r in reports:  # a source's warning (no NPS synced, no rate to the reporting currency)
        if r.details.get("warning"):
            click.echo(f"warning: {r.details['warning']}", err=True)
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
        table.add_row(
            r.source,
            r.object,
            str(r.fetched),
            str(r.changed),
            str(r.deleted),
            str(r.quarantined),
            reasons,
        )
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
        return flow.date_range(parse_date(start), parse_date(end))
    return [parse_date(as_of) or settings.today()]


@click.command()
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
            err_console.print(
                f"{result.as_of}: [red]blocked[/] by validation, nothing pushed; "
                "stored good values are kept, its other KRs marked stale:"
            )
            for line in result.validation_failures:
                err_console.print(f"  {escape(line)}")
        for line in result.validation_warnings:
            err_console.print(f"{result.as_of}: [yellow]{escape(line)}[/]")
        if result.stale_key_results:
            err_console.print(
                f"{result.as_of}: source {escape(', '.join(result.failing_sources))} failed to "
                f"sync; {len(result.stale_key_results)} KRs that read it are marked stale"
            )
        if not result.blocked and len(days) > 1:
            say(f"{result.as_of}: {len(result.progress)} KRs, {len(result.kpis)} KPIs pushed")

    definitions = flow.load_definition_set(settings)
    data = flow.load_prepared(settings, engine)
    warn_about_data(definitions, data)
    results = flow.run_days(
        settings, engine, days, definitions=definitions, data=data, progress_callback=on_day
    )
    last = results[-1]
    for line in last.quarantine if output_format == "table" else ():  # the same for every day
        console.print(escape(line), style="dim", highlight=False)
    store = OkrStore(engine)
    print_progress(
        last.as_of,
        store.progress(as_of=last.as_of),
        store.kpi_values(as_of=last.as_of),
        output_format,
    )
    if any(r.blocked for r in results):
        sys.exit(1)


@click.command()
@click.option("--as-of", default=None, help="Day to compute (YYYY-MM-DD; default today).")
@click.option(
    "--definitions",
    "definitions_path",
    default=None,
    type=click.Path(exists=True),
    help="Definitions file or folder to preview instead of the configured ones.",
)
@format_option
@click.pass_obj
def preview(
    obj: Context, as_of: str | None, definitions_path: str | None, output_format: str
) -> None:
    """Compute from staged data and print; push nothing."""
    settings = obj.settings()
    day = parse_date(as_of) or settings.today()
    engine = flow.open_database(settings)
    definitions = flow.load_definition_set(
        settings, Path(definitions_path) if definitions_path else None
    )
    data = flow.load_prepared(settings, engine)
    warn_about_data(definitions, data)
    if data.deals.empty and data.nps_responses.empty:
        err_console.print("[yellow]No staged data yet: run `krpulse sync` first.[/]")
    staged = flow.staged_data(settings, engine, data)
    _, progress, kpis = flow.compute_day(settings, definitions, staged, day)
    print_progress(day, progress, kpis, output_format)


@click.command()
@click.option("--team", default=None, help="Only this team's KRs and KPIs.")
@click.option(
    "--as-of", default=None, help="Show the store as it was on this day (default: latest)."
)
@click.option(
    "--cycle",
    "cycle_key",
    default=None,
    help="Only this cycle's KRs (default: the cycles running on the shown day).",
)
@format_option
@click.pass_obj
def status(
    obj: Context, team: str | None, as_of: str | None, cycle_key: str | None, output_format: str
) -> None:
    """Show what the OKR store holds: each KR's latest progress and each KPI's latest value."""
    settings = obj.settings()
    store = OkrStore(flow.open_database(settings))
    day = parse_date(as_of)
    progress = store.progress(as_of=day, team=team)
    kpis = store.kpi_values(as_of=day, team=team)
    if progress.empty and kpis.empty:
        raise click.ClickException(
            "the OKR store is empty: run `krpulse run` (or `krpulse demo`) first"
        )
    shown = day or max(
        progress["as_of"].max() if not progress.empty else dt.date.min,
        kpis["as_of"].max() if not kpis.empty else dt.date.min,
    )
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

"""`krpulse doctor`: what each source will sync, read from the CRM's metadata before a sync."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.table import Table

from connectors.base import SourceCheck
from pipelines import flow
from pipelines.cli.output import Context, console, format_option


def run_checks(settings, only: str | None) -> list[SourceCheck]:  # noqa: ANN001 - Settings
    """One SourceCheck per configured source (or `only` that one); nothing is synced."""
    sources = [settings.source(only)] if only else list(settings.sources)
    return [
        flow.source_for(settings, source).check(home_currency=settings.reporting_currency)
        for source in sources
    ]


def print_check(check: SourceCheck) -> None:
    verdict = "[green]ready[/]" if check.ok else f"[red]{len(check.problems)} problem(s)[/]"
    console.print(f"[bold]{check.source}[/] ({check.kind}): {verdict}")
    for label, value in check.facts.items():
        console.print(f"  {label}: {value}", highlight=False, soft_wrap=True)
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    for column in ("table", "read from", "fields", "filter"):
        table.add_column(column, overflow="fold")
    for plan in check.plans:
        table.add_row(plan.table, plan.read_from, ", ".join(plan.fields), plan.filters or "-")
    if check.plans:
        console.print(table)
    for warning in check.warnings:
        console.print(f"  [yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for problem in check.problems:
        console.print(f"  [red]missing:[/] {problem}", highlight=False, soft_wrap=True)


@click.command("doctor")
@click.option("--source", "source_name", default=None, help="Check only this source.")
@format_option
@click.pass_obj
def doctor(obj: Context, source_name: str | None, output_format: str) -> None:
    """Read each source's metadata and print what a sync will read: objects, fields, filters,
    scopes, currency mode, NPS mode, and what is missing. Exit 1 when something is."""
    checks = run_checks(obj.settings(), source_name)
    if output_format == "json":
        click.echo(json.dumps({"sources": [asdict(c) | {"ok": c.ok} for c in checks]}, indent=2))
    else:
        for check in checks:
            print_check(check)
    if not all(check.ok for check in checks):
        raise SystemExit(1)

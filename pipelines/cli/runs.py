"""`krpulse runs`: the audited runs, newest first; runs a killed process left `running` are
reaped (marked failed with the reason) before they are shown."""

from __future__ import annotations

import json

import click
import pandas as pd
from rich.markup import escape
from rich.table import Table

from pipelines import flow
from pipelines.cli.output import Context, console, format_option

RUN_FIELDS = [
    "run_id",
    "origin",
    "status",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "pid",
    "host",
    "days_requested",
    "message",
]
STATUS_STYLE = {"succeeded": "green", "partial": "yellow", "failed": "red", "running": "cyan"}


@click.command("runs")
@click.option("--limit", default=20, show_default=True, help="How many runs to show.")
@format_option
@click.pass_obj
def runs_command(obj: Context, limit: int, output_format: str) -> None:
    """Show the newest runs: origin, status, timing, process and the reason of a failure."""
    store = flow.OkrStore(flow.open_database(obj.settings()))
    store.reap_abandoned_runs()
    runs = store.runs(limit=limit).reindex(columns=RUN_FIELDS)
    if output_format == "json":
        records = runs.astype(object).where(runs.notna(), None).to_dict("records")
        click.echo(json.dumps({"runs": records}, indent=2, default=_json_default))
        return
    if runs.empty:
        console.print("No runs yet: `krpulse run` records one.")
        return
    table = Table(title="Runs", title_justify="left", title_style="bold")
    for column in ("run", "origin", "status", "started", "finished", "process", "message"):
        table.add_column(column)
    for run in runs.to_dict("records"):
        style = STATUS_STYLE.get(run["status"], "")
        process = f"{int(run['pid'])}@{run['host']}" if pd.notna(run["pid"]) else ""
        table.add_row(
            escape(str(run["run_id"])),
            str(run["origin"]),
            f"[{style}]{run['status']}[/]",
            _when(run["started_at"]),
            _when(run["finished_at"]),
            escape(process),
            escape(str(run["message"] or "")),
        )
    console.print(table)


def _when(value) -> str:  # noqa: ANN001 - a timestamp or NaT
    return "" if pd.isna(value) else f"{value:%Y-%m-%d %H:%M:%S}"


def _json_default(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)

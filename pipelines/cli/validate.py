"""`krpulse validate`: the validation gate's suites outside Dagster, failures with examples."""

from __future__ import annotations

import json
import sys

import click
from rich.markup import escape
from rich.table import Table

from pipelines import flow, gate
from pipelines.cli.output import Context, console, format_option, parse_date


@click.command("validate")
@click.option(
    "--source",
    "source_name",
    default=None,
    help="Only the data suites of this source's newest syncs.",
)
@click.option(
    "--as-of",
    default=None,
    help="Day whose numbers the number suites check (YYYY-MM-DD; default today).",
)
@click.option(
    "--accept",
    "accept_sync",
    type=int,
    default=None,
    metavar="SYNC_ID",
    help="Accept the staged state after this failed sync (ids in the `sync` column): "
    "it becomes what later syncs are judged against. Needs --by and --why.",
)
@click.option("--by", "accepted_by", default=None, metavar="NAME", help="Who accepts (audited).")
@click.option("--why", "reason", default=None, metavar="TEXT", help="Why (audited).")
@format_option
@click.pass_obj
def validate_command(
    obj: Context,
    source_name: str | None,
    as_of: str | None,
    accept_sync: int | None,
    accepted_by: str | None,
    reason: str | None,
    output_format: str,
) -> None:
    """Run the validation gate: data suites on each source's staged state against the last
    state that passed, number suites on a day's KR and KPI values. Prints every failure with
    examples; exit 1 on an ERROR. With --accept, record an operator's acceptance instead."""
    settings = obj.settings()
    engine = flow.open_database(settings)
    if accept_sync is not None:
        _accept(settings, engine, accept_sync, accepted_by, reason, output_format)
        return
    if accepted_by or reason:
        raise click.UsageError("--by and --why go with --accept SYNC_ID")
    verdicts = gate.data_gate(settings, engine, only=source_name, revalidate=True)
    reports = [v.report for v in verdicts]
    sync_ids = {v.suite: v.sync_id for v in verdicts}
    accepted = {v.suite: v.accepted for v in verdicts if v.accepted}
    day = None
    if source_name is None:
        day = parse_date(as_of) or settings.today()
        definitions = flow.load_definition_set(settings)
        values, _, _ = flow.compute_day(
            settings, definitions, flow.staged_data(settings, engine), day
        )
        previous = gate.previous_values(flow.OkrStore(engine), day)
        report = gate.check_numbers(settings, definitions, values, previous)
        # The suite name says which day's numbers these are.
        reports.append(
            type(report)(f"numbers {day}", report.success, report.evaluated_rows, report.failures)
        )
    if output_format == "json":
        payload = {
            "as_of": day.isoformat() if day else None,
            "suites": [
                {
                    "status": "accepted" if r.suite in accepted else r.status,
                    "sync_id": sync_ids.get(r.suite),
                    "accepted": accepted.get(r.suite),
                    **r.as_dict(),
                }
                for r in reports
            ],
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        _print(reports, sync_ids, accepted)
    if any(r.blocked and r.suite not in accepted for r in reports):
        sys.exit(1)


def _accept(settings, engine, sync_id: int, accepted_by, reason, output_format: str) -> None:
    """Record the acceptance (who, why, when) and say what it means."""
    if not accepted_by or not reason:
        raise click.UsageError("--accept needs --by NAME and --why TEXT (both are audited)")
    try:
        report = gate.accept_sync(settings, engine, sync_id, accepted_by=accepted_by, reason=reason)
    except gate.AcceptError as exc:
        raise click.ClickException(str(exc)) from exc
    if output_format == "json":
        click.echo(
            json.dumps(
                {
                    "accepted": sync_id,
                    "by": accepted_by,
                    "why": reason,
                    "verdict": report.as_dict(),
                },
                indent=2,
            )
        )
        return
    console.print(
        f"Accepted sync {sync_id} ({escape(report.suite)}) by {escape(accepted_by)}: "
        f"{escape(reason)}. Later syncs are judged against it; `krpulse run` pushes again.",
        highlight=False,
    )


def _print(reports: list, sync_ids: dict | None = None, accepted: dict | None = None) -> None:
    sync_ids, accepted = sync_ids or {}, accepted or {}
    if not reports:
        console.print("Nothing to validate: no source has synced yet (`krpulse sync`).")
        return
    table = Table(title="Validation gate", title_justify="left", title_style="bold")
    for column in ("suite", "sync", "rows", "status", "errors", "warnings"):
        table.add_column(
            column, justify="right" if column in ("sync", "rows", "errors", "warnings") else "left"
        )
    style = {"passed": "green", "warned": "yellow", "failed": "red", "accepted": "cyan"}
    for r in reports:
        status = "accepted" if r.suite in accepted else r.status
        table.add_row(
            r.suite,
            str(sync_ids.get(r.suite, "")),
            f"{r.evaluated_rows:,}",
            f"[{style[status]}]{status}[/]",
            str(len(r.errors)),
            str(len(r.warnings)),
        )
    console.print(table)
    for suite, note in accepted.items():
        console.print(f"[cyan]accepted[/] {escape(suite)}: {escape(note)}", highlight=False)
    failed = [r for r in reports if r.blocked and r.suite in sync_ids and r.suite not in accepted]
    if failed:
        console.print(
            "Fix the data in the CRM and sync again, or accept a failed sync once you know why: "
            "krpulse validate --accept SYNC --by NAME --why TEXT",
            highlight=False,
        )
    for r in reports:
        for failure in r.failures:
            colour = "red" if failure.severity == "error" else "yellow"
            console.print(
                f"[{colour}]{failure.severity}[/] {escape(r.suite)}: {escape(failure.expectation)}"
                f" — {failure.unexpected_count:,} unexpected",
                highlight=False,
            )
            for example in failure.examples:
                console.print("    " + json.dumps(example, default=str), markup=False)

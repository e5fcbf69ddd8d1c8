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
@click.option("--source", "source_name", default=None,
              help="Only the data suites of this source's newest syncs.")  # fmt: skip
@click.option("--as-of", default=None,
              help="Day whose numbers the number suites check (YYYY-MM-DD; default today).")  # fmt: skip
@format_option
@click.pass_obj
def validate_command(
    obj: Context, source_name: str | None, as_of: str | None, output_format: str
) -> None:
    """Run the validation gate: data suites on each source's newest sync, number suites on a
    day's KR and KPI values. Prints every failure with examples; exit 1 on an ERROR."""
    settings = obj.settings()
    engine = flow.open_database(settings)
    verdicts = gate.data_gate(settings, engine, only=source_name, revalidate=True)
    reports = [v.report for v in verdicts]
    day = None
    if source_name is None:
        day = parse_date(as_of) or settings.today()
        definitions = flow.load_definition_set(settings)
        values, _, _ = flow.compute_day(
            settings, definitions, flow.load_prepared(settings, engine), day
        )
        previous = gate.previous_values(flow.OkrStore(engine), day)
        report = gate.check_numbers(settings, definitions, values, previous)
        # The suite name says which day's numbers these are.
        reports.append(type(report)(f"numbers {day}", report.success, report.evaluated_rows,
                                    report.failures))  # fmt: skip
    if output_format == "json":
        payload = {
            "as_of": day.isoformat() if day else None,
            "suites": [{"status": r.status, **r.as_dict()} for r in reports],
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        _print(reports)
    if any(r.blocked for r in reports):
        sys.exit(1)


def _print(reports: list) -> None:
    if not reports:
        console.print("Nothing to validate: no source has synced yet (`krpulse sync`).")
        return
    table = Table(title="Validation gate", title_justify="left", title_style="bold")
    for column in ("suite", "rows", "status", "errors", "warnings"):
        table.add_column(column, justify="right" if column in ("rows", "errors", "warnings") else "left")  # fmt: skip
    style = {"passed": "green", "warned": "yellow", "failed": "red"}
    for r in reports:
        table.add_row(r.suite, f"{r.evaluated_rows:,}", f"[{style[r.status]}]{r.status}[/]",
                      str(len(r.errors)), str(len(r.warnings)))  # fmt: skip
    console.print(table)
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

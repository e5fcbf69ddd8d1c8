"""`krpulse definitions ...`: check and lint, the JSON Schema for editors, and explain a KR."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd
from rich.table import Table

from kr_metrics.definitions import DefinitionError
from kr_metrics.schema import SCHEMA_FILE, schema_json
from pipelines import flow
from pipelines.cli.output import Context, console, format_option, format_value, parse_date
from pipelines.settings import config_path


@click.group()
def definitions() -> None:
    """Work with KR and KPI definitions (sales ops' YAML)."""


@definitions.command("check")
@click.argument("path", required=False, type=click.Path())
@click.pass_obj
def check(obj: Context, path: str | None) -> None:
    """Validate and lint definitions; exit 0 when clean, 1 on errors (warnings are listed)."""
    # krpulse.yaml's timezone is part of the check; a lone file may be checked without one.
    settings = obj.settings() if path is None or config_path(obj.config).exists() else None
    target = Path(path) if path else settings.definitions_path
    try:
        loaded = (
            flow.load_definition_set(settings, target)
            if settings
            else flow.load_definitions(target)
        )
    except DefinitionError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        errors = sum(1 for p in exc.problems if p.severity == "error")
        warnings = len(exc.problems) - errors
        click.echo(
            f"{errors} error(s)"
            + (f", {warnings} warning(s)" if warnings else "")
            + "; nothing was loaded.",
            err=True,
        )
        raise SystemExit(1) from None
    for warning in loaded.warnings:
        click.echo(str(warning), err=True)
    krs = sum(1 for _ in loaded.key_results())
    custom = len(loaded.custom_metrics)
    click.echo(
        f"{target}: OK — {len(loaded.cycles)} cycle(s), {len(loaded.objectives)} objective(s), "
        f"{krs} key result(s), {len(loaded.kpis)} KPI(s)"
        + (f", {custom} custom metric(s)" if custom else "")
        + (f"; {len(loaded.warnings)} warning(s)" if loaded.warnings else "")
    )


@definitions.command("schema")
@click.option(
    "--write",
    "write_to",
    default=None,
    type=click.Path(),
    help=f"Write the schema to this file (e.g. definitions/{SCHEMA_FILE}); default: print.",
)
def schema(write_to: str | None) -> None:
    """The JSON Schema of definition files, for editors' autocomplete and underlining."""
    text = schema_json()
    if write_to:
        Path(write_to).write_text(text)
        click.echo(f"wrote {write_to}")
    else:
        click.echo(text, nl=False)


@definitions.command("explain")
@click.argument("kr")
@click.option("--cycle", default=None, help="The KR's cycle, when the key exists in several.")
@click.option("--as-of", default=None, help="Day to explain (YYYY-MM-DD; default today).")
@click.option("--top", default=10, show_default=True, help="How many records to list.")
@format_option
@click.pass_obj
def explain(
    obj: Context, kr: str, cycle: str | None, as_of: str | None, top: int, output_format: str
) -> None:
    """Show a KR's formula, filters, numerator and denominator, and the records that count most."""
    from kr_metrics.sql.explain import explain_key_result

    settings = obj.settings()
    definitions = flow.load_definition_set(settings)
    try:
        loaded, key_result = definitions.find_key_result(kr, cycle)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    day = parse_date(as_of) or settings.today()
    # The compiled engine over the same staged rows as `krpulse run`: the formula's inputs and
    # the records behind them, the `top` that add most listed (ordered and cut in SQL).
    staged = flow.staged_data(settings, flow.open_database(settings))
    explanation = explain_key_result(
        definitions, loaded, key_result, staged, day, order="largest", limit=max(top, 0)
    )
    if output_format == "json":
        payload = {k: v for k, v in explanation.items() if k != "records"}
        payload["records"] = json.loads(
            explanation["records"].to_json(orient="records", date_format="iso")
        )
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    spec = definitions.library[key_result.metric]
    console.print(
        f"[bold]{key_result.title}[/] [dim]{loaded.cycle.key}/{key_result.key}[/] as of {day}"
    )
    console.print(f"metric     {key_result.metric}: {spec.formula}")
    console.print(f"filters    {explanation['filters'] or 'none'}")
    console.print(f"window     {explanation['window_start']} .. {explanation['window_end']}")
    unit = key_result.unit
    for label, field in (("numerator", "numerator"), ("denominator", "denominator")):
        if explanation[field] is not None:
            console.print(f"{label:<10} {explanation[field]:,.2f}")
    console.print(
        f"value      {format_value(explanation['value'], key_result.metric, unit)} "
        f"(sample size {explanation['sample_size']})"
    )
    console.print(f"edge cases {spec.edge_cases}")
    records: pd.DataFrame = explanation["records"]
    if explanation["reason"]:
        console.print(f"No records to list: {explanation['reason']}.")
        return
    if not explanation["total"]:
        console.print("No records contribute to this number.")
        return
    table = Table(
        title=f"Records that count most (top {len(records)} of {explanation['total']})",
        title_justify="left",
    )
    shown = [
        c
        for c in (
            "record_id",
            "customer_name",
            "team",
            "day",
            "score",
            "amount_home",
            "contribution",
        )
        if c in records
    ]
    for column in shown:
        table.add_column(column)
    for row in records[shown].itertuples(index=False):
        table.add_row(
            *["" if pd.isna(v) else (f"{v:,.2f}" if isinstance(v, float) else str(v)) for v in row]
        )
    console.print(table)


@definitions.command("metrics")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "md"]),
    default="table",
    show_default=True,
    help="A table, or the Markdown of docs/metrics.md.",
)
def metrics(output_format: str) -> None:
    """List the built-in metrics a KR or KPI can use, with their formulas."""
    from kr_metrics.docs import metrics_markdown
    from kr_metrics.metrics import METRICS

    if output_format == "md":
        click.echo(metrics_markdown(), nl=False)
        return
    table = Table(title="Built-in metrics (custom ones: see docs/metrics.md)", title_justify="left")
    table.add_column("metric")
    table.add_column("unit")
    table.add_column("formula")
    for spec in METRICS.values():
        table.add_row(spec.name, spec.unit, spec.formula)
    console.print(table)

"""`krpulse review` and `krpulse new-cycle`: the end of a cycle and the start of the next."""

from __future__ import annotations

import json
from pathlib import Path

import click

from kr_metrics.definitions import DefinitionError
from kr_metrics.lifecycle import review, review_html, review_markdown, rollover
from okr_store.checkins import CheckInStore
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.cli.output import Context, console, err_console


@click.command("review")
@click.argument("cycle")
@click.option("--team", default=None, help="Only this team's objectives and KPIs.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["md", "html", "json"]),
    default="md",
    show_default=True,
)
@click.option(
    "--output", "output", default=None, type=click.Path(), help="Write to a file instead."
)
@click.pass_obj
def review_command(
    obj: Context, cycle: str, team: str | None, output_format: str, output: str | None
) -> None:
    """The review of CYCLE: final grades and verdicts, how each KR moved, forecast accuracy, KPIs."""
    settings = obj.settings()
    definitions = flow.load_definition_set(settings)
    if cycle not in definitions.cycles:
        known = ", ".join(sorted(definitions.cycles)) or "none"
        raise click.ClickException(
            f"no cycle '{cycle}' in {settings.definitions_path} (cycles: {known})"
        )
    definition = definitions.cycles[cycle]
    store = OkrStore(flow.open_database(settings))
    history = store.cycle_history(cycle, team=team)
    if history.empty:
        raise click.ClickException(
            f"the OKR store holds no progress for {cycle}: run `krpulse run --from "
            f"{definition.start} --to {definition.end}` first"
        )
    kpis = store.kpi_history(team=team, start=definition.start, end=definition.end)
    changes = store.definition_changes(cycle) if hasattr(store, "definition_changes") else None
    check_ins = CheckInStore(store.engine)
    report = review(
        definitions,
        cycle,
        history,
        kpis,
        today=settings.today(),
        policy=settings.scoring.policy(),
        changes=changes,
        check_ins=check_ins.check_ins(cycle=cycle, team=team),
        retrospective=check_ins.retro_items(cycle),
    )
    if team:
        report["objectives"] = [o for o in report["objectives"] if o["team"] == team]
    if output_format == "json":
        text = json.dumps(report, indent=2, default=str) + "\n"
    elif output_format == "html":
        text = review_html(report)
    else:
        text = review_markdown(report)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@click.command("new-cycle")
@click.argument("next_cycle")
@click.option(
    "--from", "current", default=None, help="The cycle to roll over (default: the newest)."
)
@click.option("--force", is_flag=True, help="Overwrite existing files of NEXT_CYCLE.")
@click.pass_obj
def new_cycle_command(obj: Context, next_cycle: str, current: str | None, force: bool) -> None:
    """Write NEXT_CYCLE's definition files from the current cycle, baselines = its final actuals.

    Targets are left empty for sales ops to set; `krpulse definitions check` lists what is missing.
    """
    settings = obj.settings()
    definitions = flow.load_definition_set(settings)
    if not definitions.cycles:
        raise click.ClickException("no cycles defined to roll over")
    current = current or max(definitions.cycles.values(), key=lambda c: c.start).key
    if current not in definitions.cycles:
        raise click.ClickException(f"no cycle '{current}' in the definitions")
    if next_cycle in definitions.cycles:
        raise click.ClickException(f"cycle '{next_cycle}' is already defined")
    cycle = definitions.cycles[current]
    actuals = _final_actuals(settings, definitions, current)
    files = sorted({Path(lo.file) for lo in definitions.objectives if lo.cycle.key == current})
    written = rollover(definitions, current, next_cycle, actuals, files)
    for path in written:
        if path.exists() and not force:
            raise click.ClickException(f"{path} exists; pass --force to overwrite it")
    for path, text in written.items():
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")
    missing = sum(1 for v in actuals.values() if v is None)
    as_of = min(cycle.end, settings.today())
    console.print(
        f"Baselines are the {current} actuals as of {as_of}; {len(actuals) - missing} of "
        f"{len(actuals)} KRs had a value"
        + (" (the others use previous_cycle)." if missing else ".")
    )
    if as_of < cycle.end:
        err_console.print(
            f"[yellow]{current} runs until {cycle.end}: these baselines are values so far; "
            "rerun new-cycle with --force after the cycle has closed.[/]"
        )
    wins = [
        i for i in CheckInStore(flow.open_database(settings)).retro_items(current) if i["quick_win"]
    ]
    if wins:
        console.print(f"Quick wins from the {current} retrospective, to start {next_cycle} with:")
        for n, item in enumerate(wins, 1):
            console.print(f"  {n}. {item['text']}", markup=False, highlight=False)
    else:
        console.print(
            f"No retrospective recorded for {current}: `krpulse retro {current} --add ...`"
        )
    try:
        flow.load_definition_set(settings)
        console.print("Definitions check clean.")
    except DefinitionError as exc:
        console.print("Still to do before the new cycle goes live (`krpulse definitions check`):")
        for problem in exc.problems:
            console.print(f"  {problem}", markup=False, highlight=False)


def _final_actuals(settings, definitions, cycle_key: str) -> dict[str, float | None]:
    """Each KR's final value: the store's last row of the cycle, else computed from staged data."""
    cycle = definitions.cycles[cycle_key]
    engine = flow.open_database(settings)
    stored = OkrStore(engine).latest_cycle_progress(cycle_key, as_of=cycle.end)
    actuals = {
        row.kr: (None if row.value is None or row.value != row.value else float(row.value))
        for row in stored.itertuples()
    }
    keys = [kr.key for lo, kr in definitions.key_results() if lo.cycle.key == cycle_key]
    if any(actuals.get(k) is None for k in keys):
        day = min(cycle.end, settings.today())
        _, progress, _ = flow.compute_day(
            settings, definitions, flow.staged_data(settings, engine), day
        )
        computed = progress[progress["cycle"] == cycle_key].set_index("kr")["value"]
        for key in keys:
            if actuals.get(key) is None and key in computed and computed[key] == computed[key]:
                actuals[key] = float(computed[key])
    return {key: actuals.get(key) for key in keys}

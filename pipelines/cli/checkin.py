"""`krpulse checkin` (a KR's weekly check-in) and `krpulse retro` (the cycle's retrospective)."""

from __future__ import annotations

import getpass
import json

import click

from core.checkins import (
    CONFIDENCE_LABELS,
    CheckInError,
    confidence_label,
    make_check_in,
    make_retro_item,
    week_label,
)
from okr_store.checkins import CheckInStore
from pipelines import flow
from pipelines.cli.output import Context

_SCALE = ", ".join(f"{k} {v}" for k, v in CONFIDENCE_LABELS.items())


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@click.command("checkin")
@click.argument("cycle")
@click.argument("kr", required=False)
@click.option("--confidence", default=None, help=f"How likely the KR reaches its goal: {_SCALE}.")
@click.option("--progress", default="", help="What moved this week.")
@click.option("--problems", default="", help="What is in the way.")
@click.option("--next-steps", "next_steps", default="", help="What happens next.")
@click.option("--author", default=None, help="Who checks in (default: your login name).")
@click.option("--team", default=None, help="With no KR: list only this team's check-ins.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@click.pass_obj
def checkin(
    obj: Context,
    cycle: str,
    kr: str | None,
    confidence: str | None,
    progress: str,
    problems: str,
    next_steps: str,
    author: str | None,
    team: str | None,
    output_format: str,
) -> None:
    """Check in on KR of CYCLE for this week, or with no KR list the cycle's check-ins.

    One check-in per KR and ISO week; running it again in the same week edits it (every version
    is kept). The KR's value of today is recorded beside it.

    \b
      krpulse checkin 2026-Q4 win-rate-dach --confidence 4 \\
          --progress "Two renewals signed" --next-steps "Call the three detractors"
      krpulse checkin 2026-Q4 --team sales-dach
    """
    settings = obj.settings()
    store = CheckInStore(flow.open_database(settings))
    if kr is None:
        rows = store.check_ins(cycle=cycle, team=team).to_dict("records")
        if output_format == "json":
            click.echo(json.dumps(rows, indent=2, default=str))
            return
        if not rows:
            click.echo(f"No check-ins for {cycle}{f' and team {team}' if team else ''}.")
        for row in rows:
            click.echo(
                f"{week_label(row['week'])}  {row['kr']}  confidence {confidence_label(row['confidence'])}"
                f"  ({row['author']}, version {row['revision']})"
            )
            for name in ("progress", "problems", "next_steps"):
                if row[name]:
                    click.echo(f"    {name.replace('_', ' ')}: {row[name]}")
        return
    if confidence is None:
        raise click.UsageError(f"--confidence is required to check in ({_SCALE})")
    today = settings.today()
    definitions = flow.load_definition_set(settings)
    cycle_end = definitions.cycles[cycle].end if cycle in definitions.cycles else None
    try:
        made = make_check_in(
            cycle=cycle,
            kr=kr,
            day=today,
            today=today,
            confidence=confidence,
            progress=progress,
            problems=problems,
            next_steps=next_steps,
            author=author or _user(),
            cycle_end=cycle_end,
        )
        stored = store.record(made, on_day=today)
    except CheckInError as exc:
        raise click.ClickException(str(exc)) from None
    if output_format == "json":
        click.echo(json.dumps(stored, indent=2, default=str))
        return
    verb = "Checked in" if stored["revision"] == 1 else f"Updated (version {stored['revision']})"
    click.echo(
        f"{verb}: {cycle} {kr} for {week_label(made.week)}, confidence "
        f"{confidence_label(made.confidence)}; editable until the week ends."
    )


@click.command("retro")
@click.argument("cycle")
@click.option("--add", "text", default=None, help="An item: what should change in the process.")
@click.option("--benefit", type=click.IntRange(1, 5), default=None, help="1 (low) to 5 (high).")
@click.option("--effort", type=click.IntRange(1, 5), default=None, help="1 (low) to 5 (high).")
@click.pass_obj
def retro(
    obj: Context, cycle: str, text: str | None, benefit: int | None, effort: int | None
) -> None:
    """The retrospective of CYCLE: add an item (--add with --benefit and --effort) or list them.

    Items are ranked by benefit against effort; the top three quick wins are marked and printed
    by `krpulse review` and `krpulse new-cycle`.
    """
    settings = obj.settings()
    store = CheckInStore(flow.open_database(settings))
    if text is not None:
        if benefit is None or effort is None:
            raise click.UsageError("--add needs --benefit and --effort (1 low to 5 high)")
        try:
            store.add_retro_item(
                make_retro_item(
                    cycle=cycle, text=text, benefit=benefit, effort=effort, author=_user()
                )
            )
        except CheckInError as exc:
            raise click.ClickException(str(exc)) from None
    items = store.retro_items(cycle)
    if not items:
        click.echo(f"No retrospective items for {cycle} yet.")
    for item in items:
        mark = "★" if item["quick_win"] else " "
        click.echo(f"{mark} benefit {item['benefit']} · effort {item['effort']}  {item['text']}")

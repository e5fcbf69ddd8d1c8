"""The `krpulse` command line: one group, its commands registered from one module per area."""

from __future__ import annotations

from typing import Any

import click
import sqlalchemy as sa

from connectors.base import SourceError
from kr_metrics.definitions import DefinitionError
from okr_store.db import DatabaseVanishedError
from okr_store.schema import SchemaOutOfDateError
from pipelines.cli.checkin import checkin, retro
from pipelines.cli.config import config
from pipelines.cli.daily import demo, preview, run, status, sync
from pipelines.cli.dashboard import digest, serve
from pipelines.cli.db import db, export, push
from pipelines.cli.definitions import definitions
from pipelines.cli.doctor import doctor
from pipelines.cli.lifecycle import new_cycle_command, review_command
from pipelines.cli.output import Context
from pipelines.cli.runs import runs_command
from pipelines.cli.validate import validate_command
from pipelines.failures import explain
from pipelines.settings import ConfigError


class KrpulseGroup(click.Group):
    """Turns the errors users can fix (config, definitions, sources) into one clear message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, DefinitionError, SourceError, SchemaOutOfDateError) as exc:
            raise click.ClickException(str(exc)) from exc
        except (sa.exc.DBAPIError, DatabaseVanishedError) as exc:
            # The database failed (unreachable, locked, read-only, vanished): one message.
            raise click.ClickException(explain(exc, _database_url(ctx)) or str(exc)) from exc


def _database_url(ctx: click.Context) -> str | None:
    try:
        return ctx.obj.settings().effective_database_url if ctx.obj else None
    except Exception:  # noqa: BLE001 - the message names "the database" instead
        return None


@click.group(cls=KrpulseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    envvar="KRPULSE_CONFIG",
    default=None,
    metavar="PATH",
    help="krpulse.yaml to use (default: ./krpulse.yaml; env KRPULSE_CONFIG).",
)
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """krpulse: sales key results measured from CRM data, every day."""
    ctx.obj = Context(config)


def main() -> None:
    cli.main(prog_name="krpulse")


for command in (
    demo,
    sync,
    run,
    preview,
    status,
    definitions,
    serve,
    digest,
    db,
    export,
    push,
    review_command,
    new_cycle_command,
    validate_command,
    config,
    runs_command,
    doctor,
    checkin,
    retro,
):
    cli.add_command(command)

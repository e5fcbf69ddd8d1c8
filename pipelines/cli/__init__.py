"""The `krpulse` command line (entry point `pipelines.cli:main`): `app` holds the group,
`output` what every command shares, and each other module one group of commands."""

from pipelines.cli.app import cli, main

__all__ = ["cli", "main"]

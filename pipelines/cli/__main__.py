"""`python -m pipelines.cli`: the same as the `krpulse` entry point."""

from pipelines.cli.app import main

main()

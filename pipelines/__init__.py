"""Wiring of krpulse: settings, the in-process daily flow, the Dagster project and the CLI."""

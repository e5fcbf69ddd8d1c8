"""The Jinja environment of the dashboard's pages and the digest's HTML."""

from __future__ import annotations

import functools
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from dashboard import views

HERE = Path(__file__).parent


@functools.cache
def templates_environment() -> Environment:
    """Jinja with autoescaping on for every template: all user text is data, never markup."""
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["team_label"] = views.team_label
    environment.globals["status_label"] = views.status_label
    return environment

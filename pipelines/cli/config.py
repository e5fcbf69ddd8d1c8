"""`krpulse config check`: krpulse.yaml is valid and every secret it names is set (never shown)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import click
from rich.table import Table

from pipelines.cli.output import console, format_option
from pipelines.settings import DATABASE_URL_ENV, Settings, config_path, load_settings


@dataclass(frozen=True)
class Finding:
    check: str  # what was looked at, e.g. "sources.sf-main.auth.consumer_key_env"
    status: str  # ok | missing | error | info
    detail: str


def secret_env_names(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every `*_env` setting (an environment variable's NAME) in the settings, with its path.

    Walking the settings finds the variables of every section (sources, sinks, dashboard,
    notifications) without a list to keep up to date; unset optional ones are None and skipped.
    """
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).endswith("_env") and isinstance(item, str) and item:
                found.append((where, item))
            else:
                found.extend(secret_env_names(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            label = item.get("name") if isinstance(item, dict) and "name" in item else None
            where = f"{path}.{label}" if label else f"{path}[{index}]"
            found.extend(secret_env_names(item, where))
    return found


def check_settings(settings: Settings) -> list[Finding]:
    """Secrets present (by name), folders present; the values themselves are never read out."""
    findings = []
    for where, env in secret_env_names(settings.model_dump(mode="python")):
        present = bool(os.environ.get(env))
        findings.append(
            Finding(
                where,
                "ok" if present else "missing",
                f"{env} is set" if present else f"environment variable {env} is not set",
            )
        )
    definitions = settings.definitions_path
    findings.append(
        Finding(
            "definitions",
            "ok" if definitions.exists() else "error",
            str(definitions) if definitions.exists() else f"{definitions} does not exist",
        )
    )
    for source in settings.sources:
        if source.type == "files":
            folder = settings.resolve(source.path)
            findings.append(
                Finding(
                    f"sources.{source.name}.path",
                    "ok" if folder.is_dir() else "error",
                    str(folder) if folder.is_dir() else f"{folder} is not a folder",
                )
            )
    overridden = bool(os.environ.get(DATABASE_URL_ENV))
    findings.append(
        Finding(
            "database_url",
            "info",
            f"{DATABASE_URL_ENV} overrides krpulse.yaml" if overridden else "from krpulse.yaml",
        )
    )
    return findings


@click.group("config")
def config() -> None:
    """Check krpulse.yaml and the environment it needs."""


@config.command("check")
@format_option
@click.pass_obj
def check(obj: Any, output_format: str) -> None:
    """Validate krpulse.yaml and that every secret it names is set; exit 1 when not.

    Only the variables' names are shown, never their values.
    """
    file = config_path(obj.config)
    settings = load_settings(file)  # invalid YAML or settings: ConfigError, exit 1
    findings = [Finding(str(file), "ok", "valid"), *check_settings(settings)]
    failed = [f for f in findings if f.status in ("missing", "error")]
    if output_format == "json":
        click.echo(
            json.dumps({"ok": not failed, "checks": [asdict(f) for f in findings]}, indent=2)
        )
    else:
        table = Table(title=f"krpulse config check: {file}", title_justify="left")
        for column in ("check", "status", "detail"):
            table.add_column(column)
        style = {"ok": "green", "missing": "red", "error": "red", "info": "dim"}
        for f in findings:
            table.add_row(f.check, f"[{style[f.status]}]{f.status}[/]", f.detail)
        console.print(table)
    if failed:
        raise SystemExit(1)

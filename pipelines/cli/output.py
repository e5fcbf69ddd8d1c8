"""What every `krpulse` command shares: the consoles, the Context, date parsing, `--format` and
the one progress report (table or JSON) every number-showing command prints."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.numbers import is_missing
from kr_metrics.display import (
    format_percent,
    format_value,
    is_uncertain,
    shown_status,
    value_with_margin,
)
from kr_metrics.scoring import VERDICTS
from pipelines.settings import Settings, load_settings

KR_FIELDS = [
    "cycle",
    "objective",
    "kr",
    "title",
    "team",
    "metric",
    "metric_kind",
    "value",
    "start",
    "baseline",
    "target",
    "progress",
    "grade",
    "expected_progress",
    "expected_value",
    "status",
    "status_reason",
    "verdict",
    "sample_size",
    "margin_of_error",
    "forecast_value",
    "forecast_grade",
    "stale_reason",
]
# Store columns under the names the JSON contract uses (DESIGN.md: start, baseline, target).
KR_JSON_NAMES = {"start_value": "start"}
KPI_FIELDS = ["kpi", "title", "team", "metric", "value", "health", "sample_size"]
STATUS_STYLE = {
    "on_track": "green",
    "at_risk": "yellow",
    "off_track": "red",
    "no_data": "dim",
    "stale": "magenta",
    "healthy": "green",
    "unhealthy": "red",
    "low_sample": "cyan",
    "achieved": "green",
    "partially_achieved": "yellow",
    "missed": "red",
}

# Piped output (CI logs, `| less`) gets a fixed, wide layout instead of rich's 80 columns.
console = Console(width=None if Console().is_terminal else 132)
err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 132)
LEVEL_ORDER = {"company": 0, "team": 1, "individual": 2}


class Context:
    def __init__(self, config: str | None):
        self.config = config

    def settings(self) -> Settings:
        return load_settings(self.config)


def parse_date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"'{value}' is not a date; use YYYY-MM-DD") from exc


format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="How to print the numbers.",
)


# --------------------------------------------------------------------------------------------
# Output


def _number(value: Any) -> float | int | None:
    if is_missing(value):
        return None
    if isinstance(value, int | bool):
        return int(value)
    return float(value)


def _records(frame: pd.DataFrame, fields: list[str], numeric: set[str]) -> list[dict]:
    out = []
    for row in frame.reindex(columns=fields).astype(object).to_dict("records"):
        out.append(
            {
                k: (_number(v) if k in numeric else (None if pd.isna(v) else v))
                for k, v in row.items()
            }
        )
    return out


def report_json(as_of: dt.date, progress: pd.DataFrame, kpis: pd.DataFrame) -> dict:
    """The one JSON shape every number-showing command prints (see DESIGN.md)."""
    kr_numeric = {
        "value",
        "start",
        "baseline",
        "target",
        "progress",
        "grade",
        "expected_progress",
        "expected_value",
        "sample_size",
        "margin_of_error",
        "forecast_value",
        "forecast_grade",
    }
    progress = progress.rename(columns=KR_JSON_NAMES)
    return {
        "as_of": as_of.isoformat(),
        "key_results": _records(progress, KR_FIELDS, kr_numeric),
        "kpis": _records(kpis, KPI_FIELDS, {"value", "sample_size"}),
    }


def print_progress(
    as_of: dt.date, progress: pd.DataFrame, kpis: pd.DataFrame, output_format: str
) -> None:
    if output_format == "json":
        click.echo(json.dumps(report_json(as_of, progress, kpis), indent=2))
        return
    if progress.empty and kpis.empty:
        console.print(f"Nothing to show as of {as_of}.")
        return
    if not progress.empty:
        order = progress["level"].map(LEVEL_ORDER).fillna(9)
        progress = progress.assign(_order=order).sort_values(
            ["cycle", "_order", "team", "objective", "kr"]
        )
    for (cycle, objective), rows in progress.groupby(["cycle", "objective"], sort=False):
        first = rows.iloc[0]
        table = Table(
            title=f"{cycle} · {objective} · {first.get('team') or 'company'} · {first['ambition']}",
            title_justify="left",
            title_style="bold",
        )
        columns = (
            "KR",
            "value",
            "baseline",
            "start",
            "target",
            "progress",
            "expected by today",
            "forecast",
            "status",
        )
        for column in columns:
            table.add_column(column, justify="left" if column in ("KR", "status") else "right")
        for row in rows.to_dict("records"):
            table.add_row(
                f"{row['title']} [dim]{row['kr']}[/]",
                value_with_margin(row),
                format_value(row["baseline"], row["metric"], row["unit"]),
                format_value(row.get("start_value"), row["metric"], row["unit"]),
                format_value(row["target"], row["metric"], row["unit"]),
                format_percent(row["progress"]),
                _expected_cell(row),
                format_value(row.get("forecast_value"), row["metric"], row["unit"]),
                _status_cell(row),
            )
        notes = [
            f"* {row['kr']}: {escape(_reason(row))}"
            for row in rows.to_dict("records")
            if _reason(row)
        ]
        if notes:
            table.caption = "\n".join(notes)
            table.caption_justify = "left"
        console.print(table)
    if not kpis.empty:
        table = Table(
            title="KPIs (standing health metrics, not key results)",
            title_justify="left",
            title_style="bold",
        )
        for column in ("KPI", "team", "value", "healthy range", "health"):
            table.add_column(column)
        for row in kpis.itertuples():
            low = (
                format_value(row.healthy_min, row.metric)
                if _number(row.healthy_min) is not None
                else ""
            )
            high = (
                format_value(row.healthy_max, row.metric)
                if _number(row.healthy_max) is not None
                else ""
            )
            table.add_row(
                f"{row.title} [dim]{row.kpi}[/]",
                row.team or "all",
                format_value(row.value, row.metric),
                f"{low} – {high}",
                f"[{STATUS_STYLE.get(row.health, '')}]{row.health}[/]",
            )
        console.print(table)
    console.print(f"as of {as_of}")


def _expected_cell(row: dict) -> str:
    """The value expected by today on the KR's path, with the share of the way it stands for."""
    expected = format_value(row.get("expected_value"), row["metric"], row["unit"])
    return f"{expected} ({format_percent(row['expected_progress'])})"


def _status_cell(row: dict) -> str:
    """The status (a closed cycle's verdict); a mark points at its reason below the table."""
    shown = shown_status(row)
    text = f"[{STATUS_STYLE.get(shown, '')}]{shown}[/]"
    if shown in VERDICTS:
        return text + f" [dim](grade {format_percent(row.get('grade'))})[/]"
    return text + (" *" if _reason(row) else "")


def _reason(row: dict) -> str | None:
    """Why a KR is not plainly on track (or on track with too small a sample to tell)."""
    shown = shown_status(row)
    reason = row.get("stale_reason") if shown == "stale" else row.get("status_reason")
    if not isinstance(reason, str) or shown in VERDICTS:
        return None
    return reason if shown != "on_track" or is_uncertain(reason) else None

"""`krpulse serve` (the team leads' dashboard) and `krpulse digest` (the weekly check-in)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import click
import sqlalchemy as sa

from dashboard.config import AccessError, resolve_record_urls
from dashboard.views import DashboardData, NotFound
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.cli.output import Context
from pipelines.settings import Settings


def dashboard_data(settings: Settings, engine: sa.Engine) -> DashboardData:
    """What the dashboard and the digest read: the OKR store, shown as krpulse.yaml says."""
    sources = {s.name: s.model_dump(mode="json") for s in settings.sources}
    try:
        links = resolve_record_urls(settings.dashboard.record_urls, sources)
    except AccessError as exc:
        raise click.ClickException(str(exc)) from exc
    return DashboardData(
        store=OkrStore(engine),
        record_links=links,
        stale_after=dt.timedelta(hours=settings.dashboard.stale_after_hours),
        moonshot_success=settings.scoring.moonshot_success,
        timezone=settings.timezone,
        team_names=dict(settings.dashboard.team_names),
        public_url=settings.dashboard.public_url,
        reporting_currency=settings.reporting_currency,
    )


@click.command()
@click.option("--host", default=None, help="Address to bind (default: dashboard.host, 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default: dashboard.port, 8000).")
@click.pass_obj
def serve(obj: Context, host: str | None, port: int | None) -> None:
    """Serve the team leads' dashboard and its JSON API (/api/, OpenAPI at /api/openapi.json).

    On 127.0.0.1 it needs no login. On any other address it refuses to start unless
    krpulse.yaml configures an access method under dashboard.auth.
    """
    import uvicorn

    from dashboard.access import AccessPolicy
    from dashboard.app import create_app

    settings = obj.settings()
    host = host or settings.dashboard.host
    port = settings.dashboard.port if port is None else port
    try:
        policy = AccessPolicy.from_settings(settings.dashboard, host)
    except AccessError as exc:
        raise click.ClickException(str(exc)) from exc
    data = dataclasses.replace(
        dashboard_data(settings, flow.open_database(settings)), warm_kr_pages=True
    )
    app = create_app(data, policy)
    how = "open on loopback, no login" if policy.open_access else "access control on"
    click.echo(f"krpulse dashboard on http://{host}:{port}/ ({how}); Ctrl+C stops it", err=True)
    # proxy_headers off: the peer address must be the real one for the trusted-proxy check.
    uvicorn.run(
        app, host=host, port=port, proxy_headers=False, server_header=False, log_level="info"
    )


@click.command()
@click.option("--team", default=None, help="Only this team (e.g. sales-uk).")
@click.option(
    "--week",
    default=None,
    type=click.DateTime(["%Y-%m-%d"]),
    help="Any day (YYYY-MM-DD) of the week to report (default: the newest).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["md", "slack", "html", "json"]),
    default="md",
    show_default=True,
    help="Markdown (chat, email), Slack mrkdwn, HTML (email) or JSON.",
)
@click.option(
    "--post",
    is_flag=True,
    help="Also post it: to dashboard.digest.webhook_url_env and to every subscription "
    "in dashboard.digest.subscriptions, each with its own team filter.",
)
@click.option("--subscription", "only", default=None, help="With --post: only this subscription.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of printing.",
)
@click.pass_obj
def digest(
    obj: Context,
    team: str | None,
    week: dt.datetime | None,
    output_format: str,
    post: bool,
    only: str | None,
    output: Path | None,
) -> None:
    """The weekly check-in: per team, each KR with owner, change, confidence and link; what moved,
    at risk, stale data, outlook. The week is the seven days ending on the newest day with data."""
    from dashboard import digest as weekly

    settings = obj.settings()
    targets = _digest_targets(settings, team, only) if post else []
    data = dashboard_data(settings, flow.open_database(settings))
    day = week.date() if week else None
    try:
        report = weekly.build_digest(data, week=day, team=team)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    text = _render(weekly, report, output_format)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    for name, url, target_team, chat_format in targets:
        part = (
            report if target_team == team else weekly.build_digest(data, week=day, team=target_team)
        )
        message = (
            weekly.render_slack(part) if chat_format == "slack" else weekly.render_markdown(part)
        )
        try:
            status = weekly.post_to_webhook(url, part, message, structured=chat_format != "slack")
        except RuntimeError as exc:
            raise click.ClickException(f"posting the digest to {name} failed: {exc}") from None
        except Exception as exc:
            # Transport errors quote the URL, which carries the webhook's secret: name the
            # kind of failure, never where.
            raise click.ClickException(
                f"posting the digest to {name} failed: {type(exc).__name__}"
            ) from None
        click.echo(f"Digest posted to {name} (HTTP {status}).", err=True)


def _render(weekly, report, output_format: str) -> str:  # noqa: ANN001 - dashboard.digest
    if output_format == "md":
        return weekly.render_markdown(report)
    if output_format == "slack":
        return weekly.render_slack(report)
    if output_format == "html":
        return weekly.render_html(report)
    return json.dumps(report.as_dict(), indent=2) + "\n"


def _digest_targets(
    settings: Settings, team: str | None, only: str | None
) -> list[tuple[str, str, str | None, str]]:
    """(name, webhook URL, team, format) to post to; the URLs read from their env variables."""
    config = settings.dashboard.digest
    wanted: list[tuple[str, str, str | None, str]] = []
    if config.webhook_url_env and only is None:
        wanted.append(("the digest webhook", config.webhook_url_env, team, "markdown"))
    for sub in config.subscriptions:
        if only is None or sub.name == only:
            wanted.append(
                (f"subscription {sub.name}", sub.webhook_url_env, sub.team or team, sub.format)
            )
    if only is not None and not wanted:
        known = ", ".join(s.name for s in config.subscriptions) or "none"
        raise click.ClickException(f"no digest subscription '{only}' (subscriptions: {known})")
    if not wanted:
        raise click.ClickException(
            "--post needs dashboard.digest.webhook_url_env or dashboard.digest.subscriptions in "
            "krpulse.yaml (each names the environment variable holding a webhook URL)"
        )
    targets = []
    for name, env, target_team, chat_format in wanted:
        url = os.environ.get(env)
        if not url:
            raise click.ClickException(
                f"environment variable {env} (the webhook of {name}) is not set"
            )
        targets.append((name, url, target_team, chat_format))
    return targets

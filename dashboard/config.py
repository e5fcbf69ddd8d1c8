"""The `dashboard:` section of krpulse.yaml: address, access method, CRM links, digest webhook."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.canonical import METRIC_TABLES

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# A shared secret shorter than this is guessable by anyone who can reach the port.
MIN_SECRET_LENGTH = 12
RECORD_ENTITIES = METRIC_TABLES
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# DNS labels (underscores too: container names have them), dot-separated, at most 253 characters.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*"
)


class AccessError(ValueError):
    """The dashboard's access settings are unsafe or incomplete; the message says what to set."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSettings(_Model):
    """How people prove they may see the numbers when the dashboard is not on loopback.

    Secrets are never in krpulse.yaml: `token_env` / `password_env` name environment variables.
    """

    token_env: str | None = Field(
        default=None, description="Env var with a shared access token (Bearer header or login)."
    )
    password_env: str | None = Field(
        default=None, description="Env var with a shared password (login form or Bearer header)."
    )
    proxy_user_header: str | None = Field(
        default=None,
        description="Header a trusted reverse proxy sets to the signed-in user (X-Forwarded-User).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IPs or CIDR networks) whose X-Forwarded-For, "
        "X-Forwarded-Proto and proxy user header are believed; none by default.",
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="How long a login lasts (hours)."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: '{value}' is not an IP or network") from exc
        return values

    @property
    def configured(self) -> bool:
        return bool(self.token_env or self.password_env or self.proxy_user_header)


class DigestSubscription(_Model):
    """One chat channel's digest: a webhook (its URL a secret in an env var), a team, a format."""

    name: str = Field(
        description="What the subscription is called in messages (e.g. dach-channel)."
    )
    webhook_url_env: str = Field(description="Env var with this subscription's webhook URL.")
    team: str | None = Field(
        default=None, description="Only this team's KRs (and the company's); all teams when empty."
    )
    format: Literal["slack", "markdown"] = Field(
        default="slack", description="`slack` (mrkdwn) or `markdown` (Mattermost, Teams, ...)."
    )


class DigestSettings(_Model):
    webhook_url_env: str | None = Field(
        default=None,
        description="Env var with the webhook URL the digest is posted to (`--post`); a secret.",
    )
    subscriptions: list[DigestSubscription] = Field(
        default_factory=list,
        description="Several webhooks, each with its own team filter (`krpulse digest --post`).",
    )

    @field_validator("subscriptions")
    @classmethod
    def _unique_names(cls, values: list[DigestSubscription]) -> list[DigestSubscription]:
        names = [s.name for s in values]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"digest subscription names must be unique; repeated: {', '.join(repeated)}"
            )
        return values


class DashboardSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (or IPs) the dashboard answers to besides localhost, 127.0.0.1, "
        "[::1] and the address it is bound to; any other Host header gets a 400.",
    )
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # Per source name: one URL template for every record, or one per entity (deals, customers,
    # nps_responses). `{id}` is the record id; other `{field}`s are the source's own settings
    # (e.g. Salesforce `{instance_url}/{id}`).
    record_urls: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    stale_after_hours: float = Field(
        default=36.0, gt=0, description="Older source data than this is flagged as stale."
    )
    digest: DigestSettings = Field(default_factory=DigestSettings)
    team_names: dict[str, str] = Field(
        default_factory=dict,
        description="Display names of teams by their key (sales-dach: DACH), on pages and digests.",
    )
    public_url: str | None = Field(
        default=None,
        description="The address people open the dashboard by (https://okr.example.com): links "
        "in the digest point at it.",
    )

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(
                f"public_url '{value}' is not an http(s) URL like https://okr.example.com"
            )
        return value.rstrip("/") if value else value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, values: list[str]) -> list[str]:
        names = []
        for value in values:
            name = normalized_host(value)
            if name is None:
                raise ValueError(
                    f"allowed_hosts: '{value}' is not a host name or IP address (write it as in "
                    "the browser's address bar, without scheme, port or path: okr.example.com)"
                )
            names.append(name)
        return names

    @model_validator(mode="after")
    def _entities(self) -> DashboardSettings:
        for source, templates in self.record_urls.items():
            if isinstance(templates, dict):
                unknown = sorted(set(templates) - set(RECORD_ENTITIES))
                if unknown:
                    raise ValueError(
                        f"record_urls.{source}: unknown record kind(s) {', '.join(unknown)}; "
                        f"use {', '.join(RECORD_ENTITIES)}"
                    )
        return self

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or _is_loopback_ip(self.host)


def normalized_host(value: str) -> str | None:
    """`value` as Host headers are compared: lower case, IPv6 without brackets, no trailing dot.

    None when it is neither a DNS name nor an IP address.
    """
    name = value.strip().lower().removesuffix(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name if _HOST_NAME.fullmatch(name) else None


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_record_urls(
    record_urls: dict[str, str | dict[str, str]], source_fields: dict[str, dict]
) -> dict[str, dict[str, str]]:
    """Per source and entity, a template with only `{id}` left; other fields filled in now.

    `source_fields` maps source names to their krpulse.yaml settings. A template whose result is
    not an http(s) URL is refused: a `javascript:` link in a page would run in the reader's
    session.
    """
    resolved: dict[str, dict[str, str]] = {}
    for source, templates in record_urls.items():
        per_entity = (
            templates if isinstance(templates, dict) else dict.fromkeys(RECORD_ENTITIES, templates)
        )
        fields = {k: str(v) for k, v in source_fields.get(source, {}).items() if v is not None}

        def fill(match: re.Match, source: str = source, fields: dict = fields) -> str:
            name = match.group(1)
            if name == "id":
                return "{id}"
            if name not in fields:
                raise AccessError(
                    f"dashboard.record_urls.{source}: '{{{name}}}' is not a setting of source "
                    f"'{source}' (known: {', '.join(sorted(fields)) or 'none'}, and {{id}})"
                )
            return fields[name].rstrip("/")

        resolved[source] = {}
        for entity, template in per_entity.items():
            url = _PLACEHOLDER.sub(fill, template)
            if not re.match(r"^https?://[^/\s]+", url):
                raise AccessError(
                    f"dashboard.record_urls.{source}: '{template}' does not give an http(s) URL"
                )
            resolved[source][entity] = url
    return resolved


def read_secret(env_name: str | None) -> str | None:
    """The secret in environment variable `env_name`, or None when no variable is named."""
    if not env_name:
        return None
    value = os.environ.get(env_name, "")
    if not value:
        raise AccessError(f"environment variable {env_name} (named in dashboard.auth) is not set")
    if len(value) < MIN_SECRET_LENGTH:
        raise AccessError(
            f"the secret in {env_name} has {len(value)} characters; use at least "
            f"{MIN_SECRET_LENGTH} (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
    return value

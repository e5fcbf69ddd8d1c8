"""The `orchestration:` and `notifications:` sections of krpulse.yaml (Dagster operations)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrchestrationSettings(_Model):
    """How the Dagster project retries, pools and polls."""

    sync_retries: int = Field(
        default=3, ge=0, le=10, description="Dagster step retries of a failed source sync."
    )
    sync_retry_delay_seconds: float = Field(
        default=30.0, ge=0, description="Wait before the first retry; doubles on each one."
    )
    sync_freshness_hours: float = Field(
        default=30.0, gt=0, description="A CRM sync asset older than this fails its freshness."
    )
    definitions_poll_seconds: int = Field(
        default=60, ge=5, description="How often the definitions sensor looks for edits."
    )
    database_pool: str = Field(
        default="krpulse_database",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Dagster concurrency pool of every step that writes the krpulse database.",
    )
    frames_dir: str | None = Field(
        default=None,
        description="No longer used: the daily flow passes nothing between steps but the store "
        "(kept so that existing krpulse.yaml files still load).",
    )


class EmailSettings(_Model):
    """Run-failure mails through an SMTP relay; the login comes from environment variables."""

    smtp_host: str
    smtp_port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    sender: str
    recipients: list[str] = Field(min_length=1)
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    timeout_seconds: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _login_complete(self) -> EmailSettings:
        if bool(self.username_env) != bool(self.password_env):
            raise ValueError("username_env and password_env go together (the SMTP login)")
        return self


class NotificationSettings(_Model):
    """Where a failed Dagster run is reported: a Slack-compatible webhook, email, or both."""

    webhook_url_env: EnvName | None = Field(
        default=None, description="Env var holding the incoming-webhook URL (it is a secret)."
    )
    email: EmailSettings | None = None
    dagster_url: str | None = Field(
        default=None, description="Base URL of the Dagster UI, for a link to the failed run."
    )
    missed_retry_minutes: float = Field(
        default=15.0,
        ge=0,
        description="A failed run marked for a retry is reported anyway when no retry run has "
        "started this many minutes after it failed (Dagster's daemon can drop the retry).",
    )

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url_env or self.email)

"""Run-failure notifications: a Slack-compatible webhook post and/or an email through SMTP."""

from __future__ import annotations

import os
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage

import requests

from okr_store.sinks.http import RetryPolicy, send
from pipelines.orchestration_settings import NotificationSettings
from pipelines.settings import ConfigError


@dataclass(frozen=True)
class RunFailure:
    """What the on-call data engineer needs to know about a failed run."""

    job: str
    run_id: str
    message: str
    partition: str | None = None
    failed_steps: dict[str, str] = field(default_factory=dict)  # step key -> error

    def summary(self) -> str:
        day = f" for {self.partition}" if self.partition else ""
        return f"krpulse: run of {self.job}{day} failed"

    def text(self, dagster_url: str | None = None) -> str:
        """The message as Markdown (Slack's mrkdwn reads it too)."""
        lines = [f"*{self.summary()}*", self.message]
        lines += [f"• `{step}`: {error}" for step, error in self.failed_steps.items()]
        if dagster_url:
            lines.append(
                f"<{dagster_url.rstrip('/')}/runs/{self.run_id}|Open run {self.run_id[:8]}>"
            )
        else:
            lines.append(f"run id: {self.run_id}")
        return "\n".join(line for line in lines if line)


def slack_payload(failure: RunFailure, dagster_url: str | None = None) -> dict:
    """Slack incoming-webhook JSON: `text` (what Slack, Mattermost and Teams show, and the
    notification preview) plus one mrkdwn block, and the fields for other receivers."""
    text = failure.text(dagster_url)
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}],
        "krpulse": {
            "job": failure.job,
            "run_id": failure.run_id,
            "partition": failure.partition,
            "failed_steps": failure.failed_steps,
        },
    }


def _secret(env: str, what: str) -> str:
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"notifications.{what}: environment variable {env} is not set")
    return value


def post_webhook(url: str, payload: dict, policy: RetryPolicy | None = None) -> int:
    """POST the payload with the sinks' retry helper; the URL (a secret) never appears in errors."""
    with requests.Session() as session:
        response = send(
            session,
            "POST",
            url,
            policy=policy or RetryPolicy(attempts=3, initial_wait=1.0),
            what="failure notification webhook",
            json=payload,
        )
    return response.status_code


def send_email(settings: NotificationSettings, failure: RunFailure) -> None:
    email = settings.email
    assert email is not None
    message = EmailMessage()
    message["Subject"] = failure.summary()
    message["From"] = email.sender
    message["To"] = ", ".join(email.recipients)
    message.set_content(failure.text(settings.dagster_url).replace("*", ""))
    with smtplib.SMTP(email.smtp_host, email.smtp_port, timeout=email.timeout_seconds) as smtp:
        if email.starttls:
            smtp.starttls()
        if email.username_env:
            smtp.login(
                _secret(email.username_env, "email.username_env"),
                _secret(email.password_env or "", "email.password_env"),  # set with username_env
            )
        smtp.send_message(message)


def notify(settings: NotificationSettings, failure: RunFailure) -> list[str]:
    """Send the failure to every configured channel; returns the channels that were used."""
    sent = []
    if settings.webhook_url_env:
        url = _secret(settings.webhook_url_env, "webhook_url_env")
        post_webhook(url, slack_payload(failure, settings.dagster_url))
        sent.append("webhook")
    if settings.email:
        send_email(settings, failure)
        sent.append("email")
    return sent

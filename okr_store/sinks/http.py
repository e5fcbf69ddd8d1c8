"""The one HTTP retry helper of the sinks: tenacity with exponential backoff and Retry-After."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from core.http import retry_after_seconds

# Statuses worth another try: timeouts, rate limits and server trouble. Everything else in
# 4xx is the request's fault and fails at once (retried on the next run, not now).
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one push tries before it is recorded as failed (and retried next run)."""

    attempts: int = 4
    initial_wait: float = 1.0
    max_wait: float = 30.0
    timeout: float = 20.0


class SinkError(Exception):
    """A push that failed for good in this run; the message says what the tool answered.

    Messages never contain URLs or headers: Weekdone's token travels in the query string.
    """


class TransientSinkError(SinkError):
    """A failure another attempt may cure (connection trouble, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _wait(policy: RetryPolicy):  # noqa: ANN202 - a tenacity wait strategy
    backoff = tenacity.wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait)

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientSinkError) and error.retry_after is not None:
            return min(error.retry_after, policy.max_wait)
        return backoff(state)

    return wait


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    what: str,
    **kwargs: Any,
) -> requests.Response:
    """One request with retries; returns the 2xx/3xx response or raises SinkError.

    `what` names the call in errors ("Perdoo key result 'abc'"); the URL never appears there.
    """

    def attempt() -> requests.Response:
        try:
            response = session.request(method, url, timeout=policy.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            # str(exc) would include the URL (and with it Weekdone's token): name the kind only.
            raise TransientSinkError(f"{what}: {type(exc).__name__}") from None
        if response.status_code in RETRYABLE_STATUS:
            raise TransientSinkError(
                f"{what}: HTTP {response.status_code}",
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        if response.status_code >= 400:
            raise SinkError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=_wait(policy),
        retry=tenacity.retry_if_exception_type(TransientSinkError),
        reraise=True,
    )
    return retrying(attempt)


def json_body(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise SinkError(f"{what}: the answer is not JSON: {response.text[:200]}") from None

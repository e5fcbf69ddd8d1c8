"""The one urllib3 `Retry` of the CRM connectors: bounded retries with exponential backoff on
server errors, timeouts and dropped connections, honouring Retry-After."""

from __future__ import annotations

from collections.abc import Collection

from urllib3.util.retry import Retry


def transport_retry(
    attempts: int,
    backoff_seconds: float,
    *,
    statuses: Collection[int],
    methods: Collection[str],
    backoff_max: float | None = None,
    retry_class: type[Retry] = Retry,
) -> Retry:
    """A Retry for a client's transport. `methods` must name POST where a POST is safe to send
    again (urllib3 retries only idempotent methods unless told); 4xx answers are the caller's."""
    extra = {} if backoff_max is None else {"backoff_max": backoff_max}
    return retry_class(
        total=attempts,
        connect=attempts,
        read=attempts,
        status=attempts,
        backoff_factor=backoff_seconds,
        status_forcelist=tuple(statuses),
        allowed_methods=frozenset(methods),
        respect_retry_after_header=True,
        raise_on_status=False,
        **extra,
    )

"""Perdoo: set a key result's current value through its GraphQL API (upsertKeyResult)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from okr_store.sinks.base import Sink
from okr_store.sinks.http import RetryPolicy, SinkError, json_body, send

DEFAULT_URL = "https://api-eu.perdoo.com/graphql/"

# Perdoo's mutations are upserts: with an `id` the key result is updated, only the fields
# given change. Setting currentValue to a number is idempotent, so a retried call is safe.
UPSERT_KEY_RESULT = """
mutation KrpulseSetCurrentValue($input: UpsertKeyResultMutationInput!) {
  upsertKeyResult(input: $input) {
    keyResult { id currentValue }
    errors { field messages }
  }
}
""".strip()


class PerdooSink(Sink):
    """Writes each KR's value to the Perdoo key result configured for it."""

    kind = "perdoo"

    def __init__(self, targets: Mapping[str, str], *, token: str, url: str = DEFAULT_URL):
        super().__init__("perdoo", targets)
        self.url = url
        self._token = token

    def value_for(self, row: Mapping[str, Any]) -> float | None:
        return row.get("value")

    def push(
        self,
        session: requests.Session,
        target_id: str,
        value: float,
        row: Mapping[str, Any],
        policy: RetryPolicy,
    ) -> None:
        what = f"Perdoo key result '{target_id}'"
        response = send(
            session,
            "POST",
            self.url,
            policy=policy,
            what=what,
            json={
                "query": UPSERT_KEY_RESULT,
                "variables": {"input": {"id": target_id, "currentValue": value}},
            },
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
        )
        body = json_body(response, what)
        # GraphQL reports failures with HTTP 200: look at `errors` at both levels.
        if body.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in body["errors"])
            raise SinkError(f"{what}: {messages}")
        payload = (body.get("data") or {}).get("upsertKeyResult") or {}
        if payload.get("errors"):
            messages = "; ".join(
                f"{e.get('field')}: {', '.join(e.get('messages') or [])}" for e in payload["errors"]
            )
            raise SinkError(f"{what}: rejected: {messages}")
        if not payload.get("keyResult"):
            raise SinkError(f"{what}: no key result in the answer (unknown id?)")

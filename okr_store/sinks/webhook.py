"""A generic webhook: each KR's progress as signed JSON (HMAC-SHA256), for any other tool."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import requests

from okr_store.sinks.base import Sink
from okr_store.sinks.http import RetryPolicy, send

SIGNATURE_HEADER = "X-Krpulse-Signature"
TIMESTAMP_HEADER = "X-Krpulse-Timestamp"
DELIVERY_HEADER = "X-Krpulse-Delivery"
EVENT = "kr_progress"
_FIELDS = (
    "cycle",
    "objective",
    "kr",
    "title",
    "team",
    "metric",
    "unit",
    "value",
    "baseline",
    "target",
    "progress",
    "grade",
    "expected_progress",
    "status",
    "stale_reason",
    "sample_size",
    "definition_version",
)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over "<timestamp>.<body>": what receivers recompute.

    Signing the timestamp with the body lets a receiver refuse replays of old deliveries.
    """
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


class WebhookSink(Sink):
    """POSTs one JSON document per changed KR to `url`, signed with the shared secret."""

    kind = "webhook"

    def __init__(self, name: str, targets: Mapping[str, str], *, url: str, secret: str):
        super().__init__(f"webhook:{name}", targets)
        self.url = url
        self._secret = secret

    def value_for(self, row: Mapping[str, Any]) -> float | None:
        return row.get("value")

    def payload(self, target_id: str, value: float, row: Mapping[str, Any]) -> dict:
        as_of = row["as_of"]
        return {
            "event": EVENT,
            "target_id": target_id,
            "as_of": _json_value(as_of),
            **{field: _json_value(row.get(field)) for field in _FIELDS},
            "value": value,
            # The same KR, day and value always get the same id: receivers can drop repeats.
            "delivery_id": hashlib.sha256(
                f"{self.name}|{row['cycle']}|{row['kr']}|{as_of}|{value!r}".encode()
            ).hexdigest()[:32],
        }

    def push(
        self,
        session: requests.Session,
        target_id: str,
        value: float,
        row: Mapping[str, Any],
        policy: RetryPolicy,
    ) -> None:
        document = self.payload(target_id, value, row)
        body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        send(
            session,
            "POST",
            self.url,
            policy=policy,
            what=f"webhook '{self.name.removeprefix('webhook:')}' for {row['cycle']}/{row['kr']}",
            data=body,
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(self._secret, timestamp, body),
                DELIVERY_HEADER: document["delivery_id"],
                "X-Krpulse-Event": EVENT,
            },
        )

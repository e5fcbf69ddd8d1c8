"""Weekdone: update a key result's progress through its REST API (PATCH objective result)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from okr_store.sinks.base import Sink
from okr_store.sinks.http import RetryPolicy, SinkError, json_body, send

DEFAULT_URL = "https://api.weekdone.com"


class WeekdoneSink(Sink):
    """Sets each KR's progress (krpulse's grade as 0–100 %) on its Weekdone key result.

    Targets are "<objective id>/<result id>", as in Weekdone's
    `PATCH /1/objective/{objective}/result/{result}`.
    """

    kind = "weekdone"

    def __init__(self, targets: Mapping[str, str], *, token: str, url: str = DEFAULT_URL):
        super().__init__("weekdone", targets)
        self.url = url.rstrip("/")
        self._token = token

    def value_for(self, row: Mapping[str, Any]) -> float | None:
        grade = row.get("grade")
        # Weekdone's progress is a percentage 0–100; krpulse's grade is progress clamped 0–1.
        return None if grade is None else round(float(grade) * 100.0, 1)

    def push(
        self,
        session: requests.Session,
        target_id: str,
        value: float,
        row: Mapping[str, Any],
        policy: RetryPolicy,
    ) -> None:
        objective, _, result = target_id.partition("/")
        what = f"Weekdone key result {target_id}"
        response = send(
            session,
            "PATCH",
            f"{self.url}/1/objective/{objective}/result/{result}",
            policy=policy,
            what=what,
            # The API takes form-encoded bodies and the OAuth access token as `token`.
            params={"token": self._token},
            data={"progress": f"{value:g}"},
            headers={"Accept": "application/json"},
        )
        body = json_body(response, what)
        # Errors come back as JSON too, sometimes with HTTP 200: trust `status`, not the code.
        if isinstance(body, dict) and body.get("status", "ok") != "ok":
            raise SinkError(f"{what}: {body.get('error') or body.get('message') or body}")

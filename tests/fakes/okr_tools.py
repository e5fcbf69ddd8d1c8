"""Local fakes of the OKR tools krpulse pushes to: Perdoo (GraphQL), Weekdone (REST), a webhook.

One real HTTP server on 127.0.0.1 (ephemeral port) serves all three under /perdoo/graphql/,
/weekdone/1/... and /hooks/<name>. It checks credentials and signatures like the real tools,
keeps the key results' values in memory, logs every request, and injects faults on demand.
It stops when its `running()` block ends, and by itself after a minute at the latest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PERDOO_TOKEN = "perdoo-fake-token"  # noqa: S105 - fakes only
WEEKDONE_TOKEN = "weekdone-fake-token"  # noqa: S105 - fakes only
WEBHOOK_SECRET = "webhook-fake-secret"  # noqa: S105 - fakes only
SAFETY_TIMEOUT = 60.0
_WEEKDONE_RESULT = re.compile(r"^/weekdone/1/objective/([^/]+)/result/([^/]+)$")


@dataclass
class Fault:
    """Answer the next `count` requests under `prefix` with `status` (count None: always)."""

    prefix: str
    status: int
    count: int | None = 1
    retry_after: str | None = None


@dataclass
class OkrTools:
    perdoo_key_results: dict[str, float | None] = field(default_factory=dict)
    weekdone_results: dict[tuple[str, str], float | None] = field(default_factory=dict)
    webhook_deliveries: list[dict] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self, prefix: str) -> int:
        return sum(1 for _, path in self.requests if path.startswith(prefix))

    def fail(self, prefix: str, status: int, count: int | None = 1, retry_after: str | None = None):
        self.faults.append(Fault(prefix, status, count, retry_after))

    def heal(self) -> None:
        self.faults.clear()

    def _fault_for(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault.prefix) and (fault.count is None or fault.count > 0):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None


def _handler(tools: OkrTools) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet test output
            pass

        def _reply(self, status: int, body: dict | None, headers: dict | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            url = urlparse(self.path)
            body = self._body()
            tools.requests.append((self.command, url.path))
            fault = tools._fault_for(url.path)
            if fault is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._reply(fault.status, {"error": "injected fault"}, headers)
            if url.path == "/perdoo/graphql/" and self.command == "POST":
                return self._perdoo(body)
            match = _WEEKDONE_RESULT.match(url.path)
            if match and self.command == "PATCH":
                return self._weekdone(match.group(1), match.group(2), parse_qs(url.query), body)
            if url.path.startswith("/hooks/") and self.command == "POST":
                return self._webhook(body)
            return self._reply(404, {"error": f"no route {self.command} {url.path}"})

        do_POST = do_PATCH = do_GET = _handle

        def _perdoo(self, body: bytes) -> None:
            if self.headers.get("Authorization") != f"Bearer {PERDOO_TOKEN}":
                return self._reply(401, {"errors": [{"message": "Authentication required"}]})
            request = json.loads(body)
            if "upsertKeyResult" not in request.get("query", ""):
                return self._reply(200, {"errors": [{"message": "Cannot query this field"}]})
            data = request["variables"]["input"]
            if not isinstance(data.get("currentValue"), int | float):
                return self._reply(
                    200, {"errors": [{"message": "currentValue: Float expected"}]}
                )  # GraphQL reports type errors with HTTP 200
            if data["id"] not in tools.perdoo_key_results:
                payload = {
                    "keyResult": None,
                    "errors": [{"field": "id", "messages": ["Key result not found."]}],
                }
                return self._reply(200, {"data": {"upsertKeyResult": payload}})
            tools.perdoo_key_results[data["id"]] = data["currentValue"]
            payload = {
                "keyResult": {"id": data["id"], "currentValue": data["currentValue"]},
                "errors": [],
            }
            return self._reply(200, {"data": {"upsertKeyResult": payload}})

        def _weekdone(self, objective: str, result: str, query: dict, body: bytes) -> None:
            if query.get("token") != [WEEKDONE_TOKEN]:
                return self._reply(401, {"status": "error", "error": "Invalid access token"})
            if (objective, result) not in tools.weekdone_results:
                return self._reply(200, {"status": "error", "error": "Key result not found"})
            form = parse_qs(body.decode())
            progress = float(form["progress"][0])
            if not 0 <= progress <= 100:
                return self._reply(400, {"status": "error", "error": "progress must be 0-100"})
            tools.weekdone_results[(objective, result)] = progress
            return self._reply(200, {"status": "ok"})

        def _webhook(self, body: bytes) -> None:
            timestamp = self.headers.get("X-Krpulse-Timestamp", "")
            expected = hmac.new(
                WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(
                self.headers.get("X-Krpulse-Signature", ""), f"sha256={expected}"
            ):
                return self._reply(401, {"error": "bad signature"})
            tools.webhook_deliveries.append(
                {"headers": dict(self.headers), "body": json.loads(body)}
            )
            return self._reply(204, None)

    return Handler


@contextmanager
def running(tools: OkrTools | None = None) -> Iterator[OkrTools]:
    """Serve the fakes on 127.0.0.1 for the block; `tools.base_url` is where."""
    tools = tools or OkrTools()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(tools))
    server.daemon_threads = True
    tools.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # Never outlive a forgotten test: shut down by ourselves after SAFETY_TIMEOUT.
    safety = threading.Timer(SAFETY_TIMEOUT, server.shutdown)
    safety.daemon = True
    safety.start()
    try:
        yield tools
    finally:
        safety.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

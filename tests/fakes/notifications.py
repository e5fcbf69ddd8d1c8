"""Local fakes of where run failures are reported: a chat webhook (HTTP) and an SMTP relay.

Both bind 127.0.0.1 on an ephemeral port, record what they receive, stop when their `running()`
block ends, and by themselves after a minute at the latest.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SAFETY_TIMEOUT = 60.0


@dataclass
class Inbox:
    """What a fake received: webhook JSON bodies, or mails as (sender, recipients, text)."""

    posts: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    mails: list[tuple[str, list[str], str]] = field(default_factory=list)
    url: str = ""
    port: int = 0


class _WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        inbox: Inbox = self.server.inbox  # type: ignore[attr-defined]
        inbox.paths.append(self.path)
        inbox.posts.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")  # what Slack answers

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet test output
        pass


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

    def _reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        inbox: Inbox = self.server.inbox  # type: ignore[attr-defined]
        self._reply("220 fake-smtp ready")
        sender, recipients = "", []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            command = raw.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self._reply("250 fake-smtp")
            elif verb == "MAIL":
                sender = command.split(":", 1)[1].strip().strip("<>")
                self._reply("250 OK")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                self._reply("250 OK")
            elif verb == "DATA":
                self._reply("354 end with <CRLF>.<CRLF>")
                lines = []
                while (line := self.rfile.readline().decode()) not in (".\r\n", ""):
                    lines.append(line)
                inbox.mails.append((sender, recipients, "".join(lines)))
                self._reply("250 queued")
            elif verb == "QUIT":
                self._reply("221 bye")
                return
            else:
                self._reply("250 OK")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def _serving(server) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    timer = threading.Timer(SAFETY_TIMEOUT, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        server.shutdown()
        server.server_close()


@contextmanager
def webhook() -> Iterator[Inbox]:
    inbox = Inbox()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler)
    server.inbox = inbox  # type: ignore[attr-defined]
    inbox.port = server.server_address[1]
    inbox.url = f"http://127.0.0.1:{inbox.port}/services/T000/B000/fake"
    with _serving(server):
        yield inbox


@contextmanager
def smtp_relay() -> Iterator[Inbox]:
    inbox = Inbox()
    server = _SmtpServer(("127.0.0.1", 0), _SmtpHandler)
    server.inbox = inbox  # type: ignore[attr-defined]
    inbox.port = server.server_address[1]
    with _serving(server):
        yield inbox

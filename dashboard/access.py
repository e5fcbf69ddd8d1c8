"""Who may see the dashboard: loopback-only open access, a shared secret, or a trusted proxy."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets as random_tokens
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from dashboard.config import AccessError, DashboardSettings, normalized_host, read_secret

log = logging.getLogger(__name__)

SESSION_COOKIE = "krpulse_session"
# Paths anyone may fetch: the login form and the static assets, none of which carry data.
PUBLIC_PATHS = frozenset({"/login", "/healthz"})
PUBLIC_PREFIXES = ("/static/",)
# Health probes address the pod or container by its IP, which no allowed_hosts list can name;
# the answer is "ok" and nothing else.
ANY_HOST_PATHS = frozenset({"/healthz"})
LOCAL_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# Longer Authorization values are refused unread: no secret is that long.
MAX_AUTHORIZATION_LENGTH = 1024
MAX_LOGIN_BODY = 4096

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """A request turned away before it reached a page: too many failures, an oversized body."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def response(self, request: Request) -> Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else {}
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": self.message}, self.status, headers=headers)
        return PlainTextResponse(self.message, self.status, headers=headers)


# --- brute-force brake: one limit for every way of presenting the shared secret ----------------


class FailureLimiter:
    """Failed secret checks per client and in total over a sliding window, in bounded memory.

    Every credential path (Bearer header, login form) asks `retry_after` before comparing and
    calls `record_failure` after a wrong secret, so one limit covers them all. A client is its
    address, resolved through trusted proxies only; IPv6 counts per /64, which one host usually
    owns whole. A blocked client cannot get in even with the right secret until its window
    passes, but nobody else is affected — until `total` failures from many addresses together,
    after which new sign-ins wait for the window (sessions keep working). The table keeps at
    most `max_clients` entries, dropping the client whose latest failure is oldest.
    """

    def __init__(
        self,
        per_client: int = 10,
        total: int = 1000,
        window: float = 600.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client, self.total, self.window = per_client, total, window
        self.max_clients = max_clients
        self.clock = clock
        # Per client its latest failure times, the client with the oldest latest failure first.
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._everyone: deque[float] = deque(maxlen=total)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again; None when it may try now."""
        now = self.clock()
        with self._lock:
            wait = max(
                self._wait(self._clients.get(client, ()), self.per_client, now),
                self._wait(self._everyone, self.total, now),
            )
        return math.ceil(wait) if wait > 0 else None

    def _wait(self, failures: deque[float] | tuple, limit: int, now: float) -> float:
        if len(failures) < limit:
            return 0.0
        return self.window - (now - failures[-limit])

    def record_failure(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            self._forget_expired(now)
            failures = self._clients.pop(client, None) or deque(maxlen=self.per_client)
            failures.append(now)
            self._clients[client] = failures
            self._everyone.append(now)
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)

    def forget(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _forget_expired(self, now: float) -> None:
        while self._clients:
            oldest = next(iter(self._clients.values()))
            if now - oldest[-1] < self.window:
                return
            self._clients.popitem(last=False)


# --- sessions ----------------------------------------------------------------------------------

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


class SessionStore:
    """Signed-in browsers: random ids this process hands out, revocable, expiring, bounded.

    The cookie is the id itself (256 random bits); nothing in it derives from the shared secret,
    so a stolen cookie gives nothing to guess offline, and it stops working at logout, at expiry
    and when the server restarts. The table keeps hashes of the ids, at most `max_sessions`,
    ending the oldest session first.
    """

    def __init__(
        self,
        lifetime: float = 12 * 3600,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lifetime, self.max_sessions, self.clock = lifetime, max_sessions, clock
        self._expiry: OrderedDict[bytes, float] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def create(self) -> str:
        session_id = random_tokens.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            while self._expiry and next(iter(self._expiry.values())) <= now:
                self._expiry.popitem(last=False)
            self._expiry[self._key(session_id)] = now + self.lifetime
            while len(self._expiry) > self.max_sessions:
                self._expiry.popitem(last=False)
        return session_id

    def valid(self, session_id: str) -> bool:
        if not _SESSION_ID.fullmatch(session_id):
            return False
        key = self._key(session_id)
        with self._lock:
            expires = self._expiry.get(key)
            if expires is not None and expires <= self.clock():
                del self._expiry[key]
                expires = None
        return expires is not None

    def revoke(self, session_id: str) -> None:
        if _SESSION_ID.fullmatch(session_id):
            with self._lock:
                self._expiry.pop(self._key(session_id), None)

    @staticmethod
    def _key(session_id: str) -> bytes:
        return hashlib.sha256(session_id.encode("ascii")).digest()


# --- clients and proxies -----------------------------------------------------------------------


def ip_of(text: str) -> Address | None:
    """The IP in a peer address or forwarded hop ('203.0.113.9:5000', '[2001:db8::1]:443')."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_key(request: Request) -> str:
    """Who the rate limit counts a request against: its (forwarded) address, IPv6 per /64."""
    peer = request.client.host if request.client else ""
    address = ip_of(peer)
    if address is None:
        return peer or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def host_name(header: str) -> str | None:
    """The host of a Host header as `normalized_host` writes it; None when malformed."""
    if header.startswith("["):
        host, bracket, rest = header[1:].partition("]")
        port_ok = rest == "" or re.fullmatch(r":[0-9]{0,5}", rest)
        host = f"[{host}]" if bracket and port_ok else ""
    else:
        host, _, port = header.partition(":")
        host = host if re.fullmatch(r"[0-9]{0,5}", port) else ""
    return normalized_host(host) if host else None


# --- the policy --------------------------------------------------------------------------------


@dataclass
class AccessPolicy:
    """Decides per request who is asking; None means nobody known, so no data."""

    open_access: bool = False
    secrets: tuple[str, ...] = ()
    login_prompt: str = "Access token"
    proxy_user_header: str | None = None
    trusted_proxies: tuple[Network, ...] = ()
    allowed_hosts: frozenset[str] = LOCAL_HOST_NAMES
    sessions: SessionStore = field(default_factory=SessionStore)
    limiter: FailureLimiter = field(default_factory=FailureLimiter)

    @classmethod
    def from_settings(cls, settings: DashboardSettings, host: str | None = None) -> AccessPolicy:
        """The policy for serving on `host`; refuses a non-loopback address without access control."""
        bound = settings.model_copy(update={"host": host}) if host else settings
        auth = settings.auth
        if not auth.configured:
            if not bound.is_loopback:
                raise AccessError(
                    f"refusing to serve on {bound.host} without an access method: set "
                    "dashboard.auth.token_env or password_env (a shared secret in an environment "
                    "variable) or proxy_user_header (behind a trusted reverse proxy) in krpulse.yaml"
                )
            return cls(open_access=True, allowed_hosts=_allowed_hosts(bound))
        if auth.proxy_user_header and not auth.trusted_proxies:
            raise AccessError(
                f"dashboard.auth.proxy_user_header ({auth.proxy_user_header}) is believed only "
                "from the reverse proxy: list its address in dashboard.auth.trusted_proxies"
            )
        secrets = tuple(
            s for s in (read_secret(auth.token_env), read_secret(auth.password_env)) if s
        )
        return cls(
            secrets=secrets,
            login_prompt="Password" if auth.password_env and not auth.token_env else "Access token",
            proxy_user_header=auth.proxy_user_header,
            trusted_proxies=tuple(
                ipaddress.ip_network(n, strict=False) for n in auth.trusted_proxies
            ),
            allowed_hosts=_allowed_hosts(bound),
            sessions=SessionStore(lifetime=auth.session_hours * 3600),
        )

    @property
    def login_enabled(self) -> bool:
        return bool(self.secrets)

    def host_allowed(self, header: str) -> bool:
        return host_name(header) in self.allowed_hosts

    # --- proxies ------------------------------------------------------------------------------

    def _trusted(self, address: Address | None) -> bool:
        return address is not None and any(address in net for net in self.trusted_proxies)

    def believe_proxy(self, request: Request) -> bool:
        """From a trusted proxy, take the client address and scheme from its X-Forwarded-For and
        X-Forwarded-Proto (the request's scope changes, so every later reader sees them).

        Returns whether the peer is a trusted proxy; from anyone else both headers are ignored.
        """
        peer = request.client.host if request.client else ""
        if not self._trusted(ip_of(peer)):
            return False
        proto = request.headers.get("x-forwarded-proto", "").strip().lower()
        if proto in ("http", "https"):
            request.scope["scheme"] = proto
        hops = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
        # Each proxy appends the address it saw: the rightmost hop that is not one of ours is
        # the client. Hops to its left are whatever the client claimed, and count for nothing.
        for hop in reversed(hops):
            address = ip_of(hop)
            if address is None:
                break
            if not self._trusted(address):
                request.scope["client"] = (str(address), 0)
                break
        return True

    # --- who is asking ------------------------------------------------------------------------

    def user(self, request: Request, via_proxy: bool) -> str | None:
        """Who sends `request` (a proxy user name, "session", "token"); raises Refused."""
        if self.open_access:
            return "local"
        if self.proxy_user_header and via_proxy:
            name = request.headers.get(self.proxy_user_header, "").strip()
            if name:
                return name
        if self.sessions.valid(request.cookies.get(SESSION_COOKIE, "")):
            return "session"
        authorization = request.headers.get("authorization")
        if authorization is None:
            return None
        if len(authorization) > MAX_AUTHORIZATION_LENGTH:
            raise Refused(400, "the Authorization header is too long")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return None
        return "token" if self.check_secret(request, credential.strip()) else None

    def check_secret(self, request: Request, candidate: str) -> bool:
        """Whether `candidate` is the shared secret, behind the one rate limit every path uses."""
        client = client_key(request)
        wait = self.limiter.retry_after(client)
        if wait is not None:
            raise Refused(429, "Too many failed sign-ins; try again later.", retry_after=wait)
        if self.secret_matches(candidate):
            self.limiter.forget(client)
            return True
        self.limiter.record_failure(client)
        log.warning("dashboard: wrong secret from %s", client)
        return False

    def secret_matches(self, candidate: str) -> bool:
        if not candidate:
            return False
        # compare_digest on every secret (no early exit) keeps the timing independent of which.
        matches = [hmac.compare_digest(candidate.encode(), s.encode()) for s in self.secrets]
        return any(matches)

    # --- sessions -----------------------------------------------------------------------------

    def start_session(self, request: Request, response: Response) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.create(),
            max_age=int(self.sessions.lifetime),
            path="/",
            secure=request.scope["scheme"] == "https",
            httponly=True,
            samesite="strict",
        )

    def end_session(self, request: Request, response: Response) -> None:
        self.sessions.revoke(request.cookies.get(SESSION_COOKIE, ""))
        response.delete_cookie(SESSION_COOKIE, path="/")

    def challenge(self, request: Request) -> Response:
        """What a request without credentials gets: a 401 (API) or the login form."""
        path = request.url.path
        if path.startswith("/api/") or not self.login_enabled:
            headers = {"WWW-Authenticate": "Bearer"} if self.secrets else {}
            response: Response = JSONResponse(
                {"detail": "authentication required"}, status_code=401, headers=headers
            )
        else:
            here = path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"/login?next={quote(here)}", status_code=303)
        if SESSION_COOKIE in request.cookies:  # expired, revoked or forged: drop it
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _allowed_hosts(settings: DashboardSettings) -> frozenset[str]:
    """Local names, the configured ones, and the address the server is bound to."""
    bound = normalized_host(settings.host)
    try:
        everywhere = ipaddress.ip_address(bound or "").is_unspecified
    except ValueError:
        everywhere = False
    if everywhere and not settings.allowed_hosts:
        raise AccessError(
            f"serving on {settings.host} answers whatever name reaches it (a hostile web page can "
            "point its own name at this machine): list the names people open the dashboard by "
            "in dashboard.allowed_hosts in krpulse.yaml, e.g. `allowed_hosts: [okr.example.com]`"
        )
    own = {bound} if bound and not everywhere else set()
    return LOCAL_HOST_NAMES | frozenset(settings.allowed_hosts) | own


async def read_body(request: Request, limit: int, too_large: str) -> bytes:
    """The request body, refused with 413 (`too_large`) past `limit` bytes: at once when the
    declared length says so, else as soon as the streamed body passes it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, too_large)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(413, too_large)
    return body


async def read_login_form(request: Request) -> tuple[str, str]:
    """The `secret` and `next` fields of the login form; Refused(413) past MAX_LOGIN_BODY bytes.

    Parsed by hand: a one-field form does not justify python-multipart.
    """
    body = await read_body(request, MAX_LOGIN_BODY, "The login form is too large.")
    form = parse_qs(body.decode("utf-8", "replace"))
    return (form.get("secret") or [""])[0], safe_next((form.get("next") or ["/"])[0])


def safe_next(target: str | None) -> str:
    """A local path to return to after login; anything else (//evil, https://...) becomes /."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def add_security_headers(request: Request, response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.scope["path"].startswith(PUBLIC_PREFIXES) and response.status_code < 400:
        response.headers.setdefault("Cache-Control", "public, max-age=86400")
    else:
        # Numbers must not linger in shared caches or the browser's back-forward cache.
        response.headers["Cache-Control"] = "no-store"
    # The scheme as the browser used it: X-Forwarded-Proto from a trusted proxy counts.
    if request.scope["scheme"] == "https":
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


async def _admit(policy: AccessPolicy, request: Request, call_next) -> Response:  # noqa: ANN001
    path = request.scope["path"]
    if path not in ANY_HOST_PATHS and not policy.host_allowed(request.headers.get("host", "")):
        return PlainTextResponse(
            "This dashboard does not answer to that Host name; its operator can add the name to "
            "dashboard.allowed_hosts in krpulse.yaml.",
            status_code=400,
        )
    via_proxy = policy.believe_proxy(request)
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return await call_next(request)
    try:
        user = policy.user(request, via_proxy)
    except Refused as refused:
        return refused.response(request)
    if user is None:
        return policy.challenge(request)
    request.state.user = user
    return await call_next(request)


def install(app, policy: AccessPolicy) -> None:  # noqa: ANN001 - a FastAPI app
    """Guard every route but the public ones, and set the security headers on every response."""

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN202 - Starlette middleware
        try:
            response = await _admit(policy, request, call_next)
        except Exception:
            # Logged here with the traceback; the browser gets no detail, but still the headers.
            log.exception("dashboard: %s %s failed", request.method, request.scope["path"])
            response = PlainTextResponse("Internal error; see the server log.", status_code=500)
        return add_security_headers(request, response)

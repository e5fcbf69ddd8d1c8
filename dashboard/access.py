"""Who may see the dashboard: loopback-only open access, a shared secret, or a trusted proxy."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from dashboard.config import AccessError, DashboardSettings, read_secret

SESSION_COOKIE = "krpulse_session"
SESSION_SECONDS = 12 * 3600
# Paths anyone may fetch: the login form and the static assets, none of which carry data.
PUBLIC_PATHS = frozenset({"/login", "/healthz"})
PUBLIC_PREFIXES = ("/static/",)
LOGIN_FAILURES_ALLOWED = 10
LOGIN_FAILURE_WINDOW_SECONDS = 600

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


@dataclass
class AccessPolicy:
    """Decides per request who is asking; None means nobody known, so no data."""

    open_access: bool = False
    secrets: tuple[str, ...] = ()
    login_prompt: str = "Access token"
    proxy_user_header: str | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    _failures: dict[str, deque] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
            return cls(open_access=True)
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
        )

    # --- who is asking ------------------------------------------------------------------------

    def user(self, request: Request) -> str | None:
        if self.open_access:
            return "local"
        if self.proxy_user_header:
            name = request.headers.get(self.proxy_user_header, "").strip()
            # The header is believed only from the proxy itself: anyone else could set it.
            if name and self._from_trusted_proxy(request):
                return name
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.secret_matches(credential.strip()):
            return "token"
        if self._valid_session(request.cookies.get(SESSION_COOKIE, "")):
            return "session"
        return None

    def _from_trusted_proxy(self, request: Request) -> bool:
        if request.client is None:
            return False
        try:
            address = ipaddress.ip_address(request.client.host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)

    def secret_matches(self, candidate: str) -> bool:
        if not candidate:
            return False
        # compare_digest on every secret (no early exit) keeps the timing independent of which.
        matches = [hmac.compare_digest(candidate.encode(), s.encode()) for s in self.secrets]
        return any(matches)

    @property
    def login_enabled(self) -> bool:
        return bool(self.secrets)

    # --- sessions -----------------------------------------------------------------------------

    def _session_key(self) -> bytes:
        # Derived from the secrets: changing the token or password ends every session.
        return hashlib.sha256(b"krpulse-session\0" + "\0".join(self.secrets).encode()).digest()

    def new_session(self, now: float | None = None) -> str:
        expires = str(int((now or time.time()) + SESSION_SECONDS))
        signature = hmac.new(self._session_key(), expires.encode(), hashlib.sha256).hexdigest()
        return f"{expires}.{signature}"

    def _valid_session(self, cookie: str) -> bool:
        if not self.secrets or "." not in cookie:
            return False
        expires, _, signature = cookie.partition(".")
        expected = hmac.new(self._session_key(), expires.encode(), hashlib.sha256).hexdigest()
        return (
            hmac.compare_digest(signature, expected)
            and expires.isdigit()
            and int(expires) > time.time()
        )

    # --- brute-force brake on the login form ------------------------------------------------

    def login_blocked(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            failures = self._failures.setdefault(client, deque())
            while failures and now - failures[0] > LOGIN_FAILURE_WINDOW_SECONDS:
                failures.popleft()
            return len(failures) >= LOGIN_FAILURES_ALLOWED

    def record_login_failure(self, client: str) -> None:
        with self._lock:
            self._failures.setdefault(client, deque()).append(time.monotonic())


def safe_next(target: str | None) -> str:
    """A local path to return to after login; anything else (//evil, https://...) becomes /."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def add_security_headers(request: Request, response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.url.path.startswith(PUBLIC_PREFIXES):
        response.headers.setdefault("Cache-Control", "public, max-age=86400")
    else:
        # Numbers must not linger in shared caches or the browser's back-forward cache.
        response.headers["Cache-Control"] = "no-store"
    if request.url.scheme == "https":
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def install(app, policy: AccessPolicy) -> None:  # noqa: ANN001 - a FastAPI app
    """Guard every route but the public ones, and set the security headers on every response."""

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN202 - Starlette middleware
        path = request.url.path
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            response = await call_next(request)
        else:
            user = policy.user(request)
            if user is None:
                if path.startswith("/api/") or not policy.login_enabled:
                    response = JSONResponse(
                        {"detail": "authentication required"},
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"} if policy.secrets else {},
                    )
                else:
                    here = path + (f"?{request.url.query}" if request.url.query else "")
                    response = RedirectResponse(f"/login?next={quote(here)}", status_code=303)
            else:
                request.state.user = user
                response = await call_next(request)
        return add_security_headers(request, response)

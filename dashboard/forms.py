"""Forms that change data: CSRF tokens, the same-origin check, and a bounded urlencoded parser.

A form page sets a random `krpulse_csrf` cookie (SameSite=Strict, HttpOnly) and embeds
HMAC(app key, cookie) in the form; a POST is accepted only with both, matching, and — when the
browser names them — Sec-Fetch-Site and Origin of this very origin. A page on another site can make the
browser POST here, but it can neither read the token nor make the browser send the Strict cookie.
JSON writes need `Content-Type: application/json`, which no cross-site form can send and which a
cross-site script can only send after a CORS preflight this app never answers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from dashboard.access import Refused, read_body

CSRF_COOKIE = "krpulse_csrf"
CSRF_FIELD = "csrf_token"
MAX_FORM_BODY = 256 * 1024  # a team's check-in: a few KRs times three short notes


class CsrfGuard:
    """Issues and checks CSRF tokens with a key that lives as long as the server process."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def _sign(self, cookie: str) -> str:
        return hmac.new(self.key, cookie.encode(), hashlib.sha256).hexdigest()

    def token(self, request: Request) -> tuple[str, str | None]:
        """(the token for a form on this page, a new cookie value to set or None)."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if len(cookie) != 43:  # token_urlsafe(32)
            cookie = secrets.token_urlsafe(32)
            return self._sign(cookie), cookie
        return self._sign(cookie), None

    @staticmethod
    def set_cookie(request: Request, response: Response, cookie: str | None) -> Response:
        if cookie:
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                path="/",
                httponly=True,
                samesite="strict",
                secure=request.scope["scheme"] == "https",
            )
        return response

    def check(self, request: Request, form: dict[str, list[str]]) -> None:
        """Refused(403) unless the form's token matches the cookie and the origin is this host."""
        same_origin(request)
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = (form.get(CSRF_FIELD) or [""])[0]
        if not cookie or not sent or not hmac.compare_digest(sent, self._sign(cookie)):
            raise Refused(
                403,
                "This form has expired or did not come from this dashboard; reload the page "
                "and submit it again.",
            )


def same_origin(request: Request) -> None:
    """Refused(403) when the browser says the request comes from another site or origin.

    Browsers name where a request comes from in Sec-Fetch-Site (every current one) and Origin.
    Under this app's `Referrer-Policy: no-referrer` Chromium sends `Origin: null` even for its
    own forms, so a null Origin counts only together with `Sec-Fetch-Site: same-origin`.
    Without either header the client is not a browser (and has no cookie to abuse).
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Refused(403, "Cross-site requests cannot change data here.")
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin == "null":
        if fetch_site != "same-origin":
            raise Refused(403, "Cross-site requests cannot change data here.")
        return
    parts = urlsplit(origin)
    expected_host = request.headers.get("host", "")
    if parts.netloc.lower() != expected_host.lower() or parts.scheme != request.url.scheme:
        raise Refused(403, "Cross-site requests cannot change data here.")


async def read_form(request: Request, limit: int = MAX_FORM_BODY) -> dict[str, list[str]]:
    """An urlencoded form body, refused past `limit` bytes (a one-page form needs no multipart)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise Refused(415, "Send the form as application/x-www-form-urlencoded.")
    body = await read_body(request, limit, "The form is too large.")
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def require_json(request: Request) -> None:
    """Refused(415) unless the body is declared JSON, and 403 from another site's page."""
    same_origin(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Refused(415, "Send JSON with Content-Type: application/json.")

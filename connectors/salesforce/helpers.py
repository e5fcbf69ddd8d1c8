"""Salesforce wire details: login flows, the retrying HTTP session, SOQL, REST and Bulk 2.0 reads."""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlparse

import jwt
import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceOperationError,
    SalesforceRefusedRequest,
)
from simple_salesforce.format import format_soql
from simple_salesforce.login import token_login

from connectors.base import SourceAuthError, SourceError, SourceLimitReached
from connectors.http import transport_retry
from connectors.salesforce.settings import COMPOUND_FIELD_TYPES, SalesforceSourceSettings

log = logging.getLogger(__name__)

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
RETRY_STATUSES = (500, 502, 503, 504)
# SOQL statements are limited to 100,000 characters; 300 quoted 18-character ids stay far below.
IDS_PER_QUERY = 300


class LegacyLoginWarning(UserWarning):
    """Username/password (SOAP) login works today but Salesforce is retiring it."""


@dataclass(frozen=True, repr=False)
class SalesforceCredentials:
    """The secrets of one source; read from environment variables, never from krpulse.yaml."""

    consumer_key: str | None = None
    consumer_secret: str | None = None
    private_key: str | None = None
    session_id: str | None = None
    password: str | None = None
    security_token: str | None = None

    def __repr__(self) -> str:  # secrets must not reach logs or tracebacks
        present = [f.name for f in fields(self) if getattr(self, f.name)]
        return f"SalesforceCredentials(<hidden: {', '.join(present) or 'none'}>)"


def credentials_from_env(
    settings: SalesforceSourceSettings, environ: Mapping[str, str] | None = None
) -> SalesforceCredentials:
    """Read the secrets from the environment variables krpulse.yaml names for `settings`."""
    environ = os.environ if environ is None else environ
    names = settings.auth.secret_env_names()
    missing = [env for env in names.values() if not environ.get(env)]
    if missing:
        raise SourceError(
            f"source '{settings.name}': environment variable(s) {', '.join(missing)} not set; "
            "krpulse.yaml names them under `auth:` and they must hold the Salesforce secrets"
        )
    return SalesforceCredentials(**{secret: environ[env] for secret, env in names.items()})


def _private_key(text: str) -> str:
    # A PEM key pasted into one env-var line usually arrives with literal "\n" escapes.
    return text.replace("\\n", "\n") if "\n" not in text else text


class _TimeoutAdapter(HTTPAdapter):
    """simple_salesforce sends no timeout of its own: give every request one."""

    def __init__(self, timeout: float, **kwargs: Any) -> None:
        self.timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 - requests' adapter signature
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def http_session(settings: SalesforceSourceSettings) -> requests.Session:
    """A requests session with bounded, backed-off retries on 5xx, connection errors and timeouts.

    The retries live in the transport so that every call simple_salesforce makes (query pages,
    Bulk 2.0 job polls) gets them. 4xx answers are never retried: 401 is handled by
    re-authentication, 403 REQUEST_LIMIT_EXCEEDED must stop the sync, not hammer the API.
    """
    sync = settings.sync
    retry = transport_retry(
        sync.max_retries,
        sync.retry_backoff_seconds,
        statuses=RETRY_STATUSES,
        # Query-job creation is the only POST besides logins; a duplicate query job is harmless.
        methods={"GET", "POST", "PATCH", "DELETE"},
        backoff_max=60,
    )
    session = requests.Session()
    adapter = _TimeoutAdapter(sync.timeout_seconds, max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class SalesforceClient:
    """A logged-in simple_salesforce client that counts its API calls and renews its session.

    Every request under /services/data counts as an API call (logins do not count against the
    org's limit). The latest `Sforce-Limit-Info` header gives the org's API usage.
    """

    def __init__(
        self, settings: SalesforceSourceSettings, credentials: SalesforceCredentials
    ) -> None:
        self.settings = settings
        self._credentials = credentials
        self.api_calls = 0
        self.api_usage: tuple[int, int] | None = None
        self.reauthentications = 0
        self._renewed_unproven = False
        self.http = http_session(settings)
        self.http.hooks["response"].append(self._on_response)
        session_id, instance = self._login()
        self.sf = Salesforce(
            session_id=session_id,
            instance=instance,
            version=settings.api_version,
            session=self.http,
        )
        if settings.auth.method != "session":
            # simple_salesforce renews an expired session (401 INVALID_SESSION_ID) through this
            # hook and repeats the request, also in the middle of query_all_iter's pagination.
            self.sf._salesforce_login_partial = self._renew_session

    # -- calls and usage ------------------------------------------------------------------

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if not urlparse(response.url).path.startswith("/services/data/"):
            return
        self.api_calls += 1
        header = response.headers.get("Sforce-Limit-Info")
        if header:
            usage = Salesforce.parse_api_usage(header).get("api-usage")
            if usage:
                self.api_usage = (usage.used, usage.total)
        if response.status_code < 300:
            self._renewed_unproven = False

    # -- authentication -------------------------------------------------------------------

    def _login(self) -> tuple[str, str]:
        """(session id, instance host) through the configured auth method."""
        settings, creds = self.settings, self._credentials
        method = settings.auth.method
        token_url = f"{settings.token_base_url}/services/oauth2/token"
        if method == "session":
            return str(creds.session_id), urlparse(str(settings.instance_url)).netloc
        if method == "jwt":
            key = creds.private_key
            if not key and settings.auth.private_key_file:
                key = settings.auth.private_key_file.read_text(encoding="utf-8")
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)
            assertion = jwt.encode(
                {
                    "iss": creds.consumer_key,
                    "sub": settings.auth.username,
                    "aud": settings.audience,
                    "exp": int(expires.timestamp()),
                },
                _private_key(str(key)),
                algorithm="RS256",
            )
            return token_login(
                token_url,
                {"grant_type": JWT_GRANT, "assertion": assertion},
                settings.domain,
                str(creds.consumer_key),
                None,
                None,
                self.http,
            )
        if method == "client_credentials":
            basic = base64.b64encode(f"{creds.consumer_key}:{creds.consumer_secret}".encode())
            return token_login(
                token_url,
                {"grant_type": "client_credentials"},
                settings.domain,
                str(creds.consumer_key),
                {"Authorization": f"Basic {basic.decode()}"},
                None,
                self.http,
            )
        message = (
            f"source '{settings.name}': username/password login uses the SOAP login that "
            "Salesforce is retiring; switch `auth.method` to jwt or client_credentials"
        )
        warnings.warn(message, LegacyLoginWarning, stacklevel=2)
        log.warning(message)
        custom_login = settings.login_url or settings.instance_url
        return SalesforceLogin(
            username=settings.auth.username,
            password=creds.password,
            security_token=creds.security_token,
            sf_version=settings.api_version,
            session=self.http,
            domain=settings.domain,
            scratch_url=custom_login.rstrip("/") if custom_login else None,
        )

    def _renew_session(self) -> tuple[str, str]:
        if self._renewed_unproven:
            raise SourceAuthError(
                f"source '{self.settings.name}': Salesforce rejected a session it had just issued "
                "(INVALID_SESSION_ID right after re-authenticating); check the connected app's "
                "session policies and the integration user's permissions"
            )
        self.reauthentications += 1
        self._renewed_unproven = True
        log.info("source %s: Salesforce session expired; re-authenticating", self.settings.name)
        return self._login()

    # -- reads ----------------------------------------------------------------------------

    def daily_api_usage(self) -> tuple[int, int]:
        """(used, max) of the org's daily API requests, from the /limits resource."""
        limits = self.sf.limits()["DailyApiRequests"]
        return int(limits["Max"]) - int(limits["Remaining"]), int(limits["Max"])

    def object_names(self) -> set[str]:
        return {item["name"] for item in self.sf.describe()["sobjects"]}

    def field_types(self, object_name: str) -> dict[str, str]:
        """Field API name -> describe type ('string', 'address', ...) of `object_name`."""
        describe = getattr(self.sf, object_name).describe()
        return {f["name"]: f["type"] for f in describe["fields"]}

    def count(self, object_name: str, conditions: list[str], *, include_deleted: bool) -> int:
        """COUNT() of what the extraction will read: through queryAll when it reads deleted
        records too, or a sync whose only changes are deletes would count 0 and read nothing."""
        query = soql(object_name, ["COUNT()"], conditions)
        return int(self.sf.query(query, include_deleted=include_deleted)["totalSize"])

    def records(self, query: str, *, include_deleted: bool) -> pd.DataFrame:
        """All records of a REST query (query_all_iter follows nextRecordsUrl), flattened."""
        records = list(self.sf.query_all_iter(query, include_deleted=include_deleted))
        if not records:
            return pd.DataFrame()
        # Relationship fields arrive nested ({"UserRole": {"Name": ...}}): flatten them to the
        # dotted names the query used, the same column names Bulk 2.0's CSV has.
        return pd.json_normalize(records)

    def bulk_records(self, object_name: str, query: str, *, include_deleted: bool) -> pd.DataFrame:
        """All records of a Bulk API 2.0 query job, read page by page (Sforce-Locator)."""
        handler = getattr(self.sf.bulk2, object_name)
        run = handler.query_all if include_deleted else handler.query
        pages = run(
            query,
            max_records=self.settings.sync.bulk_page_size,
            wait=self.settings.sync.bulk_poll_seconds,
        )
        frames = [
            pd.read_csv(io.StringIO(page), dtype=str, keep_default_na=False, na_values=[""])
            for page in pages
            if page.strip()
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def extract(
        self,
        object_name: str,
        field_names: list[str],
        conditions: list[str],
        *,
        include_deleted: bool,
        field_types: Mapping[str, str],
    ) -> tuple[pd.DataFrame, str]:
        """Records of `object_name` matching `conditions`: (frame with `field_names`, path).

        Small extractions go through REST (`query_all_iter`, 2,000 records a page); from
        `sync.bulk_threshold` records on, Bulk API 2.0 takes over, without compound fields
        (Bulk rejects them). One COUNT() call decides, and an empty change set costs nothing more.
        """
        total = self.count(object_name, conditions, include_deleted=include_deleted)
        if total == 0:
            return pd.DataFrame(columns=field_names), "none"
        if total >= self.settings.sync.bulk_threshold:
            bulk_fields = [f for f in field_names if field_types.get(f) not in COMPOUND_FIELD_TYPES]
            query = soql(object_name, bulk_fields, conditions)
            try:
                frame = self.bulk_records(object_name, query, include_deleted=include_deleted)
            except SalesforceExpiredSession:
                # Bulk 2.0 calls do not renew sessions themselves: renew once, rerun the job.
                if self.settings.auth.method == "session":
                    raise
                self.sf._refresh_session()
                frame = self.bulk_records(object_name, query, include_deleted=include_deleted)
            return frame.reindex(columns=field_names), "bulk"
        query = soql(object_name, field_names, conditions)
        frame = self.records(query, include_deleted=include_deleted)
        return frame.reindex(columns=field_names), "rest"

    def records_by_ids(
        self,
        object_name: str,
        field_names: list[str],
        id_field: str,
        ids: list[str],
        extra: list[str],
    ) -> pd.DataFrame:
        """Records whose `id_field` is one of `ids`, a few hundred ids per query."""
        frames = []
        for start in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[start : start + IDS_PER_QUERY]
            conditions = [*extra, format_soql(f"{id_field} IN {{}}", chunk)]
            frames.append(
                self.records(soql(object_name, field_names, conditions), include_deleted=False)
            )
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame(columns=field_names)
        return pd.concat(frames, ignore_index=True).reindex(columns=field_names)


def soql(object_name: str, field_names: list[str], conditions: list[str]) -> str:
    """SELECT ... FROM ... WHERE a AND b. Names are validated API names; values were quoted."""
    query = f"SELECT {', '.join(field_names)} FROM {object_name}"  # noqa: S608 - no user values
    if conditions:
        query += " WHERE " + " AND ".join(f"({c})" for c in conditions)
    return query


def filter_conditions(where: Mapping[str, Any]) -> list[str]:
    """Configured filters as SOQL conditions; values go through simple_salesforce's quoting.

    A value like `x' OR Name != '` becomes the string literal 'x\\' OR Name != \\'', never SOQL.
    """
    conditions = []
    for field_name, value in where.items():
        if isinstance(value, list):
            if not value:
                raise SourceError(f"filter on {field_name} lists no values")
            conditions.append(format_soql(f"{field_name} IN {{}}", value))
        else:
            conditions.append(format_soql(f"{field_name} = {{}}", value))
    return conditions


def modified_since(since: dt.datetime) -> str:
    """`SystemModstamp >= <UTC datetime literal>` (SOQL datetimes are unquoted)."""
    return format_soql("SystemModstamp >= {}", since)


def _error_code(exc: SalesforceError) -> str | None:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode")
    if isinstance(content, dict):
        return content.get("errorCode") or content.get("error")
    return None


def _error_message(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return f"{content[0].get('errorCode')}: {content[0].get('message')}"
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")[:500]
    return str(content)[:500]


@contextmanager
def salesforce_errors(settings: SalesforceSourceSettings) -> Iterator[None]:
    """Turn simple_salesforce and transport errors into SourceError / SourceLimitReached."""
    name = settings.name
    try:
        yield
    except SourceError:
        raise
    except SalesforceAuthenticationFailed as exc:
        raise SourceAuthError(
            f"source '{name}': Salesforce login ({settings.auth.method}) at "
            f"{settings.token_base_url} failed: {exc.code}: {exc.auth_message}; check the "
            "connected app, the user and the secrets the auth env vars hold"
        ) from None
    except SalesforceRefusedRequest as exc:
        if _error_code(exc) == "REQUEST_LIMIT_EXCEEDED":
            raise SourceLimitReached(
                f"source '{name}': Salesforce refused the request with REQUEST_LIMIT_EXCEEDED "
                "(the org's API request limit is spent); the sync stopped without retrying and "
                "left the cursors of unfinished objects unchanged; rerun when the 24-hour "
                "window frees requests"
            ) from None
        raise SourceError(
            f"source '{name}': Salesforce refused a request: {_error_message(exc)}"
        ) from None
    except SalesforceExpiredSession as exc:
        if settings.auth.method == "session":
            env = settings.auth.session_id_env
            raise SourceAuthError(
                f"source '{name}': the session id in ${env} is expired or invalid "
                f"({_error_message(exc)}); a bare session id cannot be renewed: set a fresh one "
                "or use auth method jwt or client_credentials"
            ) from None
        raise SourceAuthError(
            f"source '{name}': Salesforce session rejected: {_error_message(exc)}"
        ) from None
    except SalesforceError as exc:
        retried = f" (after {settings.sync.max_retries} retries)" if exc.status >= 500 else ""
        raise SourceError(
            f"source '{name}': Salesforce answered HTTP {exc.status}{retried}: "
            f"{_error_message(exc)}"
        ) from None
    except SalesforceOperationError as exc:
        raise SourceError(f"source '{name}': Bulk API 2.0 job failed: {exc}") from None
    except requests.RequestException as exc:
        raise SourceError(
            f"source '{name}': Salesforce unreachable after {settings.sync.max_retries} retries "
            f"({type(exc).__name__}); check instance_url/login_url and the network"
        ) from None

"""HubSpot wire details: the client, retries and rate limits, pagination, search windows, associations."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hubspot.crm.associations.v4 as associations_v4
import hubspot.crm.companies as companies_api
import hubspot.crm.deals as deals_api
import hubspot.crm.objects as objects_api
import hubspot.crm.objects.feedback_submissions as feedback_api
import hubspot.crm.owners as owners_api
import hubspot.crm.pipelines as pipelines_api
import hubspot.crm.properties as properties_api
import urllib3
from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.objects import Filter, FilterGroup, PublicObjectSearchRequest
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt
from urllib3.util.retry import Retry

from connectors.base import SourceAuthError, SourceError, SourceLimitReached
from connectors.http import transport_retry
from connectors.hubspot.settings import (
    ACCOUNT_DETAILS_PATH,
    ASSOCIATION_BATCH_SIZE,
    LAST_MODIFIED,
    LIST_PAGE_SIZE,
    OBJECT_ID,
    REQUIRED_SCOPES,
    SEARCH_PAGE_SIZE,
    SEARCH_RESULT_LIMIT,
)
from core.http import retry_after_seconds

# Every generated sub-package of hubspot-api-client has its own ApiException class.
API_EXCEPTIONS: tuple[type[Exception], ...] = tuple(
    module.ApiException
    for module in (
        associations_v4,
        companies_api,
        deals_api,
        objects_api,
        feedback_api,
        owners_api,
        pipelines_api,
        properties_api,
    )
)
SERVER_ERRORS = (500, 502, 503, 504)
# The ten-secondly window is 10 s long: never wait longer than that for it without a Retry-After.
MAX_RATE_LIMIT_BACKOFF = 10.0
MAX_RATE_LIMIT_WAITS = 8


class _CountingRetry(Retry):
    """urllib3's Retry that reports each retried request, so API calls are counted exactly."""

    on_retry: Callable[[], None] | None = None
    # urllib3 would retry any 429 carrying Retry-After by itself, a DAILY one too: 429s are
    # HubSpotApi.call()'s to judge by their policy.
    RETRY_AFTER_STATUS_CODES = frozenset({503})

    def new(self, **kw: Any) -> _CountingRetry:
        retry = super().new(**kw)
        retry.on_retry = self.on_retry
        return retry

    def increment(self, *args: Any, **kwargs: Any) -> _CountingRetry:
        retry = super().increment(*args, **kwargs)  # raises MaxRetryError once exhausted
        if self.on_retry is not None:
            self.on_retry()
        return retry


class MissingScopes(SourceError):
    """HubSpot answered 403 MISSING_SCOPES: the private app lacks `scopes`."""

    def __init__(self, message: str, scopes: list[str]):
        super().__init__(message)
        self.scopes = scopes


class _TenSecondlyLimit(Exception):
    """A 429 of the rolling per-10-seconds policy: wait, then send the same request again."""

    def __init__(self, retry_after: float | None):
        super().__init__("rate limited (TEN_SECONDLY_ROLLING)")
        self.retry_after = retry_after


def _json_body(exc: Exception) -> dict:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {"message": str(body)[:300]}
    return parsed if isinstance(parsed, dict) else {}


def _retry_after(exc: Exception) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    return retry_after_seconds(headers.get("Retry-After") if hasattr(headers, "get") else None)


def missing_scopes(body: dict) -> list[str]:
    """Scopes a 403 MISSING_SCOPES body says are required (granular names preferred)."""
    scopes: list[str] = []
    for error in body.get("errors") or []:
        context = (error or {}).get("context") or {}
        for key in ("requiredGranularScopes", "requiredScopes"):
            scopes.extend(str(s) for s in context.get(key) or [])
    return sorted(set(scopes))


@dataclass
class HubSpotApi:
    """The typed hubspot-api-client APIs krpulse calls, behind one call() that handles faults.

    urllib3's Retry (inside the client) retries 5xx answers, timeouts and dropped connections a
    bounded number of times, for POST too: HubSpot search is a POST, and urllib3 retries only
    idempotent methods unless told otherwise. 429s are handled here because the right reaction
    depends on the body: TEN_SECONDLY_ROLLING -> wait and go on, DAILY -> stop.
    """

    source: str
    base_url: str
    access_token: str
    token_env: str
    timeout_seconds: float = 30.0
    max_retries: int = 5
    backoff_seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    calls: Counter = field(default_factory=Counter)
    rate_limit_waits: Counter = field(default_factory=Counter)
    bucket: str = "setup"

    def __post_init__(self) -> None:
        retry = transport_retry(
            self.max_retries,
            self.backoff_seconds,
            statuses=SERVER_ERRORS,
            methods={"GET", "POST"},
            retry_class=_CountingRetry,
        )
        retry.on_retry = self._count_call
        client = self.client = HubSpot(
            access_token=self.access_token, retry=retry, host=self.base_url
        )
        # Each discovery property builds a new ApiClient (and connection pool): build them once.
        self.deals_basic = client.crm.deals.basic_api
        self.deals_search = client.crm.deals.search_api
        self.companies_basic = client.crm.companies.basic_api
        self.companies_search = client.crm.companies.search_api
        self.feedback_basic = client.crm.objects.feedback_submissions.basic_api
        self.feedback_search = client.crm.objects.feedback_submissions.search_api
        self.associations = client.crm.associations.v4.batch_api
        self.pipelines = client.crm.pipelines.pipelines_api
        self.owners = client.crm.owners.owners_api
        self.properties = client.crm.properties.core_api

    def _count_call(self) -> None:
        self.calls[self.bucket] += 1

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def call(
        self, what: str, object_type: str, method: Callable[..., Any], *args: Any, **kwargs: Any
    ):
        """One API request through `method`, waiting out per-10-second 429s; errors become SourceError."""

        def wait(retry_state) -> float:
            exc = retry_state.outcome.exception()
            if exc.retry_after is not None:
                return exc.retry_after
            return min(
                MAX_RATE_LIMIT_BACKOFF, self.backoff_seconds * 2 ** (retry_state.attempt_number - 1)
            )

        def before_sleep(retry_state) -> None:
            self.rate_limit_waits[self.bucket] += 1

        retrying = Retrying(
            retry=retry_if_exception_type(_TenSecondlyLimit),
            wait=wait,
            stop=stop_after_attempt(MAX_RATE_LIMIT_WAITS + 1),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._once, what, object_type, method, *args, **kwargs)
        except _TenSecondlyLimit as exc:
            raise SourceError(
                f"source '{self.source}': HubSpot kept answering 429 (TEN_SECONDLY_ROLLING) to "
                f"{what} after {MAX_RATE_LIMIT_WAITS} waits; another integration may be using the "
                "portal's whole burst budget. Try again later."
            ) from exc

    def _once(self, what: str, object_type: str, method: Callable[..., Any], *args, **kwargs):
        self._count_call()
        try:
            return method(*args, _request_timeout=self.timeout_seconds, **kwargs)
        except API_EXCEPTIONS as exc:
            raise self._translate(exc, what, object_type) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise SourceError(
                f"source '{self.source}': could not {what} at {self.base_url} after "
                f"{self.max_retries} retries ({type(exc).__name__}: {exc})"
            ) from exc

    def _translate(self, exc: Exception, what: str, object_type: str) -> Exception:
        status = getattr(exc, "status", None)
        body = _json_body(exc)
        message = body.get("message") or getattr(exc, "reason", "") or ""
        prefix = f"source '{self.source}': HubSpot answered {status} to {what}"
        if status == 429:
            policy = str(body.get("policyName") or "").upper()
            if policy == "DAILY":
                return SourceLimitReached(
                    f"{prefix}: the portal's DAILY API limit is spent. The sync stopped; cursors "
                    "of unfinished objects are unchanged, so the next run resumes from there."
                )
            return _TenSecondlyLimit(_retry_after(exc))
        if status == 401:
            return SourceAuthError(
                f"{prefix}: the access token in ${self.token_env} was rejected ({message}). "
                "Copy the private app's current access token into that environment variable."
            )
        if status == 403:
            named = missing_scopes(body) or list(REQUIRED_SCOPES.get(object_type, ()))
            return MissingScopes(
                f"{prefix}: the private app lacks scopes ({message}). Missing scopes: "
                f"{', '.join(named)}. Add them under Settings > Integrations > Private Apps > "
                "Scopes, then use the token the app shows.",
                named,
            )
        if status in SERVER_ERRORS:
            return SourceError(f"{prefix} after {self.max_retries} retries: {message}")
        return SourceError(f"{prefix}: {message}")

    # ------------------------------------------------------------------------------------------
    # Reads

    def list_all(
        self,
        object_type: str,
        basic_api: Any,
        properties: Sequence[str],
        *,
        archived: bool = False,
    ) -> list:
        """Every record of a list endpoint, 100 a page, following `paging.next.after`."""
        results: list = []
        after = None
        state = "archived " if archived else ""
        while True:
            page = self.call(
                f"list {state}{object_type}",
                object_type,
                basic_api.get_page,
                limit=LIST_PAGE_SIZE,
                after=after,
                properties=list(properties),
                archived=archived,
            )
            results.extend(page.results or [])
            after = page.paging.next.after if page.paging and page.paging.next else None
            if after is None:
                return results

    def search_changed(
        self,
        object_type: str,
        search_api: Any,
        properties: Sequence[str],
        *,
        since: dt.datetime,
        equals: dict[str, str] | None = None,
    ) -> tuple[list, int]:
        """Records modified at or after `since`, and how many search windows that took.

        Sorted by hs_object_id (stable while records keep changing, unlike the modified date),
        and restarted as `hs_object_id > last seen` before a window reaches the 10,000-result
        limit, past which HubSpot answers 400.
        """
        since_ms = str(int(since.timestamp() * 1000))
        results: list = []
        windows = 0
        last_id: int | None = None
        while True:
            windows += 1
            filters = [Filter(property_name=LAST_MODIFIED, operator="GTE", value=since_ms)]
            filters += [
                Filter(property_name=name, operator="EQ", value=value)
                for name, value in (equals or {}).items()
            ]
            if last_id is not None:
                filters.append(Filter(property_name=OBJECT_ID, operator="GT", value=str(last_id)))
            after: str | None = None
            while True:
                request = PublicObjectSearchRequest(
                    filter_groups=[FilterGroup(filters=filters)],
                    sorts=[{"propertyName": OBJECT_ID, "direction": "ASCENDING"}],
                    properties=list(properties),
                    limit=SEARCH_PAGE_SIZE,
                    after=after,
                )
                page = self.call(
                    f"search {object_type} modified since {since.isoformat()}",
                    object_type,
                    search_api.do_search,
                    public_object_search_request=request,
                )
                results.extend(page.results or [])
                after = page.paging.next.after if page.paging and page.paging.next else None
                if after is None:
                    return results, windows
                if int(after) + SEARCH_PAGE_SIZE > SEARCH_RESULT_LIMIT:
                    break  # the next page would cross 10,000: restart past the last id instead
            last_id = int(results[-1].id)

    def account_details(self) -> dict:
        """The portal's account details: companyCurrency, timeZone, portalId, ...

        hubspot-api-client has no typed API for account-info, so this goes through its
        generic `api_request` (plain requests: one call, no urllib3 retries).
        """
        self._count_call()
        what = "read the account details"
        try:
            response = self.client.api_request(
                {"method": "GET", "path": ACCOUNT_DETAILS_PATH, "base_url": self.base_url}
            )
        except Exception as exc:  # noqa: BLE001 - api_request raises requests' errors as is
            raise SourceError(
                f"source '{self.source}': could not {what} at {self.base_url} ({exc})"
            ) from exc
        if response.status_code == 401:
            raise SourceAuthError(
                f"source '{self.source}': HubSpot answered 401 to {what}: the access token in "
                f"${self.token_env} was rejected. Copy the private app's current access token "
                "into that environment variable."
            )
        if response.status_code >= 300:
            raise SourceError(
                f"source '{self.source}': HubSpot answered {response.status_code} to {what}: "
                f"{response.text[:300]}"
            )
        return response.json()

    def read_properties(self, object_type: str) -> set[str]:
        response = self.call(
            f"read the {object_type} properties",
            object_type,
            self.properties.get_all,
            object_type,
        )
        return {prop.name for prop in response.results or []}

    def deal_stages(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(pipeline id, stage id) -> pipeline and stage labels and the stage's closed/won flags.

        Closed and won come from each stage's metadata (`isClosed`, `probability` 1.0 = won),
        not from stage names, which every portal renames.
        """
        response = self.call("read the deal pipelines", "deals", self.pipelines.get_all, "deals")
        stages = {}
        for pipeline in response.results or []:
            for stage in pipeline.stages or []:
                metadata = stage.metadata or {}
                closed = str(metadata.get("isClosed", "")).strip().lower() == "true"
                try:
                    probability = float(metadata.get("probability", "nan"))
                except ValueError:
                    probability = float("nan")
                stages[(pipeline.id, stage.id)] = {
                    "pipeline": pipeline.label,
                    "stage": stage.label,
                    "is_closed": closed,
                    "is_won": closed and probability == 1.0,
                }
        return stages

    def list_owners(self) -> list:
        """Active and deactivated owners: old deals still belong to people who have left."""
        owners: list = []
        for archived in (False, True):
            after = None
            while True:
                page = self.call(
                    "list owners",
                    "owners",
                    self.owners.get_page,
                    limit=LIST_PAGE_SIZE,
                    after=after,
                    archived=archived,
                )
                owners.extend(page.results or [])
                after = page.paging.next.after if page.paging and page.paging.next else None
                if after is None:
                    break
        return owners

    def primary_associations(
        self, from_type: str, to_type: str, ids: Iterable[str], *, primary_type_id: int
    ) -> tuple[dict[str, str], int]:
        """from id -> the associated `to_type` id (the primary one when there are several).

        Returns the mapping and how many records had several associations and none marked
        primary (the lowest id is taken then, so reruns agree).
        """
        targets: dict[str, list[tuple[int, bool]]] = {}
        pending = [PublicFetchAssociationsBatchRequest(id=str(i)) for i in dict.fromkeys(ids)]
        while pending:
            chunk, pending = pending[:ASSOCIATION_BATCH_SIZE], pending[ASSOCIATION_BATCH_SIZE:]
            response = self.call(
                f"read {from_type} -> {to_type} associations",
                from_type,
                self.associations.get_page,
                from_type,
                to_type,
                BatchInputPublicFetchAssociationsBatchRequest(inputs=chunk),
            )
            for result in response.results or []:
                found = targets.setdefault(str(result._from.id), [])
                for target in result.to or []:
                    primary = any(
                        spec.type_id == primary_type_id and spec.category == "HUBSPOT_DEFINED"
                        for spec in target.association_types or []
                    )
                    found.append((int(target.to_object_id), primary))
                if result.paging and result.paging.next:  # more than one page of associations
                    pending.append(
                        PublicFetchAssociationsBatchRequest(
                            id=str(result._from.id), after=result.paging.next.after
                        )
                    )
        mapping: dict[str, str] = {}
        ambiguous = 0
        for from_id, found in targets.items():
            if not found:
                continue
            primaries = sorted(t for t, primary in found if primary)
            if primaries:
                mapping[from_id] = str(primaries[0])
            else:
                ambiguous += len({t for t, _ in found}) > 1
                mapping[from_id] = str(min(t for t, _ in found))
        return mapping, ambiguous

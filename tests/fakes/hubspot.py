"""A fake HubSpot portal speaking the CRM v3/v4 wire format over real HTTP on 127.0.0.1.

The portal is mutable in memory (add, update, archive records, change associations, advance its
clock) and can inject faults: 429s of either rate-limit policy, 5xx answers, slow answers that
time out. It checks the bearer token and the private app's scopes like HubSpot does, and logs
every request so tests and benchmarks can count API calls.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN = "pat-eu1-fake-token"  # noqa: S105 - the fake portal's made-up token
ALL_SCOPES = frozenset(
    {
        "crm.objects.deals.read",
        "crm.schemas.deals.read",
        "crm.objects.companies.read",
        "crm.schemas.companies.read",
        "crm.objects.contacts.read",
        "crm.objects.feedback_submissions.read",
        "crm.objects.owners.read",
    }
)
OBJECT_SCOPES = {
    "deals": "crm.objects.deals.read",
    "companies": "crm.objects.companies.read",
    "contacts": "crm.objects.contacts.read",
    "feedback_submissions": "crm.objects.feedback_submissions.read",
}
SCHEMA_SCOPES = {
    "deals": "crm.schemas.deals.read",
    "companies": "crm.schemas.companies.read",
    "contacts": "crm.objects.contacts.read",
    "feedback_submissions": "crm.objects.feedback_submissions.read",
}
# (from, to) -> (primary type id, unlabeled type id), as HubSpot defines them.
ASSOCIATION_TYPES = {
    ("deals", "companies"): (5, 341),
    ("contacts", "companies"): (1, 279),
    ("feedback_submissions", "contacts"): (None, 1127),
}
DATETIME_PROPERTIES = {
    "createdate",
    "hs_createdate",
    "hs_lastmodifieddate",
    "closedate",
    "hs_submission_timestamp",
}
DEFAULT_PROPERTIES = {
    "deals": [
        "dealname",
        "amount",
        "deal_currency_code",
        "amount_in_home_currency",
        "dealstage",
        "pipeline",
        "closedate",
        "createdate",
        "hubspot_owner_id",
        "dealtype",
        "hs_lastmodifieddate",
        "hs_object_id",
        "hs_merged_object_ids",
    ],
    "companies": [
        "name",
        "industry",
        "country",
        "hubspot_owner_id",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
        "customer_segment",
        "hs_merged_object_ids",
    ],
    "contacts": ["email", "createdate", "hs_lastmodifieddate", "hs_object_id"],
    "feedback_submissions": [
        "hs_survey_type",
        "hs_value",
        "hs_submission_timestamp",
        "hs_survey_id",
        "hs_content",
        "hs_createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ],
}
SEARCH_LIMIT = 10_000


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _millis(value: str) -> int | None:
    """A HubSpot datetime value (epoch ms or ISO-8601) as epoch milliseconds."""
    if value is None or value == "":
        return None
    if re.fullmatch(r"-?\d+", str(value)):
        return int(value)
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


@dataclass
class Record:
    id: int
    properties: dict[str, str | None]
    created_at: dt.datetime
    updated_at: dt.datetime
    archived: bool = False
    archived_at: dt.datetime | None = None

    def as_json(self, wanted: list[str] | None) -> dict:
        names = list(wanted or []) + ["hs_object_id", "hs_lastmodifieddate"]
        names += ["hs_createdate"] if "hs_createdate" in self.properties else ["createdate"]
        body = {
            "id": str(self.id),
            "properties": {name: self.properties.get(name) for name in dict.fromkeys(names)},
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "archived": self.archived,
        }
        if self.archived_at:
            body["archivedAt"] = iso(self.archived_at)
        return body


@dataclass
class Fault:
    """Answer the next `times` requests matching `method` and `path` (a regex) with a fault."""

    path: str
    status: int = 429
    method: str | None = None
    times: int = 1
    skip: int = 0  # let this many matching requests through first
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to stall before answering (a timeout when > the client's)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and re.search(self.path, path)


def rate_limit(
    policy: str = "TEN_SECONDLY_ROLLING",
    *,
    path: str = ".",
    method: str | None = None,
    times: int = 1,
    skip: int = 0,
    retry_after: int | None = None,
) -> Fault:
    """A 429 exactly as HubSpot words it, for the `TEN_SECONDLY_ROLLING` or `DAILY` policy."""
    body = {
        "status": "error",
        "message": f"You have reached your {policy.lower()} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "groupName": "publicapi:private-app:1234",
    }
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Fault(path, 429, method, times, skip, body, headers)


def _error(status: int, category: str, message: str, **extra) -> tuple[int, dict]:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    body.update(category=category, **extra)
    return status, body


class Portal:
    """The in-memory portal: records, associations, owners, pipelines, properties, faults."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        scopes: frozenset[str] = ALL_SCOPES,
        company_currency: str = "EUR",
    ):
        self.token = token
        self.company_currency = company_currency
        self.scopes = set(scopes)
        self.now = dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC)
        self.objects: dict[str, dict[int, Record]] = {t: {} for t in DEFAULT_PROPERTIES}
        self.properties = {t: list(names) for t, names in DEFAULT_PROPERTIES.items()}
        self.links: dict[tuple[str, str], dict[int, dict[int, bool]]] = {
            pair: {} for pair in ASSOCIATION_TYPES
        }
        self.owners: list[dict] = []
        self.pipelines: list[dict] = []
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._ids = 1000

    # -- portal state ----------------------------------------------------------------------

    def tick(self, seconds: float = 1.0) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now

    def add(self, object_type: str, properties: dict, *, record_id: int | None = None) -> str:
        with self.lock:
            if record_id is None:
                self._ids += 1
                record_id = self._ids
            now = self.tick(0.001)
            created = "hs_createdate" if object_type == "feedback_submissions" else "createdate"
            props = {created: iso(now), **{k: v for k, v in properties.items()}}
            props["hs_object_id"] = str(record_id)
            props["hs_lastmodifieddate"] = iso(now)
            self.objects[object_type][record_id] = Record(record_id, props, now, now)
            return str(record_id)

    def update(self, object_type: str, record_id: str, **properties) -> None:
        with self.lock:
            record = self.objects[object_type][int(record_id)]
            now = self.tick(0.001)
            record.properties.update(properties)
            record.properties["hs_lastmodifieddate"] = iso(now)
            record.updated_at = now

    def archive(self, object_type: str, record_id: str) -> None:
        with self.lock:
            record = self.objects[object_type][int(record_id)]
            record.archived, record.archived_at = True, self.tick(0.001)

    def restore(self, object_type: str, record_id: str) -> None:
        """Restore an archived record from the recycle bin: live again, and modified now."""
        with self.lock:
            record = self.objects[object_type][int(record_id)]
            record.archived, record.archived_at = False, None
            self.update(object_type, record_id)

    def purge(self, object_type: str, record_id: str) -> None:
        """Delete for good (a GDPR delete, or the recycle bin's 90 days passed): the record is
        in no list, no search and not among the archived ones."""
        with self.lock:
            self.objects[object_type].pop(int(record_id))
            for (from_type, to_type), links in self.links.items():
                if from_type == object_type:
                    links.pop(int(record_id), None)
                if to_type == object_type:
                    for targets in links.values():
                        targets.pop(int(record_id), None)

    def merge(self, object_type: str, primary_id: str, merged_id: str) -> None:
        """Merge `merged_id` into `primary_id` as HubSpot does: the merged record disappears
        from lists, search and the recycle bin; the primary lists it in hs_merged_object_ids
        and takes over its associations; records associated with it are not modified."""
        with self.lock:
            merged = self.objects[object_type].pop(int(merged_id))
            primary = self.objects[object_type][int(primary_id)]
            ids = [
                i for i in (primary.properties.get("hs_merged_object_ids") or "").split(";") if i
            ]
            ids += [
                str(merged.id),
                *[i for i in (merged.properties.get("hs_merged_object_ids") or "").split(";") if i],
            ]
            for (from_type, to_type), links in self.links.items():
                if from_type == object_type and int(merged_id) in links:
                    moved = links.pop(int(merged_id))
                    target = links.setdefault(int(primary_id), {})
                    for other, is_primary in moved.items():
                        target.setdefault(other, is_primary and not any(target.values()))
                if to_type == object_type:
                    for targets in links.values():
                        if int(merged_id) in targets:
                            was_primary = targets.pop(int(merged_id))
                            targets[int(primary_id)] = was_primary or targets.get(
                                int(primary_id), False
                            )
            self.update(object_type, primary_id, hs_merged_object_ids=";".join(ids))

    def reassociate_quietly(self, deal_id: str, company_id: str) -> None:
        """Move a deal to another company through the association card: the deal itself is
        not modified (its hs_lastmodifieddate stays), so no search finds it."""
        with self.lock:
            self.links[("deals", "companies")][int(deal_id)] = {int(company_id): True}

    def set_owner_team(self, owner_id: str, team: str) -> None:
        """Move an owner to another (primary) team."""
        with self.lock:
            owner = next(o for o in self.owners if o["id"] == owner_id)
            owner["teams"] = [{"id": "2000", "name": team, "primary": True}]
            owner["updatedAt"] = iso(self.tick(0.001))

    def edit_stage(
        self, pipeline_id: str, stage_id: str, *, closed: bool, probability: float
    ) -> None:
        """Edit a stage's metadata (closed? won?) in the pipeline settings: no deal changes."""
        with self.lock:
            pipeline = next(p for p in self.pipelines if p["id"] == pipeline_id)
            stage = next(s for s in pipeline["stages"] if s["id"] == stage_id)
            stage["metadata"] = {"isClosed": str(closed).lower(), "probability": str(probability)}
            stage["updatedAt"] = iso(self.tick(0.001))

    def associate(
        self, from_type: str, from_id: str, to_type: str, to_id: str, *, primary: bool = False
    ) -> None:
        with self.lock:
            self.links[(from_type, to_type)].setdefault(int(from_id), {})[int(to_id)] = primary

    def set_deal_company(self, deal_id: str, company_id: str) -> None:
        """Move a deal to another company; like HubSpot, the deal counts as modified."""
        with self.lock:
            self.links[("deals", "companies")][int(deal_id)] = {int(company_id): True}
            self.update("deals", deal_id)

    def add_owner(self, owner_id: str, first: str, last: str, email: str, teams=()) -> None:
        stamp = iso(self.now)
        self.owners.append(
            {
                "id": owner_id,
                "email": email,
                "firstName": first,
                "lastName": last,
                "userId": int(owner_id),
                "userIdIncludingInactive": int(owner_id),
                "type": "PERSON",
                "createdAt": stamp,
                "updatedAt": stamp,
                "archived": False,
                "teams": [
                    {"id": str(1000 + i), "name": name, "primary": i == 0}
                    for i, name in enumerate(teams)
                ],
            }
        )

    def add_pipeline(self, pipeline_id: str, label: str, stages: list[tuple]) -> None:
        """`stages`: (id, label, is_closed, probability) each."""
        stamp = iso(self.now)
        self.pipelines.append(
            {
                "id": pipeline_id,
                "label": label,
                "displayOrder": len(self.pipelines),
                "archived": False,
                "createdAt": stamp,
                "updatedAt": stamp,
                "stages": [
                    {
                        "id": sid,
                        "label": slabel,
                        "displayOrder": i,
                        "archived": False,
                        "createdAt": stamp,
                        "updatedAt": stamp,
                        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                        "metadata": {"isClosed": str(closed).lower(), "probability": str(prob)},
                    }
                    for i, (sid, slabel, closed, prob) in enumerate(stages)
                ],
            }
        )

    def calls(self, pattern: str = ".") -> int:
        return sum(1 for method, path in self.requests if re.search(pattern, f"{method} {path}"))

    # -- request handling --------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, dict, dict]:
        parsed = urlparse(raw_path)
        path = parsed.path.rstrip("/")
        query = parse_qs(parsed.query)
        with self.lock:
            self.requests.append((method, path))
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None and fault.skip > 0:
                fault.skip -= 1
                fault = None
            if fault is not None:
                fault.times -= 1
                fault.hits += 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            body_out = fault.body or {"status": "error", "message": "Internal error"}
            return fault.status, body_out, fault.headers
        if headers.get("Authorization") != f"Bearer {self.token}":
            return (
                *_error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found."),
                {},
            )
        payload = json.loads(body) if body else {}
        with self.lock:
            status, out = self._route(method, path, query, payload)
        return status, out, {}

    def _need(self, *scopes: str) -> tuple[int, dict] | None:
        lacking = sorted(s for s in scopes if s not in self.scopes)
        if not lacking:
            return None
        return _error(
            403,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call.",
            errors=[
                {
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": lacking},
                }
            ],
            links={"scopes": "https://developers.hubspot.com/scopes"},
        )

    def _route(self, method: str, path: str, query: dict, payload: dict) -> tuple[int, dict]:
        if m := re.fullmatch(r"/crm/v3/objects/(\w+)", path):
            return self._need(OBJECT_SCOPES[m[1]]) or self._list(m[1], query)
        if m := re.fullmatch(r"/crm/v3/objects/(\w+)/search", path):
            return self._need(OBJECT_SCOPES[m[1]]) or self._search(m[1], payload)
        if m := re.fullmatch(r"/crm/v3/properties/(\w+)", path):
            return self._need(SCHEMA_SCOPES[m[1]]) or (200, self._properties(m[1]))
        if path == "/crm/v3/pipelines/deals":
            return self._need(OBJECT_SCOPES["deals"]) or (200, {"results": self.pipelines})
        if path == "/account-info/v3/details":
            return 200, {
                "portalId": 4242,
                "accountType": "STANDARD",
                "timeZone": "Europe/Berlin",
                "companyCurrency": self.company_currency,
                "additionalCurrencies": ["USD", "GBP"],
                "utcOffset": "+01:00",
                "utcOffsetMilliseconds": 3_600_000,
                "uiDomain": "app-eu1.hubspot.com",
                "dataHostingLocation": "eu1",
            }
        if path == "/crm/v3/owners":
            return self._need("crm.objects.owners.read") or self._list_owners(query)
        if m := re.fullmatch(r"/crm/v4/associations/(\w+)/(\w+)/batch/read", path):
            scopes = (OBJECT_SCOPES[m[1]], OBJECT_SCOPES[m[2]])
            return self._need(*scopes) or self._associations(m[1], m[2], payload)
        return _error(404, "OBJECT_NOT_FOUND", f"no route {method} {path}")

    def _list(self, object_type: str, query: dict) -> tuple[int, dict]:
        limit = min(int(query.get("limit", ["10"])[0]), 100)
        after = int(query.get("after", ["0"])[0])
        archived = query.get("archived", ["false"])[0].lower() == "true"
        wanted = [p for value in query.get("properties", []) for p in value.split(",")]
        records = sorted(
            (
                r
                for r in self.objects[object_type].values()
                if r.archived == archived and r.id >= after
            ),
            key=lambda r: r.id,
        )
        page = records[:limit]
        body: dict = {"results": [r.as_json(wanted) for r in page]}
        if len(records) > limit:
            body["paging"] = {"next": {"after": str(records[limit].id), "link": "?after="}}
        return 200, body

    def _matches(self, record: Record, flt: dict) -> bool:
        name, operator = flt["propertyName"], flt["operator"]
        actual = record.properties.get(name)
        value = flt.get("value")
        if name in DATETIME_PROPERTIES:
            actual, value = _millis(actual), _millis(value)
        elif name == "hs_object_id":
            actual, value = int(actual), int(value) if value is not None else None
        if operator == "HAS_PROPERTY":
            return actual not in (None, "")
        if actual is None:
            return False
        if operator == "EQ":
            return actual == value
        if operator == "NEQ":
            return actual != value
        if operator == "IN":
            return actual in flt.get("values", [])
        compare = {"GT": actual > value, "GTE": actual >= value, "LT": actual < value}
        compare["LTE"] = actual <= value
        return compare[operator]

    def _search(self, object_type: str, payload: dict) -> tuple[int, dict]:
        limit = int(payload.get("limit") or 10)
        after = int(payload.get("after") or 0)
        if limit > 200:
            return _error(400, "VALIDATION_ERROR", "limit must be at most 200")
        if after >= SEARCH_LIMIT:
            return _error(
                400,
                "VALIDATION_ERROR",
                "There was a problem with the request.",
                errors=[{"message": "paging beyond 10000 results is not allowed"}],
            )
        groups = payload.get("filterGroups") or [{"filters": []}]
        found = [
            r
            for r in self.objects[object_type].values()
            if not r.archived
            and any(all(self._matches(r, f) for f in g.get("filters", [])) for g in groups)
        ]
        sorts = payload.get("sorts") or [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
        sort = sorts[0] if isinstance(sorts[0], dict) else {"propertyName": sorts[0]}
        key = sort["propertyName"]
        if key == "hs_object_id":
            found.sort(key=lambda r: r.id)
        else:
            found.sort(key=lambda r: (r.properties.get(key) or "", r.id))
        if sort.get("direction") == "DESCENDING":
            found.reverse()
        page = found[after : after + limit]
        body: dict = {
            "total": len(found),
            "results": [r.as_json(payload.get("properties")) for r in page],
        }
        if after + limit < len(found):
            body["paging"] = {"next": {"after": str(after + limit), "link": ""}}
        return 200, body

    def _properties(self, object_type: str) -> dict:
        return {
            "results": [
                {
                    "name": name,
                    "label": name.replace("_", " ").title(),
                    "type": "string",
                    "fieldType": "text",
                    "description": "",
                    "groupName": f"{object_type}information",
                    "options": [],
                    "hidden": False,
                    "formField": True,
                }
                for name in self.properties[object_type]
            ]
        }

    def _list_owners(self, query: dict) -> tuple[int, dict]:
        archived = query.get("archived", ["false"])[0].lower() == "true"
        limit = int(query.get("limit", ["100"])[0])
        after = int(query.get("after", ["0"])[0])
        owners = [o for o in self.owners if o["archived"] == archived]
        page = owners[after : after + limit]
        body: dict = {"results": page}
        if after + limit < len(owners):
            body["paging"] = {"next": {"after": str(after + limit), "link": ""}}
        return 200, body

    def _associations(self, from_type: str, to_type: str, payload: dict) -> tuple[int, dict]:
        primary_type, plain_type = ASSOCIATION_TYPES[(from_type, to_type)]
        links = self.links[(from_type, to_type)]
        results, errors = [], []
        for item in payload.get("inputs", []):
            targets = links.get(int(item["id"]), {})
            if not targets:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": f"No {to_type} is associated with {from_type} {item['id']}.",
                        "context": {"fromObjectId": [item["id"]]},
                        "links": {},
                        "errors": [],
                    }
                )
                continue
            results.append(
                {
                    "from": {"id": str(item["id"])},
                    "to": [
                        {
                            "toObjectId": str(target),
                            "associationTypes": [
                                {"category": "HUBSPOT_DEFINED", "typeId": plain_type, "label": None}
                            ]
                            + (
                                [
                                    {
                                        "category": "HUBSPOT_DEFINED",
                                        "typeId": primary_type,
                                        "label": "Primary",
                                    }
                                ]
                                if primary and primary_type
                                else []
                            ),
                        }
                        for target, primary in sorted(targets.items())
                    ],
                }
            )
        stamp = iso(self.now)
        body = {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
        if errors:
            body.update(numErrors=len(errors), errors=errors)
            return 207, body
        return 200, body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    portal: Portal

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload, headers = self.server.portal.handle(
            self.command, self.path, self.headers, body
        )
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test): nothing to answer to

    do_GET = do_POST = _serve

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet test output
        pass


class FakeHubSpot:
    """The fake portal behind a real HTTP server; `base_url` is what krpulse.yaml points at."""

    def __init__(self, portal: Portal | None = None):
        self.portal = portal or Portal()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.portal = self.portal
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHubSpot:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running(portal: Portal | None = None) -> Iterator[FakeHubSpot]:
    """A started fake portal that stops when the block ends."""
    fake = FakeHubSpot(portal).start()
    try:
        yield fake
    finally:
        fake.stop()


def standard_portal(portal: Portal | None = None) -> dict[str, str]:
    """A small portal whose KR numbers are worked out by hand in tests/test_hubspot_source.py.

    Returns the HubSpot ids by the names the tests use (C1.., D-won-q4.., F1..).
    """
    portal = portal or Portal()
    portal.add_pipeline(
        "default",
        "Sales Pipeline",
        [
            ("appointmentscheduled", "Appointment", False, 0.2),
            ("contractsent", "Contract sent", False, 0.9),
            ("closedwon", "Closed won", True, 1.0),
            ("closedlost", "Closed lost", True, 0.0),
        ],
    )
    # Stage names that say nothing about the outcome: only the metadata does.
    portal.add_pipeline(
        "renewals",
        "Renewals",
        [
            ("1001", "Signed", True, 1.0),
            ("1002", "Gone", True, 0.0),
            ("1003", "Talking", False, 0.5),
        ],
    )
    portal.add_owner("101", "Anna", "Schmidt", "anna@example.com", ["Sales DACH"])
    portal.add_owner("102", "Ben", "Jones", "ben@example.com", ["Sales UK&I", "Marketing"])
    ids: dict[str, str] = {}

    def company(key: str, name: str, country: str, owner: str, segment: str) -> None:
        ids[key] = portal.add(
            "companies",
            {
                "name": name,
                "industry": "SOFTWARE",
                "country": country,
                "hubspot_owner_id": owner,
                "customer_segment": segment,
            },
        )

    company("C1", "Acme GmbH", "Germany", "101", "SMB")
    company("C2", "Beta AG", "Germany", "101", "Mid-Market")
    company("C3", "Crown Ltd", "United Kingdom", "102", "SMB")
    company("C4", "Delta Ltd", "United Kingdom", "102", "SMB")

    def deal(
        key,
        customer,
        stage,
        close,
        amount,
        currency,
        home,
        *,
        pipeline="default",
        owner="101",
        dealtype="existingbusiness",
    ) -> None:
        ids[key] = portal.add(
            "deals",
            {
                "dealname": key,
                "amount": amount,
                "deal_currency_code": currency,
                "amount_in_home_currency": home,
                "dealstage": stage,
                "pipeline": pipeline,
                "closedate": close,
                "hubspot_owner_id": owner,
                "dealtype": dealtype,
            },
        )
        if customer:
            portal.associate("deals", ids[key], "companies", ids[customer], primary=True)

    # Before the 2026-Q4 cycle: C1 and C3 become existing customers.
    deal(
        "D-before-1",
        "C1",
        "closedwon",
        "2026-06-10T10:00:00Z",
        "8000",
        "EUR",
        "8000",
        dealtype="newbusiness",
    )
    deal(
        "D-before-3",
        "C3",
        "1001",
        "2026-07-01T09:00:00Z",
        "5000",
        "GBP",
        "5800",
        pipeline="renewals",
        owner="102",
        dealtype="renewal",
    )
    # In the cycle.
    deal("D-won-c1", "C1", "closedwon", "2026-10-15T12:00:00Z", "10000", "EUR", "10000")
    deal("D-lost-c1", "C1", "closedlost", "2026-10-20T12:00:00Z", "5000", "", "5000")
    deal(
        "D-won-c3-usd",
        "C3",
        "closedwon",
        "2026-11-02T12:00:00Z",
        "12000",
        "USD",
        "11000",
        owner="102",
    )
    deal(
        "D-won-c2",
        "C2",
        "closedwon",
        "2026-11-05T12:00:00Z",
        "4000",
        "EUR",
        "4000",
        dealtype="newbusiness",
    )
    deal(
        "D-lost-c4-gbp",
        "C4",
        "1002",
        "2026-11-10T12:00:00Z",
        "3000",
        "GBP",
        "3450",
        pipeline="renewals",
        owner="102",
        dealtype="renewal",
    )
    deal("D-open-c1", "C1", "contractsent", "2026-12-15T12:00:00Z", "20000", "EUR", "20000")
    # Records that must be quarantined, not counted.
    deal("D-bad-amount", "C1", "closedwon", "2026-10-16T12:00:00Z", "12k", "EUR", "")
    deal("D-bad-stage", "C1", "retired-stage", "2026-10-16T12:00:00Z", "100", "EUR", "100")

    contacts = {
        "K1": portal.add("contacts", {"email": "k1@acme.example"}),
        "K2": portal.add("contacts", {"email": "k2@crown.example"}),
        "K3": portal.add("contacts", {"email": "k3@nowhere.example"}),
    }
    ids.update(contacts)
    portal.associate("contacts", contacts["K1"], "companies", ids["C1"], primary=True)
    portal.associate("contacts", contacts["K2"], "companies", ids["C4"])
    portal.associate("contacts", contacts["K2"], "companies", ids["C3"], primary=True)

    def feedback(key, contact, survey_type, value, submitted) -> None:
        ids[key] = portal.add(
            "feedback_submissions",
            {
                "hs_survey_type": survey_type,
                "hs_value": value,
                "hs_submission_timestamp": submitted,
                "hs_survey_id": "nps-2026",
                "hs_content": "",
            },
        )
        portal.associate("feedback_submissions", ids[key], "contacts", contacts[contact])

    feedback("F1", "K1", "NPS", "10", "2026-10-05T09:00:00Z")
    feedback("F2", "K2", "NPS", "9", "2026-10-12T09:00:00Z")
    feedback("F3", "K2", "NPS", "3", "2026-11-01T09:00:00Z")
    feedback("F4", "K3", "NPS", "7", "2026-11-03T09:00:00Z")
    feedback("F5", "K1", "CSAT", "5", "2026-11-04T09:00:00Z")
    feedback("F6", "K1", "NPS", "11", "2026-11-06T09:00:00Z")
    feedback("F7", "K1", "NPS", "", "2026-11-07T09:00:00Z")
    # Later changes happen an hour after the seed, beyond the connector's lookback window.
    portal.tick(3600)
    return ids

"""A fake Salesforce org over HTTPS on 127.0.0.1 that speaks the documented REST wire format.

It serves what the krpulse connector and simple-salesforce use: the OAuth 2.0 token endpoint
(JWT bearer and client credentials), the SOAP login of the legacy username/password method,
`/query` and `/queryAll` with `nextRecordsUrl` pages of 2,000 records and `attributes` on every
record, global and object describes, `/limits`, the `Sforce-Limit-Info` header on every REST
answer, and the Bulk API 2.0 query-job lifecycle with `Sforce-Locator` result pages. It answers
with Salesforce's documented error bodies: 401 INVALID_SESSION_ID, 403 REQUEST_LIMIT_EXCEEDED,
400 MALFORMED_QUERY / INVALID_FIELD, 500 and 503.

Tests mutate the in-memory org (`FakeOrg.insert/update/delete`) and inject faults
(`fail_next`, `expire_sessions_after`, `delay_next`). SOQL is parsed for real (a small subset:
SELECT fields FROM object WHERE conditions with AND/OR/NOT, =, !=, <, <=, >, >=, IN, LIMIT), so
a value that escaped its quotes would change the result, as it would on Salesforce.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import itertools
import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt

PAGE_SIZE = 2000
API_VERSION_RE = r"v(\d+\.\d)"

# object -> field -> describe type
BASE_SCHEMA: dict[str, dict[str, str]] = {
    "Opportunity": {
        "Id": "id",
        "AccountId": "reference",
        "Name": "string",
        "OwnerId": "reference",
        "StageName": "picklist",
        "IsClosed": "boolean",
        "IsWon": "boolean",
        "Amount": "currency",
        "CloseDate": "date",
        "CreatedDate": "datetime",
        "Type": "picklist",
        "SystemModstamp": "datetime",
        "IsDeleted": "boolean",
        "RecordTypeId": "reference",
        "Sales_Team__c": "string",
    },
    "Account": {
        "Id": "id",
        "Name": "string",
        "OwnerId": "reference",
        "Industry": "picklist",
        "Segment__c": "picklist",
        "Region__c": "picklist",
        "BillingCountry": "string",
        "BillingAddress": "address",
        "CreatedDate": "datetime",
        "SystemModstamp": "datetime",
        "IsDeleted": "boolean",
    },
    "User": {
        "Id": "id",
        "Name": "string",
        "Email": "email",
        "Department": "string",
        "UserRoleId": "reference",
        "IsActive": "boolean",
        "SystemModstamp": "datetime",
        "Username": "string",
    },
    "UserRole": {"Id": "id", "Name": "string", "SystemModstamp": "datetime"},
    "RecordType": {"Id": "id", "DeveloperName": "string", "SystemModstamp": "datetime"},
    "Organization": {
        "Id": "id",
        "DefaultCurrencyIsoCode": "picklist",
        "SystemModstamp": "datetime",
    },
    "CurrencyType": {
        "Id": "id",
        "IsoCode": "picklist",
        "ConversionRate": "double",
        "IsCorporate": "boolean",
        "IsActive": "boolean",
        "SystemModstamp": "datetime",
    },
    "DatedConversionRate": {
        "Id": "id",
        "IsoCode": "picklist",
        "ConversionRate": "double",
        "StartDate": "date",
        "NextStartDate": "date",
        "SystemModstamp": "datetime",
    },
    "SurveyQuestion": {
        "Id": "id",
        "Name": "string",
        "QuestionType": "picklist",
        "SystemModstamp": "datetime",
    },
    "SurveyInvitation": {"Id": "id", "Name": "string", "SystemModstamp": "datetime"},
    "SurveyResponse": {
        "Id": "id",
        "Status": "picklist",
        "CompletionDateTime": "datetime",
        "SurveyId": "reference",
        "InvitationId": "reference",
        "SystemModstamp": "datetime",
        "IsDeleted": "boolean",
    },
    "SurveySubject": {
        "Id": "id",
        "ParentId": "reference",
        "SubjectId": "reference",
        "SubjectEntityType": "picklist",
        "SystemModstamp": "datetime",
        "IsDeleted": "boolean",
    },
    "SurveyQuestionResponse": {
        "Id": "id",
        "NumberValue": "int",
        "QuestionId": "reference",
        "ResponseId": "reference",
        "InvitationId": "reference",
        "CreatedDate": "datetime",
        "SystemModstamp": "datetime",
        "IsDeleted": "boolean",
    },
}
MULTI_CURRENCY_OBJECTS = ("Opportunity", "Account")
# (object, relationship name) -> object the relationship points to
RELATIONSHIPS = {
    ("Opportunity", "Account"): "Account",
    ("Opportunity", "Owner"): "User",
    ("Opportunity", "RecordType"): "RecordType",
    ("Account", "Owner"): "User",
    ("User", "UserRole"): "UserRole",
    ("SurveyQuestionResponse", "Question"): "SurveyQuestion",
    ("SurveyQuestionResponse", "Response"): "SurveyResponse",
    ("SurveyQuestionResponse", "Invitation"): "SurveyInvitation",
}
ID_PREFIXES = {
    "Opportunity": "006",
    "Account": "001",
    "User": "005",
    "UserRole": "00E",
    "RecordType": "012",
    "Organization": "00D",
    "CurrencyType": "02c",
    "DatedConversionRate": "04w",
    "SurveyQuestion": "0Tt",
    "SurveyInvitation": "0Ki",
    "SurveyResponse": "0Ou",
    "SurveySubject": "0Sd",
    "SurveyQuestionResponse": "0Qr",
}
COMPOUND_TYPES = {"address", "location"}


class SoqlError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@dataclass
class Fault:
    status: int
    path_contains: str
    remaining: int
    delay: float = 0.0


@dataclass
class FakeOrg:
    """The org's data, credentials, limits and injected faults; thread-safe through `lock`."""

    multi_currency: bool = False
    dated_rates: bool = False
    corporate_currency: str = "EUR"
    api_max: int = 15_000
    api_used: int = 0
    username: str = "integration@acme.example"
    # Throwaway credentials the fake accepts; tests hand the same values to krpulse.
    password: str = "pw"  # noqa: S105
    security_token: str = "tok"  # noqa: S105
    consumer_key: str = "fake-consumer-key"
    consumer_secret: str = "fake-consumer-secret"  # noqa: S105
    jwt_public_key: str | None = None
    # None: the fake's own URL, as Salesforce expects the audience of the login URL used
    # (an Experience Cloud site, or login/test.salesforce.com themselves).
    jwt_audience: str | None = None
    # Salesforce Feedback Management (the Survey* objects) enabled and readable.
    feedback_management: bool = True
    clock: dt.datetime | None = None
    schema: dict[str, dict[str, str]] = field(default_factory=dict)
    records: dict[str, dict[str, dict]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    logins: int = 0
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    expire_after: int | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.schema = {obj: dict(fields) for obj, fields in BASE_SCHEMA.items()} | self.schema
        if self.multi_currency:
            for obj in MULTI_CURRENCY_OBJECTS:
                self.schema[obj]["CurrencyIsoCode"] = "picklist"
        for obj in self.schema:
            self.records.setdefault(obj, {})
        self.insert("Organization", DefaultCurrencyIsoCode=self.corporate_currency)
        if self.multi_currency:
            self.insert(
                "CurrencyType",
                IsoCode=self.corporate_currency,
                ConversionRate=1.0,
                IsCorporate=True,
                IsActive=True,
            )

    # -- data ---------------------------------------------------------------------------------

    def visible_objects(self) -> list[str]:
        hidden = set()
        if not self.multi_currency:
            hidden |= {"CurrencyType", "DatedConversionRate"}
        elif not self.dated_rates:
            hidden.add("DatedConversionRate")
        if not self.feedback_management:
            hidden |= {o for o in self.schema if o.startswith("Survey")}
        return [o for o in self.schema if o not in hidden]

    def define(self, object_name: str, fields: dict[str, str]) -> None:
        """Add a custom object (e.g. NPS_Response__c) with its fields and their types."""
        with self.lock:
            self.schema[object_name] = {
                "Id": "id",
                "SystemModstamp": "datetime",
                "IsDeleted": "boolean",
                **fields,
            }
            self.records.setdefault(object_name, {})

    def now(self) -> dt.datetime:
        stamp = self.clock or dt.datetime.now(dt.UTC)
        return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)

    def new_id(self, object_name: str) -> str:
        prefix = ID_PREFIXES.get(object_name, "a0X")
        return f"{prefix}{next(self._ids):012d}AAA"

    def insert(self, object_name: str, **values: Any) -> str:
        with self.lock:
            types = self.schema[object_name]
            unknown = set(values) - set(types)
            assert not unknown, f"{object_name} has no fields {unknown}"
            record = dict.fromkeys(types)
            if "IsDeleted" in types:
                record["IsDeleted"] = False
            stamp = values.pop("SystemModstamp", None) or self.now()
            if "CreatedDate" in types:
                record["CreatedDate"] = stamp
            record.update(values)
            record["Id"] = values.get("Id") or self.new_id(object_name)
            record["SystemModstamp"] = stamp
            self.records[object_name][record["Id"]] = record
            return record["Id"]

    def update(self, object_name: str, record_id: str, **values: Any) -> None:
        with self.lock:
            record = self.records[object_name][record_id]
            stamp = values.pop("SystemModstamp", None) or self.now()
            record.update(values)
            record["SystemModstamp"] = stamp

    def delete(self, object_name: str, record_id: str, *, at: dt.datetime | None = None) -> None:
        """Move a record to the recycle bin: query hides it, queryAll shows IsDeleted = true."""
        self.update(object_name, record_id, IsDeleted=True, SystemModstamp=at)

    def undelete(self, object_name: str, record_id: str) -> None:
        """Restore a record from the recycle bin: live again, with a new SystemModstamp."""
        self.update(object_name, record_id, IsDeleted=False)

    def purge(self, object_name: str, record_id: str) -> None:
        """Hard delete (or the recycle bin emptied, or 15 days passed): not even queryAll
        returns the record any more."""
        with self.lock:
            self.records[object_name].pop(record_id)

    def merge(self, object_name: str, master_id: str, loser_id: str) -> None:
        """Merge `loser_id` into `master_id` as Salesforce does: the loser goes to the recycle
        bin, and the records that pointed at it are re-parented to the master (each edited)."""
        with self.lock:
            self.delete(object_name, loser_id)
            for (child, relationship), target in RELATIONSHIPS.items():
                if target != object_name:
                    continue
                reference = f"{relationship}Id"
                for record in self.records[child].values():
                    if record.get(reference) == loser_id:
                        self.update(child, record["Id"], **{reference: master_id})

    def set_rates(self, rates: dict[str, float]) -> None:
        """CurrencyType rates against the corporate currency (units per corporate unit)."""
        with self.lock:
            for iso, rate in rates.items():
                existing = [r for r in self.records["CurrencyType"].values() if r["IsoCode"] == iso]
                if existing:
                    self.update("CurrencyType", existing[0]["Id"], ConversionRate=rate)
                else:
                    self.insert(
                        "CurrencyType",
                        IsoCode=iso,
                        ConversionRate=rate,
                        IsCorporate=False,
                        IsActive=True,
                    )

    def add_dated_rate(self, iso: str, rate: float, start: dt.date) -> None:
        """A DatedConversionRate period from `start`; the previous period of `iso` ends there."""
        with self.lock:
            periods = [
                r for r in self.records["DatedConversionRate"].values() if r["IsoCode"] == iso
            ]
            following = [p["StartDate"] for p in periods if p["StartDate"] > start]
            for period in periods:
                if period["StartDate"] < start and period["NextStartDate"] > start:
                    self.update("DatedConversionRate", period["Id"], NextStartDate=start)
            self.insert(
                "DatedConversionRate",
                IsoCode=iso,
                ConversionRate=rate,
                StartDate=start,
                NextStartDate=min(following) if following else dt.date(9999, 12, 31),
            )

    # -- faults ---------------------------------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, path_contains: str = "") -> None:
        """Answer the next matching requests with 500 or 503; 403 exhausts the API limit."""
        with self.lock:
            self.faults.append(Fault(status, path_contains, times))

    def delay_next(self, seconds: float, *, times: int = 1, path_contains: str = "") -> None:
        with self.lock:
            self.faults.append(Fault(0, path_contains, times, delay=seconds))

    def expire_sessions(self) -> None:
        with self.lock:
            self.tokens.clear()

    def expire_sessions_after(self, requests: int) -> None:
        """Invalidate every session after `requests` more REST calls (e.g. mid-pagination)."""
        with self.lock:
            self.expire_after = requests

    def data_calls(self, contains: str = "") -> int:
        return sum(
            1
            for _, path, query in self.requests
            if "/services/data/" in path and contains in path + "?" + query
        )

    def issue_token(self) -> str:
        token = "00DFAKE!" + secrets.token_urlsafe(24)
        self.tokens.add(token)
        self.logins += 1
        return token


# -- SOQL -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>>=|<=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token at: {text[pos : pos + 30]!r}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), value[1:-1])
        elif kind == "datetime":
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif kind == "date":
            value = dt.date.fromisoformat(value)
        elif kind == "number":
            value = float(value)
        out.append((kind, value))
    return out


@dataclass
class Query:
    object_name: str
    fields: list[str]
    count_only: bool
    where: Any
    limit: int | None


def parse_soql(text: str, schema: dict[str, dict[str, str]]) -> Query:
    tokens = _tokens(text)
    pos = 0

    def peek(offset: int = 0) -> tuple[str, Any] | None:
        return tokens[pos + offset] if pos + offset < len(tokens) else None

    def keyword(word: str) -> bool:
        token = peek()
        return token is not None and token[0] == "name" and str(token[1]).upper() == word

    def expect(kind: str, value: Any = None) -> Any:
        nonlocal pos
        token = peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise SoqlError("MALFORMED_QUERY", f"expected {value or kind} near token {pos}")
        pos += 1
        return token[1]

    if not keyword("SELECT"):
        raise SoqlError("MALFORMED_QUERY", "query must start with SELECT")
    pos += 1
    fields, count_only = [], False
    if keyword("COUNT") and peek(1) == ("punct", "("):
        pos += 1
        expect("punct", "(")
        expect("punct", ")")
        count_only = True
    else:
        while True:
            fields.append(expect("name"))
            if peek() == ("punct", ","):
                pos += 1
                continue
            break
    if not keyword("FROM"):
        raise SoqlError("MALFORMED_QUERY", "expected FROM")
    pos += 1
    object_name = expect("name")
    if object_name not in schema:
        raise SoqlError("INVALID_TYPE", f"sObject type '{object_name}' is not supported.")

    def comparison() -> Any:
        nonlocal pos
        if peek() == ("punct", "("):
            pos += 1
            inner = disjunction()
            expect("punct", ")")
            return inner
        if keyword("NOT"):
            pos += 1
            return ("not", comparison())
        name = expect("name")
        if keyword("IN") or (keyword("NOT") and peek(1) and str(peek(1)[1]).upper() == "IN"):
            negate = keyword("NOT")
            pos += 2 if negate else 1
            expect("punct", "(")
            values = [literal()]
            while peek() == ("punct", ","):
                pos += 1
                values.append(literal())
            expect("punct", ")")
            return ("not_in" if negate else "in", name, values)
        op = expect("op")
        return (op, name, literal())

    def literal() -> Any:
        nonlocal pos
        token = peek()
        if token is None:
            raise SoqlError("MALFORMED_QUERY", "expected a value")
        pos += 1
        kind, value = token
        if kind == "name":
            lowered = str(value).lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            if lowered == "null":
                return None
            raise SoqlError("MALFORMED_QUERY", f"unexpected name {value} where a value belongs")
        if kind in ("string", "datetime", "date", "number"):
            return value
        raise SoqlError("MALFORMED_QUERY", f"unexpected {value!r} where a value belongs")

    def conjunction() -> Any:
        nonlocal pos
        parts = [comparison()]
        while keyword("AND"):
            pos += 1
            parts.append(comparison())
        return ("and", parts)

    def disjunction() -> Any:
        nonlocal pos
        parts = [conjunction()]
        while keyword("OR"):
            pos += 1
            parts.append(conjunction())
        return ("or", parts)

    where = None
    if keyword("WHERE"):
        pos += 1
        where = disjunction()
    if keyword("ORDER"):  # accepted and ignored: records come back in insertion order
        while peek() is not None and not keyword("LIMIT"):
            pos += 1
    limit = None
    if keyword("LIMIT"):
        pos += 1
        limit = int(expect("number"))
    if pos != len(tokens):
        raise SoqlError("MALFORMED_QUERY", f"unexpected token {tokens[pos][1]!r}")
    return Query(object_name, fields, count_only, where, limit)


class OrgView:
    """Field lookups across relationships, for evaluation and for serialisation."""

    def __init__(self, org: FakeOrg):
        self.org = org

    def target(self, object_name: str, relationship: str) -> tuple[str, str]:
        """(reference field, target object) of a relationship name like `Owner` or `X__r`."""
        if relationship.endswith("__r"):
            ref = relationship[:-3] + "__c"
            target = self.org.schema[object_name].get(ref)
            return ref, RELATIONSHIPS.get((object_name, relationship), target or "")
        ref = relationship + "Id"
        target = RELATIONSHIPS.get((object_name, relationship))
        if ref not in self.org.schema[object_name] or target is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"Didn't understand relationship '{relationship}' in field path. If you are "
                "attempting to use a custom relationship, be sure to append the '__r'",
            )
        return ref, target

    def check_field(self, object_name: str, path: str) -> str:
        """The describe type of `path`; INVALID_FIELD when it does not exist."""
        parts = path.split(".")
        for relationship in parts[:-1]:
            _, object_name = self.target(object_name, relationship)
        types = self.org.schema[object_name]
        if parts[-1] not in types:
            raise SoqlError(
                "INVALID_FIELD", f"No such column '{parts[-1]}' on entity '{object_name}'."
            )
        return types[parts[-1]]

    def value(self, object_name: str, record: dict | None, path: str) -> Any:
        parts = path.split(".")
        for relationship in parts[:-1]:
            if record is None:
                return None
            ref, object_name = self.target(object_name, relationship)
            record = self.org.records.get(object_name, {}).get(record.get(ref))
        return None if record is None else record.get(parts[-1])

    def matches(self, object_name: str, record: dict, condition: Any) -> bool:
        if condition is None:
            return True
        kind = condition[0]
        if kind == "and":
            return all(self.matches(object_name, record, c) for c in condition[1])
        if kind == "or":
            return any(self.matches(object_name, record, c) for c in condition[1])
        if kind == "not":
            return not self.matches(object_name, record, condition[1])
        op, path, expected = condition
        self.check_field(object_name, path)
        actual = self.value(object_name, record, path)
        if op in ("in", "not_in"):
            found = any(_equal(actual, e) for e in expected)
            return found if op == "in" else not found
        if op == "=":
            return _equal(actual, expected)
        if op in ("!=", "<>"):
            return not _equal(actual, expected)
        if actual is None or expected is None:
            return False
        if (
            isinstance(actual, dt.datetime)
            and isinstance(expected, dt.date)
            and not isinstance(expected, dt.datetime)
        ):
            expected = dt.datetime.combine(expected, dt.time(), dt.UTC)
        return {
            "<": actual < expected,
            "<=": actual <= expected,
            ">": actual > expected,
            ">=": actual >= expected,
        }[op]


def _equal(actual: Any, expected: Any) -> bool:
    if (
        isinstance(actual, int | float)
        and isinstance(expected, int | float)
        and not isinstance(actual, bool)
    ):
        return float(actual) == float(expected)
    return actual == expected


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{value.microsecond // 1000:03d}+0000"
        )
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{value.microsecond // 1000:03d}Z"
        )
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# -- HTTP -----------------------------------------------------------------------------------------


@dataclass
class _Cursor:
    object_name: str
    fields: list[str]
    rows: list[dict]


@dataclass
class _BulkJob:
    id: str
    operation: str
    object_name: str
    fields: list[str]
    rows: list[dict]
    polls: int = 0


class FakeSalesforce(ThreadingHTTPServer):
    """The HTTPS server; `base_url` is both login URL and instance URL."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, org: FakeOrg, tls: tuple[Path, Path], *, max_lifetime: float = 300):
        super().__init__(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.org = org
        self.view = OrgView(org)
        self.cursors: dict[str, _Cursor] = {}
        self.jobs: dict[str, _BulkJob] = {}
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        # Stops by itself even if a test forgets to: no server outlives its test run.
        self._watchdog = threading.Timer(max_lifetime, self.stop)
        self._watchdog.daemon = True

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def start(self) -> FakeSalesforce:
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        self._watchdog.cancel()
        self.shutdown()
        self.server_close()

    def __enter__(self) -> FakeSalesforce:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # a client that timed out and hung up is part of the tests, not an error


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: FakeSalesforce

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    # -- plumbing -------------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: Any,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = (
            body
            if isinstance(body, bytes)
            else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        org = self.server.org
        if self.path.startswith("/services/data/"):
            self.send_header("Sforce-Limit-Info", f"api-usage={org.api_used}/{org.api_max}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, [{"message": message, "errorCode": code}])

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        org = self.server.org
        url = urlparse(self.path)
        body = self._body()
        delay = 0.0
        with org.lock:
            org.requests.append((method, url.path, url.query))
            for fault in org.faults:
                if fault.remaining > 0 and fault.path_contains in url.path + "?" + url.query:
                    fault.remaining -= 1
                    if fault.delay:
                        delay = fault.delay
                        break
                    if fault.status == 403:
                        # The org runs out of API requests now: this call and all after it are
                        # refused until the test raises api_max again.
                        org.api_max = org.api_used
                        break
                    if fault.status == 503:
                        return self._send(
                            503,
                            [
                                {
                                    "message": "Server temporarily unavailable.",
                                    "errorCode": "SERVER_UNAVAILABLE",
                                }
                            ],
                            headers={"Retry-After": "0"},
                        )
                    return self._error(
                        fault.status,
                        "UNKNOWN_EXCEPTION",
                        "An unexpected error occurred. Please include this ErrorId if you "
                        "contact support: 1234567890-12345 (-1234567890)",
                    )
        if delay:
            time.sleep(delay)  # outlasts the client's timeout: it gives up and retries
        with org.lock:
            try:
                if url.path == "/services/oauth2/token" and method == "POST":
                    return self._token(body)
                if url.path.startswith("/services/Soap/u/") and method == "POST":
                    return self._soap_login(body)
                if url.path.startswith("/services/data/"):
                    return self._data(method, url.path, parse_qs(url.query), body)
                return self._error(404, "NOT_FOUND", "The requested resource does not exist")
            except SoqlError as exc:
                return self._error(400, exc.code, str(exc))

    # -- logins ---------------------------------------------------------------------------------

    def _token_answer(self) -> None:
        org = self.server.org
        self._send(
            200,
            {
                "access_token": org.issue_token(),
                "instance_url": self.server.base_url,
                "id": f"{self.server.base_url}/id/00DFAKE/005FAKE",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "signature": "fake",
            },
        )

    def _token(self, body: bytes) -> None:
        org = self.server.org
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                claims = jwt.decode(
                    form.get("assertion", ""),
                    org.jwt_public_key,
                    algorithms=["RS256"],
                    audience=org.jwt_audience or self.server.base_url,
                )
            except jwt.PyJWTError as exc:
                return self._send(400, {"error": "invalid_grant", "error_description": str(exc)})
            if claims.get("iss") != org.consumer_key:
                return self._send(
                    400,
                    {
                        "error": "invalid_client_id",
                        "error_description": "client identifier invalid",
                    },
                )
            if claims.get("sub") != org.username:
                return self._send(
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": "user hasn't approved this consumer",
                    },
                )
            return self._token_answer()
        if grant == "client_credentials":
            expected = base64.b64encode(
                f"{org.consumer_key}:{org.consumer_secret}".encode()
            ).decode()
            if self.headers.get("Authorization") != f"Basic {expected}":
                return self._send(
                    400,
                    {"error": "invalid_client", "error_description": "invalid client credentials"},
                )
            return self._token_answer()
        return self._send(
            400,
            {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
        )

    def _soap_login(self, body: bytes) -> None:
        org = self.server.org
        text = body.decode()
        user = re.search(r"<(?:urn|n1):username>(.*?)</", text)
        password = re.search(r"<(?:urn|n1):password>(.*?)</", text)
        if not (
            user
            and password
            and user.group(1) == org.username
            and password.group(1) in (org.password, org.password + org.security_token)
        ):
            fault = (
                '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
                'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                'xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>'
                "<faultcode>INVALID_LOGIN</faultcode><detail><sf:LoginFault>"
                "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid "
                "username, password, security token; or user locked out.</sf:exceptionMessage>"
                "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
            )
            return self._send(500, fault, content_type="text/xml")
        token = org.issue_token()
        answer = (
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
            f"<serverUrl>{self.server.base_url}/services/Soap/u/62.0/00DFAKE</serverUrl>"
            f"<sessionId>{token}</sessionId></result></loginResponse></soapenv:Body>"
            "</soapenv:Envelope>"
        )
        return self._send(200, answer, content_type="text/xml")

    # -- REST -----------------------------------------------------------------------------------

    def _data(self, method: str, path: str, params: dict, body: bytes) -> None:
        org = self.server.org
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if org.expire_after is not None:
            if org.expire_after <= 0:
                org.tokens.clear()
                org.expire_after = None
            else:
                org.expire_after -= 1
        if token not in org.tokens:
            return self._error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if org.api_used >= org.api_max:
            return self._error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        org.api_used += 1
        match = re.match(rf"^/services/data/{API_VERSION_RE}/(.*?)/?$", path)
        if not match:
            return self._error(404, "NOT_FOUND", "The requested resource does not exist")
        version, rest = match.groups()
        if rest == "limits":
            return self._send(
                200,
                {"DailyApiRequests": {"Max": org.api_max, "Remaining": org.api_max - org.api_used}},
            )
        if rest == "sobjects":
            return self._send(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [
                        {"name": o, "label": o, "queryable": True, "custom": o.endswith("__c")}
                        for o in org.visible_objects()
                    ],
                },
            )
        describe = re.match(r"^sobjects/([A-Za-z0-9_]+)/describe$", rest)
        if describe:
            name = describe.group(1)
            if name not in org.visible_objects():
                return self._error(404, "NOT_FOUND", "The requested resource does not exist")
            fields = [
                {"name": f, "type": t, "nillable": f != "Id", "label": f}
                for f, t in org.schema[name].items()
            ]
            return self._send(200, {"name": name, "queryable": True, "fields": fields})
        if rest in ("query", "queryAll"):
            return self._query(
                version, params.get("q", [""])[0], include_deleted=rest == "queryAll"
            )
        more = re.match(r"^(?:query|queryAll)/(01g[A-Za-z0-9]+)-(\d+)$", rest)
        if more:
            return self._page(version, more.group(1), int(more.group(2)))
        if rest == "jobs/query" and method == "POST":
            return self._create_job(version, json.loads(body or b"{}"))
        job = re.match(r"^jobs/query/(750[A-Za-z0-9]+)(/results)?$", rest)
        if job:
            return self._job(job.group(1), bool(job.group(2)), params, method)
        return self._error(404, "NOT_FOUND", "The requested resource does not exist")

    def _select(self, soql: str, *, include_deleted: bool) -> tuple[Query, list[dict]]:
        org, view = self.server.org, self.server.view
        query = parse_soql(soql, {o: org.schema[o] for o in org.visible_objects()})
        for path in query.fields:
            view.check_field(query.object_name, path)
        rows = [
            r
            for r in org.records[query.object_name].values()
            if (include_deleted or not r.get("IsDeleted"))
            and view.matches(query.object_name, r, query.where)
        ]
        if query.limit is not None:
            rows = rows[: query.limit]
        return query, rows

    def _record_json(self, object_name: str, record: dict, fields: list[str], version: str) -> dict:
        view = self.server.view
        out: dict = {
            "attributes": {
                "type": object_name,
                "url": f"/services/data/v{version}/sobjects/{object_name}/{record['Id']}",
            }
        }
        for path in fields:
            parts = path.split(".")
            target, obj, current = out, object_name, record
            for relationship in parts[:-1]:
                ref, obj = view.target(obj, relationship)
                current = (
                    self.server.org.records.get(obj, {}).get(current.get(ref)) if current else None
                )
                if current is None:
                    target[relationship] = None
                    break
                target = target.setdefault(
                    relationship,
                    {
                        "attributes": {
                            "type": obj,
                            "url": f"/services/data/v{version}/sobjects/{obj}/{current['Id']}",
                        }
                    },
                )
            else:
                target[parts[-1]] = _json_value(current.get(parts[-1]))
        return out

    def _query(self, version: str, soql: str, *, include_deleted: bool) -> None:
        query, rows = self._select(soql, include_deleted=include_deleted)
        if query.count_only:
            return self._send(200, {"totalSize": len(rows), "done": True, "records": []})
        cursor_id = f"01gFAKE{secrets.token_hex(6)}"
        self.server.cursors[cursor_id] = _Cursor(query.object_name, query.fields, rows)
        return self._page(version, cursor_id, 0)

    def _page(self, version: str, cursor_id: str, offset: int) -> None:
        cursor = self.server.cursors.get(cursor_id)
        if cursor is None:
            return self._error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        page = cursor.rows[offset : offset + PAGE_SIZE]
        done = offset + PAGE_SIZE >= len(cursor.rows)
        answer = {
            "totalSize": len(cursor.rows),
            "done": done,
            "records": [
                self._record_json(cursor.object_name, r, cursor.fields, version) for r in page
            ],
        }
        if not done:
            answer["nextRecordsUrl"] = (
                f"/services/data/v{version}/query/{cursor_id}-{offset + PAGE_SIZE}"
            )
        return self._send(200, answer)

    # -- Bulk API 2.0 ---------------------------------------------------------------------------

    def _create_job(self, version: str, spec: dict) -> None:
        operation = spec.get("operation")
        if operation not in ("query", "queryAll"):
            return self._error(400, "INVALIDJOB", f"unsupported operation {operation}")
        query, rows = self._select(spec.get("query", ""), include_deleted=operation == "queryAll")
        compound = [
            f
            for f in query.fields
            if self.server.view.check_field(query.object_name, f) in COMPOUND_TYPES
        ]
        if compound:
            return self._error(
                400,
                "API_ERROR",
                f"Selecting compound data not supported in Bulk Query: {', '.join(compound)}",
            )
        job_id = f"750FAKE{secrets.token_hex(6)}"
        self.server.jobs[job_id] = _BulkJob(
            job_id, operation, query.object_name, query.fields, rows
        )
        return self._send(200, self._job_info(self.server.jobs[job_id], "UploadComplete", version))

    @staticmethod
    def _job_info(job: _BulkJob, state: str, version: str = "62.0") -> dict:
        return {
            "id": job.id,
            "operation": job.operation,
            "object": job.object_name,
            "createdById": "005FAKE",
            "createdDate": "2026-01-01T00:00:00.000+0000",
            "systemModstamp": "2026-01-01T00:00:00.000+0000",
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(version),
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
            "numberRecordsProcessed": len(job.rows) if state == "JobComplete" else 0,
        }

    def _job(self, job_id: str, results: bool, params: dict, method: str) -> None:
        job = self.server.jobs.get(job_id)
        if job is None:
            return self._error(404, "NOT_FOUND", "The requested resource does not exist")
        if not results:
            if method == "DELETE":
                del self.server.jobs[job_id]
                return self._send(204, b"")
            job.polls += 1
            # The first poll sees the job still running, as a real org would.
            return self._send(
                200, self._job_info(job, "InProgress" if job.polls == 1 else "JobComplete")
            )
        if job.polls < 2:
            return self._error(400, "INVALIDJOB", "job is not complete yet")
        max_records = int(params.get("maxRecords", [50_000])[0])
        offset = (
            int(base64.b64decode(params["locator"][0]).decode()) if params.get("locator") else 0
        )
        page = job.rows[offset : offset + max_records]
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(job.fields)
        view = self.server.view
        for row in page:
            writer.writerow([_csv_value(view.value(job.object_name, row, f)) for f in job.fields])
        following = offset + max_records
        locator = (
            base64.b64encode(str(following).encode()).decode()
            if following < len(job.rows)
            else "null"
        )
        return self._send(
            200,
            buffer.getvalue(),
            content_type="text/csv",
            headers={"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(len(page))},
        )


# -- TLS and keys for tests -------------------------------------------------------------------------


def make_tls_files(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key); point REQUESTS_CA_BUNDLE at it."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-salesforce.local")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "fake-salesforce.crt", folder / "fake-salesforce.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def make_jwt_keys() -> tuple[str, str]:
    """(private PEM, public PEM): a throwaway RSA key pair for the JWT bearer flow."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public

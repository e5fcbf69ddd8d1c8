"""What an operator reads when krpulse fails: one sentence per fault, never a traceback.

The CLI (and anything else that reports a failure to a person) turns the errors below into one
message that names the database (password hidden), what went wrong and what to do.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from okr_store.db import SQLITE_BUSY_TIMEOUT_SECONDS, DatabaseVanishedError

# (words in the driver's message, what it means and what to do). First match wins.
_DATABASE_FAULTS = (
    (
        ("database is locked", "database table is locked"),
        "is locked by another process (a run, a sync or a migration) for longer than {timeout:g} s: "
        "try again when it has finished",
    ),
    (
        (
            "readonly database",
            "read-only transaction",
            "read only transaction",
            "recovery is in progress",
        ),
        "is read-only: krpulse writes to it. Check the file's and its folder's permissions, or that "
        "database_url points at the primary, not a replica",
    ),
    (
        ("unable to open database file",),
        "cannot be opened: check that its folder exists and is writable",
    ),
    (
        ("password authentication failed", "authentication failed", "no pg_hba.conf entry"),
        "rejected the credentials: check the user and password in database_url (or "
        "KRPULSE_DATABASE_URL)",
    ),
    (
        ("does not exist",),
        "does not exist on the server: create it, or fix the database name in database_url",
    ),
    (
        ("no such table", "undefinedtable", "relation "),
        "has no krpulse tables (was it deleted or replaced?): run `krpulse db upgrade`",
    ),
    (
        (
            "connection refused",
            "could not connect",
            "timeout expired",
            "connection timed out",
            "name or service not known",
            "could not translate host name",
            "server closed the connection",
            "terminating connection",
            "connection is closed",
            "no route to host",
        ),
        "cannot be reached: is the server running, and is database_url (or KRPULSE_DATABASE_URL) "
        "right?",
    ),
)


def shown_url(url: str | None) -> str:
    """The database URL with its password hidden."""
    if not url:
        return "the database"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that does not parse is shown as "the database"
        return "the database"


def explain_database_error(exc: sa.exc.DBAPIError, url: str | None) -> str:
    """One message for a database failure: which database, what, and what to do."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    lowered = " ".join(detail).lower()
    where = f"The database {shown_url(url)}"
    for words, meaning in _DATABASE_FAULTS:
        if any(w in lowered for w in words):
            return f"{where} {meaning.format(timeout=SQLITE_BUSY_TIMEOUT_SECONDS)} ({first})"
    return f"{where} failed: {first}"


def explain(exc: BaseException, url: str | None) -> str | None:
    """The operator's message for `exc`, or None when it is not a known fault."""
    if isinstance(exc, DatabaseVanishedError):
        text = str(exc)
    elif isinstance(exc, sa.exc.DBAPIError):
        text = explain_database_error(exc, url)
    else:
        return None
    notes = getattr(exc, "__notes__", None) or []
    return " ".join([text, *notes])

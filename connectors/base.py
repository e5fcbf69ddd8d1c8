"""What every source is: a name, the canonical objects it produces, and a sync into a writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from core.sync import StagingWriter, SyncReport


class SourceError(RuntimeError):
    """A source cannot be read at all (missing folder, bad credentials, unreachable API)."""


class SourceAuthError(SourceError):
    """The CRM rejected the credentials (HTTP 401, a refused login): retrying the same secrets
    cannot help, so orchestration should not retry; the message says which secret to fix."""


class SourceLimitReached(SourceError):
    """The source's API budget is spent: the sync stopped cleanly and left its cursors unchanged."""


@runtime_checkable
class Source(Protocol):
    name: str

    @property
    def objects(self) -> tuple[str, ...]:
        """Canonical tables this source produces, in the order it syncs them."""
        ...

    def sync(self, writer: StagingWriter, *, home_currency: str) -> list[SyncReport]:
        """Extract what changed and hand it to `writer`; one report per object; a cursor moves
        only when its batch commits."""
        ...


@dataclass
class ObjectPlan:
    """What one sync will read for one canonical table (`krpulse doctor`)."""

    table: str
    read_from: str  # the CRM object (or file) and how
    fields: list[str]
    filters: str = ""


@dataclass
class SourceCheck:
    """What `krpulse doctor` found out about one source before its first sync: the facts read
    from the CRM's metadata, what each table will be read from, and what is missing."""

    source: str
    kind: str
    facts: dict[str, str] = field(default_factory=dict)
    plans: list[ObjectPlan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a sync would fail on each

    @property
    def ok(self) -> bool:
        return not self.problems

"""What every source is: a name, the canonical objects it produces, and a sync into a writer."""

from __future__ import annotations

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

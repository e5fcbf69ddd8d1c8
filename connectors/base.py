"""What every source is: a name, the canonical objects it produces, and a sync into staging."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import sqlalchemy as sa

from connectors.staging import SyncReport


class SourceError(RuntimeError):
    """A source cannot be read at all (missing folder, bad credentials, unreachable API)."""


class SourceLimitReached(SourceError):
    """The source's API budget is spent: the sync stopped cleanly and left its cursors unchanged."""


@runtime_checkable
class Source(Protocol):
    name: str

    @property
    def objects(self) -> tuple[str, ...]:
        """Canonical tables this source produces, in the order it syncs them."""
        ...

    def sync(self, engine: sa.Engine, *, home_currency: str) -> list[SyncReport]:
        """Merge what changed into staging; one report per object; cursors move only on commit."""
        ...

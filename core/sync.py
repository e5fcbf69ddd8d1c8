"""What a source hands over when it syncs: the staging writer it is given, and its reports.

Sources only extract (connectors/); where their rows go is the writer's business
(okr_store.staging implements it on the database), as dlt keeps sources apart from destinations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Protocol

import pandas as pd


@dataclass(frozen=True)
class SyncReport:
    """What one sync of one (source, object) did; becomes Dagster metadata and CLI output."""

    source: str
    object: str
    fetched: int
    changed: int
    deleted: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    cursor: str | None
    api_calls: int = 0
    # Source-specific facts worth recording (e.g. Salesforce API usage); never secrets.
    details: dict = field(default_factory=dict)
    # Quarantined records that are updates of a good staged row: that row stays as it was.
    shadowed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class StagingBatch(Protocol):
    """One transaction of a source's staging writes: all of it is committed, or none of it.

    Reads inside a batch see its own writes (deals are converted with the rates merged just
    before them). Every method acts on the rows of the writer's source only (fx_rates too: two
    orgs may book different rates for the same day); `StagingWriter.fx_rates` reads other
    sources' rates for a source that has none of its own.
    """

    def staged(self, table: str, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The canonical rows staged for `table` (deleted ones included, flagged)."""
        ...

    def merge_snapshot(
        self, table: str, snapshot: pd.DataFrame, *, quarantined: pd.DataFrame
    ) -> SyncReport:
        """A full extraction: upsert it; staged rows it no longer holds are marked deleted."""
        ...

    def merge_changes(
        self,
        table: str,
        changed: pd.DataFrame,
        *,
        quarantined: pd.DataFrame,
        cursor: dt.datetime | None,
        deleted_ids: Sequence[str] = (),
        fetched: int | None = None,
        api_calls: int = 0,
        details: dict | None = None,
    ) -> SyncReport:
        """An incremental extraction: upsert `changed`, mark `deleted_ids` deleted, move the
        cursor in the same transaction."""
        ...

    def reassign_teams(self, table: str, owner_teams: pd.DataFrame) -> None:
        """Give the staged rows of `table` owned by each `owner_id` that owner's new `team`."""
        ...

    def drop_fx_rates(self, periods: pd.DataFrame) -> None:
        """Remove this source's staged rates at these (`currency`, `valid_from`) periods."""
        ...

    def set_state(self, table: str, state: dict) -> None:
        """Remember `state` (JSON-able) for `table` next to its cursor, in this transaction."""
        ...


class StagingWriter(Protocol):
    """Where one source's extracted records go; handed to `Source.sync`."""

    source: str

    def cursor(self, table: str) -> dt.datetime | None:
        """The newest last-modified time merged for `table` so far, or None before the first."""
        ...

    def staged(self, table: str, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Like `StagingBatch.staged`, outside any batch (what is committed)."""
        ...

    def state(self, table: str) -> dict:
        """What the source remembered for `table` with `StagingBatch.set_state` ({} before)."""
        ...

    def fx_rates(self, sources: Sequence[str] | None = None) -> pd.DataFrame:
        """FX rates staged by `sources` (every source when None), with their `source` column;
        for a source whose CRM has no rates of its own (HubSpot converting with a files
        source's rates)."""
        ...

    def batch(self) -> AbstractContextManager[StagingBatch]:
        """A transaction to merge in; committed when the block ends, rolled back on error."""
        ...

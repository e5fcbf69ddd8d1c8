"""The `files` source: a folder of CSV or Parquet files named after the canonical tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from connectors.base import SourceError
from connectors.money import convert_deals
from connectors.staging import SyncReport, merge_snapshot, read_staged
from core.canonical import (
    CUSTOMERS,
    DEALS,
    FX_RATES,
    NPS_RESPONSES,
    OWNERS,
    SchemaError,
    conform,
)

REQUIRED_FILES = (DEALS, CUSTOMERS, NPS_RESPONSES)
OPTIONAL_FILES = (OWNERS, FX_RATES)
# fx rates first: deals need them to compute home amounts.
SYNC_ORDER = (FX_RATES, OWNERS, CUSTOMERS, DEALS, NPS_RESPONSES)


@dataclass(frozen=True)
class FilesSource:
    """A folder holding `deals.csv` (or `.parquet`), `customers`, `nps_responses`, ... files.

    Each sync reads the files as a full snapshot: rows that disappeared from a file since the
    last sync are marked deleted in staging rather than left behind as ghosts.
    """

    name: str
    path: Path
    objects: tuple[str, ...] = SYNC_ORDER

    def file_for(self, table: str) -> Path | None:
        for suffix in (".parquet", ".csv"):
            candidate = self.path / f"{table}{suffix}"
            if candidate.exists():
                return candidate
        return None

    def read_raw(self, table: str) -> pd.DataFrame | None:
        file = self.file_for(table)
        if file is None:
            if table in REQUIRED_FILES:
                raise SourceError(
                    f"source '{self.name}': {self.path / (table + '.csv')} not found "
                    f"(a files source needs {', '.join(t + '.csv' for t in REQUIRED_FILES)}, "
                    "or .parquet)"
                )
            return None
        try:
            if file.suffix == ".parquet":
                return pd.read_parquet(file)
            # Everything as text: conform() parses each column deliberately and quarantines
            # what does not parse, instead of pandas guessing types row by row.
            return pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""])
        except (OSError, ValueError) as exc:
            raise SourceError(f"source '{self.name}': cannot read {file}: {exc}") from exc

    def sync(self, engine: sa.Engine, *, home_currency: str) -> list[SyncReport]:
        """Read every file and merge it into staging in one transaction; return one report each."""
        if not self.path.is_dir():
            raise SourceError(f"source '{self.name}': folder {self.path} does not exist")
        reports = []
        with engine.begin() as conn:
            for table in SYNC_ORDER:
                raw = self.read_raw(table)
                if raw is None:
                    continue
                try:
                    conformed = conform(raw, table, source=self.name)
                except SchemaError as exc:
                    raise SourceError(
                        f"source '{self.name}', file {self.file_for(table)}: {exc}"
                    ) from exc
                valid, quarantined = conformed.valid, conformed.quarantined
                if table == DEALS:
                    fx = read_staged(conn, FX_RATES)
                    valid, rejected = convert_deals(valid, fx, home_currency=home_currency)
                    if not rejected.empty:
                        quarantined = pd.concat([quarantined, rejected], ignore_index=True)
                reports.append(
                    merge_snapshot(conn, table, valid, source=self.name, quarantined=quarantined)
                )
        return reports

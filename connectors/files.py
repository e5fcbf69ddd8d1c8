"""The `files` source: a folder of CSV or Parquet files named after the canonical tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from connectors.base import ObjectPlan, SourceCheck, SourceError
from connectors.money import convert_deals
from core.canonical import (
    CUSTOMERS,
    DEALS,
    FX_RATES,
    METRIC_TABLES,
    NPS_RESPONSES,
    OWNERS,
    SchemaError,
    conform,
)
from core.sync import StagingWriter, SyncReport

REQUIRED_FILES = METRIC_TABLES
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

    def check(self, *, home_currency: str) -> SourceCheck:
        """Which files a sync will read (`krpulse doctor`); a missing required file is a problem."""
        report = SourceCheck(self.name, "files", facts={"folder": str(self.path)})
        if not self.path.is_dir():
            report.problems.append(
                f"source '{self.name}': folder {self.path} does not exist (`krpulse demo` "
                "writes the demo org's files there)"
            )
            return report
        for table in SYNC_ORDER:
            file = self.file_for(table)
            if file is not None:
                header = list(self.read_raw(table).columns)
                report.plans.append(
                    ObjectPlan(table, f"{file.name}, whole file every sync", header)
                )
            elif table in REQUIRED_FILES:
                report.problems.append(
                    f"source '{self.name}': {self.path / (table + '.csv')} not found"
                )
            else:
                report.warnings.append(f"source '{self.name}': no {table}.csv (optional)")
        report.facts["currency mode"] = (
            f"reporting {home_currency}; amount_home as given, else converted with fx_rates.csv"
        )
        return report

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

    def sync(self, writer: StagingWriter, *, home_currency: str) -> list[SyncReport]:
        """Read every file and hand it to `writer` in one batch; return one report each."""
        if not self.path.is_dir():
            raise SourceError(f"source '{self.name}': folder {self.path} does not exist")
        reports = []
        with writer.batch() as batch:
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
                    fx = batch.staged(FX_RATES)
                    valid, rejected = convert_deals(valid, fx, home_currency=home_currency)
                    if not rejected.empty:
                        quarantined = pd.concat([quarantined, rejected], ignore_index=True)
                reports.append(batch.merge_snapshot(table, valid, quarantined=quarantined))
        return reports

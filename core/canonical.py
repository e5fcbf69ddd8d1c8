"""The canonical tables every connector produces: names, dtypes, keys, and conformance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Dtype vocabulary: "string", "bool", "float", "int", "timestamp" (UTC, tz-aware), "date"
# (plain date in the reporting timezone, held as a datetime64 at midnight without tz).
DEALS = "deals"
CUSTOMERS = "customers"
NPS_RESPONSES = "nps_responses"
OWNERS = "owners"
FX_RATES = "fx_rates"
# The tables the metrics are computed from (a files source needs these; owners and FX rates are
# optional inputs of the connectors).
METRIC_TABLES = (DEALS, CUSTOMERS, NPS_RESPONSES)


@dataclass(frozen=True)
class CanonicalTable:
    name: str
    id_column: str | None
    columns: dict[str, str]
    required: tuple[str, ...]

    @property
    def key(self) -> tuple[str, ...]:
        return ("source", self.id_column) if self.id_column else ()


CANONICAL_TABLES: dict[str, CanonicalTable] = {
    DEALS: CanonicalTable(
        DEALS,
        "deal_id",
        {
            "source": "string",
            "deal_id": "string",
            "customer_id": "string",
            "name": "string",
            "owner_id": "string",
            "team": "string",
            "pipeline": "string",
            "stage": "string",
            "is_closed": "bool",
            "is_won": "bool",
            "amount": "float",
            "currency": "string",
            "amount_home": "float",
            "created_at": "timestamp",
            "close_date": "date",
            "deal_type": "string",
            "last_modified_at": "timestamp",
            "is_deleted": "bool",
        },
        required=("deal_id", "is_closed", "is_won", "currency", "created_at"),
    ),
    CUSTOMERS: CanonicalTable(
        CUSTOMERS,
        "customer_id",
        {
            "source": "string",
            "customer_id": "string",
            "name": "string",
            "segment": "string",
            "region": "string",
            "industry": "string",
            "owner_id": "string",
            "team": "string",
            "created_at": "timestamp",
            "last_modified_at": "timestamp",
            "is_deleted": "bool",
        },
        required=("customer_id",),
    ),
    NPS_RESPONSES: CanonicalTable(
        NPS_RESPONSES,
        "response_id",
        {
            "source": "string",
            "response_id": "string",
            "customer_id": "string",
            "score": "int",
            "submitted_at": "timestamp",
            "survey_id": "string",
            "comment": "string",
            "last_modified_at": "timestamp",
            "is_deleted": "bool",
        },
        required=("response_id", "score", "submitted_at"),
    ),
    OWNERS: CanonicalTable(
        OWNERS,
        "owner_id",
        {
            "source": "string",
            "owner_id": "string",
            "name": "string",
            "email": "string",
            "team": "string",
        },
        required=("owner_id",),
    ),
    FX_RATES: CanonicalTable(
        FX_RATES,
        None,
        {
            "source": "string",
            "currency": "string",
            "rate_to_home": "float",
            "valid_from": "date",
            "valid_to": "date",
        },
        required=("currency", "rate_to_home", "valid_from"),
    ),
}

# The id column of each table (None: fx_rates are keyed by source, currency and validity instead:
# two orgs may book different rates for the same day, so each source keeps its own).
ID_COLUMNS: dict[str, str | None] = {
    name: spec.id_column for name, spec in CANONICAL_TABLES.items()
}

DEAL_TYPES = ("new_business", "existing_business", "renewal")

_PANDAS_DTYPES = {
    "string": "string",
    "bool": "boolean",
    "float": "float64",
    "int": "Int64",
    "timestamp": "datetime64[ns, UTC]",
    "date": "datetime64[ns]",
}


class SchemaError(ValueError):
    """A frame does not have the canonical shape (a connector bug, not a bad record)."""


def empty_frame(table: str) -> pd.DataFrame:
    spec = CANONICAL_TABLES[table]
    return pd.DataFrame(
        {col: pd.Series(dtype=_PANDAS_DTYPES[kind]) for col, kind in spec.columns.items()}
    )


def check_frame(frame: pd.DataFrame, table: str) -> None:
    """Raise SchemaError unless `frame` has exactly the canonical columns and dtypes of `table`."""
    spec = CANONICAL_TABLES[table]
    missing = [c for c in spec.columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in spec.columns]
    if missing or extra:
        raise SchemaError(f"{table}: missing columns {missing}, unexpected columns {extra}")
    wrong = {
        col: str(frame[col].dtype)
        for col, kind in spec.columns.items()
        if str(frame[col].dtype) != _PANDAS_DTYPES[kind]
    }
    if wrong:
        expected = {col: _PANDAS_DTYPES[spec.columns[col]] for col in wrong}
        raise SchemaError(f"{table}: wrong dtypes {wrong}, expected {expected}")


@dataclass
class Conformed:
    """Rows that fit the canonical table, and the ones quarantined with the reason why."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame  # the raw record as strings plus `reason`


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | (series.astype("string").str.strip() == "")


def conform(raw: pd.DataFrame, table: str, *, source: str) -> Conformed:
    """Coerce a raw frame (strings are fine) to the canonical dtypes of `table`.

    Records that do not fit are quarantined with a reason instead of being dropped or patched:
    a missing required value, a value that does not parse, a score outside 0..10, an unknown
    deal type. Missing optional columns are added empty; unknown columns are an error because
    they usually mean a mis-named header that would otherwise be silently ignored.
    """
    spec = CANONICAL_TABLES[table]
    raw = raw.copy()
    if "source" in spec.columns:
        raw["source"] = source
    unknown = [c for c in raw.columns if c not in spec.columns]
    if unknown:
        raise SchemaError(
            f"{table}: unknown columns {unknown}; the canonical columns are {list(spec.columns)}"
        )
    for col in spec.columns:
        if col not in raw.columns:
            raw[col] = pd.NA
    raw = raw[list(spec.columns)].reset_index(drop=True)

    reasons = pd.Series("", index=raw.index, dtype="string")

    def flag(mask: pd.Series, reason: str) -> None:
        mask = mask.fillna(False).astype(bool)
        reasons[mask & (reasons == "")] = reason

    for col in spec.required:
        flag(_blank(raw[col]), f"missing {col}")

    out = pd.DataFrame(index=raw.index)
    for col, kind in spec.columns.items():
        values = raw[col]
        blank = _blank(values)
        if kind == "string":
            out[col] = values.astype("string").str.strip().mask(blank)
        elif kind == "bool":
            text = values.astype("string").str.strip().str.lower()
            parsed = text.map(
                {"true": True, "false": False, "1": True, "0": False}, na_action="ignore"
            )
            if values.dtype == bool:
                parsed = values
            flag(~blank & parsed.isna(), f"{col} is not true/false")
            out[col] = parsed.astype("boolean")
        elif kind in ("float", "int"):
            numbers = pd.to_numeric(values, errors="coerce")
            flag(~blank & numbers.isna(), f"{col} is not a number")
            flag(~np.isfinite(numbers.fillna(0.0)), f"{col} is not finite")
            if kind == "int":
                flag(numbers.notna() & (numbers != numbers.round()), f"{col} is not an integer")
                out[col] = numbers.where(numbers == numbers.round()).round().astype("Int64")
            else:
                out[col] = numbers.astype("float64")
        elif kind == "timestamp":
            stamps = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
            flag(~blank & stamps.isna(), f"{col} is not an ISO-8601 timestamp")
            out[col] = stamps.astype("datetime64[ns, UTC]")
        elif kind == "date":
            dates = pd.to_datetime(values, errors="coerce", format="ISO8601")
            if isinstance(dates.dtype, pd.DatetimeTZDtype):
                dates = dates.dt.tz_localize(None)
            flag(~blank & dates.isna(), f"{col} is not a YYYY-MM-DD date")
            out[col] = dates.dt.normalize().astype("datetime64[ns]")

    if table == NPS_RESPONSES:
        flag(~out["score"].between(0, 10).fillna(True), "score outside 0..10")
    if table == DEALS:
        flag(
            out["deal_type"].notna() & ~out["deal_type"].isin(DEAL_TYPES),
            f"deal_type not one of {', '.join(DEAL_TYPES)}",
        )
        flag(out["amount"] < 0, "amount is negative")
        flag(out["is_won"].fillna(False) & ~out["is_closed"].fillna(False), "won but not closed")
    for col in ("is_deleted",):
        if col in out:
            out[col] = out[col].fillna(False)

    bad = reasons != ""
    if spec.id_column:
        # A duplicated id within one extraction is ambiguous: quarantine every copy rather than
        # guessing which one is right.
        dup = out[spec.id_column].notna() & out.duplicated(subset=[spec.id_column], keep=False)
        flag(dup & ~bad, f"duplicate {spec.id_column}")
        bad = reasons != ""

    quarantined = raw[bad].astype("string").assign(reason=reasons[bad])
    valid = out[~bad].reset_index(drop=True)
    return Conformed(valid=valid, quarantined=quarantined.reset_index(drop=True))


def as_canonical(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Cast already-valid rows (e.g. read back from staging) to the canonical dtypes."""
    spec = CANONICAL_TABLES[table]
    out = pd.DataFrame(index=frame.index)
    for col, kind in spec.columns.items():
        values = frame[col] if col in frame.columns else pd.Series(pd.NA, index=frame.index)
        if kind == "timestamp":
            out[col] = pd.to_datetime(values, utc=True, format="ISO8601").astype(
                _PANDAS_DTYPES[kind]
            )
        elif kind == "date":
            out[col] = pd.to_datetime(values, format="ISO8601").astype(_PANDAS_DTYPES[kind])
        elif kind == "bool":
            out[col] = values.astype("boolean")
        elif kind == "int":
            out[col] = pd.to_numeric(values).astype("Int64")
        elif kind == "float":
            out[col] = pd.to_numeric(values).astype("float64")
        else:
            out[col] = values.astype("string")
    return out.reset_index(drop=True)

"""The records behind a metric value, from the pandas engine's events: the test oracle of the
compiled records (kr_metrics/sql/records.py), which the KR pages and `definitions explain` use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.canonical import ID_COLUMNS
from kr_metrics.metrics import MetricSpec, PreparedData, Scope, Window

# The columns shown: one list for the oracle and the compiled records.
from kr_metrics.sql.records import EXPLAINED_COLUMNS, RECORD_COLUMNS  # noqa: F401


@dataclass(frozen=True)
class RecordsBehind:
    """The records a metric value is made of, and the value recomputed from exactly them.

    `records` has one row per contributing record: its own columns (RECORD_COLUMNS) plus
    `entity`, `record_id`, `day` (the day it counts on), `contribution` (what it adds to the
    numerator), `weight` (what it adds to the denominator) and `customer_name`.
    """

    metric: str
    records: pd.DataFrame
    numerator: float
    denominator: float | None
    value: float | None
    sample_size: int


def records_behind(
    spec: MetricSpec,
    data: PreparedData,
    scope: Scope,
    window: Window,
    *,
    basis: str = "count",
) -> RecordsBehind:
    """The records in `scope` that make `spec`'s value over `window`, from the metric's own events.

    Uses the metric's event builder (the same one the engine sums), so what is listed is by
    construction what is counted; nothing of the metric's logic is repeated here. Records whose
    events cancel out inside the window (a deal opened and closed before the as-of day of a
    point-in-time balance) are not listed.
    """
    if spec.events is None:
        raise ValueError(
            f"metric '{spec.name}' aggregates with '{spec.reduce}', which has no per-record "
            "contributions to list"
        )
    entity = spec.entity
    frame = data.frame(entity)
    events = spec.events(data, scope, window.cycle_start, basis)
    count = len(events.day)
    day = pd.to_datetime(events.day).to_numpy()
    end = np.datetime64(pd.Timestamp(window.end))
    inside = day <= end
    if not spec.point_in_time:
        inside &= day >= np.datetime64(pd.Timestamp(window.start))
    contributions = pd.DataFrame(
        {
            "row": events.day.index.to_numpy(),
            "day": day,
            "contribution": np.asarray(events.num, dtype="float64"),
            "weight": (
                np.ones(count) if events.den is None else np.asarray(events.den, dtype="float64")
            ),
            "n": np.ones(count) if events.n is None else np.asarray(events.n, dtype="float64"),
        }
    )[inside]
    # One row per record: a balance metric has two events per deal (opened, closed).
    per_record = contributions.groupby("row", sort=False).agg(
        day=("day", "max"),
        contribution=("contribution", "sum"),
        weight=("weight", "sum"),
        n=("n", "sum"),
    )
    per_record = per_record[per_record["n"] != 0]

    numerator = float(per_record["contribution"].sum())
    sample_size = int(per_record["n"].sum())
    if spec.combine == "per_constant":
        # One divisor for the whole window (existing customers): it is the sample, as in the engine.
        denominator = events.den_constant or 0.0
        sample_size = int(denominator)
    elif spec.combine == "ratio":
        denominator = float(per_record["weight"].sum())
    else:
        denominator = None
    if spec.combine == "sum":
        value = numerator
    elif spec.combine == "per_constant":
        value = numerator / denominator if denominator else None
    elif denominator:
        value = spec.scale * numerator / denominator
    else:
        value = None

    columns = [c for c in RECORD_COLUMNS.get(entity, []) if c in frame.columns]
    records = frame.loc[per_record.index, columns].reset_index(drop=True)
    id_column = ID_COLUMNS.get(entity)
    records.insert(0, "entity", entity)
    records.insert(
        1, "record_id", records[id_column] if id_column in records else per_record.index.astype(str)
    )
    records["day"] = per_record["day"].to_numpy()
    records["contribution"] = per_record["contribution"].to_numpy()
    records["weight"] = per_record["weight"].to_numpy()
    records["customer_name"] = _customer_names(data.customers, records)
    records = records.sort_values(["day", "record_id"], ascending=[False, True], kind="stable")
    return RecordsBehind(
        metric=spec.name,
        records=records.reset_index(drop=True),
        numerator=numerator,
        denominator=denominator,
        value=value,
        sample_size=sample_size,
    )


def _customer_names(customers: pd.DataFrame, records: pd.DataFrame) -> np.ndarray:
    if "customer_id" not in records or records.empty:
        return np.full(len(records), None, dtype=object)
    names = customers[["source", "customer_id", "name"]].drop_duplicates(["source", "customer_id"])
    joined = records[["source", "customer_id"]].merge(
        names, on=["source", "customer_id"], how="left"
    )
    return joined["name"].astype(object).where(joined["name"].notna(), None).to_numpy()

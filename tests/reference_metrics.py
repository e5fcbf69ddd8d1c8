"""A plain, obviously correct reference for every built-in metric: one record at a time, no tricks."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd

TZ = ZoneInfo("Europe/Berlin")
DEAL_ONLY_COLUMNS = {"pipeline", "stage", "currency", "deal_type", "is_won", "is_closed"}


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")
    ]


def _day(value) -> dt.date | None:
    return None if value is None else pd.Timestamp(value).date()


def _local_day(stamp) -> dt.date | None:
    return None if stamp is None else pd.Timestamp(stamp).tz_convert(TZ).date()


def _matches(record: dict, where: dict) -> bool:
    for column, wanted in where.items():
        if column not in record:
            continue
        negate = isinstance(wanted, dict)
        values = wanted["not"] if negate else wanted
        values = [str(v) for v in (values if isinstance(values, list) else [values])]
        hit = record[column] is not None and str(record[column]) in values
        if hit == negate:
            return False
    return True


def reference(
    metric: str,
    deals: pd.DataFrame,
    customers: pd.DataFrame,
    responses: pd.DataFrame,
    start: dt.date,
    end: dt.date,
    anchor: dt.date,
    where: dict,
    basis: str = "count",
):
    live_customers = [c for c in _records(customers) if not c["is_deleted"]]
    by_key = {(c["source"], c["customer_id"]): c for c in live_customers}
    deal_rows = []
    for d in _records(deals):
        if d["is_deleted"]:
            continue
        customer = by_key.get((d["source"], d["customer_id"]), {})
        d = dict(
            d,
            segment=customer.get("segment"),
            region=customer.get("region"),
            industry=customer.get("industry"),
            customer_team=customer.get("team"),
        )
        d["close"] = _day(d["close_date"])
        d["created"] = _local_day(d["created_at"])
        deal_rows.append(d)
    response_rows = []
    for r in _records(responses):
        if r["is_deleted"]:
            continue
        customer = by_key.get((r["source"], r["customer_id"]), {})
        r = dict(
            r,
            segment=customer.get("segment"),
            region=customer.get("region"),
            industry=customer.get("industry"),
            team=customer.get("team"),
            owner_id=customer.get("owner_id"),
        )
        r["day"] = _local_day(r["submitted_at"])
        response_rows.append(r)

    def in_window(day):
        return day is not None and start <= day <= end

    won = [d for d in deal_rows if d["is_won"] and d["close"] is not None]
    scoped_won = [d for d in won if _matches(d, where)]
    existing = {
        (d["source"], d["customer_id"]) for d in won if d["close"] < anchor and d["customer_id"]
    }
    amount = lambda d: d["amount_home"] or 0.0  # noqa: E731

    if metric == "won_revenue":
        return sum(amount(d) for d in scoped_won if in_window(d["close"]))
    if metric == "new_business_revenue":
        return sum(
            amount(d)
            for d in scoped_won
            if in_window(d["close"]) and d["deal_type"] == "new_business"
        )
    if metric == "existing_customer_revenue":
        return sum(
            amount(d)
            for d in scoped_won
            if in_window(d["close"]) and (d["source"], d["customer_id"]) in existing
        )
    if metric == "revenue_per_existing_customer":
        # One fixed set of customers above and below the line: live, staged, existing customers
        # chosen by their own attributes; their won deals narrowed by deal-only filters.
        customer_where = {("team" if k == "customer_team" else k): v for k, v in where.items()}
        chosen = {
            (c["source"], c["customer_id"])
            for c in live_customers
            if (c["source"], c["customer_id"]) in existing and _matches(c, customer_where)
        }
        deal_where = {k: v for k, v in where.items() if k in DEAL_ONLY_COLUMNS}
        revenue = sum(
            amount(d)
            for d in won
            if in_window(d["close"])
            and (d["source"], d["customer_id"]) in chosen
            and _matches(d, deal_where)
        )
        return None if not chosen else revenue / len(chosen)
    if metric == "won_deals":
        return sum(1 for d in scoped_won if in_window(d["close"]))
    if metric == "new_customers":
        first = {}
        for d in sorted(
            (d for d in won if d["customer_id"]), key=lambda d: (d["close"], d["deal_id"])
        ):
            first.setdefault((d["source"], d["customer_id"]), d)
        return sum(1 for d in first.values() if in_window(d["close"]) and _matches(d, where))
    if metric == "average_deal_size":
        chosen = [amount(d) for d in scoped_won if in_window(d["close"])]
        return sum(chosen) / len(chosen) if chosen else None
    if metric == "sales_cycle_days":
        chosen = [
            (d["close"] - d["created"]).days
            for d in scoped_won
            if in_window(d["close"]) and d["created"]
        ]
        return sum(chosen) / len(chosen) if chosen else None
    if metric == "pipeline_created":
        return sum(amount(d) for d in deal_rows if _matches(d, where) and in_window(d["created"]))
    if metric == "open_pipeline":
        return sum(
            amount(d)
            for d in deal_rows
            if _matches(d, where)
            and d["created"] is not None
            and d["created"] <= end
            and not (d["is_closed"] and d["close"] is not None and d["close"] <= end)
        )
    if metric == "win_rate":
        closed = [
            d for d in deal_rows if _matches(d, where) and d["is_closed"] and in_window(d["close"])
        ]
        weight = (lambda d: amount(d)) if basis == "amount" else (lambda d: 1.0)
        total = sum(weight(d) for d in closed)
        return None if total == 0 else sum(weight(d) for d in closed if d["is_won"]) / total
    chosen = [
        r
        for r in response_rows
        if _matches(r, where) and in_window(r["day"]) and r["score"] is not None
    ]
    if metric == "nps":
        if not chosen:
            return None
        return (
            100.0
            * (sum(r["score"] >= 9 for r in chosen) - sum(r["score"] <= 6 for r in chosen))
            / len(chosen)
        )
    if metric == "nps_responses":
        return len(chosen)
    if metric == "average_nps_score":
        return sum(r["score"] for r in chosen) / len(chosen) if chosen else None
    raise KeyError(metric)

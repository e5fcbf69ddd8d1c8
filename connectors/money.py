"""The one money conversion: deal amounts to the reporting currency through dated FX rates."""

from __future__ import annotations

from typing import Literal

import pandas as pd

# Which day's rate converts an open deal: its planned close date (what Salesforce's advanced
# currency management does) or the day it was created (a close date is only a plan, and may lie
# beyond the last published rate).
OpenDealRate = Literal["close_date", "created_date"]


def home_amounts(
    deals: pd.DataFrame,
    fx_rates: pd.DataFrame,
    *,
    home_currency: str,
    open_deals_at: OpenDealRate = "created_date",
) -> tuple[pd.Series, pd.Series]:
    """Return (amount_home, unknown_currency_mask) for canonical `deals`.

    An `amount_home` the source already supplies is kept: CRMs convert with the rates the
    finance team booked, and recomputing would make krpulse disagree with the CRM's reports.
    Otherwise the rate valid on the close date is used; an open deal's per `open_deals_at`.
    A deal in a currency without a valid rate cannot be converted; the mask marks it so the
    caller quarantines it instead of counting it as zero.
    """
    supplied = deals["amount_home"]
    currency = deals["currency"].astype("string").str.upper()
    created = deals["created_at"].dt.tz_localize(None).dt.normalize()
    closed = deals["is_closed"].fillna(False).astype(bool)
    rate_date = deals["close_date"].where(closed | (open_deals_at == "close_date"), created)
    rate_date = rate_date.fillna(created)

    rates = pd.Series(float("nan"), index=deals.index, dtype="float64")
    rates[currency == home_currency.upper()] = 1.0

    needs_rate = supplied.isna() & (currency != home_currency.upper()) & currency.notna()
    if needs_rate.any() and not fx_rates.empty:
        left = pd.DataFrame(
            {
                "row": deals.index[needs_rate],
                "currency": currency[needs_rate].astype(str),
                "rate_date": rate_date[needs_rate].astype("datetime64[ns]"),
            }
        ).sort_values("rate_date")
        right = fx_rates.assign(currency=fx_rates["currency"].astype(str).str.upper())
        right = right.dropna(subset=["valid_from"]).sort_values("valid_from")
        merged = pd.merge_asof(
            left,
            right[["currency", "rate_to_home", "valid_from", "valid_to"]],
            left_on="rate_date",
            right_on="valid_from",
            by="currency",
            direction="backward",
        )
        expired = merged["valid_to"].notna() & (merged["rate_date"] >= merged["valid_to"])
        merged.loc[expired, "rate_to_home"] = float("nan")
        rates.loc[merged["row"].to_numpy()] = merged["rate_to_home"].to_numpy()

    computed = (deals["amount"] * rates).round(2)
    amount_home = supplied.fillna(computed)
    unknown = supplied.isna() & deals["amount"].notna() & rates.isna()
    return amount_home.astype("float64"), unknown


def convert_deals(
    deals: pd.DataFrame,
    fx_rates: pd.DataFrame,
    *,
    home_currency: str,
    open_deals_at: OpenDealRate = "created_date",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(deals with amount_home, deals quarantined because their currency has no rate).

    Every connector converts through this, so an unconvertible deal is quarantined with the
    same reason everywhere instead of being counted as zero.
    """
    amount_home, unknown = home_amounts(
        deals, fx_rates, home_currency=home_currency, open_deals_at=open_deals_at
    )
    converted = deals.assign(amount_home=amount_home)
    reason = (
        "unknown currency "
        + converted.loc[unknown, "currency"].astype("string")
        + " (no FX rate to "
        + home_currency
        + ")"
    )
    rejected = converted[unknown].astype("string").assign(reason=reason)
    return converted[~unknown].reset_index(drop=True), rejected.reset_index(drop=True)

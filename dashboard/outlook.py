"""Where each KR is heading: a linear trend of its recent values, projected to the cycle end."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

# The trend looks at the last four weeks: long enough to smooth a day's noise, short enough
# to follow a change of pace inside a quarter.
LOOKBACK_DAYS = 28
MIN_POINTS = 7
FORECAST_COLUMNS = [
    "kr", "last_day", "last_fitted", "slope_per_day", "points", "end_day", "projected_value",
]  # fmt: skip


def linear_forecast(
    history: pd.DataFrame, cycle_end: dt.date, *, lookback_days: int = LOOKBACK_DAYS
) -> pd.DataFrame:
    """Per KR, the least-squares line through its last `lookback_days` of values, at the cycle end.

    `history` has columns kr, as_of (date) and value; null values are ignored. KRs with fewer
    than MIN_POINTS values in the lookback get no forecast (absent from the result) rather than
    a line through two noisy points.
    """
    frame = history.loc[history["value"].notna(), ["kr", "as_of", "value"]].copy()
    if frame.empty:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    frame["x"] = (pd.to_datetime(frame["as_of"]) - pd.Timestamp(cycle_end)).dt.days.astype(float)
    last_x = frame.groupby("kr")["x"].transform("max")
    frame = frame[frame["x"] > last_x - lookback_days]
    frame["xy"] = frame["x"] * frame["value"]
    frame["xx"] = frame["x"] ** 2
    sums = frame.groupby("kr").agg(
        n=("x", "size"), sx=("x", "sum"), sy=("value", "sum"), sxy=("xy", "sum"),
        sxx=("xx", "sum"), last_x=("x", "max"),
    )  # fmt: skip
    sums = sums[sums["n"] >= MIN_POINTS]
    spread = sums["n"] * sums["sxx"] - sums["sx"] ** 2
    slope = (sums["n"] * sums["sxy"] - sums["sx"] * sums["sy"]) / spread.replace(0, np.nan)
    slope = slope.fillna(0.0)
    intercept = (sums["sy"] - slope * sums["sx"]) / sums["n"]
    # x is days relative to the cycle end, so the intercept is the projected end value.
    return pd.DataFrame(
        {
            "kr": sums.index,
            "last_day": (
                pd.Timestamp(cycle_end) + pd.to_timedelta(sums["last_x"], unit="D")
            ).dt.date,
            "last_fitted": intercept + slope * sums["last_x"],
            "slope_per_day": slope,
            "points": sums["n"].astype(int),
            "end_day": cycle_end,
            "projected_value": intercept,
        }
    ).reset_index(drop=True)


def projected_progress(forecast: pd.DataFrame, baseline: pd.Series, target: pd.Series) -> pd.Series:
    """(projected − baseline) / (target − baseline): the progress the trend reaches at the end."""
    return (forecast["projected_value"] - baseline) / (target - baseline)

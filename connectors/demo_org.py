"""Deterministic generator of a believable small B2B sales organisation as a `files` source.

The folder written by `generate_demo_org` holds deals.csv, customers.csv, nps_responses.csv,
owners.csv and fx_rates.csv with the canonical columns. Three teams (sales-dach, sales-uk,
sales-us) sell to about 300 customers; about 3,000 deals and 800 NPS responses cover 2025-Q4 up
to `as_of`, which lies in the demo cycle 2026-Q4. Up to 2026-Q3 win rate sits near 0.27 and
NPS near 50; in 2026-Q4 both improve (NPS climbs through the quarter) and revenue per existing
customer runs at a pace of about +20 % over 2026-Q3.

Dates: nothing is dated after `as_of`, with one deliberate exception: open deals keep their
planned close_date, which lies in the future (that is what makes them open). In fx_rates.csv
the rate valid on `as_of` has an empty valid_to (still valid), so it also converts open deals
whose planned close date is later.

The whole history is generated once up to the end of the pipeline (2027-Q1) and then cut at
`as_of`, so a later `as_of` with the same seed only adds data: deals close, new deals and
responses appear, the past stays as it was.

Deliberately bad records, so the quarantine has something to show (all dated in 2026-Q4):
  * a won deal in currency XYZ with no amount_home (no FX rate: "unknown currency XYZ"),
  * a lost deal with an empty deal_id ("missing deal_id"),
  * a lost deal with a negative amount ("amount is negative"),
  * an NPS response with score 11 ("score outside 0..10").
Also realistic but valid: about 1 % of deals and a few customers and responses are duplicates
entered by mistake and flagged is_deleted=true.
"""

from __future__ import annotations

import datetime
import pathlib
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.canonical import CANONICAL_TABLES, CUSTOMERS, DEALS, FX_RATES, NPS_RESPONSES, OWNERS

DEMO_SEED = 7
DEMO_AS_OF = datetime.date(2026, 11, 25)  # the demo's "today": data stops here
DEMO_CYCLE_START = datetime.date(2026, 10, 1)  # current demo cycle 2026-Q4 (ends 2026-12-31)
HOME_CURRENCY = "EUR"

SOURCE = "demo"
DATA_START = datetime.date(2025, 10, 1)
CYCLE_END = datetime.date(2026, 12, 31)

# The files carry exactly the canonical columns, in the canonical order.
OWNERS_COLUMNS = list(CANONICAL_TABLES[OWNERS].columns)
CUSTOMERS_COLUMNS = list(CANONICAL_TABLES[CUSTOMERS].columns)
DEALS_COLUMNS = list(CANONICAL_TABLES[DEALS].columns)
NPS_COLUMNS = list(CANONICAL_TABLES[NPS_RESPONSES].columns)
FX_COLUMNS = list(CANONICAL_TABLES[FX_RATES].columns)

_FX_START = datetime.date(2025, 6, 1)  # before the earliest created_at of a deal
_FX_END = datetime.date(2027, 3, 1)  # month of the last planned close date
_EPOCH = datetime.date(1970, 1, 1)
_DAY_S = 86_400
_NEVER = 10**7  # first-win day of customers that never buy: later than any real day

TEAMS = ("sales-dach", "sales-uk", "sales-us")
_REGIONS = ("DACH", "UK&I", "North America")
_CUSTOMERS_PER_TEAM = (120, 80, 100)
# Share of a team's customers billed in USD; the UK team sells to many US subsidiaries.
_USD_SHARE = (0.0, 0.5, 1.0)
_OWNER_NAMES = (
    ("Lena Hoffmann", "Jonas Becker", "Miriam Vogel", "Tobias Wagner"),
    ("Olivia Hughes", "Callum Reid", "Priya Patel", "James Whitaker"),
    ("Emily Carter", "Marcus Johnson", "Sofia Ramirez", "Daniel Kim", "Rachel Foster"),
)
# Per team: win-rate offset, NPS offset; DACH is the strongest team, the US team the weakest.
_TEAM_WIN_RATE_OFFSET = (0.02, 0.0, -0.02)
_TEAM_NPS_OFFSET = (4.0, 0.0, -4.0)

SEGMENTS = ("SMB", "Mid-Market", "Enterprise")
_SEGMENT_P = (0.5, 0.35, 0.15)
_SEGMENT_AMOUNT_EUR = (9_000.0, 32_000.0, 120_000.0)  # median new-business deal
_EXPANSIONS_PER_QUARTER = (2.7, 3.8, 5.0)  # expansion opportunities per existing customer
# Sales cycle in days (low, high) by segment; expansions close faster than new logos.
_CYCLE_NEW = ((10, 60), (20, 90), (45, 120))
_CYCLE_EXPANSION = ((10, 40), (15, 60), (30, 90))
INDUSTRIES = (
    "Manufacturing",
    "Logistics",
    "Retail",
    "Financial Services",
    "Healthcare",
    "Software",
    "Professional Services",
    "Energy",
)
_NAME_PREFIXES = (
    (
        "Nordwind",
        "Alpenblick",
        "Rheinfeld",
        "Isartal",
        "Bergmann",
        "Sonnberg",
        "Waldhaus",
        "Elbtal",
        "Steinbach",
        "Kessler",
        "Lindner",
        "Brandt",
        "Falkenstein",
        "Seeberg",
        "Hofmann",
        "Donau",
        "Mainstadt",
        "Schwarzwald",
        "Tannen",
        "Adler",
    ),
    (
        "Thames",
        "Pennine",
        "Harbour",
        "Kingsbridge",
        "Ashford",
        "Clyde",
        "Marlow",
        "Avon",
        "Whitfield",
        "Greystone",
        "Oakridge",
        "Severn",
        "Northgate",
        "Brightwater",
        "Cotswold",
        "Holloway",
        "Mersey",
        "Redwood",
        "Lancaster",
        "Wexford",
    ),
    (
        "Cascade",
        "Summit",
        "Pioneer",
        "Bluewater",
        "Lakeshore",
        "Ironwood",
        "Prairie",
        "Granite",
        "Liberty",
        "Silverline",
        "Canyon",
        "Harborview",
        "Evergreen",
        "Keystone",
        "Sierra",
        "Northstar",
        "Riverbend",
        "Coastal",
        "Frontier",
        "Maple",
    ),
)
_NAME_CORES = (
    (
        "Logistik",
        "Maschinenbau",
        "Systeme",
        "Handel",
        "Technik",
        "Energie",
        "Medizintechnik",
        "Consulting",
    ),
    ("Analytics", "Freight", "Retail", "Engineering", "Health", "Energy", "Software", "Partners"),
    ("Logistics", "Manufacturing", "Labs", "Foods", "Health", "Energy", "Software", "Financial"),
)
_NAME_SUFFIXES = (("GmbH", "AG", "GmbH & Co. KG"), ("Ltd", "plc", "Ltd"), ("Inc.", "LLC", "Corp."))
_PRODUCTS_NEW = ("Platform licence", "Analytics suite", "Starter package", "Data hub")
_PRODUCTS_EXPANSION = ("Additional seats", "Premium support", "Reporting add-on", "API access")
_OPEN_STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation")
_COMMENTS = (
    (
        "Support takes too long to answer.",
        "Too expensive for what we use.",
        "Onboarding was painful.",
        "Reporting is missing key features.",
    ),
    (
        "Does the job.",
        "Good, but the UI could be faster.",
        "Fine overall.",
        "Would like better integrations.",
    ),
    (
        "Great product and great team!",
        "Our account manager is excellent.",
        "Saves us hours every week.",
        "Easy to roll out across teams.",
    ),
)

# Close dates bunch up in the last two weeks of a quarter, as in any sales team.
_QUARTER_END_DAYS = 14
_QUARTER_END_WEIGHT = 2.0


@dataclass(frozen=True)
class _Quarter:
    label: str  # "2026-Q4"
    start: datetime.date
    win_rate: float  # won / closed, all deals, team offsets added
    nps: float  # NPS of responses, team offsets added
    detractors: float  # share of detractors
    responses: int  # NPS responses over the full quarter
    # Per team, revenue per existing customer over the previous quarter (None: not pinned).
    revenue_growth: tuple[float, ...] | None

    @property
    def end(self) -> datetime.date:
        return (pd.Timestamp(self.start) + pd.offsets.QuarterEnd(0)).date()


_QUARTERS = (
    _Quarter("2025-Q4", datetime.date(2025, 10, 1), 0.26, 46.0, 0.16, 110, None),
    # 2026-Q1 is pinned to _BASE_REVENUE_PER_EXISTING_CUSTOMER itself.
    _Quarter("2026-Q1", datetime.date(2026, 1, 1), 0.27, 48.0, 0.15, 165, (1.0, 1.0, 1.0)),
    _Quarter("2026-Q2", datetime.date(2026, 4, 1), 0.27, 49.0, 0.15, 180, (1.03, 1.02, 1.04)),
    _Quarter("2026-Q3", datetime.date(2026, 7, 1), 0.28, 50.0, 0.15, 195, (1.04, 1.03, 1.05)),
    _Quarter("2026-Q4", DEMO_CYCLE_START, 0.34, 62.0, 0.10, 215, (1.22, 1.16, 1.24)),
    # Only there so the open pipeline at as_of reaches into next quarter; all of it stays open.
    _Quarter("2027-Q1", datetime.date(2027, 1, 1), 0.30, 70.0, 0.08, 0, None),
)
# Customers by the quarter of their first won deal (same order as _QUARTERS), then never.
_FIRST_WIN_P = (0.28, 0.14, 0.11, 0.10, 0.10, 0.05, 0.22)
# The cycle is calibrated in two parts split at DEMO_AS_OF so the default demo hits its figures
# exactly; the second part continues the improvement (NPS keeps rising) for later as_of dates.
_CYCLE_LATE_NPS_BONUS = 9.0
_CYCLE_LATE_DETRACTORS = 0.08
_NPS_TREND = 1.0  # how strongly scores rise with time within the cycle
# EUR won from expansions per existing customer in 2026-Q1, the first quarter that has any.
_BASE_REVENUE_PER_EXISTING_CUSTOMER = (15_500.0, 12_000.0, 18_500.0)
_EXISTING_EXTRA_WIN_RATE = 0.03  # expansions win a little more often than new logos
_RENEWAL_SHARE = 0.15
_RENEWAL_AFTER_DAYS = 330


@dataclass(frozen=True)
class _Period:
    quarter: _Quarter
    start: int  # days since epoch, inclusive
    end: int
    late: bool  # the part of the cycle after DEMO_AS_OF


def _day(d: datetime.date) -> int:
    return (d - _EPOCH).days


def _periods() -> list[_Period]:
    periods = []
    for q in _QUARTERS:
        if q.start == DEMO_CYCLE_START:
            periods.append(_Period(q, _day(q.start), _day(DEMO_AS_OF), False))
            periods.append(_Period(q, _day(DEMO_AS_OF) + 1, _day(q.end), True))
        else:
            periods.append(_Period(q, _day(q.start), _day(q.end), False))
    return periods


def _day_weights(start: int, end: int, quarter_end: int) -> np.ndarray:
    days = np.arange(start, end + 1)
    return np.where(days > quarter_end - _QUARTER_END_DAYS, _QUARTER_END_WEIGHT, 1.0)


def _sample_days(rng: np.random.Generator, start: int, end: int, q_end: int, n: int) -> np.ndarray:
    w = _day_weights(start, end, q_end)
    return start + rng.choice(len(w), size=n, p=w / w.sum())


def _period_share(p: _Period) -> float:
    """Expected share of a quarter's closings that fall into the period."""
    q_end = _day(p.quarter.end)
    return (
        _day_weights(p.start, p.end, q_end).sum()
        / _day_weights(_day(p.quarter.start), q_end, q_end).sum()
    )


def _quota(shares: tuple[float, ...], n: int) -> np.ndarray:
    """n category numbers split by shares, largest remainders rounded up."""
    exact = np.array(shares) * n / sum(shares)
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1
    return np.repeat(np.arange(len(shares)), counts)


def _pick(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Mask with exactly k of n set: quotas keep small groups on target instead of drifting."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: max(0, min(k, n))]] = True
    return mask


def _between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integer uniformly in [lo, hi] elementwise."""
    return lo + np.floor(rng.random(len(lo)) * (hi - lo + 1)).astype(np.int64)


def _cycle_days(rng: np.random.Generator, segment: np.ndarray, ranges: tuple) -> np.ndarray:
    bounds = np.array(ranges)[segment]
    return _between(rng, bounds[:, 0], bounds[:, 1])


def _owners() -> pd.DataFrame:
    names = [n for team in _OWNER_NAMES for n in team]
    teams = [TEAMS[t] for t, team in enumerate(_OWNER_NAMES) for _ in team]
    frame = pd.DataFrame({"name": names, "team": teams})
    frame["owner_id"] = [f"O-{i:02d}" for i in range(1, len(frame) + 1)]
    frame["email"] = frame["name"].str.lower().str.replace(" ", ".") + "@demo-org.example"
    frame["source"] = SOURCE
    return frame[OWNERS_COLUMNS]


def _customers(rng: np.random.Generator, owners: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for t, n in enumerate(_CUSTOMERS_PER_TEAM):
        prefixes, cores = _NAME_PREFIXES[t], _NAME_CORES[t]
        combo = rng.choice(len(prefixes) * len(cores), size=n, replace=False)
        suffix = np.array(_NAME_SUFFIXES[t])[rng.integers(0, len(_NAME_SUFFIXES[t]), n)]
        name = (
            pd.Series(np.array(prefixes)[combo // len(cores)])
            + " "
            + np.array(cores)[combo % len(cores)]
            + " "
            + suffix
        )
        team_owners = owners.loc[owners["team"] == TEAMS[t], "owner_id"].to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "name": name,
                    "team_idx": t,
                    "segment_idx": rng.choice(3, size=n, p=_SEGMENT_P),
                    "industry": np.array(INDUSTRIES)[rng.integers(0, len(INDUSTRIES), n)],
                    "owner_id": team_owners[rng.integers(0, len(team_owners), n)],
                    "usd": rng.random(n) < _USD_SHARE[t],
                }
            )
        )
    customers = pd.concat(parts, ignore_index=True)

    # When (if ever) each customer first buys; the winning deal is generated from this date.
    # Exact shares per team, so no team has a freak quarter without new customers.
    fate = np.concatenate([rng.permutation(_quota(_FIRST_WIN_P, n)) for n in _CUSTOMERS_PER_TEAM])
    first_win = np.full(len(customers), _NEVER, dtype=np.int64)
    for i, q in enumerate(_QUARTERS):
        mask = fate == i
        q_start, q_end = _day(q.start), _day(q.end)
        first_win[mask] = _sample_days(rng, q_start, q_end, q_end, int(mask.sum()))
    customers["first_win"] = first_win
    customers["team"] = np.array(TEAMS)[customers["team_idx"]]
    return customers


def _deal_frame(
    rng: np.random.Generator,
    customers: pd.DataFrame,
    cust: np.ndarray,
    close: np.ndarray,
    created: np.ndarray,
    won: np.ndarray,
    deal_type: np.ndarray,
) -> pd.DataFrame:
    segment = customers["segment_idx"].to_numpy()[cust]
    base = np.array(_SEGMENT_AMOUNT_EUR)[segment]
    # Expansions are smaller than new logos; renewals re-sign most of the original contract.
    size = np.select([deal_type == "existing_business", deal_type == "renewal"], [0.45, 0.8], 1.0)
    return pd.DataFrame(
        {
            "cust": cust,
            "created_day": created,
            "close_day": close,
            "won": won,
            "deal_type": deal_type,
            "eur": base * size * rng.lognormal(0.0, 0.45, len(cust)),
        }
    )


def _deals_for_period(
    rng: np.random.Generator, customers: pd.DataFrame, p: _Period, t: int
) -> pd.DataFrame:
    q = p.quarter
    q_start, q_end = _day(q.start), _day(q.end)
    team = customers["team_idx"].to_numpy() == t
    first_win = customers["first_win"].to_numpy()
    segment = customers["segment_idx"].to_numpy()
    win_rate = q.win_rate + _TEAM_WIN_RATE_OFFSET[t]

    # The deal that turns a prospect into a customer.
    winners = np.flatnonzero(team & (first_win >= p.start) & (first_win <= p.end))
    close = first_win[winners]
    created = close - _cycle_days(rng, segment[winners], _CYCLE_NEW)
    new_wins = _deal_frame(
        rng,
        customers,
        winners,
        close,
        created,
        np.ones(len(winners), bool),
        np.full(len(winners), "new_business"),
    )

    # Expansions and renewals for customers that bought before the quarter started.
    existing = np.flatnonzero(team & (first_win < q_start))
    counts = rng.poisson(np.array(_EXPANSIONS_PER_QUARTER)[segment[existing]] * _period_share(p))
    cust = np.repeat(existing, counts)
    close = _sample_days(rng, p.start, p.end, q_end, len(cust))
    cycle = _cycle_days(rng, segment[cust], _CYCLE_EXPANSION)
    renewal_draw = rng.random(len(cust))
    # An expansion can only be opened after the first purchase; ten days is the shortest cycle.
    keep = close - first_win[cust] >= 11
    cust, close, cycle, renewal_draw = cust[keep], close[keep], cycle[keep], renewal_draw[keep]
    fw = first_win[cust]
    # Contracts run for a year; some expansions around the anniversary are booked as renewals.
    is_renewal = (renewal_draw < _RENEWAL_SHARE) & (close - fw >= _RENEWAL_AFTER_DAYS)
    created = close - cycle
    too_early = created <= fw
    created[too_early] = _between(rng, fw[too_early] + 1, close[too_early] - 10)
    ex_won = _pick(rng, len(cust), round((win_rate + _EXISTING_EXTRA_WIN_RATE) * len(cust)))
    expansions = _deal_frame(
        rng,
        customers,
        cust,
        close,
        created,
        ex_won,
        np.where(is_renewal, "renewal", "existing_business"),
    )

    # Lost new-business attempts, as many as it takes to land on the period's win rate.
    wins = len(new_wins) + int(ex_won.sum())
    lost = max(0, round(wins / win_rate) - wins - int((~ex_won).sum()))
    if wins == 0:  # a win rate needs wins; keep some activity in the period anyway
        lost = round(_period_share(p) * 40)
    prospects = np.flatnonzero(team & (first_win > p.start + 1))
    lost = lost if len(prospects) else 0
    cust = prospects[rng.integers(0, max(len(prospects), 1), lost)]
    close = _sample_days(rng, p.start, p.end, q_end, lost)
    fw = first_win[cust]
    # A customer that buys within the period lost its other attempts before that.
    before = close >= fw
    close[before] = _between(rng, np.full(before.sum(), p.start), fw[before] - 1)
    created = close - _cycle_days(rng, segment[cust], _CYCLE_NEW)
    new_lost = _deal_frame(
        rng, customers, cust, close, created, np.zeros(lost, bool), np.full(lost, "new_business")
    )
    return pd.concat([new_wins, expansions, new_lost], ignore_index=True)


def _calibrate_revenue(deals: pd.DataFrame, customers: pd.DataFrame) -> np.ndarray:
    """EUR amounts with won expansions scaled so revenue per existing customer follows the plan.

    Left alone, a few Enterprise deals decide whether a team's quarter grew or shrank; the demo
    has to tell its story reliably, so totals per team and quarter are pinned to the plan.
    """
    first_win = customers["first_win"].to_numpy()
    cust_team = customers["team_idx"].to_numpy()
    deal_team = cust_team[deals["cust"].to_numpy()]
    close = deals["close_day"].to_numpy()
    expansion_won = deals["won"].to_numpy() & (deals["deal_type"].to_numpy() != "new_business")
    eur = deals["eur"].to_numpy().copy()
    split = _day(DEMO_AS_OF)
    for t in range(len(TEAMS)):
        per_customer = _BASE_REVENUE_PER_EXISTING_CUSTOMER[t]
        for q in _QUARTERS:
            if q.revenue_growth is None:
                continue  # no existing customers yet, or the pipeline beyond the cycle
            q_start, q_end = _day(q.start), _day(q.end)
            n_existing = int(((cust_team == t) & (first_win < q_start)).sum())
            in_q = expansion_won & (deal_team == t) & (close >= q_start) & (close <= q_end)
            per_customer *= q.revenue_growth[t]
            target = per_customer * n_existing
            parts = [(in_q, 1.0)]
            if q.start == DEMO_CYCLE_START:
                # Pinned by elapsed days, so on DEMO_AS_OF the cycle is exactly on a linear pace.
                elapsed = (split - q_start + 1) / (q_end - q_start + 1)
                parts = [(in_q & (close <= split), elapsed), (in_q & (close > split), 1 - elapsed)]
            for part, share in parts:
                if eur[part].sum() > 0:
                    eur[part] *= target * share / eur[part].sum()
    return eur


def _fx_rates(rng: np.random.Generator) -> pd.DataFrame:
    """Monthly USD rates (a slow dollar recovery plus noise) and EUR at 1, as day numbers."""
    months = pd.date_range(_FX_START, _FX_END, freq="MS")
    walk = np.linspace(0.872, 0.925, len(months)) + np.cumsum(rng.normal(0.0, 0.006, len(months)))
    usd = np.clip(walk, 0.862, 0.948).round(4)
    starts = (months - pd.Timestamp(_EPOCH)).days.to_numpy()
    ends = np.append(starts[1:], _day(_FX_END.replace(month=_FX_END.month + 1)))
    return pd.DataFrame(
        {
            "currency": ["USD"] * len(months) + [HOME_CURRENCY],
            "rate": np.append(usd, 1.0),
            "valid_from": np.append(starts, starts[0]),
            "valid_to": np.append(ends, ends[-1]),
        }
    )


def _usd_rate(fx: pd.DataFrame, day: np.ndarray) -> np.ndarray:
    usd = fx[fx["currency"] == "USD"]
    idx = np.searchsorted(usd["valid_from"].to_numpy(), day, side="right") - 1
    return usd["rate"].to_numpy()[np.clip(idx, 0, len(usd) - 1)]


def _deals(
    rng: np.random.Generator, customers: pd.DataFrame, owners: pd.DataFrame, fx: pd.DataFrame
) -> pd.DataFrame:
    """Every deal of the full history (outcomes as planned), before it is cut at as_of."""
    periods = _periods()
    frames = [_deals_for_period(rng, customers, p, t) for p in periods for t in range(len(TEAMS))]
    deals = pd.concat(frames, ignore_index=True)
    deals["eur"] = _calibrate_revenue(deals, customers)
    n = len(deals)
    cust = deals["cust"].to_numpy()

    # Mostly the account owner; sometimes a colleague from the same team runs the deal.
    team = customers["team_idx"].to_numpy()[cust]
    owner = customers["owner_id"].to_numpy()[cust].astype(object)
    for t, name in enumerate(TEAMS):
        team_owners = owners.loc[owners["team"] == name, "owner_id"].to_numpy()
        other = (team == t) & (rng.random(n) < 0.1)
        owner[other] = team_owners[rng.integers(0, len(team_owners), int(other.sum()))]
    deals["owner_id"] = owner

    product = np.where(
        deals["deal_type"] == "new_business",
        np.array(_PRODUCTS_NEW)[rng.integers(0, len(_PRODUCTS_NEW), n)],
        np.array(_PRODUCTS_EXPANSION)[rng.integers(0, len(_PRODUCTS_EXPANSION), n)],
    )
    close_year = pd.to_datetime(deals["close_day"], unit="D").dt.year.astype(str)
    product = np.where(deals["deal_type"] == "renewal", "Renewal " + close_year, product)
    deals["name"] = customers["name"].to_numpy()[cust] + " - " + product
    deals["currency"] = np.where(customers["usd"].to_numpy()[cust], "USD", HOME_CURRENCY)
    deals["deleted"] = False
    deals["bad_amount_home"] = False
    deals["blank_id"] = False

    # Random draws that only the cut at as_of turns into timestamps; drawn here so they do not
    # depend on as_of.
    deals["created_s"] = deals["created_day"] * _DAY_S + rng.integers(7 * 3600, 19 * 3600, n)
    deals["closed_lag_s"] = rng.integers(2 * 3600, 3 * _DAY_S, n)
    deals["modified_u"] = rng.random(n)

    # Duplicates someone entered by mistake, then closed as lost and deleted.
    lost = np.flatnonzero(~deals["won"].to_numpy())
    dups = deals.iloc[np.sort(rng.choice(lost, size=round(0.01 * n), replace=False))].copy()
    dups["created_s"] += rng.integers(60, 3 * 3600, len(dups))
    dups["deleted"] = True
    deals = pd.concat([deals, dups, _bad_deals(customers)], ignore_index=True)

    rate = np.where(deals["currency"] == "USD", _usd_rate(fx, deals["close_day"].to_numpy()), 1.0)
    # Round numbers in the deal's own currency, as sales people quote them.
    deals["amount"] = np.where(
        deals["amount"].isna(), (deals["eur"] / rate).round(-1), deals["amount"]
    )
    deals = deals.sort_values("created_s", kind="stable", ignore_index=True)
    deals["deal_id"] = "D-" + pd.Series(np.arange(1, len(deals) + 1)).astype(str).str.zfill(6)
    deals.loc[deals["blank_id"].to_numpy(dtype=bool), "deal_id"] = ""
    return deals


def _bad_deals(customers: pd.DataFrame) -> pd.DataFrame:
    """The deliberately broken deals listed in the module docstring."""
    first_win = customers["first_win"].to_numpy()
    team = customers["team_idx"].to_numpy()
    cycle = _day(DEMO_CYCLE_START)
    uk_existing = int(np.flatnonzero((team == 1) & (first_win < cycle - 60))[0])
    us_prospect = int(np.flatnonzero((team == 2) & (first_win == _NEVER))[0])
    dach_prospect = int(np.flatnonzero((team == 0) & (first_win == _NEVER))[0])
    names = customers["name"].to_numpy()
    rows = pd.DataFrame(
        {
            "cust": [uk_existing, us_prospect, dach_prospect],
            "created_day": [cycle - 9, cycle - 1, cycle + 5],
            "close_day": [cycle + 20, cycle + 34, cycle + 41],
            "won": [True, False, False],
            "deal_type": ["existing_business", "new_business", "new_business"],
            "currency": ["XYZ", "USD", HOME_CURRENCY],
            "amount": [14_500.0, 22_000.0, -4_800.0],
            "name": [
                names[uk_existing] + " - Reporting add-on",
                names[us_prospect] + " - Starter package",
                names[dach_prospect] + " - Credit note",
            ],
            "owner_id": customers["owner_id"].to_numpy()[[uk_existing, us_prospect, dach_prospect]],
            "blank_id": [False, True, False],
            "bad_amount_home": [True, False, False],
            "deleted": False,
            "closed_lag_s": 5 * 3600,
            "modified_u": 0.5,
        }
    )
    rows["created_s"] = rows["created_day"] * _DAY_S + 10 * 3600
    rows["eur"] = rows["amount"]
    return rows


def _customer_dates(rng: np.random.Generator, customers: pd.DataFrame, deals: pd.DataFrame) -> None:
    """Accounts exist in the CRM a while before their first deal is opened."""
    first_deal = deals.groupby("cust")["created_day"].min().reindex(customers.index)
    lead_time = np.ceil(rng.exponential(150.0, len(customers))).astype(np.int64)
    no_deal = _between(
        rng,
        np.full(len(customers), _day(datetime.date(2024, 1, 8))),
        np.full(len(customers), _day(datetime.date(2026, 9, 30))),
    )
    created = np.where(first_deal.isna(), no_deal, first_deal.fillna(0).to_numpy() - lead_time)
    created = np.maximum(created, _day(datetime.date(2021, 3, 1)))
    customers["created_s"] = created * _DAY_S + rng.integers(7 * 3600, 19 * 3600, len(customers))
    customers["modified_u"] = rng.random(len(customers))
    customers["deleted"] = False


def _with_deleted_customers(rng: np.random.Generator, customers: pd.DataFrame) -> pd.DataFrame:
    """A few duplicate accounts, created by mistake and deleted, with no deals attached."""
    dups = customers.iloc[np.sort(rng.choice(len(customers), size=3, replace=False))].copy()
    dups["created_s"] += rng.integers(30, 300, len(dups)) * _DAY_S
    dups["deleted"] = True
    dups["first_win"] = _NEVER
    out = pd.concat([customers.assign(cust=customers.index), dups.assign(cust=-1)])
    out = out.sort_values("created_s", kind="stable", ignore_index=True)
    out["customer_id"] = "C-" + pd.Series(np.arange(1, len(out) + 1)).astype(str).str.zfill(4)
    return out


def _responses(rng: np.random.Generator, customers: pd.DataFrame) -> pd.DataFrame:
    """NPS responses of the full history: scores drawn to quota per team and period."""
    first_win = customers["first_win"].to_numpy()
    team = customers["team_idx"].to_numpy()
    frames = []
    for p in _periods():
        q = p.quarter
        if q.responses == 0:
            continue
        q_start, q_end = _day(q.start), _day(q.end)
        eligible = first_win < p.end
        n_period = q.responses * (p.end - p.start + 1) / (q_end - q_start + 1)
        for t in range(len(TEAMS)):
            pool = np.flatnonzero(eligible & (team == t))
            n = round(n_period * len(pool) / eligible.sum())
            cust = pool[rng.integers(0, len(pool), n)]
            day = _between(rng, np.maximum(p.start, first_win[cust] + 1), np.full(n, p.end))
            nps = q.nps + _TEAM_NPS_OFFSET[t] + (_CYCLE_LATE_NPS_BONUS if p.late else 0.0)
            detractors = _CYCLE_LATE_DETRACTORS if p.late else q.detractors
            n_det = round(detractors * n)
            n_pro = round((detractors + nps / 100.0) * n)
            # In the cycle, later responses are likelier to be promoters: the score distribution
            # shifts up while the quarter runs, so NPS improves day by day.
            trend = _NPS_TREND if q.start == DEMO_CYCLE_START else 0.0
            key = trend * (day - q_start) / (q_end - q_start + 1) + rng.normal(0.0, 1.0, n)
            rank = np.empty(n, dtype=np.int64)
            rank[np.argsort(key, kind="stable")] = np.arange(n)
            category = np.where(rank < n_det, 0, np.where(rank >= n - n_pro, 2, 1))
            frames.append(
                pd.DataFrame(
                    {"cust": cust, "day": day, "category": category, "survey": q.label.lower()}
                )
            )
    responses = pd.concat(frames, ignore_index=True)
    n = len(responses)
    category = responses["category"].to_numpy()
    # Detractors mostly give 5 or 6, rarely 0; promoters split between 9 and 10.
    detractor = rng.choice(7, size=n, p=np.array([1, 1, 1, 2, 3, 5, 7]) / 20)
    passive = rng.choice([7, 8], size=n, p=[0.45, 0.55])
    promoter = rng.choice([9, 10], size=n, p=[0.55, 0.45])
    responses["score"] = np.choose(category, [detractor, passive, promoter])
    comment = np.array(_COMMENTS, dtype=object)[category, rng.integers(0, 4, n)]
    responses["comment"] = np.where(rng.random(n) < 0.25, comment, "")
    responses["submitted_s"] = responses["day"] * _DAY_S + rng.integers(8 * 3600, 20 * 3600, n)
    responses["deleted"] = False

    dups = responses.iloc[np.sort(rng.choice(n, size=4, replace=False))].copy()
    dups["submitted_s"] += rng.integers(60, 600, len(dups))
    dups["deleted"] = True
    # The one broken response from the module docstring.
    dach_customer = int(np.flatnonzero((team == 0) & (first_win < _day(DEMO_CYCLE_START)))[0])
    bad = pd.DataFrame(
        {
            "cust": [dach_customer],
            "day": [_day(DEMO_CYCLE_START) + 13],
            "score": [11],
            "comment": ["Best vendor ever!!"],
            "survey": [_QUARTERS[4].label.lower()],
            "deleted": [False],
        }
    )
    bad["submitted_s"] = bad["day"] * _DAY_S + 15 * 3600
    responses = pd.concat([responses, dups, bad], ignore_index=True)
    responses = responses.sort_values("submitted_s", kind="stable", ignore_index=True)
    responses["response_id"] = "R-" + pd.Series(np.arange(1, len(responses) + 1)).astype(
        str
    ).str.zfill(6)
    responses["survey_id"] = "nps-" + responses["survey"]
    return responses


@dataclass(frozen=True)
class _History:
    owners: pd.DataFrame
    customers: pd.DataFrame  # with deleted duplicates and customer_id
    deals: pd.DataFrame
    responses: pd.DataFrame
    fx: pd.DataFrame
    customer_ids: np.ndarray  # customer_id by internal customer number
    customer_teams: np.ndarray  # team name by internal customer number


def _history(seed: int) -> _History:
    rng = np.random.default_rng(seed)
    owners = _owners()
    customers = _customers(rng, owners)
    fx = _fx_rates(rng)
    deals = _deals(rng, customers, owners, fx)
    _customer_dates(rng, customers, deals)
    responses = _responses(rng, customers)
    teams = customers["team"].to_numpy()
    customers = _with_deleted_customers(rng, customers)
    real = customers[customers["cust"] >= 0].sort_values("cust")
    return _History(owners, customers, deals, responses, fx, real["customer_id"].to_numpy(), teams)


def _timestamps(seconds: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(seconds, unit="s").strftime("%Y-%m-%dT%H:%M:%SZ"))


def _dates(days: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(days, unit="D").strftime("%Y-%m-%d"))


def _flags(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, "true", "false")


def _customers_as_of(h: _History, as_of_day: int) -> pd.DataFrame:
    end_s = (as_of_day + 1) * _DAY_S - 1
    c = h.customers[h.customers["created_s"] <= end_s].reset_index(drop=True)
    created = c["created_s"].to_numpy()
    modified = created + np.floor(c["modified_u"].to_numpy() * (end_s - created)).astype(np.int64)
    return pd.DataFrame(
        {
            "source": SOURCE,
            "customer_id": c["customer_id"],
            "name": c["name"],
            "segment": np.array(SEGMENTS)[c["segment_idx"].to_numpy()],
            "region": np.array(_REGIONS)[c["team_idx"].to_numpy()],
            "industry": c["industry"],
            "owner_id": c["owner_id"],
            "team": c["team"],
            "created_at": _timestamps(created),
            "last_modified_at": _timestamps(modified),
            "is_deleted": _flags(c["deleted"].to_numpy(dtype=bool)),
        }
    )


def _deals_as_of(h: _History, as_of_day: int) -> pd.DataFrame:
    end_s = (as_of_day + 1) * _DAY_S - 1
    d = h.deals[h.deals["created_s"] <= end_s].reset_index(drop=True)
    created = d["created_s"].to_numpy()
    close = d["close_day"].to_numpy()
    closed = close <= as_of_day
    won = closed & d["won"].to_numpy(dtype=bool)
    # Open deals move through the stages as their planned close date approaches.
    progress = (as_of_day - d["created_day"].to_numpy()) / np.maximum(
        close - d["created_day"].to_numpy(), 1
    )
    open_stage = np.array(_OPEN_STAGES)[np.digitize(progress, [0.25, 0.5, 0.75])]
    stage = np.where(closed, np.where(won, "Closed Won", "Closed Lost"), open_stage)

    rate_day = np.where(closed, close, d["created_day"].to_numpy())
    currency = d["currency"].to_numpy()
    rate = np.where(currency == "USD", _usd_rate(h.fx, rate_day), 1.0)
    amount = d["amount"].to_numpy(dtype=float)
    amount_home = np.where(d["bad_amount_home"].to_numpy(dtype=bool), np.nan, amount * rate)

    modified = np.where(
        closed,
        close * _DAY_S + d["closed_lag_s"].to_numpy(),
        created + np.floor(d["modified_u"].to_numpy() * (end_s - created)).astype(np.int64),
    )
    deleted = d["deleted"].to_numpy(dtype=bool)
    modified = np.clip(modified, created, end_s)
    cust = d["cust"].to_numpy(dtype=np.int64)
    return pd.DataFrame(
        {
            "source": SOURCE,
            "deal_id": d["deal_id"],
            "customer_id": h.customer_ids[cust],
            "name": d["name"],
            "owner_id": d["owner_id"],
            "team": h.customer_teams[cust],
            "pipeline": "default",
            "stage": stage,
            "is_closed": _flags(closed),
            "is_won": _flags(won),
            "amount": amount.round(2),
            "currency": currency,
            "amount_home": np.round(amount_home, 2),
            "created_at": _timestamps(created),
            "close_date": _dates(close),
            "deal_type": d["deal_type"],
            "last_modified_at": _timestamps(modified),
            "is_deleted": _flags(deleted),
        }
    )


def _responses_as_of(h: _History, as_of_day: int) -> pd.DataFrame:
    end_s = (as_of_day + 1) * _DAY_S - 1
    r = h.responses[h.responses["submitted_s"] <= end_s].reset_index(drop=True)
    submitted = _timestamps(r["submitted_s"].to_numpy())
    return pd.DataFrame(
        {
            "source": SOURCE,
            "response_id": r["response_id"],
            "customer_id": h.customer_ids[r["cust"].to_numpy(dtype=np.int64)],
            "score": r["score"].astype(int),
            "submitted_at": submitted,
            "survey_id": r["survey_id"],
            "comment": r["comment"],
            "last_modified_at": submitted,
            "is_deleted": _flags(r["deleted"].to_numpy(dtype=bool)),
        }
    )


def _fx_as_of(h: _History, as_of_day: int) -> pd.DataFrame:
    fx = h.fx[h.fx["valid_from"] <= as_of_day]
    valid_to = _dates(fx["valid_to"].to_numpy())
    # The rate of today has no known end yet; an end date would lie after as_of.
    valid_to[fx["valid_to"].to_numpy() > as_of_day + 1] = ""
    return pd.DataFrame(
        {
            "source": SOURCE,
            "currency": fx["currency"].to_numpy(),
            "rate_to_home": fx["rate"].to_numpy(),
            "valid_from": _dates(fx["valid_from"].to_numpy()),
            "valid_to": valid_to,
        }
    )


def generate_demo_org(
    path: pathlib.Path, *, seed: int = DEMO_SEED, as_of: datetime.date = DEMO_AS_OF
) -> dict[str, int]:
    """Write deals, customers, nps_responses, owners, fx_rates CSVs into path; return row counts.

    `path` is created if missing. The counts are keyed by file name ("deals.csv", ...). Open
    deals are the one thing dated after `as_of` (their planned close_date); see the module
    docstring for the story the data tells and the deliberately bad records.
    """
    if not DATA_START <= as_of <= CYCLE_END:
        raise ValueError(f"as_of must lie between {DATA_START} and {CYCLE_END}, got {as_of}")
    history = _history(seed)
    as_of_day = _day(as_of)
    tables = {
        "owners.csv": (history.owners, None),
        "customers.csv": (_customers_as_of(history, as_of_day), None),
        "deals.csv": (_deals_as_of(history, as_of_day), "%.2f"),
        "nps_responses.csv": (_responses_as_of(history, as_of_day), None),
        "fx_rates.csv": (_fx_as_of(history, as_of_day), "%.4f"),
    }
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, (frame, float_format) in tables.items():
        frame.to_csv(path / name, index=False, lineterminator="\n", float_format=float_format)
    return {name: len(frame) for name, (frame, _) in tables.items()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m connectors.demo_org TARGET_FOLDER")
    for file, rows in generate_demo_org(pathlib.Path(sys.argv[1])).items():
        print(f"{file}: {rows}")

"""Tests for the demo organisation generator: shape, determinism, dates and the story it tells."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from connectors.demo_org import (
    CUSTOMERS_COLUMNS,
    DEALS_COLUMNS,
    DEMO_AS_OF,
    DEMO_CYCLE_START,
    FX_COLUMNS,
    NPS_COLUMNS,
    OWNERS_COLUMNS,
    TEAMS,
    generate_demo_org,
)

FILES = ("owners.csv", "customers.csv", "deals.csv", "nps_responses.csv", "fx_rates.csv")
Q3 = (dt.date(2026, 7, 1), dt.date(2026, 9, 30))
Q4_SO_FAR = (DEMO_CYCLE_START, DEMO_AS_OF)
Q4_ELAPSED = ((DEMO_AS_OF - DEMO_CYCLE_START).days + 1) / 92


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo")
    generate_demo_org(path)
    return path


def read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, dtype=str, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def tables(demo_dir: Path) -> dict[str, pd.DataFrame]:
    return {name.removesuffix(".csv"): read(demo_dir, name) for name in FILES}


def valid_frames(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, ...]:
    """Rows a metric would count: not deleted, and not one of the deliberately bad records."""
    customers = tables["customers"]
    customers = customers[customers["is_deleted"] == "false"]
    deals = tables["deals"].copy()
    deals["amount"] = deals["amount"].astype(float)
    deals["amount_home"] = deals["amount_home"].astype(float)
    deals = deals[
        (deals["is_deleted"] == "false")
        & deals["deal_id"].notna()
        & deals["amount_home"].notna()
        & (deals["amount"] >= 0)
    ].copy()
    deals["close_date"] = pd.to_datetime(deals["close_date"]).dt.date
    deals["is_won"] = deals["is_won"] == "true"
    deals["is_closed"] = deals["is_closed"] == "true"
    nps = tables["nps_responses"].copy()
    nps["score"] = nps["score"].astype(int)
    nps = nps[(nps["is_deleted"] == "false") & nps["score"].between(0, 10)].copy()
    nps["submitted_date"] = pd.to_datetime(nps["submitted_at"], utc=True).dt.date
    nps = nps.merge(customers[["customer_id", "team"]], on="customer_id", how="left")
    return customers, deals, nps


def of_team(frame: pd.DataFrame, team: str) -> pd.DataFrame:
    return frame if team == "all" else frame[frame["team"] == team]


def figures(tables: dict[str, pd.DataFrame], window: tuple[dt.date, dt.date]) -> pd.DataFrame:
    """The demo's three key results per team and overall, computed with plain pandas."""
    customers, deals, nps = valid_frames(tables)
    start, end = window
    won_before = deals[deals["is_won"] & (deals["close_date"] < start)]
    existing = set(won_before["customer_id"])
    in_window = deals["close_date"].between(start, end)
    closed = deals[deals["is_closed"] & in_window]
    revenue = deals[deals["is_won"] & in_window & deals["customer_id"].isin(existing)]
    responses = nps[nps["submitted_date"].between(start, end)]

    rows = {}
    for team in (*TEAMS, "all"):
        n_existing = of_team(customers, team)["customer_id"].isin(existing).sum()
        scores = of_team(responses, team)["score"]
        team_closed = of_team(closed, team)
        team_revenue = of_team(revenue, team)["amount_home"].sum()
        rows[team] = {
            "revenue_per_existing_customer": team_revenue / n_existing if n_existing else None,
            "existing_customers": n_existing,
            "nps": 100 * ((scores >= 9).sum() - (scores <= 6).sum()) / len(scores),
            "responses": len(scores),
            "win_rate": team_closed["is_won"].sum() / len(team_closed),
            "closed_deals": len(team_closed),
        }
    return pd.DataFrame(rows).T


def test_same_seed_and_as_of_give_identical_bytes(tmp_path: Path) -> None:
    first = generate_demo_org(tmp_path / "a")
    second = generate_demo_org(tmp_path / "b")
    assert first == second
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    generate_demo_org(tmp_path / "a")
    generate_demo_org(tmp_path / "b", seed=8)
    a, b = (tmp_path / "a" / "deals.csv").read_bytes(), (tmp_path / "b" / "deals.csv").read_bytes()
    assert a != b


def test_counts_match_files(tmp_path: Path) -> None:
    counts = generate_demo_org(tmp_path / "new" / "folder")
    assert set(counts) == set(FILES)
    for name, rows in counts.items():
        assert len(read(tmp_path / "new" / "folder", name)) == rows


def test_columns(tables: dict[str, pd.DataFrame]) -> None:
    assert list(tables["owners"].columns) == OWNERS_COLUMNS
    assert list(tables["customers"].columns) == CUSTOMERS_COLUMNS
    assert list(tables["deals"].columns) == DEALS_COLUMNS
    assert list(tables["nps_responses"].columns) == NPS_COLUMNS
    assert list(tables["fx_rates"].columns) == FX_COLUMNS
    assert OWNERS_COLUMNS == ["source", "owner_id", "name", "email", "team"]
    assert FX_COLUMNS == ["source", "currency", "rate_to_home", "valid_from", "valid_to"]
    for name in ("owners", "customers", "deals", "nps_responses", "fx_rates"):
        assert (tables[name]["source"] == "demo").all()


def test_sizes(tables: dict[str, pd.DataFrame]) -> None:
    assert 250 <= len(tables["customers"]) <= 350
    assert 2_500 <= len(tables["deals"]) <= 3_500
    assert 650 <= len(tables["nps_responses"]) <= 950
    owners_per_team = tables["owners"]["team"].value_counts()
    assert set(owners_per_team.index) == set(TEAMS)
    assert owners_per_team.between(3, 5).all()


def test_value_formats(tables: dict[str, pd.DataFrame]) -> None:
    deals, customers, nps = tables["deals"], tables["customers"], tables["nps_responses"]
    assert deals["deal_id"].dropna().str.fullmatch(r"D-\d{6}").all()
    assert customers["customer_id"].str.fullmatch(r"C-\d{4}").all()
    assert nps["response_id"].str.fullmatch(r"R-\d{6}").all()
    assert tables["owners"]["owner_id"].str.fullmatch(r"O-\d{2}").all()
    assert tables["owners"]["email"].str.fullmatch(r"[a-z]+\.[a-z]+@demo-org\.example").all()
    flags = [deals[c] for c in ("is_closed", "is_won", "is_deleted")] + [customers["is_deleted"]]
    flags.append(nps["is_deleted"])
    for column in flags:
        assert column.isin(["true", "false"]).all(), column.name
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert deals["created_at"].str.fullmatch(stamp).all()
    assert deals["close_date"].str.fullmatch(r"\d{4}-\d\d-\d\d").all()
    assert nps["submitted_at"].str.fullmatch(stamp).all()
    assert set(deals["deal_type"]) == {"new_business", "existing_business", "renewal"}
    assert (deals["pipeline"] == "default").all()
    assert set(deals["currency"]) == {"EUR", "USD", "XYZ"}
    assert set(customers["segment"]) == {"SMB", "Mid-Market", "Enterprise"}


def test_nothing_but_open_deals_is_dated_after_as_of(tables: dict[str, pd.DataFrame]) -> None:
    end = pd.Timestamp(DEMO_AS_OF, tz="UTC") + pd.Timedelta(days=1)
    stamps = {
        "customers": ("created_at", "last_modified_at"),
        "deals": ("created_at", "last_modified_at"),
        "nps_responses": ("submitted_at", "last_modified_at"),
    }
    for name, cols in stamps.items():
        for col in cols:
            assert (pd.to_datetime(tables[name][col], utc=True) < end).all(), (name, col)
    deals = tables["deals"]
    late = pd.to_datetime(deals["close_date"]).dt.date > DEMO_AS_OF
    assert late.any()
    assert (deals.loc[late, "is_closed"] == "false").all()
    assert (
        deals.loc[deals["is_closed"] == "false", "stage"].isin(
            ["Prospecting", "Qualification", "Proposal", "Negotiation"]
        )
    ).all()
    fx = tables["fx_rates"]
    assert (pd.to_datetime(fx["valid_from"]).dt.date <= DEMO_AS_OF).all()
    assert (pd.to_datetime(fx["valid_to"].dropna()).dt.date <= DEMO_AS_OF).all()


def test_deals_are_internally_consistent(tables: dict[str, pd.DataFrame]) -> None:
    customers, deals, _ = valid_frames(tables)
    created = pd.to_datetime(deals["created_at"], utc=True)
    close = pd.to_datetime(deals["close_date"]).dt.tz_localize("UTC")
    cycle = (close - created.dt.floor("D")).dt.days
    assert cycle.between(10, 120).all()
    assert (pd.to_datetime(deals["last_modified_at"], utc=True) >= created).all()
    assert (deals["stage"] == "Closed Won").eq(deals["is_won"]).all()
    assert (~deals["is_won"] | deals["is_closed"]).all()
    # Team and region follow the customer.
    merged = deals.merge(customers, on="customer_id", suffixes=("", "_customer"))
    assert len(merged) == len(deals)
    assert (merged["team"] == merged["team_customer"]).all()
    regions = {"sales-dach": "DACH", "sales-uk": "UK&I", "sales-us": "North America"}
    assert (customers["team"].map(regions) == customers["region"]).all()
    # Home amounts use the FX rate of the close date (created date while open).
    euro = deals["currency"] == "EUR"
    assert (deals.loc[euro, "amount"] == deals.loc[euro, "amount_home"]).all()
    usd_rate = deals.loc[~euro, "amount_home"] / deals.loc[~euro, "amount"]
    assert usd_rate.between(0.86, 0.95).all()
    assert (deals.loc[deals["team"] == "sales-dach", "currency"] == "EUR").all()
    assert (deals.loc[deals["team"] == "sales-us", "currency"] == "USD").all()


def test_deal_types_follow_first_purchase(tables: dict[str, pd.DataFrame]) -> None:
    _, deals, _ = valid_frames(tables)
    first_win = deals[deals["is_won"]].groupby("customer_id")["close_date"].min()
    created = pd.to_datetime(deals["created_at"], utc=True).dt.date
    customer_first_win = deals["customer_id"].map(first_win)
    expansion = deals["deal_type"] != "new_business"
    assert (customer_first_win[expansion] < created[expansion]).all()
    new = ~expansion & customer_first_win.notna()
    assert (customer_first_win[new] >= created[new]).all()
    renewal = deals["deal_type"] == "renewal"
    since_first_win = deals["close_date"] - customer_first_win
    assert (since_first_win[renewal] >= dt.timedelta(days=300)).all()


def test_fx_rates_cover_every_deal_date(tables: dict[str, pd.DataFrame]) -> None:
    fx = tables["fx_rates"].copy()
    fx["rate_to_home"] = fx["rate_to_home"].astype(float)
    usd = fx[fx["currency"] == "USD"]
    assert usd["rate_to_home"].between(0.86, 0.95).all()
    assert (usd["valid_to"].iloc[:-1].to_numpy() == usd["valid_from"].iloc[1:].to_numpy()).all()
    # The rate valid today stays valid: open deals convert at it too.
    assert usd["valid_to"].iloc[-1:].isna().all()
    assert fx["valid_to"].isna().sum() == 2
    eur = fx[fx["currency"] == "EUR"]
    assert len(eur) == 1 and eur["rate_to_home"].iloc[0] == 1.0
    earliest = pd.to_datetime(tables["deals"]["created_at"], utc=True).min().date()
    assert pd.to_datetime(usd["valid_from"]).min().date() <= earliest
    assert eur["valid_from"].iloc[0] == usd["valid_from"].iloc[0]


def test_bad_records_are_few_and_present(tables: dict[str, pd.DataFrame]) -> None:
    deals, nps = tables["deals"], tables["nps_responses"]
    assert (deals["currency"] == "XYZ").sum() == 1
    assert deals.loc[deals["currency"] == "XYZ", "amount_home"].isna().all()
    assert deals["deal_id"].isna().sum() == 1
    assert (deals["amount"].astype(float) < 0).sum() == 1
    assert (nps["score"].astype(int) > 10).sum() == 1
    assert 0.005 <= (deals["is_deleted"] == "true").mean() <= 0.02


def test_later_as_of_only_adds_history(tmp_path: Path) -> None:
    early = dt.date(2026, 10, 20)
    generate_demo_org(tmp_path / "early", as_of=early)
    generate_demo_org(tmp_path / "late")
    before = read(tmp_path / "early", "deals.csv").set_index("deal_id", drop=False)
    after = read(tmp_path / "late", "deals.csv").set_index("deal_id", drop=False)
    closed_early = before[before["is_closed"] == "true"].index.dropna()
    cols = ["customer_id", "is_won", "amount", "amount_home", "close_date"]
    assert after.loc[closed_early, cols].equals(before.loc[closed_early, cols])
    assert len(after) > len(before)
    with pytest.raises(ValueError):
        generate_demo_org(tmp_path / "x", as_of=dt.date(2027, 1, 5))


def test_key_results_move_as_the_demo_needs(tables: dict[str, pd.DataFrame]) -> None:
    q3, q4 = figures(tables, Q3), figures(tables, Q4_SO_FAR)
    for team in (*TEAMS, "all"):
        assert q4.loc[team, "nps"] > q3.loc[team, "nps"] + 5, team
        assert q4.loc[team, "win_rate"] > q3.loc[team, "win_rate"] + 0.03, team
        pace = q4.loc[team, "revenue_per_existing_customer"] / Q4_ELAPSED
        growth = pace / q3.loc[team, "revenue_per_existing_customer"]
        assert 1.1 <= growth <= 1.3, (team, growth)
    assert 45 <= q3.loc["all", "nps"] <= 53
    assert 58 <= q4.loc["all", "nps"] <= 67
    assert 0.25 <= q3.loc["all", "win_rate"] <= 0.30
    assert 0.32 <= q4.loc["all", "win_rate"] <= 0.36


def test_earlier_quarters_are_steady(tables: dict[str, pd.DataFrame]) -> None:
    quarters = {
        "2026-Q1": (dt.date(2026, 1, 1), dt.date(2026, 3, 31)),
        "2026-Q2": (dt.date(2026, 4, 1), dt.date(2026, 6, 30)),
        "2026-Q3": Q3,
    }
    overall = pd.DataFrame({q: figures(tables, w).loc["all"] for q, w in quarters.items()}).T
    assert overall["nps"].between(44, 54).all()
    assert overall["win_rate"].between(0.24, 0.31).all()
    revenue = overall["revenue_per_existing_customer"]
    assert (revenue.diff().dropna() > 0).all()
    assert (revenue.pct_change().dropna() < 0.1).all()


def test_nps_improves_within_the_cycle(tables: dict[str, pd.DataFrame]) -> None:
    october = figures(tables, (DEMO_CYCLE_START, dt.date(2026, 10, 31))).loc["all", "nps"]
    november = figures(tables, (dt.date(2026, 11, 1), DEMO_AS_OF)).loc["all", "nps"]
    assert november > october + 5

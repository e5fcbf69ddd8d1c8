"""The invariant of staging, for each CRM: after any sequence of changes in the CRM, the staged
tables after incremental syncs equal those of a fresh full sync (same live rows, same values).

Hypothesis draws the change sequences: create, update, delete, undelete, merge, re-associate,
owner team move, stage metadata edit, filter exit, purge, with syncs at random days between
them. Two flavours per CRM: `cursor` draws only changes a cursor can see and never lets the
reconciliation pass run; `sweep` draws every change and lets the last sync fall due for the
reconciliation pass (what catches purges and association-only edits).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from fakes.salesforce import utc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from salesforce_support import settings_for

from connectors.salesforce import SalesforceSource
from core.canonical import CANONICAL_TABLES, CUSTOMERS, DEALS, NPS_RESPONSES, OWNERS
from okr_store.db import create_engine
from okr_store.staging import read_staged, stage, staging_metadata

pytest_plugins = ["salesforce_support"]

NEVER = {"every_days": 100_000, "after_gap_days": 100_000}
WEEKLY = {"every_days": 7, "after_gap_days": 14}
# Changes a cursor cannot see: only the reconciliation pass finds them.
SWEEP_ONLY = {"purge", "quiet_reassociate"}


class Staging:
    """A throwaway SQLite staging database."""

    def __init__(self, folder: Path, name: str):
        self.engine = create_engine(f"sqlite:///{folder / name}.db")
        staging_metadata.create_all(self.engine)

    def live(self, table: str, source: str) -> pd.DataFrame:
        frame = read_staged(self.engine, table, sources=[source])
        if "is_deleted" in frame:
            frame = frame[~frame["is_deleted"].fillna(False).to_numpy(dtype=bool)]
        key = CANONICAL_TABLES[table].id_column
        return frame.sort_values(key).reset_index(drop=True)


def assert_same_staging(incremental: Staging, full: Staging, source: str) -> None:
    for table in (OWNERS, CUSTOMERS, DEALS, NPS_RESPONSES):
        pd.testing.assert_frame_equal(
            incremental.live(table, source), full.live(table, source), obj=table
        )


def operations(kinds: list[str]):
    """Sequences of (kind, a, b, c): small integers the runner resolves against the CRM's
    records of the moment (modulo their number), so every drawn step applies."""
    step = st.tuples(
        st.sampled_from(kinds), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)
    )
    return st.lists(step, min_size=3, max_size=14)


# -- Salesforce ------------------------------------------------------------------------------

SF_KINDS = [
    "create", "create", "update", "delete", "undelete", "merge", "reassociate", "team_move",
    "role_rename", "filter_exit", "filter_enter", "create_account", "delete_account", "sync",
]  # fmt: skip
SF_STAGES = [("Proposal", False, False), ("Closed Won", True, True), ("Closed Lost", True, False)]
SF_TYPES = ["New Customer", "Renewal", "Existing Customer - Upgrade"]
SF_TEAM_MAP = {"DACH Sales": "sales-dach", "UK Sales": "sales-uk", "Nordics": "sales-nordics"}


def salesforce_org(org) -> None:
    org.clock = utc(2026, 11, 1, 8)
    roles = [org.insert("UserRole", Name=name) for name in ("DACH Sales", "UK Sales")]
    users = [
        org.insert("User", Name=f"User {n}", Email=f"u{n}@acme.example", UserRoleId=roles[n % 2])
        for n in range(3)
    ]
    accounts = [org.insert("Account", Name=f"Account {n}", OwnerId=users[n % 3]) for n in range(3)]
    for n in range(4):
        sf_create(org, n, n, n, n)
    assert accounts


def _pick(ids: list[str], n: int) -> str | None:
    return ids[n % len(ids)] if ids else None


def sf_create(org, a: int, b: int, c: int, n: int) -> None:
    accounts = [r["Id"] for r in org.records["Account"].values() if not r["IsDeleted"]]
    users = list(org.records["User"])
    stage_name, closed, won = SF_STAGES[c % 3]
    org.insert(
        "Opportunity", Name=f"Deal {n}", AccountId=_pick(accounts, a), OwnerId=_pick(users, b),
        StageName=stage_name, IsClosed=closed, IsWon=won, Amount=float(1_000 + 250 * c),
        CloseDate=dt.date(2026, 10, 1) + dt.timedelta(days=c), Type=SF_TYPES[n % 3],
        CreatedDate=org.clock,
    )  # fmt: skip


def sf_apply(org, kind: str, a: int, b: int, c: int) -> None:
    deals = list(org.records["Opportunity"])
    live = [i for i in deals if not org.records["Opportunity"][i]["IsDeleted"]]
    gone = [i for i in deals if org.records["Opportunity"][i]["IsDeleted"]]
    accounts = [i for i, r in org.records["Account"].items() if not r["IsDeleted"]]
    users, roles = list(org.records["User"]), list(org.records["UserRole"])
    deal = _pick(live, a)
    if kind == "create":
        sf_create(org, a, b, c, len(deals))
    elif kind == "update" and deal:
        stage_name, closed, won = SF_STAGES[c % 3]
        org.update("Opportunity", deal, Amount=float(500 + 100 * b), StageName=stage_name,
                   IsClosed=closed, IsWon=won)  # fmt: skip
    elif kind == "delete" and deal:
        org.delete("Opportunity", deal)
    elif kind == "undelete" and gone:
        org.undelete("Opportunity", _pick(gone, a))
    elif kind == "purge" and deals:
        org.purge("Opportunity", _pick(deals, a))
    elif kind == "merge" and len(accounts) > 1:
        master, loser = _pick(accounts, a), _pick(accounts, a + 1 + b % (len(accounts) - 1))
        org.merge("Account", master, loser)
    elif kind == "reassociate" and deal and accounts:
        org.update("Opportunity", deal, AccountId=_pick(accounts, b))
    elif kind == "team_move":
        org.update("User", _pick(users, a), UserRoleId=_pick(roles, b))
    elif kind == "role_rename":
        # A renamed role moves every user in it to another team; no User record changes.
        org.update("UserRole", _pick(roles, a), Name=["DACH Sales", "UK Sales", "Nordics"][b % 3])
    elif kind == "filter_exit" and deal:
        org.update("Opportunity", deal, Type="Partner Referral")  # outside deals.where
    elif kind == "filter_enter":
        outside = [i for i in live if org.records["Opportunity"][i]["Type"] not in SF_TYPES]
        if outside:
            org.update("Opportunity", _pick(outside, a), Type=SF_TYPES[b % 3])
    elif kind == "create_account":
        org.insert("Account", Name=f"Account {a}-{b}", OwnerId=_pick(users, c))
    elif kind == "delete_account" and accounts:
        org.delete("Account", _pick(accounts, a))


def sf_source(server, reconcile: dict) -> SalesforceSource:
    config = settings_for(
        server,
        owners={"team_from": "role", "team_map": SF_TEAM_MAP},
        deals={"where": {"Type": SF_TYPES}},
        reconcile=reconcile,
        sync={"lookback_seconds": 60},
    )
    return SalesforceSource("sf", config, clock=lambda: server.org.clock)


@pytest.mark.parametrize("flavour", ["cursor", "sweep"])
def test_salesforce_incremental_syncs_equal_a_fresh_full_sync(salesforce, flavour):
    kinds = SF_KINDS + (["purge"] if flavour == "sweep" else [])
    reconcile = WEEKLY if flavour == "sweep" else NEVER

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(operations(kinds))
    def run(steps):
        server = salesforce()
        org = server.org
        salesforce_org(org)
        with tempfile.TemporaryDirectory() as folder:
            incremental = Staging(Path(folder), "incremental")
            stage(sf_source(server, reconcile), incremental.engine, home_currency="EUR")
            for kind, a, b, c in steps:
                org.clock += dt.timedelta(minutes=1)
                if kind == "sync":
                    org.clock += dt.timedelta(days=a % 5)
                    stage(sf_source(server, reconcile), incremental.engine, home_currency="EUR")
                else:
                    sf_apply(org, kind, a, b, c)
            org.clock += dt.timedelta(days=8, minutes=1)  # the weekly sweep falls due
            reports = stage(sf_source(server, reconcile), incremental.engine, home_currency="EUR")
            deals = next(r for r in reports if r.object == DEALS)
            assert bool(deals.details["reconciled"]) == (flavour == "sweep")
            full = Staging(Path(folder), "full")
            stage(sf_source(server, reconcile), full.engine, home_currency="EUR")
            assert_same_staging(incremental, full, "sf")
        server.stop()

    run()

"""API calls of Salesforce syncs against the fake org: one full sync, then incremental ones."""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fakes.salesforce import FakeOrg, FakeSalesforce, make_jwt_keys, make_tls_files, utc  # noqa: E402

from connectors.salesforce import SalesforceSource, SalesforceSourceSettings  # noqa: E402
from okr_store.db import create_engine  # noqa: E402
from okr_store.schema import upgrade  # noqa: E402
from okr_store.staging import stage  # noqa: E402

ACCOUNTS = 1_000
OPPORTUNITIES = 20_000
CHANGES = (0, 1, 100, 1_999, 2_000, 2_001, 5_000, 9_999)


def build_org(public_key: str) -> tuple[FakeOrg, list[str]]:
    org = FakeOrg(jwt_public_key=public_key)
    org.clock = utc(2026, 11, 1, 8)
    role = org.insert("UserRole", Name="DACH Sales")
    owners = [
        org.insert("User", Name=f"Owner {n}", Email=f"o{n}@acme.example", UserRoleId=role)
        for n in range(20)
    ]
    accounts = [
        org.insert("Account", Name=f"Account {n}", OwnerId=owners[n % 20]) for n in range(ACCOUNTS)
    ]
    deals = [
        org.insert(
            "Opportunity",
            Name=f"Deal {n}",
            AccountId=accounts[n % ACCOUNTS],
            OwnerId=owners[n % 20],
            StageName="Proposal",
            IsClosed=False,
            IsWon=False,
            Amount=1_000.0 + n,
            CloseDate=dt.date(2026, 12, 1),
            Type="New Customer",
            # spread over the weeks before, as a real org's records are
            SystemModstamp=utc(2026, 11, 1, 8) - dt.timedelta(minutes=OPPORTUNITIES - n),
        )
        for n in range(OPPORTUNITIES)
    ]
    return org, deals


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="krpulse-bench-sf-"))
    tls = make_tls_files(folder)
    private_key, public_key = make_jwt_keys()
    os.environ.update(
        REQUESTS_CA_BUNDLE=str(tls[0]),
        SF_CONSUMER_KEY="fake-consumer-key",
        SF_PRIVATE_KEY=private_key,
    )
    org, deals = build_org(public_key)
    engine = create_engine(f"sqlite:///{folder / 'bench.db'}")
    upgrade(engine)
    with FakeSalesforce(org, tls, max_lifetime=3_600) as server:
        settings = SalesforceSourceSettings.model_validate(
            {
                "name": "sf",
                "type": "salesforce",
                "login_url": server.base_url,
                "auth": {
                    "method": "jwt",
                    "username": org.username,
                    "consumer_key_env": "SF_CONSUMER_KEY",
                    "private_key_env": "SF_PRIVATE_KEY",
                },
                "nps": {"mode": "none"},
                "sync": {"bulk_poll_seconds": 0.05},
            }
        )
        source = SalesforceSource("sf", settings)
        rows = []

        def run(label: str, changed: int) -> None:
            used = org.api_used
            started = time.perf_counter()
            reports = {r.object: r for r in stage(source, engine, home_currency="EUR")}
            seconds = time.perf_counter() - started
            deals_report = reports["deals"]
            total = org.api_used - used
            rows.append(
                f"| {label} | {changed:,} | {deals_report.fetched:,} | "
                f"{deals_report.details['api_path']} | {deals_report.api_calls} | "
                f"{math.ceil(changed / 2000)} | {total} | {total - deals_report.api_calls} | "
                f"{seconds:.1f} s |"
            )

        run("full (first) sync", OPPORTUNITIES)
        for round_, changes in enumerate(CHANGES, start=1):
            # Each round's changes happen an hour after the last: outside the lookback window.
            org.clock = utc(2026, 11, 1, 8) + dt.timedelta(hours=round_)
            for deal in deals[:changes]:
                org.update("Opportunity", deal, Amount=2_000.0 + round_)
            run("incremental", changes)
    print(f"{OPPORTUNITIES:,} opportunities, {ACCOUNTS:,} accounts, 20 users; SQLite staging\n")
    print(
        "| sync | opportunities changed | deals fetched | path | deals API calls | "
        "ceil(changed / 2,000) | API calls, whole sync | other objects + setup | wall time |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""Counts the API calls (and times) of HubSpot syncs against the fake portal, next to the floor."""

from __future__ import annotations

import math
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fakes.hubspot import TOKEN, Portal, running, standard_portal  # noqa: E402

from connectors.hubspot import HubSpotSource, HubSpotSourceSettings  # noqa: E402
from okr_store.db import create_engine  # noqa: E402
from okr_store.schema import upgrade  # noqa: E402
from okr_store.staging import stage  # noqa: E402

COMPANIES, DEALS, RESPONSES = 2_000, 20_000, 3_000
STAGES = ["appointmentscheduled", "contractsent", "closedwon", "closedlost"]
# Setup calls of every run: 3 property reads, the pipelines, active and archived owners.
CONSTANT = 6


class SpreadPortal(Portal):
    """Records modified a minute apart, as in a real portal's history (not within one second),
    so the lookback window re-reads a handful of records, not the whole seed."""

    def add(self, object_type: str, properties: dict, *, record_id: int | None = None) -> str:
        self.tick(60)
        return super().add(object_type, properties, record_id=record_id)


def seed(portal: Portal, rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    standard_portal(portal)
    companies = [
        portal.add(
            "companies",
            {
                "name": f"Company {i}",
                "country": "Germany",
                "hubspot_owner_id": "101",
                "customer_segment": "SMB",
            },
        )
        for i in range(COMPANIES)
    ]
    deals = []
    for i in range(DEALS):
        deal = portal.add(
            "deals",
            {
                "dealname": f"Deal {i}",
                "amount": str(rng.randint(1, 50) * 500),
                "deal_currency_code": rng.choice(["EUR", "USD"]),
                "amount_in_home_currency": "1000",
                "dealstage": rng.choice(STAGES),
                "pipeline": "default",
                "closedate": "2026-10-15T12:00:00Z",
                "hubspot_owner_id": "101",
                "dealtype": "newbusiness",
            },
        )
        portal.associate("deals", deal, "companies", rng.choice(companies), primary=True)
        deals.append(deal)
    contacts = [portal.add("contacts", {"email": f"c{i}@example.com"}) for i in range(500)]
    for contact in contacts:
        portal.associate("contacts", contact, "companies", rng.choice(companies), primary=True)
    responses = []
    for _ in range(RESPONSES):
        response = portal.add(
            "feedback_submissions",
            {
                "hs_survey_type": "NPS",
                "hs_value": str(rng.randint(0, 10)),
                "hs_submission_timestamp": "2026-10-20T09:00:00Z",
                "hs_survey_id": "nps",
            },
        )
        portal.associate("feedback_submissions", response, "contacts", rng.choice(contacts))
        responses.append(response)
    portal.tick(3600)  # later changes fall outside the lookback of the seed
    return companies, deals, responses


def run(label: str, source: HubSpotSource, engine, portal: Portal, floor: int) -> None:
    before = len(portal.requests)
    start = time.perf_counter()
    reports = stage(source, engine, home_currency="EUR")
    seconds = time.perf_counter() - start
    calls = len(portal.requests) - before
    changed = ", ".join(f"{r.object} {r.changed}" for r in reports if r.changed or r.deleted)
    print(f"| {label} | {changed or 'none'} | {calls} | {floor} | {seconds:.1f} s |")


def main() -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible benchmark data, not secrets
    portal = SpreadPortal()
    companies, deals, responses = seed(portal, rng)
    with running(portal) as fake, tempfile.TemporaryDirectory() as tmp:
        settings = HubSpotSourceSettings(
            name="hubspot",
            type="hubspot",
            base_url=fake.base_url,
            portal_currency="EUR",
            company_properties={"segment": "customer_segment"},
        )
        source = HubSpotSource("hubspot", settings, TOKEN, "Europe/Berlin")
        engine = create_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        print("| run | changed | API calls | floor | wall time |\n|---|---|---|---|---|")
        pages = sum(
            math.ceil(len(portal.objects[t]) / 100)
            for t in ("companies", "deals", "feedback_submissions")
        )
        associations = math.ceil(len(deals) / 1000) + 2 * math.ceil(len(responses) / 1000)
        run("first (full list)", source, engine, portal, pages + associations + CONSTANT)

        # Nothing changed: each object costs one search page (the lookback's few records) and
        # one archived list.
        run("incremental, nothing changed", source, engine, portal, 3 + 3 + CONSTANT)

        # A busy day: 1,000 deals and 100 companies changed, 200 new NPS responses, 20 archived.
        for deal in rng.sample(deals, 1_000):
            portal.update("deals", deal, dealstage=rng.choice(STAGES))
        for company in rng.sample(companies, 100):
            portal.update("companies", company, customer_segment="Mid-Market")
        for _ in range(200):
            response = portal.add(
                "feedback_submissions",
                {
                    "hs_survey_type": "NPS",
                    "hs_value": "9",
                    "hs_submission_timestamp": "2026-11-20T09:00:00Z",
                    "hs_survey_id": "nps",
                },
            )
            portal.associate("feedback_submissions", response, "contacts", "1025")
        for deal in rng.sample(deals, 20):
            portal.archive("deals", deal)
        floor = (math.ceil(1_000 / 200) + 1) + 1 + (2 + 2) + 3 + CONSTANT
        run("incremental, a busy day", source, engine, portal, floor)

        # 12,000 deals changed at once (a bulk import): two search windows.
        for deal in rng.sample(deals, 12_000):
            portal.update("deals", deal, amount="777")
        floor = math.ceil(12_000 / 200) + math.ceil(12_000 / 1000) + 2 + 3 + CONSTANT
        run("incremental, 12,000 deals changed", source, engine, portal, floor)


if __name__ == "__main__":
    main()

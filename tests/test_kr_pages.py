"""The KR pages the daily flow stores for the dashboard: the records behind a number are the
engine's own (same window, filters and events), so the drill-down and the number agree on
every KR and every day; the chart's expected path is the scoring's."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import views, week
from dashboard.access import AccessPolicy
from dashboard.app import CSRF_PLACEHOLDER, create_app
from kr_metrics.display import format_value, number
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.cli.dashboard import dashboard_data
from pipelines.settings import load_settings
from tests.dashboard_support import CYCLE, make_demo_project

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

Q4_DAYS = st.dates(dt.date(2026, 10, 1), dt.date(2026, 11, 25))


@pytest.fixture(scope="module")
def synced(tmp_path_factory, demo_data):
    project = make_demo_project(tmp_path_factory.mktemp("pages"), demo_data)
    settings = load_settings(project / "krpulse.yaml")
    engine = flow.open_database(settings)
    flow.sync_sources(settings, engine)
    yield settings, engine
    engine.dispose()


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(day=Q4_DAYS)
def test_the_drilldown_of_every_kr_adds_up_to_its_stored_number(synced, day):
    settings_, engine = synced
    flow.run_days(settings_, engine, [day], validate=False)
    store = OkrStore(engine)
    progress = store.progress(as_of=day, on_day_only=True)
    assert len(progress) == 8
    explained = 0
    for row in progress.itertuples():
        stored = store.drilldown(row.cycle, row.kr, as_of=day)
        assert stored is not None and stored["as_of"] == day, row.kr
        if stored["reason"]:
            continue  # a metric without a record-level breakdown says so
        explained += 1
        if number(row.value) is None:  # no data yet (e.g. no closed deal on day one)
            assert number(stored["value"]) is None and stored["total"] == 0, row.kr
            continue
        assert number(stored["value"]) == pytest.approx(number(row.value), rel=1e-9), row.kr
        assert stored["total"] == len(stored["records"])
        records = stored["records"]
        # The stored records sum back to the stored number's own inputs (its progress row):
        # they were selected by the compiled engine with the number's filters and measures.
        assert sum(r["contribution"] for r in records) == pytest.approx(row.numerator), row.kr
        if row.metric in ("win_rate", "nps"):
            weights = sum(r["weight"] for r in records)
            assert weights == pytest.approx(row.denominator), row.kr
            assert sum(r["contribution"] for r in records) / weights * (
                100 if row.metric == "nps" else 1
            ) == pytest.approx(row.value)
        if row.metric != "revenue_per_existing_customer":  # its sample is customers
            assert len(records) == stored["sample_size"] == row.sample_size, row.kr
        else:  # no denominator of records: none is pretended (the pandas list said 1 each)
            assert all(r["weight"] is None for r in records), row.kr
    assert explained == 8  # every KR of the demo lists its records


def test_the_kr_page_reads_what_the_flow_stored(synced):
    settings_, engine = synced
    flow.run_days(settings_, engine, [dt.date(2026, 11, 25)], validate=False)
    data = dashboard_data(settings_, engine)
    detail = views.kr_detail(data, CYCLE, "nps-uk")
    assert (detail["start"], detail["end"]) == (dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert detail["definition"]["current"] and detail["definition"]["filters"] == {
        "team": "sales-uk"
    }
    # A moonshot's linear expected path ends at 70 % of the way (the scoring's policy).
    assert detail["chart"]["expected"][-1] == pytest.approx(50 + 0.7 * 25)
    drill = views.drilldown(data, CYCLE, "win-rate-uk")
    assert drill["available"] and drill["matches_stored"] and drill["entity"] == "deals"


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def _kr_value(html: str) -> str:
    return re.search(r'id="kr-value">([^<]*)<', html).group(1)


def test_the_kr_page_is_cached_until_a_check_in_or_a_new_run_day(tmp_path, demo_data):
    """Built once per store change: a second view reuses the model and its HTML (with each
    visitor's own form token), and a check-in or a newly run day shows right after."""
    project = make_demo_project(tmp_path, demo_data)
    settings_ = load_settings(project / "krpulse.yaml")
    engine = flow.open_database(settings_)
    flow.sync_sources(settings_, engine)
    flow.run_days(settings_, engine, [dt.date(2026, 11, 23), dt.date(2026, 11, 24)], validate=False)
    now = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
    data = dataclasses.replace(dashboard_data(settings_, engine), now=lambda: now)
    app = create_app(data, AccessPolicy(open_access=True))
    url = f"/kr/{CYCLE}/win-rate-dach"
    first = week.cached_kr_page(data, CYCLE, "win-rate-dach")
    again = week.cached_kr_page(data, CYCLE, "win-rate-dach")
    assert again["records"] is first["records"] and again["html"] is first["html"]

    alice = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    bob = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    page = alice.get(url).text
    assert "as of <strong>2026-11-24</strong>" in page and "No check-ins yet." in page
    tokens = {_token(page), _token(bob.get(url).text)}
    assert len(tokens) == 2 and CSRF_PLACEHOLDER not in page
    saved = alice.post(
        f"{url}/check-in",
        data={
            "csrf_token": _token(page),
            "confidence": "4",
            "progress": "Two <i>big</i> wins",
            "problems": "",
            "next_steps": "",
        },
    )
    assert saved.status_code == 303
    after = alice.get(url + "?saved=1").text
    assert "Check-in saved." in after and "Two &lt;i&gt;big&lt;/i&gt; wins" in after
    assert "Check-in saved." not in bob.get(url).text

    flow.run_days(settings_, engine, [dt.date(2026, 11, 25)], validate=False)
    fresh = views.kr_detail(data, CYCLE, "win-rate-dach")["kr"]
    newer = bob.get(url).text
    assert "as of <strong>2026-11-25</strong>" in newer
    assert _kr_value(newer) == fresh["value_text"]
    engine.dispose()


def test_warming_builds_every_kr_page_of_the_cycle_once_per_store_change(synced):
    settings_, engine = synced
    flow.run_days(settings_, engine, [dt.date(2026, 11, 25)], validate=False)
    data = dashboard_data(settings_, engine)
    version = week.store_version(engine)
    krs = list(OkrStore(engine).kr_charts(CYCLE)["kr"])
    assert week.warm_kr_pages(data, CYCLE, version) == len(krs) == 8
    assert week.warm_kr_pages(data, CYCLE, version) == 0  # all built: nothing to do
    warmed = {kr: week.cached_kr_page(data, CYCLE, kr)["records"] for kr in krs}
    # Served from what the warming built; equal to a page built from scratch.
    assert all(week.cached_kr_page(data, CYCLE, kr)["records"] is warmed[kr] for kr in krs)
    assert warmed["win-rate-uk"] == views.drilldown(
        data, CYCLE, "win-rate-uk", owner_names=week.owner_names(data)
    )
    # A warming that finds the store changed stops (another dashboard: nothing built yet).
    flow.run_days(settings_, engine, [dt.date(2026, 11, 24)], validate=False)
    other = dashboard_data(settings_, engine)
    assert week.warm_kr_pages(other, CYCLE, version) == 0
    assert week.warm_kr_pages(other, CYCLE, week.store_version(engine)) == 8


# --- the drill-down on the page: numbers in words, owners by name, sorted and paged ------------


def _client(data: views.DashboardData) -> TestClient:
    return TestClient(create_app(data, AccessPolicy(open_access=True)), base_url="http://127.0.0.1")


def test_the_drilldown_says_its_numerator_and_denominator_in_words(synced):
    settings_, engine = synced
    day = dt.date(2026, 11, 25)
    flow.run_days(settings_, engine, [day], validate=False)
    store = OkrStore(engine)
    client = _client(dashboard_data(settings_, engine))
    progress = store.progress(as_of=day, on_day_only=True).set_index("kr")
    win, records = progress.loc["win-rate-uk"], store.drilldown(CYCLE, "win-rate-uk", as_of=day)
    # The number's inputs are its records' own sums: won deals over closed deals.
    assert win["numerator"] == sum(r["contribution"] for r in records["records"]) > 0
    assert win["denominator"] == sum(r["weight"] for r in records["records"]) > win["numerator"]
    page = client.get(f"/kr/{CYCLE}/win-rate-uk").text
    words = re.search(r'id="records-numbers">([^<]*)<', page).group(1)
    assert (
        words
        == f"{win['numerator']:,.0f} won of {win['denominator']:,.0f} closed deals give {format_value(win['value'], 'win_rate')}."
    )
    existing = progress.loc["revenue-per-existing-customer"]
    page = client.get(f"/kr/{CYCLE}/revenue-per-existing-customer").text
    words = re.search(r'id="records-numbers">([^<]*)<', page).group(1)
    assert words.startswith(
        f"{existing['numerator']:,.0f} EUR won from {existing['denominator']:,.0f} existing customers"
    ), words


def _records_table(html: str) -> str:
    return re.search(r'<table class="krs compact records" id="records">(.*?)</table>', html, re.S)[
        1
    ]


def _column(table: str, index: int) -> list[str]:
    """The text of the `index`th cell of each body row."""
    rows = re.findall(r"<tr>\s*(.*?)</tr>", table.split("<tbody>")[1], re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[index] for row in rows]
    return [re.sub(r"<[^>]+>", "", cell) for cell in cells]


def _owner_cells(table: str) -> list[str]:
    return _column(table, 3)


def test_the_records_table_has_plain_headers_owner_names_and_pages_through_links(synced):
    settings_, engine = synced
    flow.run_days(settings_, engine, [dt.date(2026, 11, 25)], validate=False)
    data = dashboard_data(settings_, engine)
    client = _client(data)
    url = f"/kr/{CYCLE}/win-rate-uk"
    page = client.get(url).text
    table = _records_table(page)
    for raw in ("amount_home", "is_won", "owner_id", "contribution", "customer_id"):
        assert raw not in table
    assert "Amount (EUR)" in table and "Owner" in table and "Outcome" in table
    names = set(week.owner_names(data).values())
    owners = _owner_cells(table)
    assert len(owners) == views.RECORDS_PER_PAGE and set(owners) <= names, owners
    total = week.cached_kr_page(data, CYCLE, "win-rate-uk")["records"]["shown"]
    pages = -(-total // views.RECORDS_PER_PAGE)
    assert f"Page 1 of {pages}" in page and 'rel="prev"' not in page
    # "Next" is a plain link (no script) to the following page; its rows are the next ones.
    next_url = re.search(r'<a rel="next" href="([^"]+)"', page)[1].replace("&amp;", "&")
    second = client.get(next_url).text
    assert f"Page 2 of {pages}" in second and 'rel="prev"' in second
    first_ids, second_ids = _column(_records_table(page), 0), _column(_records_table(second), 0)
    assert len(second_ids) == views.RECORDS_PER_PAGE and not set(first_ids) & set(second_ids)
    # A header link sorts by its column; sorting by owner orders the owners' names.
    owner_link = re.search(r'<a class="sort" href="([^"]+)">Owner', page)[1].replace("&amp;", "&")
    assert "sort=owner&order=asc" in owner_link
    by_owner = _owner_cells(_records_table(client.get(owner_link).text))
    assert by_owner == sorted(by_owner, key=str.lower)
    # Unknown or broken parameters show the default page, not an error.
    assert client.get(url + "?sort=__class__&order=sideways&page=x").text == page
    # The print view lists every record on one page.
    printed = client.get(url + "?view=print").text
    assert len(_column(_records_table(printed), 0)) == total and 'rel="next"' not in printed


def test_the_kr_page_html_is_cached_per_sort_and_page(synced):
    settings_, engine = synced
    flow.run_days(settings_, engine, [dt.date(2026, 11, 25)], validate=False)
    data = dashboard_data(settings_, engine)
    client = _client(data)
    url = f"/kr/{CYCLE}/win-rate-uk"
    by_amount = client.get(url + "?sort=amount&order=desc").text
    by_day = client.get(url).text
    assert _records_table(by_amount) != _records_table(by_day)
    assert client.get(url + "?sort=amount&order=desc").text == by_amount
    assert client.get(url + "?page=2").text != by_day
    rendered = week.cached_kr_page(data, CYCLE, "win-rate-uk")["html"]
    assert {key[-1] for key in rendered if key != "minute"} == {
        ("amount", "desc", 1),
        ("day", "desc", 1),
        ("day", "desc", 2),
    }


RECORD = st.fixed_dictionaries(
    {
        "record_id": st.text("ABC123", min_size=1, max_size=4),
        "name": st.none() | st.text(max_size=5),
        "customer_name": st.none() | st.text("xyzXYZ", max_size=4),
        "customer_id": st.none() | st.text("0123", max_size=3),
        "owner": st.none() | st.sampled_from(["Ana", "bo", "Cy"]),
        "outcome": st.none() | st.sampled_from(["won", "lost", "open (demo)"]),
        "amount_home": st.none() | st.floats(-1e6, 1e6, allow_nan=False),
        "day": st.dates().map(str),
        "contribution": st.floats(0, 1, allow_nan=False),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(RECORD, max_size=80),
    sort=st.sampled_from([c[0] for c in views.RECORD_TABLE_COLUMNS["deals"]]),
    order=st.sampled_from(["asc", "desc"]),
    per_page=st.integers(1, 30),
)
def test_the_pages_of_a_sorted_drilldown_list_every_record_once_in_order(
    records, sort, order, per_page
):
    drill = {"records": records, "entity": "deals", "currency": "EUR"}
    first = views.records_page(drill, sort, order, 1, per_page)
    listed = [
        r
        for n in range(1, first["pages"] + 1)
        for r in views.records_page(drill, sort, order, n, per_page)["rows"]
    ]
    assert sorted(map(id, listed)) == sorted(map(id, records))  # each record once
    keys = [views._sort_value(r, sort) for r in listed]
    present = [k for k in keys if k is not None]
    assert keys[: len(present)] == present  # records without a value come last
    assert present == sorted(present, reverse=order == "desc")
    # A page past the end shows the last one.
    assert views.records_page(drill, sort, order, 10**6, per_page)["page"] == first["pages"]
    assert all(
        len(views.records_page(drill, sort, order, n, per_page)["rows"]) == per_page
        for n in range(1, first["pages"])
    )


def test_every_built_in_metric_says_its_inputs_in_words():
    """A new metric without words fails here; ratios name their denominator, sums do not."""
    from kr_metrics.display import NUMBER_WORDS, numbers_in_words
    from kr_metrics.metrics import METRICS

    assert set(NUMBER_WORDS) == set(METRICS)
    for name, spec in METRICS.items():
        assert ("{d}" in NUMBER_WORDS[name]) == (spec.combine != "sum"), name
        text = numbers_in_words(name, 1234, 56, "EUR")
        assert text.startswith("1,234") and ("56" in text) == (spec.combine != "sum"), text
    assert numbers_in_words("win_rate", 12, 40) == "12 won of 40 closed deals"
    assert numbers_in_words("win_rate", 12.5e3, 4e4, "EUR", basis="amount") == (
        "12,500 EUR won of 40,000 EUR in closed deals"
    )
    # A custom metric, or a ratio without its denominator stored, says nothing rather than half.
    assert numbers_in_words("my_custom_metric", 1, 2) is None
    assert numbers_in_words("win_rate", 12, None) is None

"""Pushes to OKR tools against local fakes of Perdoo, Weekdone and a signed webhook.

For each tool: the value lands; an unchanged value makes no call; a failure leaves the store
intact, is recorded, and is retried on the next run. Runs on SQLite and PostgreSQL (push state
lives in the store's database).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fakes.okr_tools import PERDOO_TOKEN, WEBHOOK_SECRET, WEEKDONE_TOKEN, running
from store_support import kpi_rows, kr_rows

from okr_store.models import KrProgress
from okr_store.repository import OkrStore
from okr_store.sinks import (
    FAILED,
    NO_VALUE,
    PUSHED,
    UNCHANGED,
    PerdooSink,
    RetryPolicy,
    WebhookSink,
    WeekdoneSink,
    push_current_progress,
)
from okr_store.sinks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from pipelines.cli import cli

DAY = dt.date(2026, 11, 2)
FAST = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, timeout=5)


@pytest.fixture
def tools():
    with running() as fake:
        fake.perdoo_key_results.update({"pd-nps": None, "pd-rev": None})
        fake.weekdone_results.update({("11", "21"): None, ("11", "22"): None})
        yield fake


def perdoo(tools) -> PerdooSink:
    return PerdooSink(
        {"2026-Q4/nps": "pd-nps", "2026-Q4/rev": "pd-rev"},
        token=PERDOO_TOKEN,
        url=f"{tools.base_url}/perdoo/graphql/",
    )


def weekdone(tools) -> WeekdoneSink:
    return WeekdoneSink(
        {"2026-Q4/nps": "11/21", "2026-Q4/rev": "11/22"},
        token=WEEKDONE_TOKEN,
        url=f"{tools.base_url}/weekdone",
    )


def webhook(tools) -> WebhookSink:
    return WebhookSink(
        "bridge",
        {"2026-Q4/nps": "ext-nps", "2026-Q4/rev": "ext-rev"},
        url=f"{tools.base_url}/hooks/bridge",
        secret=WEBHOOK_SECRET,
    )


SINKS = {
    "perdoo": (perdoo, "/perdoo"),
    "weekdone": (weekdone, "/weekdone"),
    "webhook": (webhook, "/hooks"),
}


def tool_values(tools, kind: str) -> dict[str, float]:
    if kind == "perdoo":
        return dict(tools.perdoo_key_results)
    if kind == "weekdone":
        return {f"{o}/{r}": v for (o, r), v in tools.weekdone_results.items()}
    return {d["body"]["target_id"]: d["body"]["value"] for d in tools.webhook_deliveries}


def store_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(
                    KrProgress.kr,
                    KrProgress.as_of,
                    KrProgress.value,
                    KrProgress.status,
                    KrProgress.run_id,
                ).order_by(KrProgress.kr, KrProgress.as_of)
            )
        ]


@pytest.mark.parametrize("kind", SINKS)
def test_a_push_lands_and_an_unchanged_value_makes_no_call(engine, tools, kind):
    make, prefix = SINKS[kind]
    store = OkrStore(engine)
    store.write_day(DAY, kr_rows(60.0), kpi_rows(0.3))

    outcomes = push_current_progress(store, [make(tools)], policy=FAST)
    assert [o.outcome for o in outcomes] == [PUSHED, PUSHED]
    expected = {
        "perdoo": {"pd-nps": 60.0, "pd-rev": 60.0},
        "weekdone": {"11/21": 50.0, "11/22": 50.0},  # grade 0.5 as a percentage
        "webhook": {"ext-nps": 60.0, "ext-rev": 60.0},
    }[kind]
    assert tool_values(tools, kind) == expected
    calls = tools.calls(prefix)
    assert calls == 2

    # Rerunning the day with the same numbers: nothing to send.
    store.write_day(DAY, kr_rows(60.0, run_id="run-2"), kpi_rows(0.3))
    assert [o.outcome for o in push_current_progress(store, [make(tools)], policy=FAST)] == [
        UNCHANGED,
        UNCHANGED,
    ]
    assert tools.calls(prefix) == calls

    # A new day moves one KR: only that one is sent.
    store.write_day(DAY + dt.timedelta(days=1), kr_rows(64.0, krs=("nps",)), kpi_rows(0.3))
    outcomes = {o.kr: o.outcome for o in push_current_progress(store, [make(tools)], policy=FAST)}
    assert outcomes == {"nps": PUSHED, "rev": UNCHANGED}
    assert tools.calls(prefix) == calls + 1
    state = store.push_state().set_index("kr")
    assert state.loc["nps", "last_pushed_as_of"] == DAY + dt.timedelta(days=1)
    assert (state["failures"] == 0).all()


@pytest.mark.parametrize("kind", SINKS)
def test_a_failed_push_leaves_the_store_intact_and_is_retried_next_run(engine, tools, kind):
    make, prefix = SINKS[kind]
    store = OkrStore(engine)
    store.write_day(DAY, kr_rows(60.0), kpi_rows(0.3))
    before = store_rows(engine)
    tools.fail(prefix, 503, count=None)  # the tool is down for this whole run

    outcomes = push_current_progress(store, [make(tools)], policy=FAST)
    assert [o.outcome for o in outcomes] == [FAILED, FAILED]
    assert "HTTP 503" in outcomes[0].error
    assert tools.calls(prefix) == 2 * FAST.attempts  # retried with backoff, then given up
    assert store_rows(engine) == before  # the store is not touched by a failed push
    state = store.push_state()
    assert state["failures"].tolist() == [1, 1] and state["last_pushed_value"].isna().all()
    assert state["last_error"].str.contains("503").all()

    tools.heal()  # next run: the tool is back, the same values are sent again
    outcomes = push_current_progress(store, [make(tools)], policy=FAST)
    assert [o.outcome for o in outcomes] == [PUSHED, PUSHED]
    assert store.push_state()["failures"].tolist() == [0, 0]
    assert len(tool_values(tools, kind)) == 2
    assert store_rows(engine) == before


def test_transient_errors_are_retried_within_the_run_honouring_retry_after(engine, tools):
    store = OkrStore(engine)
    store.write_day(DAY, kr_rows(60.0, krs=("nps",)), kpi_rows(0.3))
    tools.fail("/perdoo", 429, count=1, retry_after="0")
    tools.fail("/perdoo", 502, count=1)
    outcomes = push_current_progress(store, [perdoo(tools)], policy=FAST)
    assert [o.outcome for o in outcomes if o.kr == "nps"] == [PUSHED]
    assert tools.calls("/perdoo") == 3  # 429, 502, then ok (rev is not in the store: no call)
    assert tools.perdoo_key_results["pd-nps"] == 60.0


def test_perdoo_graphql_errors_are_failures_even_with_http_200(engine, tools):
    store = OkrStore(engine)
    store.write_day(DAY, kr_rows(60.0), kpi_rows(0.3))
    sink = PerdooSink(
        {"2026-Q4/nps": "pd-unknown"}, token=PERDOO_TOKEN, url=f"{tools.base_url}/perdoo/graphql/"
    )
    (outcome,) = push_current_progress(store, [sink], policy=FAST)
    assert outcome.outcome == FAILED and "Key result not found" in outcome.error
    assert tools.calls("/perdoo") == 1  # a rejected mutation is not retried within the run
    wrong_token = PerdooSink(
        {"2026-Q4/nps": "pd-nps"},
        token="nope",  # noqa: S106
        url=f"{tools.base_url}/perdoo/graphql/",
    )
    (outcome,) = push_current_progress(store, [wrong_token], policy=FAST)
    assert outcome.outcome == FAILED and "HTTP 401" in outcome.error


def test_weekdone_errors_in_the_body_are_failures_and_the_token_is_never_in_them(engine, tools):
    store = OkrStore(engine)
    store.write_day(DAY, kr_rows(60.0), kpi_rows(0.3))
    sink = WeekdoneSink(
        {"2026-Q4/nps": "11/99"}, token=WEEKDONE_TOKEN, url=f"{tools.base_url}/weekdone"
    )
    (outcome,) = push_current_progress(store, [sink], policy=FAST)
    assert outcome.outcome == FAILED and "Key result not found" in outcome.error
    down = WeekdoneSink({"2026-Q4/nps": "11/21"}, token=WEEKDONE_TOKEN, url="http://127.0.0.1:9")
    (outcome,) = push_current_progress(store, [down], policy=FAST)
    assert outcome.outcome == FAILED and "ConnectionError" in outcome.error
    assert WEEKDONE_TOKEN not in json.dumps(store.push_state()["last_error"].tolist())


def test_a_kr_without_a_value_is_not_pushed(engine, tools):
    store = OkrStore(engine)
    rows = kr_rows(60.0, krs=("nps",))
    rows[["value", "progress", "grade"]] = None
    rows["status"] = "no_data"
    store.write_day(DAY, rows, kpi_rows(0.3))
    (outcome, _) = push_current_progress(store, [perdoo(tools)], policy=FAST)
    assert outcome.outcome == NO_VALUE and tools.calls("/perdoo") == 0


def test_webhook_deliveries_are_signed_json_with_a_stable_delivery_id(engine, tools):
    store = OkrStore(engine)
    store.write_day(DAY, kr_rows(60.0, krs=("nps",)), kpi_rows(0.3))
    push_current_progress(store, [webhook(tools)], policy=FAST)
    (delivery,) = tools.webhook_deliveries
    body, headers = delivery["body"], delivery["headers"]
    assert body["event"] == "kr_progress" and body["as_of"] == "2026-11-02"
    assert (body["kr"], body["value"], body["status"]) == ("nps", 60.0, "on_track")
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert headers[SIGNATURE_HEADER] == signature(WEBHOOK_SECRET, headers[TIMESTAMP_HEADER], raw)
    assert headers["X-Krpulse-Delivery"] == body["delivery_id"]


def test_krpulse_run_pushes_after_the_store_committed_and_push_retries(demo_project, monkeypatch):
    """The configured `sinks:` of krpulse.yaml, through the CLI: run, then a failing tool, then
    `krpulse push` once it is back."""
    with running() as fake:
        fake.weekdone_results[("7", "70")] = None
        config = demo_project / "krpulse.yaml"
        config.write_text(
            config.read_text()
            + "sinks:\n"
            + "  weekdone:\n"
            + f"    url: {fake.base_url}/weekdone\n"
            + "    token_env: TEST_WEEKDONE_TOKEN\n"
            + "    key_results:\n"
            + "      2026-Q4/nps-company: {objective: 7, result: 70}\n"
            + "  webhooks:\n"
            + f"    - {{name: bridge, url: '{fake.base_url}/hooks/bridge', secret_env: TEST_HOOK_SECRET,"
            + " key_results: {2026-Q4/win-rate-uk: ext-1}}\n"
            + "  retry: {attempts: 2, initial_wait: 0.01, max_wait: 0.02}\n"
        )
        monkeypatch.setenv("TEST_WEEKDONE_TOKEN", WEEKDONE_TOKEN)
        monkeypatch.setenv("TEST_HOOK_SECRET", WEBHOOK_SECRET)
        runner = CliRunner()

        def krpulse(*args):
            return runner.invoke(cli, ["--config", str(config), *args])

        assert krpulse("sync").exit_code == 0
        result = krpulse("run", "--as-of", "2026-11-20")
        assert result.exit_code == 0, result.output
        assert fake.weekdone_results[("7", "70")] is not None
        assert [d["body"]["target_id"] for d in fake.webhook_deliveries] == ["ext-1"]

        fake.fail("/hooks", 500, count=None)
        result = krpulse("run", "--as-of", "2026-11-21")  # a failed push does not fail the run
        assert result.exit_code == 0, result.output
        pushed = json.loads(krpulse("push", "--format", "json").output)["pushes"]
        assert {p["sink"]: p["outcome"] for p in pushed} == {
            "weekdone": UNCHANGED,
            "webhook:bridge": FAILED,
        }
        assert krpulse("push").exit_code == 1

        fake.heal()
        result = krpulse("push", "--format", "json")
        assert result.exit_code == 0, result.output
        outcomes = {p["sink"]: p["outcome"] for p in json.loads(result.output)["pushes"]}
        assert outcomes == {"weekdone": UNCHANGED, "webhook:bridge": PUSHED}
        assert fake.webhook_deliveries[-1]["body"]["as_of"] == "2026-11-21"


def test_a_missing_secret_names_the_variable(demo_project, monkeypatch):
    config = demo_project / "krpulse.yaml"
    config.write_text(
        config.read_text()
        + "sinks:\n  perdoo:\n    token_env: TEST_PERDOO_TOKEN_UNSET\n"
        + "    key_results: {2026-Q4/nps-company: abc}\n"
    )
    monkeypatch.delenv("TEST_PERDOO_TOKEN_UNSET", raising=False)
    result = CliRunner().invoke(cli, ["--config", str(config), "push"])
    assert result.exit_code == 1
    assert "TEST_PERDOO_TOKEN_UNSET is not set" in result.output

"""The weekly check-in digest: per team status, moves, risks, stale data, outlook; and its webhook."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import threading

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.demo_org import DEMO_AS_OF
from dashboard import digest
from dashboard.views import DashboardData
from okr_store.models import KrProgress
from pipelines.cli import cli
from pipelines.cli.dashboard import dashboard_data
from pipelines.demo_checkins import seed_demo_check_ins
from tests.dashboard_support import CYCLE, filled_demo_store, make_demo_project

WEBHOOK_ENV = "KRPULSE_TEST_DIGEST_WEBHOOK"
DACH_ENV, UK_ENV = "KRPULSE_TEST_DIGEST_DACH", "KRPULSE_TEST_DIGEST_UK"
CONFIG = f"""dashboard:
  public_url: https://okr.example.com/
  team_names: {{sales-dach: DACH}}
  digest:
    webhook_url_env: {WEBHOOK_ENV}
    subscriptions:
      - {{name: dach, webhook_url_env: {DACH_ENV}, team: sales-dach, format: slack}}
      - {{name: uk, webhook_url_env: {UK_ENV}, team: sales-uk, format: markdown}}
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_data):
    project = make_demo_project(tmp_path_factory.mktemp("digest"), demo_data)
    settings, engine = filled_demo_store(project, CONFIG)
    seed_demo_check_ins(engine, [CYCLE], DEMO_AS_OF)
    data = dashboard_data(settings, engine)
    # The digest's "now" is the demo's today, whatever day the tests run on.
    data.now = lambda: dt.datetime.combine(DEMO_AS_OF, dt.time(18), dt.UTC)
    yield project, data
    engine.dispose()


def test_the_digest_covers_each_team_with_status_moves_risks_and_outlook(demo):
    _, data = demo
    report = digest.build_digest(data)
    # The week is the seven days ending on the newest day with data.
    assert (report.week_start, report.week_end) == (dt.date(2026, 11, 19), dt.date(2026, 11, 25))
    assert report.as_of == dt.date(2026, 11, 25) and report.previous_as_of == dt.date(2026, 11, 18)
    assert [t.label for t in report.teams] == ["Company", "DACH", "sales-uk", "sales-us"]
    latest = data.store.latest_cycle_progress(CYCLE).set_index("kr")
    assert sum(sum(t.status_counts.values()) for t in report.teams) == len(latest)
    at_risk = {i["kr"] for t in report.teams for i in t.at_risk}
    assert at_risk == set(latest.index[latest["status"].isin(["at_risk", "off_track"])])
    uk = next(t for t in report.teams if t.team == "sales-uk")
    moved = {i["kr"]: i for i in uk.moved}
    week_ago = data.store.latest_cycle_progress(CYCLE, as_of=dt.date(2026, 11, 18)).set_index("kr")
    assert moved["nps-uk"]["value_before"] == pytest.approx(week_ago.loc["nps-uk", "value"])
    assert moved["nps-uk"]["value"] == pytest.approx(latest.loc["nps-uk", "value"])
    assert {i["kr"] for i in uk.outlook} == {"nps-uk", "win-rate-uk"}
    assert all(i["projected_progress"] is not None for i in uk.outlook)
    assert uk.stale == []  # the demo synced just now


def test_a_past_week_compares_with_the_week_before_it(demo):
    _, data = demo
    report = digest.build_digest(data, week=dt.date(2026, 11, 4), team="sales-dach")
    assert report.as_of == dt.date(2026, 11, 8) and report.previous_as_of == dt.date(2026, 11, 1)
    assert [t.team for t in report.teams] == ["sales-dach"]


def test_old_source_data_is_reported_as_stale(demo):
    _, data = demo
    later = DashboardData(
        **{**data.__dict__, "now": lambda: dt.datetime(2027, 1, 10, tzinfo=dt.UTC)}
    )
    report = digest.build_digest(later, week=dt.date(2026, 12, 28))
    stale = [i for t in report.teams for i in t.stale]
    assert len(stale) == 8
    # The reason says how long the KR has gone without numbers, not only the day, so "as of
    # 2026-11-25" and "not updated since 2026-11-25" cannot read as the same, fresh day.
    assert any(
        "no numbers since 2026-11-25 (36 days before 2026-12-31, the cycle's last day)" in r
        for r in stale[0]["reasons"]
    )
    assert report.reported_on == dt.date(2027, 1, 3)
    markdown = digest.render_markdown(report)
    assert "Numbers as of 2026-11-25, the newest day with numbers" in markdown
    assert "39 days before 2027-01-03" in markdown
    assert "39 days before 2027-01-03" in digest.render_slack(report)


def test_a_current_digest_does_not_call_its_numbers_old(demo):
    _, data = demo
    report = digest.build_digest(data)
    assert report.reported_on == report.as_of or "days before" in digest.render_markdown(report)
    on_the_day = DashboardData(
        **{**data.__dict__, "now": lambda: dt.datetime(2026, 11, 25, 18, tzinfo=dt.UTC)}
    )
    fresh = digest.build_digest(on_the_day)
    assert fresh.reported_on == fresh.as_of == dt.date(2026, 11, 25)
    assert "days before" not in digest.render_markdown(fresh)


def test_markdown_shows_user_text_literally(demo):
    _, data = demo
    table = KrProgress.__table__
    hostile = "NPS <script>alert(1)</script> [click](https://evil.example) *now*"
    with data.store.engine.begin() as conn:
        old = conn.execute(sa.select(table.c.title).where(table.c.kr == "nps-uk")).scalar()
        conn.execute(sa.update(table).where(table.c.kr == "nps-uk").values(title=hostile))
    try:
        report = digest.build_digest(data, team="sales-uk")
        markdown = digest.render_markdown(report)
        html = digest.render_html(report)
    finally:
        with data.store.engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.kr == "nps-uk").values(title=old))
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown
    assert "\\[click\\]" in markdown and "\\*now\\*" in markdown
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - the http.server interface
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


def test_digest_command_prints_markdown_or_html_and_posts_to_the_webhook(demo, monkeypatch):
    project, _ = demo
    runner = CliRunner()
    config = ["--config", str(project / "krpulse.yaml")]
    md = runner.invoke(cli, [*config, "digest", "--team", "sales-uk"])
    assert md.exit_code == 0, md.output
    assert md.output.startswith("# Weekly KR check-in: 2026-11-19 – 2026-11-25")
    assert "## sales-uk · 2026-Q4" in md.output and "**What moved**" in md.output
    html = runner.invoke(cli, [*config, "digest", "--format", "html", "--week", "2026-11-04"])
    assert html.exit_code == 0 and "<h2>DACH · 2026-Q4</h2>" in html.output

    missing = runner.invoke(cli, [*config, "digest", "--post"])
    assert missing.exit_code == 1 and WEBHOOK_ENV in missing.output
    _Webhook.received.clear()

    server = http.server.HTTPServer(("127.0.0.1", 0), _Webhook)
    server.timeout = 10
    thread = threading.Thread(target=server.handle_request, daemon=True)  # one request, then stop
    thread.start()
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/hook/secret-part")
    try:
        posted = runner.invoke(
            cli, [*config, "digest", "--team", "sales-us", "--post", "--subscription", "legacy"]
        )
        assert posted.exit_code == 1 and "no digest subscription 'legacy'" in posted.output
        monkeypatch.setenv(DACH_ENV, "http://127.0.0.1:9/unused")
        monkeypatch.setenv(UK_ENV, "http://127.0.0.1:9/unused")
        # Only the legacy webhook: the subscriptions have their own test.
        monkeypatch.setattr(
            "pipelines.cli.dashboard._digest_targets",
            lambda settings, team, only: [
                ("the digest webhook", os.environ[WEBHOOK_ENV], team, "markdown")
            ],
        )
        posted = runner.invoke(cli, [*config, "digest", "--team", "sales-us", "--post"])
        thread.join(10)
    finally:
        server.server_close()
    assert posted.exit_code == 0, posted.output
    assert "secret-part" not in posted.output
    (body,) = _Webhook.received
    assert body["text"].startswith("# Weekly KR check-in")
    assert [t["team"] for t in body["digest"]["teams"]] == ["sales-us"]


def test_the_digest_is_as_of_the_newest_data_day_and_compares_exactly_seven_days(demo):
    # Read ten days after the demo's last data day: the digest must not claim a later day.
    _, data = demo
    later = DashboardData(
        **{**data.__dict__, "now": lambda: dt.datetime(2026, 12, 5, 9, tzinfo=dt.UTC)}
    )
    report = digest.build_digest(later)
    assert report.as_of == DEMO_AS_OF
    assert report.previous_as_of == DEMO_AS_OF - dt.timedelta(days=7)
    assert (report.week_start, report.week_end) == (DEMO_AS_OF - dt.timedelta(days=6), DEMO_AS_OF)


def test_each_kr_line_has_owner_change_confidence_and_link(demo):
    _, data = demo
    report = digest.build_digest(data)
    lines = [line for t in report.teams for line in t.key_results]
    assert len(lines) == 8
    dach = next(t for t in report.teams if t.team == "sales-dach")
    line = next(i for i in dach.key_results if i["kr"] == "win-rate-dach")
    assert line["owner"] == "Team lead DACH"
    assert line["url"] == "https://okr.example.com/kr/2026-Q4/win-rate-dach"
    assert line["change_text"].endswith("pts")
    # Check-ins of the digest's seven days (2026-11-19 .. 25: ISO weeks W47 and W48) count.
    checked = [i for i in lines if i["confidence"] is not None]
    missing = [i for t in report.teams for i in t.missing_check_ins]
    assert len(checked) + len(missing) == 8 and checked
    assert {i["check_in_week"] for i in checked} <= {"2026-W47", "2026-W48"}
    markdown = digest.render_markdown(report)
    assert (
        "[Win rate DACH from 30 % to 36 %](https://okr.example.com/kr/2026-Q4/win-rate-dach)"
        in markdown
    )
    assert "in 7 days)" in markdown and "confidence " in markdown
    slack = digest.render_slack(report)
    assert (
        "<https://okr.example.com/kr/2026-Q4/win-rate-dach|Win rate DACH from 30 % to 36 %>"
        in slack
    )
    assert ":large_green_circle:" in slack or ":red_circle:" in slack
    html = digest.render_html(report)
    assert 'href="https://okr.example.com/kr/2026-Q4/win-rate-dach"' in html
    assert "background: #" in html  # status colours inline, for mail clients


def test_slack_text_cannot_link_mention_or_format(demo):
    hostile = "<!channel> <https://evil.example|click> *bold* & _it_"
    escaped = digest.escape_slack(hostile)
    assert "<" not in escaped and ">" not in escaped
    assert "&lt;!channel&gt;" in escaped and "&amp;" in escaped
    assert "*bold*" not in escaped and "_it_" not in escaped


def test_each_subscription_gets_its_own_teams_digest_in_its_format(demo, monkeypatch):
    project, _ = demo
    received: dict[str, dict] = {}

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received[self.path] = body
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv(WEBHOOK_ENV, f"{base}/all")
    monkeypatch.setenv(DACH_ENV, f"{base}/dach")
    monkeypatch.setenv(UK_ENV, f"{base}/uk")
    try:
        result = CliRunner().invoke(
            cli, ["--config", str(project / "krpulse.yaml"), "digest", "--post", "--format", "json"]
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    assert set(received) == {"/all", "/dach", "/uk"}
    assert "digest" not in received["/dach"]  # Slack gets the message only
    assert received["/dach"]["text"].startswith("*Weekly KR check-in")
    assert "DACH · 2026-Q4" in received["/dach"]["text"]
    assert "sales-uk" not in received["/dach"]["text"]
    assert [t["team"] for t in received["/uk"]["digest"]["teams"]] == ["sales-uk"]
    assert len(received["/all"]["digest"]["teams"]) == 4

"""Fault injection on the dashboard's access control: brute force, Host, proxies, sessions, garbage.

Each test drives the real FastAPI app in-process (Starlette's TestClient, or real uvicorn over a
socket) over an empty store: what is under test is who gets past the door, not the numbers.
"""

from __future__ import annotations

import dataclasses
import socket
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.access import SECURITY_HEADERS, SESSION_COOKIE, AccessPolicy
from dashboard.app import create_app
from dashboard.config import AccessError, AuthSettings, DashboardSettings
from dashboard.server import running
from dashboard.views import DashboardData
from okr_store.db import create_engine
from okr_store.repository import OkrStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx versions
    from fastapi.testclient import TestClient

TOKEN = "access-tests-shared-token"  # noqa: S105 - a test-only token
TOKEN_ENV = "KRPULSE_ACCESS_TEST_TOKEN"  # noqa: S105 - the name of a variable
FORM = {"content-type": "application/x-www-form-urlencoded"}
ATTACKER = "198.51.100.66"
COLLEAGUE = "198.51.100.7"
PROXY = "10.0.0.2"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from okr_store.schema import upgrade

    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('access') / 'krpulse.db'}")
    upgrade(engine)
    yield DashboardData(store=OkrStore(engine))
    engine.dispose()


@pytest.fixture(autouse=True)
def token_env(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@pytest.fixture(scope="module")
def open_app(data):
    """The app as `krpulse serve` runs it by default: loopback, no login."""
    return create_app(data, AccessPolicy.from_settings(DashboardSettings()))


@pytest.fixture(scope="module")
def token_app(data):
    """One app with a shared token for the property tests (their examples share its limiter)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKEN_ENV, TOKEN)
        return create_app(data, policy_for())


def policy_for(**dashboard) -> AccessPolicy:
    """The policy `krpulse serve` builds from a `dashboard:` section with a shared token."""
    auth = {"token_env": TOKEN_ENV, **dashboard.pop("auth", {})}
    settings = DashboardSettings.model_validate({"auth": auth, **dashboard})
    return AccessPolicy.from_settings(settings)


def client_of(app, address: str = COLLEAGUE, host: str = "127.0.0.1", https: bool = False):
    scheme = "https" if https else "http"
    return TestClient(
        app, base_url=f"{scheme}://{host}", client=(address, 50000), follow_redirects=False
    )


def bearer(secret: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def log_in(client, secret: str = TOKEN, headers: dict | None = None):
    return client.post(
        "/login", content=f"secret={secret}&next=/api/cycles", headers={**FORM, **(headers or {})}
    )


# Bytes a header value can hold on the wire: no CR, LF or NUL (those end or break the header).
header_bytes = st.binary(max_size=200).map(lambda b: b.translate(None, b"\r\n\x00").strip())


def assert_security_headers(response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.status_code, name)
    assert response.headers["cache-control"] == "no-store"


# --- brute force: one limit for every credential path --------------------------------------------


def test_bearer_guesses_are_limited_and_then_even_the_right_token_is_refused(data):
    app = create_app(data, policy_for())
    attacker = client_of(app, ATTACKER)
    for n in range(10):
        assert (
            attacker.get("/api/cycles", headers=bearer(f"guess-number-{n:04d}")).status_code == 401
        )
    blocked = attacker.get("/api/cycles", headers=bearer())
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert_security_headers(blocked)
    assert log_in(attacker).status_code == 429  # the login form shares the limit


def test_the_login_form_and_the_bearer_header_share_one_limit(data):
    app = create_app(data, policy_for())
    attacker = client_of(app, ATTACKER)
    for n in range(5):
        assert log_in(attacker, f"wrong-password-{n}").status_code == 401
        assert attacker.get("/api/cycles", headers=bearer(f"wrong-{n}")).status_code == 401
    assert attacker.get("/api/cycles", headers=bearer()).status_code == 429
    assert log_in(attacker).status_code == 429


def test_an_attacker_locks_out_only_itself(data):
    app = create_app(data, policy_for())
    colleague = client_of(app, COLLEAGUE)
    assert log_in(colleague).status_code == 303  # signed in before the attack
    attacker = client_of(app, ATTACKER)
    for n in range(30):
        attacker.get("/api/cycles", headers=bearer(f"guess-{n}"))
    assert attacker.get("/api/cycles", headers=bearer()).status_code == 429
    assert colleague.get("/api/cycles").status_code == 200  # the session still works
    newcomer = client_of(app, "203.0.113.50")
    assert newcomer.get("/api/cycles", headers=bearer()).status_code == 200
    assert log_in(newcomer).status_code == 303


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(data):
    app = create_app(data, policy_for(auth={"trusted_proxies": ["10.0.0.0/8"]}))
    proxy = client_of(app, PROXY)
    # The attacker also forges X-Forwarded-For naming the colleague; the proxy appends the real
    # address, and only that rightmost untrusted hop counts.
    attack = {"X-Forwarded-For": f"{COLLEAGUE}, {ATTACKER}"}
    for n in range(10):
        assert proxy.get("/api/cycles", headers={**attack, **bearer(f"g-{n}")}).status_code == 401
    assert proxy.get("/api/cycles", headers={**attack, **bearer()}).status_code == 429
    colleague = {"X-Forwarded-For": COLLEAGUE, **bearer()}
    assert proxy.get("/api/cycles", headers=colleague).status_code == 200


def test_forwarded_for_from_an_untrusted_peer_cannot_dodge_the_limit(data):
    app = create_app(data, policy_for(auth={"trusted_proxies": ["10.0.0.0/8"]}))
    attacker = client_of(app, ATTACKER)
    for n in range(12):
        spoof = {"X-Forwarded-For": f"203.0.113.{n}", **bearer(f"g-{n}")}
        attacker.get("/api/cycles", headers=spoof)
    assert attacker.get("/api/cycles", headers=bearer()).status_code == 429


def test_ipv6_clients_are_limited_per_64_network(data):
    app = create_app(data, policy_for())
    for n in range(10):
        client_of(app, f"2001:db8:1:2::{n + 1:x}").get("/api/cycles", headers=bearer(f"g{n}"))
    same_network = client_of(app, "2001:db8:1:2:ffff::1")
    assert same_network.get("/api/cycles", headers=bearer()).status_code == 429
    other_network = client_of(app, "2001:db8:1:3::1")
    assert other_network.get("/api/cycles", headers=bearer()).status_code == 200


def test_a_global_cap_bounds_guesses_from_many_addresses_but_keeps_sessions(data):
    from dashboard.access import FailureLimiter

    policy = dataclasses.replace(policy_for(), limiter=FailureLimiter(per_client=10, total=30))
    app = create_app(data, policy)
    signed_in = client_of(app, COLLEAGUE)
    assert log_in(signed_in).status_code == 303
    for n in range(30):
        client_of(app, f"192.0.2.{n}").get("/api/cycles", headers=bearer(f"g-{n}"))
    assert client_of(app, "203.0.113.99").get("/api/cycles", headers=bearer()).status_code == 429
    assert signed_in.get("/api/cycles").status_code == 200


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.integers(0, 40), st.floats(0, 400, allow_nan=False)), max_size=300
    ),
    max_clients=st.integers(1, 20),
)
def test_the_failure_table_is_bounded_and_never_blocks_an_innocent_client(events, max_clients):
    """Whatever the attack, the table holds at most `max_clients` entries and blocks a client only
    for its own recent failures (or the global cap); after the window everybody is free again."""
    from dashboard.access import FailureLimiter

    now = [0.0]
    limiter = FailureLimiter(
        per_client=3, total=10_000, window=600, max_clients=max_clients, clock=lambda: now[0]
    )
    history: dict[str, list[float]] = {}
    for client, step in events:
        now[0] += step
        key = f"192.0.2.{client}"
        limiter.record_failure(key)
        history.setdefault(key, []).append(now[0])
        assert len(limiter) <= max_clients
    for key in [f"192.0.2.{c}" for c in range(41)]:
        recent = [t for t in history.get(key, []) if now[0] - t < 600]
        if limiter.retry_after(key) is not None:
            assert len(recent) >= 3
    now[0] += 601
    assert all(limiter.retry_after(f"192.0.2.{c}") is None for c in range(41))


# --- Host header (DNS rebinding) ---------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "127.0.0.1:8000", "[::1]:8000"])
def test_the_open_loopback_mode_answers_local_host_names(open_app, host):
    response = TestClient(open_app).get("/api/cycles", headers={"Host": host})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example", ""]
)
def test_the_open_loopback_mode_refuses_other_host_names(open_app, host):
    """DNS rebinding: a page on attacker.example resolves its name to 127.0.0.1 and reads."""
    response = TestClient(open_app).get("/api/cycles", headers={"Host": host})
    assert response.status_code == 400 and "allowed_hosts" in response.text
    assert_security_headers(response)


def test_configured_host_names_are_answered_and_health_checks_need_none(data):
    app = create_app(data, policy_for(allowed_hosts=["OKR.example.com"]))
    for host in ("okr.example.com", "okr.example.com.:443", "localhost"):
        response = client_of(app, host=host).get("/api/cycles", headers=bearer())
        assert response.status_code == 200, host
    assert client_of(app, host="other.example").get("/api/cycles").status_code == 400
    # Kubernetes probes address the pod's IP; the health check carries no data.
    assert client_of(app, host="10.42.0.7:8000").get("/healthz").status_code == 200


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=header_bytes)
def test_any_other_host_header_is_a_400_with_the_security_headers(open_app, host):
    response = TestClient(open_app).get("/api/cycles", headers={"Host": host})
    normalized = host.lower().rstrip(b".")
    local = {b"localhost", b"127.0.0.1", b"[::1]"}
    if response.status_code == 200:
        assert normalized.rsplit(b":", 1)[0] in local or normalized in local
    else:
        assert response.status_code == 400
        assert_security_headers(response)


def test_serving_on_every_interface_needs_the_host_names_to_answer(monkeypatch):
    settings = DashboardSettings.model_validate(
        {"host": "0.0.0.0", "auth": {"token_env": TOKEN_ENV}}  # noqa: S104 - never bound
    )
    with pytest.raises(AccessError, match="dashboard.allowed_hosts"):
        AccessPolicy.from_settings(settings)
    bound = AccessPolicy.from_settings(settings.model_copy(update={"host": "192.0.2.10"}))
    assert bound.host_allowed("192.0.2.10:8000") and not bound.host_allowed("192.0.2.11")
    with pytest.raises(ValueError, match="host name"):
        DashboardSettings.model_validate({"allowed_hosts": ["https://okr.example.com"]})


# --- proxies: trusted only when configured -------------------------------------------------------


def test_no_local_process_is_a_trusted_proxy_by_default(data):
    assert AuthSettings().trusted_proxies == []
    with pytest.raises(AccessError, match="trusted_proxies"):
        AccessPolicy.from_settings(
            DashboardSettings.model_validate({"auth": {"proxy_user_header": "X-Forwarded-User"}})
        )
    app = create_app(data, policy_for())
    local = client_of(app, "127.0.0.1")
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.1"}
    login = log_in(local, headers=forged)
    assert login.status_code == 303 and "secure" not in login.headers["set-cookie"].lower()
    assert "strict-transport-security" not in login.headers


def test_behind_a_trusted_tls_proxy_cookies_are_secure_and_hsts_is_sent(data):
    app = create_app(data, policy_for(auth={"trusted_proxies": ["10.0.0.0/8"]}))
    proxy = client_of(app, PROXY)
    login = log_in(proxy, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": COLLEAGUE})
    assert login.status_code == 303
    assert "secure" in login.headers["set-cookie"].lower()
    assert login.headers["strict-transport-security"].startswith("max-age=")
    untrusted = log_in(client_of(app, "192.0.2.1"), headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in untrusted.headers["set-cookie"].lower()
    assert "strict-transport-security" not in untrusted.headers


def test_a_proxy_user_header_from_any_other_peer_is_ignored(data):
    policy = policy_for(
        auth={"proxy_user_header": "X-Forwarded-User", "trusted_proxies": ["10.0.0.2"]}
    )
    app = create_app(data, policy)
    header = {"X-Forwarded-User": "lead@example.com", "X-Forwarded-For": PROXY}
    assert client_of(app, PROXY).get("/api/cycles", headers=header).status_code == 200
    for peer in ("127.0.0.1", "::1", "10.0.0.3"):
        assert client_of(app, peer).get("/api/cycles", headers=header).status_code == 401


# --- sessions: server-side, revocable, expiring --------------------------------------------------


def test_a_session_cookie_replayed_after_logout_is_refused(data):
    app = create_app(data, policy_for())
    browser = client_of(app)
    assert log_in(browser).status_code == 303
    stolen = browser.cookies[SESSION_COOKIE]
    assert browser.get("/api/cycles").status_code == 200
    assert browser.post("/logout").status_code == 303
    thief = client_of(app, ATTACKER)
    thief.cookies.set(SESSION_COOKIE, stolen)
    assert thief.get("/api/cycles").status_code == 401
    assert thief.get("/").status_code == 303


def test_sessions_expire_after_the_configured_lifetime(data):
    policy = policy_for(auth={"session_hours": 1})
    now = [1_000_000.0]
    policy.sessions.clock = lambda: now[0]
    app = create_app(data, policy)
    browser = client_of(app)
    login = log_in(browser)
    assert "max-age=3600" in login.headers["set-cookie"].lower()
    now[0] += 3599
    assert browser.get("/api/cycles").status_code == 200
    now[0] += 2
    assert browser.get("/api/cycles").status_code == 401


def test_a_session_cookie_carries_nothing_derived_from_the_secret(data):
    """A stolen cookie must not allow guessing the shared secret offline: it is a random id that
    only the server's session table knows, so the same secret in another process rejects it."""
    first, second = policy_for(), policy_for()
    browser = client_of(create_app(data, first))
    log_in(browser)
    cookie = browser.cookies[SESSION_COOKIE]
    assert TOKEN not in cookie and len(cookie) >= 40
    elsewhere = client_of(create_app(data, second))
    elsewhere.cookies.set(SESSION_COOKIE, cookie)
    assert elsewhere.get("/api/cycles").status_code == 401


def test_the_session_table_is_bounded():
    from dashboard.access import SessionStore

    sessions = SessionStore(lifetime=3600, max_sessions=3)
    ids = [sessions.create() for _ in range(5)]
    assert len(sessions) == 3
    assert [sessions.valid(i) for i in ids] == [False, False, True, True, True]


# --- malformed input: a 400/401 with headers, never a 500 ---------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Cookie": "krpulse_session=9999999999.\xe9t\xe9".encode("latin-1")},
        {"Cookie": b"krpulse_session=\xc3\xa9\xff; other=\x01"},
        {"Cookie": b'krpulse_session="unterminated'},
        {"Cookie": "krpulse_session=" + "A" * 20_000},
        {"Authorization": b"Bearer \xc3\xa9\xc3\xa9\xc3\xa9"},
        {"Authorization": b"\xff\xfe garbage"},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 20_000},
    ],
)
def test_malformed_credentials_get_a_4xx_with_security_headers(data, headers):
    app = create_app(data, policy_for())
    response = client_of(app).get("/api/cycles", headers=headers)
    assert response.status_code in (400, 401)
    assert_security_headers(response)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cookie=st.tuples(
        st.sampled_from([b"", b"krpulse_session=", b"krpulse_session=9999999999."]), header_bytes
    ).map(b"".join),
    authorization=st.tuples(st.sampled_from([b"", b"Bearer "]), header_bytes).map(b"".join),
)
def test_no_cookie_or_authorization_header_causes_a_server_error(token_app, cookie, authorization):
    app = token_app
    headers = {"Cookie": cookie, "Authorization": authorization}
    for path in ("/api/cycles", "/", "/logout"):
        response = client_of(app, f"192.0.2.{len(cookie) % 250}").get(path, headers=headers)
        assert response.status_code in (303, 400, 401, 405, 429), (path, response.status_code)
        assert_security_headers(response)


def test_oversized_or_garbled_login_forms_are_refused_cleanly(data):
    app = create_app(data, policy_for())
    browser = client_of(app)
    huge = browser.post("/login", content=b"secret=" + b"x" * 2_000_000, headers=FORM)
    assert huge.status_code == 413
    assert_security_headers(huge)
    garbled = browser.post("/login", content=b"secret=\xff\xfe%zz&next=%ff", headers=FORM)
    assert garbled.status_code == 401
    assert_security_headers(garbled)


def test_an_internal_error_is_a_500_with_the_security_headers_and_no_trace(tmp_path):
    broken = DashboardData(store=OkrStore(create_engine(f"sqlite:///{tmp_path}/no/such/dir.db")))
    app = create_app(broken, AccessPolicy.from_settings(DashboardSettings()))
    response = TestClient(app, base_url="http://127.0.0.1").get("/api/cycles")
    assert response.status_code == 500 and "Traceback" not in response.text
    assert_security_headers(response)


def _raw_request(base_url: str, request: bytes) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        return conn.recv(65536)


def test_real_uvicorn_answers_garbage_with_4xx_and_headers(data):
    """The same through uvicorn's HTTP parser: raw bytes a browser or an attacker might send."""
    app = create_app(data, policy_for())
    with running(app) as url:
        local = url.removeprefix("http://").encode()
        for request in (
            b"GET /api/cycles HTTP/1.1\r\nHost: " + local + b"\r\n"
            b"Cookie: krpulse_session=1.\xc3\xa9t\xc3\xa9\r\nConnection: close\r\n\r\n",
            b"GET /api/cycles HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
            b"GET /api/cycles HTTP/1.1\r\nHost: " + local + b"\r\n"
            b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n",
        ):
            answer = _raw_request(url, request)
            status = int(answer.split(b" ", 2)[1])
            assert status in (400, 401), answer[:200]
            assert b"content-security-policy" in answer.lower()


# --- what an operator meets: `krpulse serve` and the README's settings ---------------------------


def test_serve_on_every_interface_without_allowed_hosts_exits_with_the_fix(tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import cli

    config = tmp_path / "krpulse.yaml"
    config.write_text(
        f"database_url: sqlite:///{tmp_path / 'krpulse.db'}\n"
        f"dashboard:\n  auth: {{token_env: {TOKEN_ENV}}}\n"
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "serve", "--host", "0.0.0.0"])  # noqa: S104
    assert result.exit_code == 1 and "dashboard.allowed_hosts" in result.output


def test_the_readme_dashboard_settings_are_valid_as_written(monkeypatch):
    from pathlib import Path

    from ruamel.yaml import YAML

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Dashboard access", 1)[1]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    settings = DashboardSettings.model_validate(YAML(typ="safe").load(snippet)["dashboard"])
    monkeypatch.setenv(settings.auth.token_env, TOKEN)
    assert settings.allowed_hosts == ["okr.example.com"] and settings.auth.session_hours == 12
    policy = AccessPolicy.from_settings(settings)
    assert policy.host_allowed("okr.example.com") and policy.trusted_proxies == ()

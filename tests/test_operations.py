"""Operations: /healthz, /readyz, /metrics, `flask purge`, and graceful shutdown.

The outage tests use the private mariadbd of test_resilience.py (conftest's private_db), and
the gunicorn tests its Instance (tests/support.py): real servers, real signals, marked
`system`.
"""

import http.client
import itertools
import logging
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from secureapi.security import lockout
from secureapi.security.rate_limits import limiter
from tests.support import (
    PASSWORD,
    AuthActions,
    Instance,
    app_config,
    connect,
    lock_waits,
    sql,
    wait_until,
)

METRICS_TOKEN = "test-metrics-token-that-is-long-enough"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def ops_app(make_app):
    return make_app(METRICS_TOKEN=METRICS_TOKEN)


@pytest.fixture
def ops_client(ops_app):
    return ops_app.test_client()


@pytest.fixture
def ops_auth(ops_client, clock):
    return AuthActions(ops_client, clock)


def samples(text):
    """{(name, sorted label pairs): value} of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client):
    response = client.get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def value(scraped, name, **labels):
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


# --- /healthz and /readyz -------------------------------------------------------------------


def test_probes_answer_without_a_token_and_write_no_audit_line(client, caplog):
    caplog.set_level(logging.INFO, logger="secureapi.audit")
    health = client.get("/healthz")
    ready = client.get("/readyz")
    assert (health.status_code, health.json) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json) == (200, {"status": "ready"})
    assert health.headers["Cache-Control"] == "no-store"
    # Probing /products instead wrote a token_refused line every second per balancer.
    assert [r for r in caplog.records if r.name == "secureapi.audit"] == []


def test_a_burst_of_probes_is_answered_by_one_check(app, clock, monkeypatch):
    # December's review: 300 probes were 301 new database connections.
    from secureapi.routes import operations

    checks = []
    real = operations.database_answers
    monkeypatch.setattr(operations, "database_answers", lambda c: checks.append(1) or real(c))
    client = app.test_client()
    assert {client.get("/readyz").status_code for _ in range(5)} == {200}
    assert len(checks) == 1
    clock.advance(1)
    assert client.get("/readyz").status_code == 200
    assert len(checks) == 2


@pytest.fixture
def forget_default_limits():
    yield
    # The limiter is one module-level object and keeps the first default limit an app gives
    # it: without this, every later app of the run would limit every route to 2 a minute.
    limiter.limit_manager.set_default_limits([])


def test_probes_and_metrics_are_not_rate_limited(make_app, forget_default_limits):
    # Were a default limit ever set for every route, the probes would still be exempt.
    settings = {"RATELIMIT_ENABLED": True, "RATELIMIT_DEFAULT": "2 per minute"}
    app = make_app(METRICS_TOKEN=METRICS_TOKEN, **settings)
    client = app.test_client()
    assert client.get("/products").status_code == 401
    assert client.get("/products").status_code == 401
    assert client.get("/products").status_code == 429  # the default limit is on
    statuses = {client.get(path).status_code for path in ("/healthz", "/readyz") * 5}
    statuses |= {client.get("/metrics", headers=METRICS_AUTH).status_code for _ in range(5)}
    assert statuses == {200}


@pytest.mark.system  # needs Redis on 127.0.0.1:6379 (make test starts it)
def test_readyz_names_an_unreachable_rate_limit_storage_without_its_address(make_app):
    down = make_app(
        RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0"
    ).test_client()
    response = down.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert response.json["message"] == "Not ready: the rate-limit storage did not answer in time."
    up = make_app(
        RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0"
    ).test_client()
    assert up.get("/readyz").status_code == 200


def test_readyz_fails_when_the_session_settings_do_not_apply(make_app, auth):
    # Every worker connection runs MYSQL_INIT_COMMAND; so does the probe, or it would call
    # ready an instance whose every request fails.
    headers = auth.headers()
    settings = {"MYSQL_INIT_COMMAND": "SET SESSION no_such_setting = 1"}
    client = make_app(**settings).test_client()
    assert client.get("/products", headers=headers).status_code == 503
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["message"] == "Not ready: the database did not answer in time."
    assert "no_such_setting" not in response.get_data(as_text=True)


@pytest.fixture
def private(request, clock):
    """(server, app): test_resilience's private database server, and an app on it with
    metrics on and the default read timeout, so that /readyz has to bound its wait itself."""
    server = request.getfixturevalue("private_db")
    if server.process.poll() is not None:
        server.start()
    settings = {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": server.port, "MYSQL_READ_TIMEOUT": 5}
    yield (
        server,  # the private server's own database, not the test database: no make_app
        create_app(app_config("outage", CLOCK=clock, METRICS_TOKEN=METRICS_TOKEN, **settings)),
    )
    if server.process.poll() is not None:
        server.start()


@pytest.mark.system
def test_healthz_answers_while_the_database_is_down_and_readyz_follows_it(private, clock, caplog):
    server, app = private
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    before = scrape(client)
    server.stop()
    clock.advance(1)  # past the last check's fresh second (operations.FRESH_SECONDS)
    health = client.get("/healthz")
    ready = client.get("/readyz")
    assert client.get("/readyz").status_code == 503
    products = client.get("/products", headers={"Authorization": "Bearer x"})
    login = client.post("/login", json={"username": "alice", "password": PASSWORD, "otp": "1"})
    after = scrape(client)  # /metrics needs no database either
    server.start()

    assert (health.status_code, health.json) == (200, {"status": "ok"})
    assert ready.status_code == 503
    assert ready.mimetype == "application/problem+json"
    assert ready.headers["Retry-After"] == "5"
    assert ready.json["message"] == "Not ready: the database did not answer in time."
    assert str(server.port) not in ready.get_data(as_text=True)
    assert products.status_code == 401  # a malformed token needs no database
    assert login.status_code == 503
    assert moved(before, after, "secureapi_database_unavailable_total") == 1
    # The reason is for the server log: once, not once per probe.
    failures = [r for r in caplog.records if "the database check fails" in r.getMessage()]
    assert len(failures) == 1
    wait_until(lambda: client.get("/readyz").status_code == 200)
    assert any("the database check passes again" in r.getMessage() for r in caplog.records)


@pytest.mark.system
def test_readyz_answers_in_about_a_second_while_the_database_hangs(private, clock):
    server, app = private
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    os.kill(server.process.pid, signal.SIGSTOP)
    clock.advance(1)  # past the last check's fresh second
    try:
        started = time.monotonic()
        first = client.get("/readyz")
        second = client.get("/readyz")  # waits for the same hung check, starts no other
        waited = time.monotonic() - started
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert (first.status_code, second.status_code) == (503, 503)
    # A request on the kept connection would wait 3 x MYSQL_READ_TIMEOUT = 15 s here.
    assert waited < 5
    wait_until(lambda: client.get("/readyz").status_code == 200)


# --- /metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-of-the-same-kind-and-length!"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"},
    ],
)
def test_metrics_is_a_plain_404_without_the_token(ops_client, headers):
    response = ops_client.get("/metrics", headers=headers)
    unknown = ops_client.get("/no-such-page", headers=headers)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json == unknown.json


def test_metrics_is_a_404_when_no_token_is_set(client):
    response = client.get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_a_short_metrics_token_is_refused_at_start_up(make_app):
    with pytest.raises(RuntimeError, match="METRICS_TOKEN"):
        make_app(METRICS_TOKEN="short")


def test_requests_are_counted_by_route_template_never_by_path(ops_client, ops_auth):
    headers = ops_auth.headers()
    before = scrape(ops_client)
    for product_id in (1, 2, 3):
        assert ops_client.get(f"/products/{product_id}", headers=headers).status_code == 404
    ops_client.get("/made-up/path/12345")
    ops_client.open("/products", method="BREW")
    after = scrape(ops_client)

    route = "/products/<id:product_id>"
    assert (
        moved(
            before, after, "secureapi_http_requests_total", route=route, method="GET", status="404"
        )
        == 3
    )
    assert (
        moved(
            before,
            after,
            "secureapi_http_request_duration_seconds_count",
            route=route,
            method="GET",
        )
        == 3
    )
    assert (
        moved(
            before,
            after,
            "secureapi_http_requests_total",
            route="unmatched",
            method="GET",
            status="404",
        )
        == 1
    )
    # A made-up method is "other", not a label of its own (nor is it a route: 405).
    assert (
        moved(
            before,
            after,
            "secureapi_http_requests_total",
            route="unmatched",
            method="other",
            status="405",
        )
        == 1
    )
    assert not any("12345" in str(key) or "BREW" in str(key) for key in after)  # fmt: skip


def test_login_outcomes_and_lockouts_are_counted(ops_client, ops_auth, db):
    ops_auth.register("alice")
    ops_auth.register("bob")
    before = scrape(ops_client)
    assert ops_auth.login("alice").status_code == 200
    assert ops_auth.login("alice", otp=ops_auth.code("alice", offset=5)).status_code == 401
    ops_client.post("/login", json={"username": "nobody", "password": PASSWORD, "otp": "1"})
    for _ in range(4):  # with the bad code above: 5 failures, and the client is locked out
        assert ops_auth.login("alice", password="not the password at all").status_code == 401
    assert ops_auth.login("alice").status_code == 429
    sql(db, "UPDATE users SET disabled = TRUE WHERE username = 'bob'")
    assert ops_auth.login("bob").status_code == 403
    after = scrape(ops_client)

    def logins(outcome):
        return moved(before, after, "secureapi_logins_total", outcome=outcome)

    assert logins("success") == 1
    assert logins("bad_otp") == 1
    assert logins("unknown_user") == 1
    assert logins("bad_password") == 4
    assert logins("locked") == 1
    assert logins("disabled") == 1
    assert moved(before, after, "secureapi_lockouts_total", tier="client") == 1
    assert moved(before, after, "secureapi_lockouts_total", tier="account") == 0


def test_a_hard_lock_is_counted(make_app, clock):
    app = make_app(METRICS_TOKEN=METRICS_TOKEN, LOGIN_HARD_LOCK_FAILURES=2)
    client = app.test_client()
    auth = AuthActions(client, clock)
    auth.register("alice")
    before = scrape(client)
    for _ in range(2):
        assert auth.login("alice", password="not the password at all").status_code == 401
    assert auth.login("alice").status_code == 403
    after = scrape(client)
    assert moved(before, after, "secureapi_lockouts_total", tier="account") == 1
    assert moved(before, after, "secureapi_logins_total", outcome="account_locked") == 1


def test_rate_limit_refusals_are_counted(make_app):
    app = make_app(
        METRICS_TOKEN=METRICS_TOKEN, RATELIMIT_ENABLED=True, RATELIMIT_REGISTER="2 per minute"
    )
    client = app.test_client()
    before = scrape(client)
    statuses = [
        client.post("/register", json={"username": f"u{n}", "password": "x"}).status_code
        for n in range(4)
    ]
    after = scrape(client)
    assert statuses == [400, 400, 429, 429]
    assert moved(before, after, "secureapi_rate_limited_total", endpoint="auth.register") == 2


# --- Purging stale rows ---------------------------------------------------------------------


@pytest.fixture
def purge_app(make_app, monkeypatch):
    # Counting restarts, so that no attempt of this test is the 100th that purges by itself.
    monkeypatch.setattr(lockout, "attempts_counted", itertools.count(1))
    return make_app(
        LOGIN_FAILURES_TTL_SECONDS=60,
        IDEMPOTENCY_KEY_TTL_SECONDS=60,
        LOGIN_MAX_FAILURES=10,
        LOGIN_HARD_LOCK_FAILURES=3,
    )


def test_purge_removes_exactly_the_stale_rows(purge_app, clock, db):
    client = purge_app.test_client()
    auth = AuthActions(client, clock)
    for name in ("alice", "bob", "carol"):
        auth.register(name)
    editor = auth.headers("dave")
    product = {"name": "kept", "price": 1, "quantity": 1}
    create = lambda key: client.post("/products", json=product, headers=editor | key)  # noqa: E731
    assert create({"Idempotency-Key": "expires"}).status_code == 201
    wrong = "not the password at all"
    client.post("/login", json={"username": "ghost", "password": wrong, "otp": "1"})
    auth.login("alice", password=wrong)  # a real account's failure: kept for the hard lock
    assert client.get("/qrcode/bob", auth=("bob", PASSWORD)).status_code == 200  # 0 failures
    for _ in range(3):
        auth.login("carol", password=wrong)  # hard-locked: kept until an admin unlocks it
    # A client locked out for longer than the time to live keeps its lockout.
    sql(
        db,
        "INSERT INTO client_failures (account, client, failures, locked_until, updated_at)"
        " VALUES ('alice', '192.0.2.7', 12, %s, %s)",
        (clock() + 1000, clock()),
    )
    clock.advance(30)
    # A keyed create purges the keys that have expired by then: none yet.
    assert create({"Idempotency-Key": "fresh"}).status_code == 201
    clock.advance(31)
    client.post("/login", json={"username": "ghost2", "password": wrong, "otp": "1"})

    result = purge_app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Removed 2 login_failures rows untouched for 60 seconds.",
        "Removed 4 client_failures rows untouched for 60 seconds.",
        "Removed 1 expired idempotency keys.",
        "Removed 0 sessions that went idle or past their age.",  # tests/test_sessions.py
        "Removed 0 access tokens expired over 30 days ago.",  # tests/test_access_tokens.py
    ]
    keys = sql(db, "SELECT idempotency_key FROM idempotency_keys")
    assert keys == ({"idempotency_key": "fresh"},)
    accounts = sql(db, "SELECT username, failures, locked FROM login_failures ORDER BY failures")
    assert [(row["failures"], row["locked"]) for row in accounts] == [(1, 0), (1, 0), (3, 1)]
    assert {row["username"] for row in accounts} >= {"alice", "carol"}
    clients = sql(db, "SELECT account, client FROM client_failures")
    assert len(clients) == 2
    assert {"account": "alice", "client": "192.0.2.7"} in clients
    # The fresh row of ghost2 is the other one; a second purge finds nothing.
    result = purge_app.test_cli_runner().invoke(args=["purge"])
    assert [line.split()[1] for line in result.output.splitlines()] == ["0", "0", "0", "0", "0"]


def test_a_flood_of_made_up_usernames_keeps_the_tables_bounded(purge_app, clock, db):
    """No cron job: every 100th attempt trims the rows untouched for the time to live. A
    flood of 100 new names a minute, with a time to live of a minute, stays at 100 rows."""
    client = purge_app.test_client()
    sizes = []
    for _ in range(5):
        for _ in range(100):
            name = f"flood-{uuid.uuid4().hex[:16]}"
            client.post("/login", json={"username": name, "password": "guess", "otp": "1"})
        sizes.append(
            (
                sql(db, "SELECT COUNT(*) AS n FROM login_failures")[0]["n"],
                sql(db, "SELECT COUNT(*) AS n FROM client_failures")[0]["n"],
            )
        )
        clock.advance(61)
    assert sizes == [(100, 100)] * 5  # 500 names tried


# --- Under gunicorn -------------------------------------------------------------------------


def worker_pids(master):
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            children.append(int(stat.parent.name))
    return children


def scrape_instance(instance):
    connection = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=30)
    connection.request("GET", "/metrics", headers=METRICS_AUTH)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    assert response.status == 200
    return samples(body)


def failed_logins(instance, count):
    for _ in range(count):
        body = {"username": f"n-{uuid.uuid4().hex[:12]}", "password": "guess", "otp": "1"}
        assert instance.call("POST", "/login", body)[0] == 401


@pytest.mark.system
def test_metrics_add_up_across_gunicorn_workers(database, tmp_path):
    directory = tmp_path / "metrics"
    settings = {"METRICS_TOKEN": METRICS_TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    instance = Instance(database, tmp_path / "first.log", **settings)
    try:
        assert instance.call("GET", "/metrics")[0] == 404
        first, second = worker_pids(instance.process.pid)
        # A stopped worker accepts nothing: each batch is served by the other one.
        os.kill(first, signal.SIGSTOP)
        try:
            failed_logins(instance, 3)
            seen_by_second = scrape_instance(instance)
        finally:
            os.kill(first, signal.SIGCONT)
        os.kill(second, signal.SIGSTOP)
        try:
            failed_logins(instance, 4)
            seen_by_first = scrape_instance(instance)
        finally:
            os.kill(second, signal.SIGCONT)
    finally:
        instance.stop()
    unknown = ("secureapi_logins_total", (("outcome", "unknown_user"),))
    login = (("method", "POST"), ("route", "/login"), ("status", "401"))
    assert seen_by_second[unknown] == 3
    assert seen_by_first[unknown] == 7  # its own 4 and the other worker's 3
    assert seen_by_first[("secureapi_http_requests_total", login)] == 7
    assert seen_by_first[("secureapi_http_request_duration_seconds_count", login[:2])] == 7
    scrapes = (("method", "GET"), ("route", "/metrics"), ("status", "200"))
    assert seen_by_first[("secureapi_http_requests_total", scrapes)] == 1  # the second's

    # The next run starts from zero: the directory is emptied at start-up.
    instance = Instance(database, tmp_path / "second.log", **settings)
    try:
        assert unknown not in scrape_instance(instance)
    finally:
        instance.stop()


@pytest.mark.system
def test_sigterm_lets_a_request_in_flight_finish(database, tmp_path, auth, db):
    # A long read timeout: the request waits on a row lock for as long as the test holds it.
    instance = Instance(database, tmp_path / "gunicorn.log", MYSQL_READ_TIMEOUT="60")
    holder = connect(database)
    try:
        secret = auth.register("alice")["secret"]
        token = instance.login("alice", secret)[1]["token"]
        body = {"name": "slow", "price": 1, "quantity": 1}
        product_id = instance.call("POST", "/products", body, token)[1]["id"]

        holder.begin()
        holder.cursor().execute("SELECT id FROM products WHERE id = %s FOR UPDATE", (product_id,))
        result = {}
        request = threading.Thread(
            target=lambda: result.update(
                answer=instance.call("PATCH", f"/products/{product_id}", {"quantity": 9}, token)
            )
        )
        request.start()
        # The PATCH waits on the row lock (only this run's database: others share the server).
        wait_until(lambda: lock_waits(db, database) == 1)
        instance.process.send_signal(signal.SIGTERM)
        # The idle worker is gone: the busy one has had its SIGTERM too.
        wait_until(lambda: instance.log_path.read_text().count("Worker exiting") >= 1)
        holder.commit()
        request.join(30)
        assert instance.process.wait(30) == 0
    finally:
        holder.close()
        instance.stop()
    status, answer = result["answer"]
    assert status == 200
    assert answer["product"]["quantity"] == 9
    assert sql(db, "SELECT quantity FROM products WHERE id = %s", (product_id,)) == (
        {"quantity": 9},
    )

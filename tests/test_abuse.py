"""Lockout, rate limits, recovery codes, 2FA reset, encrypted secrets and the audit log."""

import hashlib
import json
import logging
import re
import uuid

import pyotp
import pytest
import redis
from cryptography.fernet import Fernet

from tests.support import (
    PASSWORD,
    TEST_TOTP_KEY,
    AuthActions,
    bearer,
    during_bcrypt,
    post_concurrently,
    sql,
)

# --- Per-account lockout ------------------------------------------------------------------


def fail(auth, username="alice", times=1):
    for _ in range(times):
        response = auth.login(username, "wrong password!", "000000")
        assert response.status_code == 401


def test_sixth_attempt_after_five_failures_is_429_even_when_right(auth):
    auth.register("alice")
    fail(auth, times=5)
    response = auth.login("alice")
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "30"
    assert "try again in 30 seconds" in response.json["message"]


def test_lockout_ends_and_success_resets_the_count(auth, clock):
    auth.register("alice")
    fail(auth, times=5)
    clock.advance(31)
    assert auth.login("alice").status_code == 200
    fail(auth, times=4)  # a fresh count: four failures do not lock
    assert auth.login("alice", offset=1).status_code == 200


def test_lockout_doubles_with_each_further_failure_up_to_the_cap(app, auth, clock):
    app.config["LOGIN_LOCKOUT_MAX_SECONDS"] = 100
    auth.register("alice")
    fail(auth, times=5)
    assert auth.login("alice").headers["Retry-After"] == "30"
    for expected in ("60", "100", "100"):
        clock.advance(int(auth.login("alice").headers["Retry-After"]) + 1)
        fail(auth)
        assert auth.login("alice").headers["Retry-After"] == expected


def test_wrong_codes_count_towards_lockout(auth):
    auth.register("alice")
    for _ in range(5):
        assert auth.login("alice", otp="000000").status_code == 401
    assert auth.login("alice").status_code == 429


def test_unknown_usernames_are_treated_like_known_ones(auth):
    auth.register("alice")
    for username in ("alice", "nobody"):
        responses = [
            auth.client.post(
                "/login",
                json={"username": username, "password": "wrong password!", "otp": "000000"},
            )
            for _ in range(6)
        ]
        assert [r.status_code for r in responses] == [401] * 5 + [429]
        assert responses[-1].headers["Retry-After"] == "30"
    # Same bodies for both: only the username differs in nothing the client sees.
    known = auth.login("alice", "x" * 10, "000000")
    unknown = auth.login("nobody", "x" * 10, "000000")
    assert (known.status_code, known.json) == (unknown.status_code, unknown.json)


def test_lockout_is_case_insensitive(auth):
    auth.register("alice")
    fail(auth, "ALICE", times=5)
    assert auth.login("alice").status_code == 429


# --- Per-client rate limits ---------------------------------------------------------------


@pytest.fixture
def make_limited_app(make_app):
    """An app with rate limits on (login: 3 per minute), plus any other settings."""

    def make(**settings):
        return make_app(**{"RATELIMIT_ENABLED": True, "RATELIMIT_LOGIN": "3 per minute"} | settings)

    return make


@pytest.fixture
def limited_app(make_limited_app):
    return make_limited_app()


def login_from(client, address, forwarded_for=None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post(
        "/login",
        json={"username": "alice", "password": "wrong password!", "otp": "000000"},
        environ_base={"REMOTE_ADDR": address},
        headers=headers,
    )


def test_rate_limit_trips_per_client_with_retry_after(limited_app, caplog):
    caplog.set_level(logging.INFO, logger="secureapi.audit")
    client = limited_app.test_client()
    statuses = [login_from(client, "10.0.0.1").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    response = login_from(client, "10.0.0.1")
    assert response.mimetype == "application/problem+json"
    seconds = response.headers["Retry-After"]
    assert 0 < int(seconds) <= 60
    assert response.json["message"] == (
        f"Too many requests from this client; try again in {seconds} seconds."
    )
    assert login_from(client, "10.0.0.2").status_code == 401  # another client is not limited
    assert '"event": "rate_limited"' in caplog.text


def test_forwarded_for_is_ignored_without_proxy_fix(limited_app):
    client = limited_app.test_client()
    statuses = [login_from(client, "10.0.0.1", f"192.0.2.{n}").status_code for n in range(4)]
    assert statuses[-1] == 429


def test_forwarded_for_is_trusted_with_proxy_fix(make_limited_app):
    client = make_limited_app(PROXY_FIX_X_FOR=1).test_client()
    statuses = [login_from(client, "10.0.0.1", f"192.0.2.{n}").status_code for n in range(4)]
    assert statuses == [401] * 4  # four different clients behind one proxy
    statuses = [login_from(client, "10.0.0.1", "192.0.2.9").status_code for _ in range(4)]
    assert statuses[-1] == 429


def test_register_and_qrcode_are_rate_limited(make_limited_app):
    app = make_limited_app(RATELIMIT_REGISTER="2 per minute", RATELIMIT_QRCODE="2 per minute")
    client = app.test_client()
    statuses = [client.post("/register", json={}).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
    statuses = [client.get("/qrcode/alice").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_rate_limits_can_be_turned_off(client):
    # The default test app runs with RATELIMIT_ENABLED=False.
    statuses = {client.post("/register", json={}).status_code for _ in range(12)}
    assert statuses == {400}


@pytest.mark.system  # needs Redis on 127.0.0.1:6379 (make test starts it)
def test_redis_storage_shares_limits_between_instances(make_limited_app):
    redis_uri = "redis://127.0.0.1:6379/0"
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    server = redis.Redis(host="127.0.0.1", port=6379)
    try:
        first = make_limited_app(RATELIMIT_STORAGE_URI=redis_uri).test_client()
        assert [login_from(first, address).status_code for _ in range(3)] == [401] * 3
        assert server.keys(f"*/{address}/*")  # the counts live in Redis
        # A second instance starts with no counts of its own, yet sees the first one's.
        second = make_limited_app(RATELIMIT_STORAGE_URI=redis_uri).test_client()
        assert login_from(second, address).status_code == 429
    finally:
        keys = server.keys(f"*/{address}/*")
        if keys:
            server.delete(*keys)


# --- Recovery codes -----------------------------------------------------------------------


def recovery_login(client, code, username="alice", password=PASSWORD):
    return client.post(
        "/login", json={"username": username, "password": password, "recovery_code": code}
    )


def test_register_returns_ten_distinct_recovery_codes_stored_as_digests(auth, db):
    codes = auth.register("alice")["recovery_codes"]
    assert len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", code) for code in codes)
    stored = sql(db, "SELECT code_hash FROM recovery_codes")
    assert len(stored) == 10
    dump = str(stored)
    assert not any(code in dump or code.replace("-", "") in dump for code in codes)


def test_recovery_code_logs_in_once(client, auth):
    codes = auth.register("alice")["recovery_codes"]
    response = recovery_login(client, codes[0])
    assert response.status_code == 200
    assert response.json["recovery_codes_remaining"] == 9
    assert client.get("/products", headers=bearer(response.json["token"])).status_code == 200
    assert recovery_login(client, codes[0]).status_code == 401
    # Typed loosely (upper case, no dashes) it still works.
    assert recovery_login(client, codes[1].upper().replace("-", "")).status_code == 200


def test_recovery_code_needs_the_password(client, auth):
    codes = auth.register("alice")["recovery_codes"]
    assert recovery_login(client, codes[0], password="wrong password!").status_code == 401
    assert recovery_login(client, codes[0]).status_code == 200


def test_recovery_codes_are_per_user(client, auth):
    alice = auth.register("alice")["recovery_codes"]
    auth.register("bob")
    assert recovery_login(client, alice[0], username="bob").status_code == 401


def test_failed_recovery_codes_count_towards_lockout(client, auth):
    codes = auth.register("alice")["recovery_codes"]
    for _ in range(5):
        assert recovery_login(client, "aaaa-bbbb-cccc").status_code == 401
    assert recovery_login(client, codes[0]).status_code == 429


def test_racing_requests_with_one_recovery_code_get_one_token(app, auth):
    app.config["LOGIN_MAX_FAILURES"] = 100  # here only replay protection is under test
    code = auth.register("alice")["recovery_codes"][0]
    body = {"username": "alice", "password": PASSWORD, "recovery_code": code}
    statuses = post_concurrently(app, 6, "/login", body)
    assert statuses == [200] + [401] * 5


@pytest.mark.parametrize(
    "extra",
    [{}, {"otp": "123456", "recovery_code": "aaaa-bbbb-cccc"}],
)
def test_login_needs_exactly_one_second_factor(client, auth, extra):
    auth.register("alice")
    body = {"username": "alice", "password": PASSWORD} | extra
    response = client.post("/login", json=body)
    assert response.status_code == 400
    assert "exactly one of 'otp' and 'recovery_code'" in response.json["message"]


def test_regenerating_recovery_codes_replaces_them(client, auth):
    old = auth.register("alice")["recovery_codes"]
    headers = auth.headers()
    assert (
        client.post(
            "/2fa/recovery-codes",
            json={"password": "wrong password!", "otp": auth.code(offset=1)},
            headers=headers,
        ).status_code
        == 403
    )
    body = {"password": PASSWORD, "otp": auth.code(offset=1)}
    response = client.post("/2fa/recovery-codes", json=body, headers=headers)
    assert response.status_code == 200
    new = response.json["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert recovery_login(client, old[0]).status_code == 401
    assert recovery_login(client, new[0]).status_code == 200


def test_regenerating_recovery_codes_needs_a_token(client, auth):
    auth.register("alice")
    response = client.post("/2fa/recovery-codes", json={"password": PASSWORD})
    assert response.status_code == 401


# --- 2FA reset ----------------------------------------------------------------------------


def test_reset_issues_new_secret_and_revokes_token(client, auth):
    old_secret = auth.register("alice")["secret"]
    headers = auth.headers()
    body = {"password": PASSWORD, "otp": auth.code(offset=1)}
    response = client.post("/2fa/reset", json=body, headers=headers)
    assert response.status_code == 200
    body = response.json
    assert body["secret"] != old_secret and len(body["secret"]) == 32
    assert body["otpauth_uri"] == pyotp.TOTP(body["secret"]).provisioning_uri(
        name="alice", issuer_name="SecureAPI"
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/products", headers=headers).status_code == 401

    # The QR code is served again, for the new secret, until a login with it.
    qr = client.get("/qrcode/alice", auth=("alice", PASSWORD))
    assert qr.status_code == 200
    assert auth.login("alice", otp=pyotp.TOTP(old_secret).at(auth.clock() + 30)).status_code == 401
    auth.secrets["alice"] = body["secret"]
    assert auth.login("alice", offset=1).status_code == 200
    assert client.get("/qrcode/alice", auth=("alice", PASSWORD)).status_code == 401


def test_reset_with_wrong_password_changes_nothing(client, auth, db):
    auth.register("alice")
    headers = auth.headers()
    (before,) = sql(db, "SELECT twofa_secret FROM users")
    body = {"password": "wrong password!", "otp": auth.code(offset=1)}
    response = client.post("/2fa/reset", json=body, headers=headers)
    assert response.status_code == 403
    assert sql(db, "SELECT twofa_secret FROM users")[0] == before
    assert client.get("/products", headers=headers).status_code == 200


def test_password_confirmations_count_towards_lockout(client, auth):
    auth.register("alice")
    headers = auth.headers()
    for _ in range(5):
        body = {"password": "wrong password!", "otp": auth.code(offset=1)}
        client.post("/2fa/reset", json=body, headers=headers)
    body = {"password": PASSWORD, "otp": auth.code(offset=1)}
    response = client.post("/2fa/reset", json=body, headers=headers)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"password": 5, "otp": "123456"},
        {"password": PASSWORD},  # the second factor is missing
        {"password": PASSWORD, "otp": "1", "recovery_code": "x"},
        {"password": PASSWORD, "otp": 123456},
    ],
)
def test_reset_malformed_body_is_400(client, auth, body):
    auth.register("alice")
    assert client.post("/2fa/reset", json=body, headers=auth.headers()).status_code == 400


# --- TOTP secrets at rest -----------------------------------------------------------------


def test_stored_secret_is_encrypted(auth, db):
    secret = auth.register("alice")["secret"]
    (row,) = sql(db, "SELECT twofa_secret FROM users")
    assert secret not in row["twofa_secret"]
    assert Fernet(TEST_TOTP_KEY).decrypt(row["twofa_secret"].encode()).decode() == secret
    with pytest.raises(Exception):  # noqa: B017 - any key but the right one fails
        Fernet(Fernet.generate_key()).decrypt(row["twofa_secret"].encode())


def test_plain_secret_from_v1_still_works_and_is_encrypted_on_use(auth, db):
    secret = auth.register("alice")["secret"]
    sql(db, "UPDATE users SET twofa_secret = %s", (secret,))
    assert auth.login("alice").status_code == 200
    stored = sql(db, "SELECT twofa_secret FROM users")[0]["twofa_secret"]
    assert stored != secret
    assert Fernet(TEST_TOTP_KEY).decrypt(stored.encode()).decode() == secret


def test_encryption_key_rotation(make_app, auth, db):
    secret = auth.register("alice")["secret"]
    new_key = Fernet.generate_key().decode()
    rotated = make_app(TOTP_ENCRYPTION_KEY=f"{new_key},{TEST_TOTP_KEY}")
    auth.client = rotated.test_client()
    assert auth.login("alice").status_code == 200
    stored = sql(db, "SELECT twofa_secret FROM users")[0]["twofa_secret"]
    assert Fernet(new_key).decrypt(stored.encode()).decode() == secret


@pytest.mark.parametrize("key", ["not-a-fernet-key", "short"])
def test_bad_encryption_key_refuses_to_start(make_app, key):
    with pytest.raises(RuntimeError, match="Fernet keys"):
        make_app(TOTP_ENCRYPTION_KEY=key)


# --- Audit log ----------------------------------------------------------------------------


def test_audit_log_records_security_events_without_secrets(client, auth, caplog):
    caplog.set_level(logging.INFO, logger="secureapi.audit")
    enrolment = auth.register("alice")
    client.get("/qrcode/alice", auth=("alice", PASSWORD))
    client.get("/qrcode/alice", auth=("alice", "wrong password!"))
    auth.login("alice", "wrong password!")
    auth.login("alice", otp="000000")
    auth.login('nobody\n{"event": "forged"}', PASSWORD, "000000")
    token = auth.login("alice").json["token"]
    client.get("/products", headers={"Authorization": "Bearer nonsense"})
    codes = client.post(
        "/2fa/recovery-codes",
        json={"password": PASSWORD, "otp": auth.code(offset=1)},
        headers=bearer(token),
    ).json["recovery_codes"]
    recovery = recovery_login(client, codes[0]).json["token"]
    client.post("/logout", headers=bearer(recovery))
    client.get("/products", headers=bearer(recovery))
    recovery = recovery_login(client, codes[1]).json["token"]
    reset = client.post(
        "/2fa/reset",
        json={"password": PASSWORD, "recovery_code": codes[2]},
        headers=bearer(recovery),
    ).json
    fail(auth, times=5)
    auth.login("alice")

    lines = [r.getMessage() for r in caplog.records if r.name == "secureapi.audit"]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all("\n" not in line for line in lines)
    for record in records:
        assert {"ts", "event", "username", "client", "request_id"} <= set(record)
        assert record["ts"].endswith("Z") and record["client"] == "127.0.0.1"
    events = [(r["event"], r["username"], r.get("reason")) for r in records]
    for expected in [
        ("register", "alice", None),
        ("qrcode_served", "alice", None),
        ("qrcode_refused", "alice", "bad_credentials"),
        ("login_failed", "alice", "bad_password"),
        ("login_failed", "alice", "bad_otp"),
        ("login_failed", None, "unknown_user"),
        ("login_succeeded", "alice", None),
        ("token_refused", None, "invalid"),
        ("recovery_codes_regenerated", "alice", None),
        ("recovery_code_used", "alice", None),
        ("logout", "alice", None),
        ("twofa_reset", "alice", None),
        ("lockout", "alice", None),
        ("login_locked", "alice", None),
        ("token_refused", "alice", "revoked"),
    ]:
        assert expected in events, expected
    assert not any(r["event"] == "forged" for r in records)
    secrets = [
        PASSWORD,
        enrolment["secret"],
        reset["secret"],
        token,
        recovery,
        *enrolment["recovery_codes"],
        *codes,
    ]
    log_text = "\n".join(lines)
    for secret in secrets:
        assert secret not in log_text


# --- Races and keys -------------------------------------------------------------------------


def test_concurrent_guesses_cannot_slip_past_the_lockout(app, auth):
    auth.register("alice")
    body = {"username": "alice", "password": "wrong password!", "otp": "000000"}
    statuses = post_concurrently(app, 12, "/login", body)
    assert statuses == [401] * 5 + [429] * 7  # only five guesses were checked


def test_login_racing_a_2fa_reset_cannot_restore_the_old_secret(app, auth, monkeypatch):
    from secureapi.routes import auth as auth_module

    old_secret = auth.register("alice")["secret"]
    headers = auth.headers()
    results = {}

    def reset():
        body = {"password": PASSWORD, "recovery_code": auth.recovery_codes["alice"][0]}
        results["reset"] = app.test_client().post("/2fa/reset", json=body, headers=headers)

    # The login has read the user (and the old secret) and checked the password: the whole
    # reset lands now, before the login checks the code and writes.
    during_bcrypt(monkeypatch, auth_module, "password_matches", reset)
    code = pyotp.TOTP(old_secret).at(auth.clock() + 30)
    results["login"] = app.test_client().post(
        "/login", json={"username": "alice", "password": PASSWORD, "otp": code}
    )
    assert results["reset"].status_code == 200
    assert results["login"].status_code == 401
    auth.secrets["alice"] = results["reset"].json["secret"]
    assert auth.login("alice", offset=1).status_code == 200  # the new secret is the one


def test_secret_that_no_key_opens_is_a_counted_401_not_a_500(make_app, auth, caplog):
    auth.register("alice")
    other_key = Fernet.generate_key().decode()
    wrong = make_app(TOTP_ENCRYPTION_KEY=other_key)
    auth.client = wrong.test_client()
    assert auth.login("alice").status_code == 401
    assert auth.client.get("/qrcode/alice", auth=("alice", PASSWORD)).status_code == 401
    assert "cannot be decrypted" in caplog.text
    for _ in range(3):
        auth.login("alice")
    assert auth.login("alice").status_code == 429  # each such attempt counted


def test_rotate_totp_keys_command(make_app, auth, db):
    alice = auth.register("alice")["secret"]
    bob = auth.register("bob")["secret"]
    sql(db, "UPDATE users SET twofa_secret = %s WHERE username = 'bob'", (bob,))  # v1 plain
    new_key = Fernet.generate_key().decode()
    app = make_app(TOTP_ENCRYPTION_KEY=f"{new_key},{TEST_TOTP_KEY}")
    result = app.test_cli_runner().invoke(args=["rotate-totp-keys"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 2 TOTP secrets; 0 could not be decrypted." in result.output
    stored = {r["username"]: r["twofa_secret"] for r in sql(db, "SELECT * FROM users")}
    new = Fernet(new_key)
    assert new.decrypt(stored["alice"].encode()).decode() == alice
    assert new.decrypt(stored["bob"].encode()).decode() == bob


# --- Two-tier lockout (review findings 6 and 12) -------------------------------------------


def login_via(auth, address, password=PASSWORD, username="alice", offset=0):
    body = {"username": username, "password": password, "otp": auth.code(username, offset)}
    return auth.client.post("/login", json=body, environ_base={"REMOTE_ADDR": address})


def test_a_strangers_failures_do_not_lock_the_owner_out(auth):
    auth.register("alice")
    for _ in range(5):
        assert login_via(auth, "203.0.113.9", "wrong password!").status_code == 401
    assert login_via(auth, "203.0.113.9").status_code == 429  # the stranger is locked out
    assert login_via(auth, "198.51.100.7").status_code == 200  # the owner is not


def test_ipv6_clients_are_counted_by_their_slash_64(auth):
    auth.register("alice")
    for host in range(1, 6):  # five addresses of one /64: one client
        assert login_via(auth, f"2001:db8:1:2::{host}", "wrong password!").status_code == 401
    assert login_via(auth, "2001:db8:1:2:ffff::1").status_code == 429
    assert login_via(auth, "2001:db8:1:3::1").status_code == 200  # another /64


def test_a_success_resets_both_tiers_for_that_client(app, auth, db):
    app.config["LOGIN_HARD_LOCK_FAILURES"] = 6
    auth.register("alice")
    for _ in range(4):
        login_via(auth, "203.0.113.9", "wrong password!")
    assert login_via(auth, "203.0.113.9").status_code == 200
    assert sql(db, "SELECT * FROM client_failures") == ()
    assert sql(db, "SELECT * FROM login_failures") == ()


def test_consecutive_failures_from_many_clients_lock_the_account_until_an_admin_unlocks(
    app, auth, db, caplog
):
    caplog.set_level(logging.INFO, logger="secureapi.audit")
    app.config["LOGIN_HARD_LOCK_FAILURES"] = 12
    auth.create_user("root_admin", "admin")
    admin = bearer(auth.token("root_admin"))
    auth.register("alice")
    for client in range(12):  # three guesses each from four addresses: no fast lock
        assert login_via(auth, f"203.0.113.{client // 3}", "wrong!!!!").status_code == 401
    response = login_via(auth, "198.51.100.7")  # the owner, right password and code
    assert response.status_code == 403
    assert "an admin can unlock it" in response.json["message"]
    assert "Retry-After" not in response.headers
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any('"event": "account_locked"' in r.getMessage() for r in warnings)

    alice = sql(db, "SELECT id FROM users WHERE username = 'alice'")[0]["id"]
    assert auth.client.get(f"/users/{alice}", headers=admin).json["locked"] is True
    response = auth.client.patch(f"/users/{alice}", json={"locked": False}, headers=admin)
    assert response.status_code == 200 and response.json["user"]["locked"] is False
    assert login_via(auth, "198.51.100.7", offset=1).status_code == 200


def test_unknown_usernames_are_counted_under_a_keyed_hash(auth, db, caplog):
    caplog.set_level(logging.INFO, logger="secureapi.audit")
    auth.client.post(
        "/login", json={"username": "MyS3cretPassw0rd", "password": "x" * 9, "otp": "000000"}
    )
    (row,) = sql(db, "SELECT username FROM login_failures")
    assert row["username"].startswith("~") and "MyS3cret" not in row["username"]
    assert "MyS3cret" not in caplog.text


# --- Retry-After only where it belongs, and it agrees with the message ---------------------


def test_retry_after_is_on_429_only_and_agrees_with_the_message(make_limited_app, clock):
    app = make_limited_app(RATELIMIT_LOGIN="100 per minute")
    auth = AuthActions(app.test_client(), clock)
    registered = auth.client.post("/register", json={"username": "alice", "password": PASSWORD})
    assert registered.status_code == 201 and "Retry-After" not in registered.headers
    auth.secrets["alice"] = registered.json["secret"]
    fail(auth, times=5)
    locked = auth.login("alice")
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "30"
    assert "try again in 30 seconds" in locked.json["message"]

    limited = make_limited_app(RATELIMIT_QRCODE="1 per minute").test_client()
    assert "Retry-After" not in limited.get("/qrcode/alice").headers
    refused = limited.get("/qrcode/alice")
    assert refused.status_code == 429
    seconds = refused.headers["Retry-After"]
    assert 0 < int(seconds) <= 60
    assert f"try again in {seconds} seconds" in refused.json["message"]


# --- Recovery codes at rest (review finding 11) ---------------------------------------------


def test_recovery_codes_are_keyed_and_salted_so_a_dump_tests_no_guess(auth, client, db, make_app):
    codes = auth.register("alice")["recovery_codes"]
    user_id = sql(db, "SELECT id FROM users")[0]["id"]
    stored = sql(db, "SELECT salt, code_hash FROM recovery_codes")
    assert len({row["salt"] for row in stored}) == 10  # a random salt per code
    # v1's digest, which anyone with the dump could compute, matches none of them.
    v1 = {
        hashlib.sha256(f"{user_id}:{code.replace('-', '')}".encode()).hexdigest() for code in codes
    }
    assert not v1 & {row["code_hash"] for row in stored}
    # The key is not in the database: an app with another key cannot use the codes.
    other = make_app(RECOVERY_CODE_KEY="k" * 40)
    assert recovery_login(other.test_client(), codes[0]).status_code == 401
    assert recovery_login(client, codes[0]).status_code == 200


def test_v1_recovery_codes_keep_working_once(auth, client, db):
    auth.register("alice")
    user_id = sql(db, "SELECT id FROM users")[0]["id"]
    digest = hashlib.sha256(f"{user_id}:aaaabbbbcccc".encode()).hexdigest()
    sql(db, "INSERT INTO recovery_codes (user_id, code_hash) VALUES (%s, %s)", (user_id, digest))
    assert recovery_login(client, "aaaa-bbbb-cccc").status_code == 200
    assert recovery_login(client, "aaaa-bbbb-cccc").status_code == 401


@pytest.mark.parametrize("forwarded", ["not-an-ip", "1.2.3.4, é", "fe80::1%eth0", "::ffff:1.2.3.4"])
def test_a_forged_forwarded_for_is_counted_not_a_500(make_limited_app, db, forwarded):
    client = make_limited_app(PROXY_FIX_X_FOR=1).test_client()
    body = {"username": "alice", "password": "wrong password!", "otp": "000000"}
    response = client.post("/login", json=body, headers={"X-Forwarded-For": forwarded})
    assert response.status_code == 401
    assert len(sql(db, "SELECT client FROM client_failures")) == 1

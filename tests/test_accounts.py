"""Roles, admins, /me, password change, account deletion, the CLI and schema upgrades."""

import contextlib
import functools
import json
import logging
import os
import uuid

import bcrypt
import MySQLdb
import pyotp
import pytest

from app import create_app
from secureapi.data import database as database_module
from secureapi.data.database import MIGRATIONS, init_db, sql_statements
from tests.support import (
    PASSWORD,
    AuthActions,
    app_config,
    at_once,
    basic,
    bearer,
    connect,
    during_bcrypt,
    server_settings,
    sql,
)

NEW_PASSWORD = "a different long passphrase"
LAPTOP = {"name": "Laptop", "price": 10, "quantity": 1}
INSUFFICIENT_SCOPE = 'Bearer realm="SecureAPI", error="insufficient_scope"'


def user_id(db, username):
    return sql(db, "SELECT id FROM users WHERE username = %s", (username,))[0]["id"]


@pytest.fixture
def admin(auth):
    """An admin made with the CLI, logged in: its Authorization header."""
    auth.create_user("root_admin", "admin")
    return bearer(auth.token("root_admin"))


# --- Roles ----------------------------------------------------------------------------------


def test_viewer_reads_but_cannot_write_products(auth, client, db, admin):
    client.post("/products", json=LAPTOP, headers=admin)
    product_id = sql(db, "SELECT id FROM products")[0]["id"]
    auth.create_user("vera", "viewer")
    viewer = bearer(auth.token("vera"))
    assert client.get("/products", headers=viewer).status_code == 200
    assert client.get(f"/products/{product_id}", headers=viewer).status_code == 200
    for method, url in [
        ("POST", "/products"),
        ("POST", "/product"),
        ("PUT", f"/products/{product_id}"),
        ("PATCH", f"/products/{product_id}"),
        ("DELETE", f"/products/{product_id}"),
    ]:
        response = client.open(url, method=method, json=LAPTOP, headers=viewer)
        assert response.status_code == 403, url
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"] == INSUFFICIENT_SCOPE
        assert "editor role" in response.json["message"]
    assert sql(db, "SELECT name, quantity FROM products") == ({"name": "Laptop", "quantity": 1},)


def test_editor_cannot_manage_users(auth, client, db):
    headers = auth.headers("alice")
    alice = user_id(db, "alice")
    for method, url in [
        ("GET", "/users"),
        ("GET", f"/users/{alice}"),
        ("PATCH", f"/users/{alice}"),
        ("DELETE", f"/users/{alice}"),
        ("POST", f"/users/{alice}/2fa/reset"),
    ]:
        response = client.open(url, method=method, json={"role": "admin"}, headers=headers)
        assert response.status_code == 403, url
        assert response.headers["WWW-Authenticate"] == INSUFFICIENT_SCOPE
        assert "admin role" in response.json["message"]
    assert sql(db, "SELECT role FROM users") == ({"role": "editor"},)


def test_demotion_and_promotion_take_effect_on_the_next_request(auth, client, db, admin):
    headers = auth.headers("alice")
    alice = user_id(db, "alice")
    assert client.post("/products", json=LAPTOP, headers=headers).status_code == 201
    response = client.patch(f"/users/{alice}", json={"role": "viewer"}, headers=admin)
    assert response.status_code == 200
    assert response.json["user"]["role"] == "viewer"
    assert client.post("/products", json=LAPTOP, headers=headers).status_code == 403
    assert client.get("/products", headers=headers).status_code == 200
    client.patch(f"/users/{alice}", json={"role": "editor"}, headers=admin)
    assert client.post("/products", json=LAPTOP, headers=headers).status_code == 201


def test_demotion_holds_on_every_instance(auth, make_app, db, admin):
    """Two app instances (as behind a load balancer) read the role from the same row."""
    other = make_app().test_client()
    headers = auth.headers("alice")
    assert other.post("/products", json=LAPTOP, headers=headers).status_code == 201
    auth.client.patch(f"/users/{user_id(db, 'alice')}", json={"role": "viewer"}, headers=admin)
    assert other.post("/products", json=LAPTOP, headers=headers).status_code == 403


def test_disabled_user_loses_token_and_cannot_log_in(auth, client, db, admin):
    headers = auth.headers("alice")
    response = client.patch(
        f"/users/{user_id(db, 'alice')}", json={"disabled": True}, headers=admin
    )
    assert response.status_code == 200 and response.json["user"]["disabled"] is True
    response = client.get("/products", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    auth.clock.advance(30)
    response = auth.login("alice")
    assert response.status_code == 403
    assert response.json["message"] == "This account is disabled."
    assert "token" not in response.json
    # Wrong credentials still get the one generic answer: disabled tells nothing to a guesser.
    assert auth.login("alice", password="wrong password!").status_code == 401
    auth.clock.advance(30)
    assert auth.login("alice", otp="000000").status_code == 401
    # Enabling does not bring the old token back, but a new login works.
    client.patch(f"/users/{user_id(db, 'alice')}", json={"disabled": False}, headers=admin)
    assert client.get("/products", headers=headers).status_code == 401
    auth.clock.advance(30)
    assert auth.login("alice").status_code == 200


def test_disable_takes_effect_even_for_a_token_issued_meanwhile(auth, client, db, admin):
    """A login racing the disable may store a token; the token check refuses it anyway."""
    headers = auth.headers("alice")
    sql(db, "UPDATE users SET disabled = TRUE WHERE username = 'alice'")
    assert client.get("/me", headers=headers).status_code == 401


def test_registration_role_and_closed_registration(make_app, db):
    viewers = make_app(REGISTRATION_ROLE="viewer")
    response = viewers.test_client().post(
        "/register", json={"username": "vic", "password": PASSWORD}
    )
    assert response.status_code == 201 and response.json["role"] == "viewer"
    assert sql(db, "SELECT role FROM users WHERE username = 'vic'")[0]["role"] == "viewer"

    closed = make_app(REGISTRATION="closed")
    response = closed.test_client().post(
        "/register", json={"username": "cid", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert response.json["message"] == "Registration is closed."
    assert not sql(db, "SELECT id FROM users WHERE username = 'cid'")


def test_register_answers_role_editor_by_default(client):
    response = client.post("/register", json={"username": "alice", "password": PASSWORD})
    assert response.json["role"] == "editor"


@pytest.mark.parametrize(
    "setting", [{"REGISTRATION": "sometimes"}, {"REGISTRATION_ROLE": "superuser"}]
)
def test_bad_registration_settings_stop_start_up(make_app, setting):
    with pytest.raises(RuntimeError):
        make_app(**setting)


# --- CLI ------------------------------------------------------------------------------------


def test_create_user_json_and_login(auth, runner, db):
    record = auth.create_user("boss", "admin")
    assert set(record) == {"username", "role", "secret", "otpauth_uri", "recovery_codes"}
    assert record["role"] == "admin" and len(record["recovery_codes"]) == 10
    assert record["otpauth_uri"].startswith("otpauth://totp/SecureAPI:boss?secret=")
    assert sql(db, "SELECT role FROM users WHERE username = 'boss'")[0]["role"] == "admin"
    assert auth.login("boss").status_code == 200


def test_create_user_text_output_has_a_terminal_qr_code(runner):
    result = runner.invoke(args=["create-user", "carol", "--role", "viewer"], input=PASSWORD)
    assert result.exit_code == 0, result.output
    assert "TOTP secret:" in result.output and "otpauth://totp/" in result.output
    assert "█" in result.output or "▀" in result.output  # the QR code, drawn in blocks
    assert len([line for line in result.output.splitlines() if len(line) == 14]) >= 10


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["create-user", "dan", "--role", "king"], PASSWORD, "'role' must be one of"),
        (["create-user", "x", "--role", "viewer"], PASSWORD, "3-64 characters"),
        (["create-user", "dan"], "short", "at least 8 characters"),
        (["create-user", "dan"], "password123", "too easy to guess"),
        (["create-user", "taken"], PASSWORD, "already taken"),
        (["set-role", "taken", "king"], "", "'role' must be one of"),
        (["set-role", "nobody", "admin"], "", "No user is called"),
    ],
)
def test_cli_refuses_bad_input_with_a_clear_message(auth, runner, db, args, password, message):
    auth.create_user("taken", "editor")
    result = runner.invoke(args=args, input=f"{password}\n")
    assert result.exit_code != 0
    assert message in result.output
    assert sql(db, "SELECT COUNT(*) AS n FROM users")[0]["n"] == 1


def test_set_role_promotes_and_keeps_the_last_admin(auth, runner, db):
    auth.create_user("only_admin", "admin")
    result = runner.invoke(args=["set-role", "only_admin", "viewer"])
    assert result.exit_code != 0 and "last enabled admin" in result.output
    auth.register("alice")
    result = runner.invoke(args=["set-role", "alice", "admin"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["set-role", "only_admin", "viewer"]).exit_code == 0
    roles = {row["username"]: row["role"] for row in sql(db, "SELECT username, role FROM users")}
    assert roles == {"only_admin": "viewer", "alice": "admin"}


# --- /me ------------------------------------------------------------------------------------


def test_me_describes_the_token_holder(auth, client, db):
    headers = auth.headers("alice")
    response = client.get("/me", headers=headers)
    assert response.status_code == 200
    body = response.json
    assert body == {
        "id": user_id(db, "alice"),
        "username": "alice",
        "role": "editor",
        "created_at": body["created_at"],
        "twofa_confirmed": True,
        "recovery_codes_remaining": 10,
    }
    assert body["created_at"].endswith("Z") and body["created_at"][10] == "T"
    assert client.get("/me").status_code == 401


def test_me_counts_used_recovery_codes(auth, client):
    auth.register("alice")
    code = auth.recovery_codes["alice"][0]
    response = client.post(
        "/login", json={"username": "alice", "password": PASSWORD, "recovery_code": code}
    )
    me = client.get("/me", headers=bearer(response.json["token"])).json
    assert me["recovery_codes_remaining"] == 9 and me["twofa_confirmed"] is False


def change_password(auth, headers, **body):
    return auth.client.post("/me/password", json=body, headers=headers)


def test_password_change_ends_the_other_sessions_and_the_old_password(auth, client, db):
    other = auth.headers("alice")  # another device
    auth.clock.advance(30)
    headers = auth.headers("alice")
    response = change_password(
        auth,
        headers,
        current_password=PASSWORD,
        new_password=NEW_PASSWORD,
        otp=auth.code("alice", offset=1),
    )
    assert response.status_code == 200, response.json
    assert response.json["message"] == "Password changed; your other sessions have ended."
    assert client.get("/me", headers=other).status_code == 401  # ASVS 5.0 7.4.3
    assert client.get("/me", headers=headers).status_code == 200  # the one that changed it
    auth.clock.advance(60)
    assert auth.login("alice").status_code == 401
    auth.clock.advance(30)
    assert auth.login("alice", password=NEW_PASSWORD).status_code == 200


def test_password_change_with_a_recovery_code_consumes_it(auth, client, db):
    headers = auth.headers("alice")
    code = auth.recovery_codes["alice"][0]
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "recovery_code": code}
    assert change_password(auth, headers, **body).status_code == 200
    auth.clock.advance(30)
    response = client.post(
        "/login", json={"username": "alice", "password": NEW_PASSWORD, "recovery_code": code}
    )
    assert response.status_code == 401  # used up by the password change


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"current_password": PASSWORD, "new_password": NEW_PASSWORD}, "exactly one of"),
        (
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "otp": "1",
                "recovery_code": "2",
            },
            "exactly one of",
        ),
        ({"new_password": NEW_PASSWORD, "otp": "123456"}, "'current_password' is required"),
        ({"current_password": PASSWORD, "otp": "123456"}, "'new_password' is required"),
        (
            {"current_password": PASSWORD, "new_password": "short", "otp": "123456"},
            "'new_password' must be at least 8",
        ),
        (
            {"current_password": PASSWORD, "new_password": "password1", "otp": "123456"},
            "'new_password' is too easy to guess",
        ),
        ({"current_password": PASSWORD, "new_password": NEW_PASSWORD, "x": 1}, "Unknown field"),
    ],
)
def test_password_change_validation_is_400_and_counts_nothing(auth, db, body, message):
    headers = auth.headers("alice")
    response = change_password(auth, headers, **body)
    assert response.status_code == 400
    assert message in response.json["message"]
    assert not sql(db, "SELECT failures FROM login_failures WHERE failures > 0")


@pytest.mark.parametrize("wrong", ["password", "otp", "recovery_code"])
def test_wrong_reauthentication_is_403_and_counts_toward_lockout(auth, client, db, wrong):
    headers = auth.headers("alice")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    if wrong == "password":
        body |= {"current_password": "not my password", "otp": auth.code("alice", offset=1)}
    elif wrong == "otp":
        body["otp"] = auth.code("alice")  # the step the login already used: a replay
    else:
        body["recovery_code"] = "aaaa-bbbb-cccc"
    response = change_password(auth, headers, **body)
    assert response.status_code == 403
    assert response.json["message"] == (
        "The password, one-time code or recovery code is incorrect."
    )
    assert sql(db, "SELECT failures FROM login_failures")[0]["failures"] == 1
    assert client.get("/me", headers=headers).status_code == 200  # nothing changed
    for _ in range(4):
        change_password(auth, headers, **body)
    assert change_password(auth, headers, **body).status_code == 429


def test_wrong_second_factors_in_reauthentication_reach_the_hard_lock(app, auth, client, db):
    # The lock was set inside the transaction that the refusal then rolled back.
    app.config["LOGIN_HARD_LOCK_FAILURES"] = 3
    headers = auth.headers("alice")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "otp": "000000"}
    for _ in range(3):
        assert change_password(auth, headers, **body).status_code == 403
    assert sql(db, "SELECT failures, locked FROM login_failures") == ({"failures": 3, "locked": 1},)


def test_delete_me_removes_the_account_but_not_products(auth, client, db):
    headers = auth.headers("alice")
    client.post("/products", json=LAPTOP, headers=headers)
    alice = user_id(db, "alice")
    sql(db, "INSERT INTO login_failures (username, failures) VALUES ('alice', 1)")
    body = {"password": PASSWORD, "otp": auth.code("alice", offset=1)}
    response = client.delete("/me", json=body, headers=headers)
    assert response.status_code == 200, response.json
    assert not sql(db, "SELECT id FROM users WHERE id = %s", (alice,))
    assert not sql(db, "SELECT id FROM recovery_codes WHERE user_id = %s", (alice,))
    assert not sql(db, "SELECT username FROM login_failures")
    assert sql(db, "SELECT COUNT(*) AS n FROM products")[0]["n"] == 1
    assert client.get("/products", headers=headers).status_code == 401
    auth.register("alice")  # the name is free again


def test_delete_me_needs_both_factors(auth, client, db):
    headers = auth.headers("alice")
    assert client.delete("/me", json={"password": PASSWORD}, headers=headers).status_code == 400
    body = {"password": "wrong password!", "otp": auth.code("alice", offset=1)}
    assert client.delete("/me", json=body, headers=headers).status_code == 403
    assert sql(db, "SELECT COUNT(*) AS n FROM users")[0]["n"] == 1


# --- Admin routes ---------------------------------------------------------------------------


def test_admin_lists_users_page_by_page(auth, client, admin):
    for name in ("bob", "carol", "dave"):
        auth.register(name)
    response = client.get("/users?limit=2", headers=admin)
    assert response.status_code == 200
    first = response.json
    assert [user["username"] for user in first] == ["root_admin", "bob"]
    assert set(first[0]) == {
        "id",
        "username",
        "role",
        "disabled",
        "locked",
        "created_at",
        "twofa_confirmed",
    }
    assert first[0]["role"] == "admin" and first[0]["twofa_confirmed"] is True
    link = response.headers["Link"]
    assert link == f'</users?limit=2&after={first[1]["id"]}>; rel="next"'
    second = client.get(link[1 : link.index(">")], headers=admin)
    assert [user["username"] for user in second.json] == ["carol", "dave"]
    assert "Link" not in second.headers
    assert client.get("/users?limit=0", headers=admin).status_code == 400


def test_admin_reads_and_changes_one_user(auth, client, db, admin):
    auth.register("bob")
    bob = user_id(db, "bob")
    response = client.get(f"/users/{bob}", headers=admin)
    assert response.json["username"] == "bob" and response.json["disabled"] is False
    assert response.json["twofa_confirmed"] is False
    response = client.patch(
        f"/users/{bob}", json={"role": "admin", "disabled": True}, headers=admin
    )
    assert response.json["message"] == "User updated"
    assert response.json["user"] | {"created_at": None} == {
        "id": bob,
        "username": "bob",
        "role": "admin",
        "disabled": True,
        "locked": False,
        "created_at": None,
        "twofa_confirmed": False,
    }
    assert client.get("/users/999999", headers=admin).status_code == 404
    assert client.patch("/users/999999", json={"role": "viewer"}, headers=admin).status_code == 404
    assert client.delete("/users/999999", headers=admin).status_code == 404
    assert client.post("/users/999999/2fa/reset", headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "at least one of"),
        ({"role": "root"}, "'role' must be one of"),
        ({"role": None}, "'role' must be one of"),
        ({"disabled": "yes"}, "'disabled' must be true or false"),
        ({"disabled": 1}, "'disabled' must be true or false"),
        ({"admin": False, "name": "x"}, "Unknown field(s): admin, name"),
        ({"locked": True}, "'locked' can only be set to false"),
    ],
)
def test_user_patch_validation(auth, client, db, admin, body, message):
    auth.register("bob")
    response = client.patch(f"/users/{user_id(db, 'bob')}", json=body, headers=admin)
    assert response.status_code == 400
    assert message in response.json["message"]
    assert sql(db, "SELECT role, disabled FROM users WHERE username = 'bob'") == (
        {"role": "editor", "disabled": 0},
    )


def test_admin_deletes_a_user(auth, client, db, admin):
    headers = auth.headers("bob")
    response = client.delete(f"/users/{user_id(db, 'bob')}", headers=admin)
    assert response.status_code == 200
    assert client.get("/me", headers=headers).status_code == 401
    assert not sql(db, "SELECT id FROM users WHERE username = 'bob'")


def test_admin_two_factor_reset_reopens_enrolment_without_showing_the_secret(
    auth, client, db, admin
):
    headers = auth.headers("bob")
    bob = user_id(db, "bob")
    old_secret = auth.secrets["bob"]
    response = client.post(f"/users/{bob}/2fa/reset", headers=admin)
    assert response.status_code == 200
    assert set(response.json) == {"message"}  # no secret, no otpauth URI, no codes
    assert client.get("/me", headers=headers).status_code == 401
    assert not sql(db, "SELECT id FROM recovery_codes WHERE user_id = %s", (bob,))
    auth.clock.advance(30)
    assert auth.login("bob").status_code == 401  # the old phone's codes are dead
    qr = client.get("/qrcode/bob", headers=basic("bob", PASSWORD))
    assert qr.status_code == 200 and qr.mimetype == "image/png"
    (row,) = sql(db, "SELECT twofa_secret, twofa_confirmed_at FROM users WHERE id = %s", (bob,))
    assert row["twofa_confirmed_at"] is None
    assert old_secret not in row["twofa_secret"]


def test_admin_cannot_reset_own_two_factor_through_the_admin_route(client, db, admin):
    me = user_id(db, "root_admin")
    assert client.post(f"/users/{me}/2fa/reset", headers=admin).status_code == 409
    assert client.get("/me", headers=admin).status_code == 200


# --- The last admin -------------------------------------------------------------------------


def test_the_last_admin_cannot_be_removed(auth, client, db, admin):
    me = user_id(db, "root_admin")
    for method, body in [("PATCH", {"role": "editor"}), ("PATCH", {"disabled": True})]:
        response = client.open(f"/users/{me}", method=method, json=body, headers=admin)
        assert response.status_code == 409
        assert "last enabled admin" in response.json["message"]
    assert client.delete(f"/users/{me}", headers=admin).status_code == 409
    body = {"password": PASSWORD, "otp": auth.code("root_admin", offset=1)}
    assert client.delete("/me", json=body, headers=admin).status_code == 409
    assert sql(db, "SELECT role, disabled FROM users") == ({"role": "admin", "disabled": 0},)
    # The refused deletion gave back its attempt and did not consume the code.
    assert not sql(db, "SELECT failures FROM login_failures WHERE failures > 0")
    assert client.delete("/me", json=body, headers=admin).status_code == 409


def test_a_disabled_admin_does_not_count(auth, client, db, admin):
    auth.create_user("second", "admin")
    second = user_id(db, "second")
    assert (
        client.patch(f"/users/{second}", json={"disabled": True}, headers=admin).status_code == 200
    )
    me = user_id(db, "root_admin")
    assert client.patch(f"/users/{me}", json={"role": "viewer"}, headers=admin).status_code == 409


def test_two_admins_demoting_each_other_at_once_leave_one(auth, app, db, admin):
    auth.create_user("second", "admin")
    tokens = {"root_admin": admin, "second": bearer(auth.token("second"))}
    ids = {name: user_id(db, name) for name in tokens}
    for _ in range(5):
        demotions = [
            lambda actor=actor, target=target: (
                app.test_client()
                .patch(f"/users/{ids[target]}", json={"role": "editor"}, headers=tokens[actor])
                .status_code
            )
            for actor, target in (("root_admin", "second"), ("second", "root_admin"))
        ]
        statuses = at_once(*demotions)
        # The loser is refused by the last-admin rule (409), or, if the winner committed
        # before the loser's token check, by its new role (403): never both demoted.
        assert sorted(statuses) in ([200, 403], [200, 409])
        admins = sql(db, "SELECT username FROM users WHERE role = 'admin'")
        assert len(admins) == 1
        sql(db, "UPDATE users SET role = 'admin'")  # both again, for the next round


# --- Audit ----------------------------------------------------------------------------------


def test_product_writes_and_account_changes_name_the_acting_user(auth, client, db, admin, caplog):
    caplog.set_level(logging.INFO, logger="secureapi.audit")
    headers = auth.headers("bob")
    product_id = client.post("/products", json=LAPTOP, headers=headers).json["id"]
    client.patch(f"/products/{product_id}", json={"quantity": 2}, headers=headers)
    client.delete(f"/products/{product_id}", headers=headers)
    client.patch(f"/users/{user_id(db, 'bob')}", json={"role": "viewer"}, headers=admin)
    events = [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "secureapi.audit"
    ]
    by_event = {event["event"]: event for event in events}
    for name in ("product_created", "product_updated", "product_deleted"):
        assert by_event[name]["username"] == "bob"
        assert by_event[name]["product_id"] == product_id
    assert by_event["user_updated"]["username"] == "root_admin"
    assert by_event["user_updated"]["user"] == "bob"
    assert by_event["user_updated"]["role"] == "viewer"


# --- Upgrading a v1 database ----------------------------------------------------------------

V1_SCHEMA = os.path.join(os.path.dirname(__file__), "fixtures", "schema-v1.sql")


@pytest.mark.db  # a database of its own, not the `database` fixture's
def test_init_db_upgrades_a_v1_database_in_place(clock):
    """v1's schema.sql with a user and a product, upgraded by init-db: nothing is lost, the
    user is an editor and logs in as before."""
    with v1_database() as (name, connection):
        settings = server_settings() | {"MYSQL_DB": name}
        secret = pyotp.random_base32()  # v1 also stored plain base32 secrets
        password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        sql(
            connection,
            "INSERT INTO users (username, password, twofa_secret, twofa_confirmed_at)"
            " VALUES ('legacy', %s, %s, UTC_TIMESTAMP())",
            (password_hash, secret),
        )
        sql(
            connection,  # registered, never logged in: still enrolling
            "INSERT INTO users (username, password, twofa_secret) VALUES ('newbie', %s, %s)",
            (password_hash, secret),
        )
        sql(connection, "INSERT INTO products (name, price, quantity) VALUES ('Old', 1, 1)")

        assert init_db(settings) == sorted(os.listdir(MIGRATIONS))
        assert init_db(settings) == []  # each change is applied once
        assert sql(connection, "SELECT username, role, disabled FROM users ORDER BY id") == (
            {"username": "legacy", "role": "editor", "disabled": 0},
            {"username": "newbie", "role": "editor", "disabled": 0},
        )
        # Not make_app: this app runs on the upgraded v1 database, not the test database.
        v1 = AuthActions(create_app(app_config(name, CLOCK=clock)).test_client(), clock)
        v1.secrets["legacy"] = secret
        headers = v1.headers("legacy")
        assert v1.client.get("/products", headers=headers).json[0]["name"] == "Old"
        # Migration 011 wrote the words of the products that v1 had.
        assert v1.client.get("/products?q=ol", headers=headers).json[0]["name"] == "Old"
        assert v1.client.post("/products", json=LAPTOP, headers=headers).status_code == 201
        assert v1.client.get("/me", headers=headers).json["role"] == "editor"
        qrcode = v1.client.get("/qrcode/newbie", headers=basic("newbie", PASSWORD))
        assert qrcode.status_code == 200  # the upgrade gave the enrolment its window


@contextlib.contextmanager
def v1_database():
    """A throwaway database made by v1's schema.sql: (its name, a connection to it)."""
    name = f"secure_api_upgrade_{uuid.uuid4().hex[:8]}"
    connection = connect()
    try:
        connection.cursor().execute(f"CREATE DATABASE `{name}`")
        connection.select_db(name)
        for statement in sql_statements(V1_SCHEMA):
            connection.cursor().execute(statement)
        yield name, connection
    finally:
        connection.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


# --- Regressions from the review of this feature ---------------------------------------------


def test_delete_me_decides_on_the_role_as_it_is_after_bcrypt(auth, app, db, monkeypatch):
    """A promotion and a demotion that land while DELETE /me runs bcrypt cannot leave the
    database without an admin."""
    from secureapi.security import accounts

    auth.create_user("root_admin", "admin")
    admin = bearer(auth.token("root_admin"))
    headers = auth.headers("eve")
    eve, root = user_id(db, "eve"), user_id(db, "root_admin")

    def promote_eve_demote_root():
        other = app.test_client()
        assert (
            other.patch(f"/users/{eve}", json={"role": "admin"}, headers=admin).status_code == 200
        )
        assert (
            other.patch(f"/users/{root}", json={"role": "editor"}, headers=admin).status_code == 200
        )

    during_bcrypt(monkeypatch, accounts, "check_password", promote_eve_demote_root)
    body = {"password": PASSWORD, "otp": auth.code("eve", offset=1)}
    response = app.test_client().delete("/me", json=body, headers=headers)
    assert response.status_code == 409
    assert sql(db, "SELECT username FROM users WHERE role = 'admin'") == ({"username": "eve"},)


def test_two_admins_deleting_themselves_at_once_leave_one(auth, app, db):
    for _ in range(3):
        for name in ("ann", "ben"):
            auth.secrets.pop(name, None)
            auth.create_user(name, "admin")

        def delete_me(name, headers):
            body = {"password": PASSWORD, "recovery_code": auth.recovery_codes[name][0]}
            return app.test_client().delete("/me", json=body, headers=headers).status_code

        deletions = [
            functools.partial(delete_me, name, bearer(auth.token(name))) for name in ("ann", "ben")
        ]
        assert sorted(at_once(*deletions)) == [200, 409]
        sql(db, "DELETE FROM users")


def test_disabled_user_cannot_fetch_the_qr_code(auth, client, db, admin):
    auth.register("dis")
    client.patch(f"/users/{user_id(db, 'dis')}", json={"disabled": True}, headers=admin)
    response = client.get("/qrcode/dis", headers=basic("dis", PASSWORD))
    assert response.status_code == 401 and response.mimetype == "application/problem+json"


def test_login_racing_a_password_change_gets_no_token(auth, app, db, monkeypatch):
    from secureapi.routes import auth as auth_module

    auth.register("alice")
    hashed = bcrypt.hashpw(NEW_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    change = lambda: sql(db, "UPDATE users SET password = %s", (hashed,))  # noqa: E731
    during_bcrypt(monkeypatch, auth_module, "password_matches", change)
    assert auth.login("alice").status_code == 401
    body = {"username": "alice", "password": PASSWORD}
    body["recovery_code"] = auth.recovery_codes["alice"][0]
    assert auth.client.post("/login", json=body).status_code == 401
    assert sql(db, "SELECT last_token FROM users")[0]["last_token"] is None
    assert sql(db, "SELECT COUNT(*) AS n FROM recovery_codes WHERE used_at IS NULL")[0]["n"] == 10


def test_me_of_a_user_deleted_after_the_token_check_is_401(auth, client, db, monkeypatch):
    from secureapi.security import tokens

    headers = auth.headers("alice")
    during_bcrypt(monkeypatch, tokens, "token_holder", lambda: sql(db, "DELETE FROM users"))
    response = client.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_right_credentials_revoked_during_bcrypt_count_no_failure(auth, client, db, monkeypatch):
    from secureapi.security import accounts

    headers = auth.headers("alice")
    revoke = lambda: sql(db, "DELETE FROM sessions")  # noqa: E731
    during_bcrypt(monkeypatch, accounts, "check_password", revoke)
    body = {"password": PASSWORD, "otp": auth.code("alice", offset=1)}
    assert client.delete("/me", json=body, headers=headers).status_code == 401
    assert sql(db, "SELECT failures FROM login_failures")[0]["failures"] == 0


def test_users_cursor_message_names_no_products(client, admin):
    response = client.get("/users?after=x", headers=admin)
    assert response.status_code == 400
    assert response.json["message"] == "'after' must be an id from a previous page's Link."


@pytest.mark.db  # a database of its own, not the `database` fixture's
def test_upgrade_moves_local_timestamps_to_utc(monkeypatch):
    """v1 wrote DATETIMEs in the server's zone; after the upgrade they read as UTC."""
    with v1_database() as (name, connection):
        sql(connection, "SET SESSION time_zone = '+02:00'")
        sql(connection, "INSERT INTO products (name, price, quantity) VALUES ('Old', 1, 1)")
        # The server ran in UTC+2: its sessions start in that zone. Only init-db's session,
        # not SET GLOBAL: other suites share the server, and the migration reads the offset
        # of its own session (NOW() against UTC_TIMESTAMP()).
        connect_in_utc_plus_2 = functools.partial(
            MySQLdb.connect, init_command="SET time_zone = '+02:00'"
        )
        with monkeypatch.context() as patch:
            patch.setattr(database_module.MySQLdb, "connect", connect_in_utc_plus_2)
            init_db(server_settings() | {"MYSQL_DB": name})
        sql(connection, "SET SESSION time_zone = '+00:00'")
        (row,) = sql(
            connection, "SELECT created_at, updated_at, UTC_TIMESTAMP() AS now FROM products"
        )
        assert abs((row["now"] - row["created_at"]).total_seconds()) < 60
        assert row["updated_at"] == row["created_at"]


def test_create_user_refuses_a_password_that_is_not_utf8(runner, db):
    result = runner.invoke(args=["create-user", "dan"], input=b"\xff\xfe not utf-8\n")
    assert result.exit_code != 0 and "UTF-8" in result.output
    assert sql(db, "SELECT COUNT(*) AS n FROM users")[0]["n"] == 0


def test_an_admin_cannot_delete_themselves_through_users(client, auth, db):
    # December review: the admin's token alone deleted the admin; DELETE /me asks for both
    # factors.
    auth.create_user("boss", "admin")
    auth.create_user("second", "admin")
    headers = auth.headers("boss")
    boss = sql(db, "SELECT id FROM users WHERE username = 'boss'")[0]["id"]
    response = client.delete(f"/users/{boss}", headers=headers)
    assert response.status_code == 409
    assert "DELETE /me" in response.json["message"]
    assert sql(db, "SELECT COUNT(*) AS n FROM users WHERE username = 'boss'")[0]["n"] == 1


def test_the_cli_unlocks_a_hard_locked_account(client, auth, runner, db):
    auth.register("alice")
    sql(db, "INSERT INTO login_failures (username, failures, locked, updated_at)"
            " VALUES ('alice', 100, TRUE, 0)")  # fmt: skip
    assert auth.login("alice").status_code == 403
    result = runner.invoke(args=["unlock", "alice"])
    assert result.exit_code == 0 and "alice is unlocked." in result.output
    assert auth.login("alice").status_code == 200
    missing = runner.invoke(args=["unlock", "nobody"])
    assert missing.exit_code == 1 and "No user is called 'nobody'" in missing.output

"""Sessions per device, refresh tokens with rotation and reuse detection (issue 24; OWASP
ASVS 5.0 V7, RFC 9700 section 4.14.2). Time moves by the injected clock, never by sleeping."""

import logging

import pytest

from tests.support import PASSWORD, AuthActions, at_once, bearer, sql

REFRESH_REFUSED = "The refresh token is invalid, expired or revoked; log in again."


def log_in(auth, username="alice", agent="laptop"):
    """A login from one device: its answer. Each comes a time step after the last, as a
    person on another device would, so each code is a new one."""
    if username not in auth.secrets:
        auth.register(username)
    auth.clock.advance(30)
    body = {"username": username, "password": PASSWORD, "otp": auth.code(username)}
    response = auth.client.post("/login", json=body, headers={"User-Agent": agent})
    assert response.status_code == 200, response.json
    return response.json


def refresh(client, refresh_token):
    return client.post("/token/refresh", json={"refresh_token": refresh_token})


def works(client, session):
    return client.get("/me", headers=bearer(session["token"])).status_code == 200


def session_count(db):
    return sql(db, "SELECT COUNT(*) AS n FROM sessions")[0]["n"]


def assert_refused(response):
    assert response.status_code == 401
    assert response.json["message"] == REFRESH_REFUSED  # one answer for every cause


# --- Several devices -------------------------------------------------------------------------


def test_a_laptop_a_phone_and_postman_stay_logged_in_at_once(client, auth):
    laptop = log_in(auth, agent="Firefox on the laptop")
    phone = log_in(auth, agent="the phone")
    postman = log_in(auth, agent="PostmanRuntime/7.43.0")
    assert all(works(client, device) for device in (laptop, phone, postman))
    listed = client.get("/me/sessions", headers=bearer(phone["token"])).json
    assert [s["id"] for s in listed] == [
        postman["session_id"],
        phone["session_id"],
        laptop["session_id"],
    ]
    assert [s["user_agent"] for s in listed] == [
        "PostmanRuntime/7.43.0",
        "the phone",
        "Firefox on the laptop",
    ]
    assert [s["current"] for s in listed] == [False, True, False]
    assert {s["client"] for s in listed} == {"127.0.0.1"}
    assert set(listed[0]) == {"id", "created_at", "last_used_at", "client", "user_agent", "current"}


def test_a_login_past_the_cap_ends_the_least_recently_used_session(make_app, clock, db):
    client = make_app(SESSIONS_PER_USER=2).test_client()
    auth = AuthActions(client, clock)
    first, second = log_in(auth), log_in(auth)
    clock.advance(61)
    assert works(client, first)  # first is now used more recently than second
    third = log_in(auth)
    assert works(client, first) and works(client, third)
    assert not works(client, second)
    assert session_count(db) == 2


def test_one_session_per_user_is_the_old_behaviour(make_app, clock):
    client = make_app(SESSIONS_PER_USER=1).test_client()
    auth = AuthActions(client, clock)
    first, second = log_in(auth), log_in(auth)
    assert not works(client, first) and works(client, second)


def test_sessions_are_per_user(client, auth):
    alice, bob = log_in(auth, "alice"), log_in(auth, "bob")
    assert client.post("/logout", headers=bearer(alice["token"])).status_code == 200
    assert works(client, bob)
    assert [s["id"] for s in client.get("/me/sessions", headers=bearer(bob["token"])).json] == [
        bob["session_id"]
    ]


# --- Refresh -----------------------------------------------------------------------------------


def test_a_refresh_gives_new_tokens_for_the_same_session(client, auth, db):
    login = log_in(auth)
    auth.clock.advance(500)
    response = refresh(client, login["refresh_token"])
    assert response.status_code == 200, response.json
    renewed = response.json
    assert set(renewed) == set(login) - {"recovery_codes_remaining"}
    assert renewed["session_id"] == login["session_id"]
    assert renewed["token"] != login["token"]
    assert renewed["refresh_token"] != login["refresh_token"]
    assert renewed["token_type"] == "Bearer" and renewed["expires_in"] == 600
    assert renewed["refresh_expires_in"] == 1800
    assert works(client, renewed)
    assert response.headers["Cache-Control"] == "no-store"
    spent, current = sql(db, "SELECT spent_at FROM refresh_tokens ORDER BY spent_at IS NULL")
    assert spent["spent_at"] is not None and current["spent_at"] is None


def test_a_spent_refresh_token_used_again_ends_the_whole_session(client, auth, caplog):
    login = log_in(auth)
    other = log_in(auth)  # another device, which must not suffer
    renewed = refresh(client, login["refresh_token"]).json
    with caplog.at_level(logging.INFO, logger="secureapi.audit"):
        assert_refused(refresh(client, login["refresh_token"]))  # the thief, or the victim
    assert not works(client, login) and not works(client, renewed)
    assert_refused(refresh(client, renewed["refresh_token"]))
    assert works(client, other)
    (reuse,) = [r for r in caplog.records if '"refresh_reused"' in r.getMessage()]
    assert reuse.levelno == logging.WARNING
    assert '"why": "reused"' in caplog.text and login["refresh_token"] not in caplog.text


def test_racing_refreshes_with_one_token_give_exactly_one_200(app, auth):
    login = log_in(auth)
    clients = [app.test_client() for _ in range(4)]
    statuses = at_once(
        *[lambda c=c: refresh(c, login["refresh_token"]).status_code for c in clients]
    )
    assert sorted(statuses) == [200, 401, 401, 401]


def test_a_session_idle_too_long_cannot_be_refreshed(client, auth, db):
    login = log_in(auth)
    auth.clock.advance(1801)
    assert_refused(refresh(client, login["refresh_token"]))
    assert session_count(db) == 0  # and it ended: log in again


def test_a_session_idle_exactly_its_limit_is_over(client, auth):
    # refresh_expires_in said 1800: at second 1800 the token no longer works (review).
    login = log_in(auth)
    auth.clock.advance(login["refresh_expires_in"])
    assert_refused(refresh(client, login["refresh_token"]))


def test_dead_sessions_are_not_listed_and_purge_removes_them(client, auth, runner, db):
    old = log_in(auth)
    auth.clock.advance(1700)
    current = log_in(auth)
    auth.clock.advance(200)  # old is idle past its limit; current is not
    listed = client.get("/me/sessions", headers=bearer(current["token"])).json
    assert [s["id"] for s in listed] == [current["session_id"]]
    result = runner.invoke(args=["purge"])
    assert "Removed 1 sessions that went idle or past their age." in result.output
    assert [r["id"] for r in sql(db, "SELECT id FROM sessions")] == [current["session_id"]]
    assert_refused(refresh(client, old["refresh_token"]))


def test_deleting_an_account_logs_each_session_it_ends(client, auth, caplog):
    laptop, phone = log_in(auth), log_in(auth)
    body = {"password": PASSWORD, "recovery_code": auth.recovery_codes["alice"][0]}
    with caplog.at_level(logging.INFO, logger="secureapi.audit"):
        assert client.delete("/me", json=body, headers=bearer(phone["token"])).status_code == 200
    assert caplog.text.count('"why": "account_deleted"') == 2
    assert laptop["session_id"] in caplog.text and phone["session_id"] in caplog.text


@pytest.mark.parametrize(
    ("forwarded", "kept"),
    [
        ("caf\u00e9, nope", None),
        ("fe80::1%" + "\u00e9" * 80, "fe80::1"),
        ("::ffff:1.2.3.4", "::ffff:102:304"),
    ],
)
def test_a_client_address_is_kept_only_as_an_address(make_app, clock, db, forwarded, kept):
    # Behind PROXY_FIX_X_FOR the address is what X-Forwarded-For said: any text (review),
    # an IPv6 zone of any length included.
    client = make_app(PROXY_FIX_X_FOR=1).test_client()
    auth = AuthActions(client, clock)
    auth.register("alice")
    body = {"username": "alice", "password": PASSWORD, "otp": auth.code("alice")}
    response = client.post("/login", json=body, headers={"X-Forwarded-For": forwarded})
    assert response.status_code == 200, response.json
    assert sql(db, "SELECT client FROM sessions")[0]["client"] == kept


def test_requests_keep_a_session_from_going_idle(client, auth):
    login = log_in(auth)
    auth.clock.advance(500)
    assert works(client, login)  # used: last_used_at moves (once a minute at most)
    auth.clock.advance(1500)  # 2000 s after the login, 1500 s after the last use
    assert refresh(client, login["refresh_token"]).status_code == 200


def test_last_used_at_is_written_at_most_once_a_minute(client, auth, db):
    login = log_in(auth)
    (before,) = sql(db, "SELECT last_used_at FROM sessions")
    auth.clock.advance(30)
    assert works(client, login)
    assert sql(db, "SELECT last_used_at FROM sessions")[0] == before
    auth.clock.advance(31)
    assert works(client, login)
    (after,) = sql(db, "SELECT last_used_at FROM sessions")
    assert (after["last_used_at"] - before["last_used_at"]).total_seconds() == pytest.approx(
        61, abs=1
    )


def test_a_session_ends_at_its_absolute_age_however_busy(client, auth, db):
    session = log_in(auth)
    age = 0
    while age + 1700 < 43200:
        auth.clock.advance(1700)
        age += 1700
        response = refresh(client, session["refresh_token"])
        assert response.status_code == 200, age
        session = response.json
        remaining = 43200 - age
        assert session["refresh_expires_in"] == min(1800, remaining)
        assert session["expires_in"] == min(600, remaining)  # never past the session's end
    auth.clock.advance(43200 - age)
    assert_refused(refresh(client, session["refresh_token"]))
    assert session_count(db) == 0


# --- Ending sessions ---------------------------------------------------------------------------


def test_logout_ends_only_the_current_session(client, auth):
    laptop, phone = log_in(auth), log_in(auth)
    assert client.post("/logout", headers=bearer(laptop["token"])).status_code == 200
    assert not works(client, laptop) and works(client, phone)
    assert_refused(refresh(client, laptop["refresh_token"]))
    assert refresh(client, phone["refresh_token"]).status_code == 200


def test_ending_one_of_my_sessions(client, auth):
    laptop, phone = log_in(auth), log_in(auth)
    response = client.delete(f"/me/sessions/{phone['session_id']}", headers=bearer(laptop["token"]))
    assert response.status_code == 204 and response.data == b""
    assert not works(client, phone) and works(client, laptop)
    assert_refused(refresh(client, phone["refresh_token"]))
    again = client.delete(f"/me/sessions/{phone['session_id']}", headers=bearer(laptop["token"]))
    assert again.status_code == 404


@pytest.mark.parametrize("session_id", ["nope", "A" * 22, "x" * 300, "%27%20OR%201%3D1"])
def test_ending_a_session_that_is_not_mine_is_404(client, auth, session_id):
    alice = log_in(auth, "alice")
    bob = log_in(auth, "bob")
    for other in (session_id, bob["session_id"]):
        response = client.delete(f"/me/sessions/{other}", headers=bearer(alice["token"]))
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"
    assert works(client, bob)


def test_sign_out_everywhere_else(client, auth):
    laptop, phone, postman = log_in(auth), log_in(auth), log_in(auth)
    response = client.delete("/me/sessions", headers=bearer(phone["token"]))
    assert response.status_code == 204
    assert works(client, phone)
    assert not works(client, laptop) and not works(client, postman)
    assert [s["id"] for s in client.get("/me/sessions", headers=bearer(phone["token"])).json] == [
        phone["session_id"]
    ]


def test_a_2fa_reset_ends_every_session_this_one_too(client, auth):
    laptop, phone = log_in(auth), log_in(auth)
    body = {"password": PASSWORD, "recovery_code": auth.recovery_codes["alice"][0]}
    assert client.post("/2fa/reset", json=body, headers=bearer(phone["token"])).status_code == 200
    assert not works(client, laptop) and not works(client, phone)
    assert_refused(refresh(client, phone["refresh_token"]))


@pytest.fixture
def admin(auth):
    auth.create_user("root_admin", "admin")
    return log_in(auth, "root_admin")


def user_id(db, username):
    return sql(db, "SELECT id FROM users WHERE username = %s", (username,))[0]["id"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/users/{id}/2fa/reset", None),
        ("patch", "/users/{id}", {"disabled": True}),
        ("delete", "/users/{id}", None),
        ("delete", "/users/{id}/sessions", None),
    ],
)
def test_what_an_admin_does_to_an_account_ends_its_sessions(
    client, auth, db, admin, method, path, body
):
    laptop, phone = log_in(auth), log_in(auth)
    url = path.format(id=user_id(db, "alice"))
    response = getattr(client, method)(url, json=body, headers=bearer(admin["token"]))
    assert response.status_code in (200, 204), response.json
    assert not works(client, laptop) and not works(client, phone)
    assert_refused(refresh(client, phone["refresh_token"]))
    assert works(client, admin)


def test_enabling_an_account_again_brings_no_session_back(client, auth, db, admin):
    alice = log_in(auth)
    url = f"/users/{user_id(db, 'alice')}"
    client.patch(url, json={"disabled": True}, headers=bearer(admin["token"]))
    client.patch(url, json={"disabled": False}, headers=bearer(admin["token"]))
    assert not works(client, alice)
    assert_refused(refresh(client, alice["refresh_token"]))


def test_an_admin_lists_a_users_sessions(client, auth, db, admin):
    laptop, phone = log_in(auth), log_in(auth)
    url = f"/users/{user_id(db, 'alice')}/sessions"
    listed = client.get(url, headers=bearer(admin["token"])).json
    assert [s["id"] for s in listed] == [phone["session_id"], laptop["session_id"]]
    assert not any(s["current"] for s in listed)
    assert client.get(url, headers=bearer(laptop["token"])).status_code == 403
    assert client.delete(url, headers=bearer(laptop["token"])).status_code == 403
    assert client.get("/users/999999/sessions", headers=bearer(admin["token"])).status_code == 404
    assert (
        client.delete("/users/999999/sessions", headers=bearer(admin["token"])).status_code == 404
    )


# --- Bad input ---------------------------------------------------------------------------------


def test_tokens_of_one_kind_are_refused_as_the_other(client, auth):
    login = log_in(auth)
    assert_refused(refresh(client, login["token"]))  # an access token is no refresh token
    response = client.get("/me", headers=bearer(login["refresh_token"]))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert refresh(client, login["refresh_token"]).status_code == 200  # neither was spent


@pytest.mark.parametrize(
    "token",
    ["", "sapi_rt_", "sapi_rt_" + "A" * 43, "sapi_rt_" + "A" * 44, "x" * 10_000, "é" * 43, "\x00"],
)
def test_made_up_refresh_tokens_get_the_same_401(client, auth, token):
    log_in(auth)
    assert_refused(refresh(client, token))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'refresh_token' is required"),
        ({"refresh_token": 42}, "'refresh_token' must be a string"),
        ({"refresh_token": None}, "'refresh_token' is required"),
        ({"refresh_token": "x", "session_id": "y"}, "Unknown field(s): session_id"),
    ],
)
def test_malformed_refresh_requests_are_400(client, body, message):
    response = client.post("/token/refresh", json=body)
    assert response.status_code == 400
    assert message in response.json["message"]


def test_a_refresh_needs_no_authorization_header_and_ignores_one(client, auth):
    login = log_in(auth)
    other = log_in(auth)
    response = client.post(
        "/token/refresh",
        json={"refresh_token": login["refresh_token"]},
        headers=bearer(other["token"]),
    )
    assert response.status_code == 200
    assert response.json["session_id"] == login["session_id"]


def test_refresh_is_rate_limited_per_client(make_app, clock):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_REFRESH="3 per minute").test_client()
    statuses = [refresh(client, "sapi_rt_" + "A" * 43).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_the_audit_log_tells_a_sessions_story_without_its_secrets(client, auth, caplog):
    with caplog.at_level(logging.INFO, logger="secureapi.audit"):
        login = log_in(auth)
        renewed = refresh(client, login["refresh_token"]).json
        client.post("/logout", headers=bearer(renewed["token"]))
    for event in ('"session_started"', '"session_refreshed"', '"why": "logout"'):
        assert event in caplog.text
    for secret in (login["token"], login["refresh_token"], renewed["refresh_token"]):
        assert secret not in caplog.text

"""Personal access tokens for scripts and CI (issue 25): scoped to the product routes,
expiring, revocable, never wider than their owner."""

import logging

import pytest

from tests.support import PASSWORD, bearer, sql

LAPTOP = {"name": "Laptop", "price": 999.5, "quantity": 3}
REFUSED = "The access token is invalid, expired or revoked; log in again."


@pytest.fixture
def owner(auth):
    """alice (an editor, as registration makes her) and a working session token of hers."""
    return auth.headers("alice")


def create(auth, headers, name="ci", scopes=["products:read"], **extra):  # noqa: B006
    auth.clock.advance(30)  # each creation proves a fresh one-time code
    body = {"name": name, "scopes": scopes, "password": PASSWORD, "otp": auth.code("alice")}
    return auth.client.post("/me/tokens", json=body | extra, headers=headers)


def pat(auth, headers, **kwargs):
    response = create(auth, headers, **kwargs)
    assert response.status_code == 201, response.json
    return response.json


def product(client, headers):
    response = client.post("/products", json=LAPTOP, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


# --- Creating one ------------------------------------------------------------------------------


def test_a_token_is_shown_once_and_stored_as_a_digest(client, auth, owner, db):
    created = pat(auth, owner, name="nightly stock sync", scopes=["products:write"])
    assert set(created) == {
        "id",
        "name",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "prefix",
        "token",
    }
    assert created["token"].startswith("sapi_pat_") and len(created["token"]) == 9 + 16 + 43
    assert created["scopes"] == ["products:write"]
    assert created["token"].startswith(created["prefix"])
    (row,) = sql(db, "SELECT * FROM personal_access_tokens")
    assert created["token"] not in str(row)
    listed = client.get("/me/tokens", headers=owner).json
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0]


def test_a_token_expires_after_the_days_asked_90_by_default(client, auth, owner):
    default = pat(auth, owner, name="default")
    short = pat(auth, owner, name="short", expires_in_days=1)
    assert default["expires_at"] > short["expires_at"]
    auth.clock.advance(24 * 3600 + 1)
    assert client.get("/products", headers=bearer(short["token"])).status_code == 401
    assert client.get("/products", headers=bearer(default["token"])).status_code == 200
    auth.clock.advance(89 * 24 * 3600)
    response = client.get("/products", headers=bearer(default["token"]))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"scopes": ["products:read", "users:admin"]}, "Unknown scope(s): 'users:admin'"),
        ({"scopes": []}, "'scopes' must be a non-empty list"),
        ({"scopes": "products:read"}, "'scopes' must be a non-empty list"),
        ({"name": ""}, "'name' must be 1 to 100 characters"),
        ({"name": "x" * 101}, "'name' must be 1 to 100 characters"),
        ({"name": "a\\nb"}, None),
        ({"expires_in_days": 0}, "'expires_in_days' must be a whole number from 1 to 365"),
        ({"expires_in_days": 366}, "'expires_in_days'"),
        ({"expires_in_days": True}, "'expires_in_days'"),
        ({"expires_in_days": 1.5}, "'expires_in_days'"),
    ],
)
def test_bad_token_requests_are_400_naming_the_field(auth, owner, db, extra, message):
    if extra.get("name") == "a\\nb":
        extra, message = {"name": "a\nb"}, "control characters"
    response = create(auth, owner, **extra)
    assert response.status_code == 400
    assert message in response.json["message"]
    assert sql(db, "SELECT COUNT(*) AS n FROM personal_access_tokens")[0]["n"] == 0


def test_creating_one_needs_both_factors(client, auth, owner, db):
    body = {"name": "ci", "scopes": ["products:read"], "password": PASSWORD, "otp": "000000"}
    assert client.post("/me/tokens", json=body, headers=owner).status_code == 403
    del body["otp"]
    assert client.post("/me/tokens", json=body, headers=owner).status_code == 400
    assert sql(db, "SELECT COUNT(*) AS n FROM personal_access_tokens")[0]["n"] == 0


@pytest.mark.parametrize("twin", ["CI", "ci ", "cí", "CÍ"])
def test_a_name_the_database_takes_for_the_same_is_409_not_500(auth, owner, twin):
    pat(auth, owner, name="ci")
    response = create(auth, owner, name=twin)
    assert response.status_code == 409, response.json


def test_a_refused_request_is_no_use_of_the_token(client, auth, owner, db, caplog):
    created = pat(auth, owner)
    with caplog.at_level(logging.INFO, logger="secureapi.audit"):
        assert client.get("/me", headers=bearer(created["token"])).status_code == 403
        assert (
            client.post("/products", json=LAPTOP, headers=bearer(created["token"])).status_code
            == 403
        )
    assert sql(db, "SELECT last_used_at FROM personal_access_tokens")[0]["last_used_at"] is None
    assert '"token_first_used"' not in caplog.text
    assert client.get("/products", headers=bearer(created["token"])).status_code == 200
    assert sql(db, "SELECT last_used_at FROM personal_access_tokens")[0]["last_used_at"] is not None


def test_names_are_unique_per_user_and_live_tokens_are_capped(make_app, clock, db):
    from tests.support import AuthActions

    client = make_app(TOKENS_PER_USER=2).test_client()
    auth = AuthActions(client, clock)
    headers = auth.headers("alice")
    pat(auth, headers, name="one", expires_in_days=1)
    assert create(auth, headers, name="ONE").status_code == 409  # names ignore case
    pat(auth, headers, name="two")
    refused = create(auth, headers, name="three")
    assert refused.status_code == 409 and "revoke one first" in refused.json["message"]
    clock.advance(24 * 3600 + 1)  # "one" has expired: it no longer counts
    headers = auth.headers("alice")
    pat(auth, headers, name="three")


# --- What a token may do ------------------------------------------------------------------------

ROUTES = [
    ("get", "/products", None, "products:read"),
    ("get", "/products/{id}", None, "products:read"),
    ("post", "/products", LAPTOP, "products:write"),
    ("post", "/product", LAPTOP, "products:write"),
    ("put", "/products/{id}", LAPTOP, "products:write"),
    ("patch", "/products/{id}", {"quantity": 1}, "products:write"),
    ("delete", "/products/{id}", None, "products:write"),
    ("get", "/me", None, None),
    ("get", "/me/sessions", None, None),
    ("get", "/me/tokens", None, None),
    ("post", "/me/tokens", {"name": "x", "scopes": ["products:read"]}, None),
    ("post", "/me/password", {}, None),
    ("post", "/2fa/reset", {}, None),
    ("post", "/2fa/recovery-codes", {}, None),
    ("post", "/logout", None, None),
    ("post", "/token/refresh", {"refresh_token": "x"}, None),
    ("get", "/users", None, None),
]


@pytest.mark.parametrize("scopes", [["products:read"], ["products:write"]])
@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES)
def test_a_token_works_only_where_its_scopes_reach(
    client, auth, owner, scopes, method, path, body, needed
):
    token = pat(auth, owner, scopes=scopes)["token"]
    url = path.format(id=product(client, owner))
    response = getattr(client, method)(url, json=body, headers=bearer(token))
    allowed = needed == "products:read" or (
        needed == "products:write" and scopes == ["products:write"]
    )
    if allowed:
        assert response.status_code in (200, 201), response.json
    else:
        assert response.status_code == 403, response.json
        assert response.headers["WWW-Authenticate"].endswith('error="insufficient_scope"')


def test_a_token_is_never_wider_than_its_owner(client, auth, owner, db):
    auth.create_user("boss", "admin")
    admin = auth.headers("boss")
    token = bearer(pat(auth, owner, scopes=["products:write"])["token"])
    alice = sql(db, "SELECT id FROM users WHERE username = 'alice'")[0]["id"]
    client.patch(f"/users/{alice}", json={"role": "viewer"}, headers=admin)
    assert client.post("/products", json=LAPTOP, headers=token).status_code == 403
    assert client.get("/products", headers=token).status_code == 200
    client.patch(f"/users/{alice}", json={"role": "editor"}, headers=admin)
    assert client.post("/products", json=LAPTOP, headers=token).status_code == 201
    client.patch(f"/users/{alice}", json={"disabled": True}, headers=admin)
    assert client.get("/products", headers=token).status_code == 401
    client.patch(f"/users/{alice}", json={"disabled": False}, headers=admin)
    assert client.get("/products", headers=token).status_code == 200  # a PAT is no session
    client.delete(f"/users/{alice}", headers=admin)
    assert client.get("/products", headers=token).status_code == 401


def test_a_password_change_or_2fa_reset_leaves_tokens_working(client, auth, owner):
    token = bearer(pat(auth, owner)["token"])
    auth.clock.advance(30)
    body = {
        "current_password": PASSWORD,
        "new_password": "another long passphrase of mine",
        "otp": auth.code(),
    }
    assert client.post("/me/password", json=body, headers=owner).status_code == 200
    assert client.get("/products", headers=token).status_code == 200


# --- Ending them ------------------------------------------------------------------------------


def test_the_owner_revokes_a_token_at_once(client, auth, owner):
    created = pat(auth, owner)
    response = client.delete(f"/me/tokens/{created['id']}", headers=owner)
    assert response.status_code == 204
    assert client.get("/products", headers=bearer(created["token"])).status_code == 401
    assert client.delete(f"/me/tokens/{created['id']}", headers=owner).status_code == 404
    assert client.get("/me/tokens", headers=owner).json == []


def test_another_users_token_is_404_to_me_and_an_admin_revokes_it(client, auth, owner, db):
    created = pat(auth, owner)
    bob = auth.headers("bob")
    assert client.delete(f"/me/tokens/{created['id']}", headers=bob).status_code == 404
    assert client.get("/products", headers=bearer(created["token"])).status_code == 200
    auth.create_user("boss", "admin")
    admin = auth.headers("boss")
    alice = sql(db, "SELECT id FROM users WHERE username = 'alice'")[0]["id"]
    listed = client.get(f"/users/{alice}/tokens", headers=admin).json
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    assert client.get(f"/users/{alice}/tokens", headers=bob).status_code == 403
    assert client.delete(f"/users/{alice}/tokens/nope", headers=admin).status_code == 404
    assert client.delete(f"/users/{alice}/tokens/{created['id']}", headers=admin).status_code == 204
    assert client.get("/products", headers=bearer(created["token"])).status_code == 401
    assert client.get("/users/999999/tokens", headers=admin).status_code == 404


def test_purge_removes_tokens_expired_over_30_days(client, auth, owner, runner, db):
    pat(auth, owner, name="old", expires_in_days=1)
    pat(auth, owner, name="young", expires_in_days=60)
    auth.clock.advance(32 * 24 * 3600)
    result = runner.invoke(args=["purge"])
    assert "Removed 1 access tokens expired over 30 days ago." in result.output
    assert [r["name"] for r in sql(db, "SELECT name FROM personal_access_tokens")] == ["young"]


# --- Bad tokens ---------------------------------------------------------------------------------


def test_bad_tokens_get_the_same_401(client, auth, owner):
    token = pat(auth, owner)["token"]
    cases = [
        "sapi_pat_",
        token[:-1],
        token + "A",
        token.upper(),
        token[:9] + token[9:].swapcase(),
        token[:-4] + "AAAA",
        "sapi_pat_" + "A" * 59,
        "SAPI_PAT_" + token[9:],
        "sapi_pat_" + "é" * 59,
    ]
    for case in cases:
        response = client.get("/products", headers=bearer(case))
        assert response.status_code == 401, case
        assert response.json["message"] == REFUSED


def test_the_audit_log_never_holds_a_token(client, auth, owner, caplog):
    with caplog.at_level(logging.INFO, logger="secureapi.audit"):
        created = pat(auth, owner)
        client.get("/products", headers=bearer(created["token"]))
        client.get("/products", headers=bearer(created["token"]))
        client.get("/me", headers=bearer(created["token"]))
        client.get("/products", headers=bearer(created["token"] + "x"))
        client.delete(f"/me/tokens/{created['id']}", headers=owner)
    text = caplog.text
    for event in (
        '"token_created"',
        '"token_first_used"',
        '"forbidden"',
        '"pat_',
        '"token_revoked"',
    ):
        assert event in text, event
    assert text.count('"token_first_used"') == 1
    assert created["token"] not in text and created["token"][9:] not in text


def test_last_used_at_is_written_at_most_once_a_minute(client, auth, owner, db):
    created = pat(auth, owner)
    client.get("/products", headers=bearer(created["token"]))
    (first,) = sql(db, "SELECT last_used_at FROM personal_access_tokens")
    auth.clock.advance(30)
    client.get("/products", headers=bearer(created["token"]))
    assert sql(db, "SELECT last_used_at FROM personal_access_tokens")[0] == first
    auth.clock.advance(31)
    client.get("/products", headers=bearer(created["token"]))
    assert sql(db, "SELECT last_used_at FROM personal_access_tokens")[0] != first

import base64
import hashlib
import io
import json
import logging
import re
import time

import bcrypt
import jwt
import pyotp
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import HMACAlgorithm
from PIL import Image

from secureapi.security.passwords import dummy_password_hash
from tests.support import PASSWORD, TEST_SECRET_KEY, basic, bearer, post_concurrently, sql

# --- /register ----------------------------------------------------------------------------


def test_register_returns_enrolment_and_stores_hash(client, db):
    response = client.post("/register", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 201
    body = response.json
    assert body["message"] == "User registered successfully"
    assert len(body["secret"]) == 32
    base64.b32decode(body["secret"])  # valid base32, 160 bits
    assert body["otpauth_uri"] == (
        f"otpauth://totp/SecureAPI:alice?secret={body['secret']}&issuer=SecureAPI"
    )
    assert body["qrcode_url"] == "/qrcode/alice"
    assert response.headers["Cache-Control"] == "no-store"

    (user,) = sql(db, "SELECT password FROM users WHERE username = 'alice'")
    assert user["password"].startswith("sha256$$2b$04$")  # pre-hashed bcrypt, configured cost
    assert PASSWORD not in user["password"]
    assert sql(db, "SELECT COUNT(*) AS n FROM sessions")[0]["n"] == 0  # no login yet


def test_register_secrets_are_unique(auth):
    assert auth.register("alice")["secret"] != auth.register("bob")["secret"]


@pytest.mark.parametrize("taken", ["alice", "Alice", "ALICE"])
def test_register_duplicate_username_is_409(client, auth, db, taken):
    auth.register("alice")
    response = client.post("/register", json={"username": taken, "password": PASSWORD})
    assert response.status_code == 409
    assert "taken" in response.json["message"]
    assert sql(db, "SELECT COUNT(*) AS n FROM users")[0]["n"] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'username' is required"),
        ({"password": PASSWORD}, "'username' is required"),
        ({"username": None, "password": PASSWORD}, "'username' is required"),
        ({"username": "alice"}, "'password' is required"),
        ({"username": 5, "password": PASSWORD}, "'username' must be a string"),
        ({"username": "alice", "password": 12345678}, "'password' must be a string"),
        ({"username": ["alice"], "password": PASSWORD}, "'username' must be a string"),
        ({"username": "al", "password": PASSWORD}, "3-64 characters"),
        ({"username": "a" * 65, "password": PASSWORD}, "3-64 characters"),
        ({"username": "al ice", "password": PASSWORD}, "3-64 characters"),
        ({"username": "alice'--", "password": PASSWORD}, "3-64 characters"),
        ({"username": "ålice", "password": PASSWORD}, "3-64 characters"),
        ({"username": "alice", "password": "short1!"}, "at least 8 characters"),
        ({"username": "alice", "password": "Zq8#vLp2" * 33}, "at most 256 characters"),
        ({"username": "alice", "password": "password"}, "too easy to guess"),
        ({"username": "alice", "password": "12345678"}, "too easy to guess"),
        ({"username": "alice", "password": "password1"}, "too easy to guess"),
        ({"username": "alice", "password": "QwertyUIOP"}, "too easy to guess"),
        ({"username": "alice", "password": "sunshine"}, "common password"),
        ({"username": "alice", "password": "é" * 37}, "Repeats"),  # zxcvbn's feedback
        ({"username": "alice", "password": "alice"}, "at least 8"),
        ({"username": "alice.smith", "password": "my Alice.Smith 2026!"}, "the username"),
        ({"username": "alice", "password": "          "}, "only whitespace"),
        ({"username": "alice", "password": "pass\ud800word1"}, "valid Unicode"),
        ({"username": "alice", "password": "\u0000" * 8}, "control characters"),
        ({"username": "alice", "password": "long enough\u0000"}, "control characters"),
        ({"username": "alice", "password": PASSWORD, "admin": True}, "Unknown field(s): admin"),
    ],
)
def test_register_validation(client, db, body, message):
    # json.dumps escapes what UTF-8 cannot carry (a lone surrogate), as a JSON client would.
    response = client.post("/register", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert message in response.json["message"]
    assert sql(db, "SELECT COUNT(*) AS n FROM users")[0]["n"] == 0


@pytest.mark.parametrize(
    "data",
    ["not json", "[1, 2]", '"alice"', "null", "{", "\xff\xfe".encode("latin-1"), "[" * 100_000],
)
def test_register_malformed_json_is_400(client, data):
    response = client.post("/register", data=data, content_type="application/json")
    assert response.status_code == 400
    assert response.json["message"] in (
        "The request body must be a JSON object.",
        "The request body must be UTF-8.",
    )


def test_register_form_body_is_415(client):
    response = client.post("/register", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 415
    assert "application/json" in response.json["message"]


def test_long_non_ascii_passwords_work_and_are_not_truncated(auth, clock):
    """Review finding 14: 64 non-ASCII characters (128+ bytes) are a fine password, and
    two that share their first 72 bytes are different passwords."""
    password = "Жёлтый кот гуляет по крыше и смотрит на луну, думая о рыбе"  # 59 characters
    assert len(password.encode()) > 72
    auth.register("alice", password)
    assert auth.login("alice", password).status_code == 200
    clock.advance(30)
    assert auth.login("alice", password[:-1] + "X").status_code == 401
    auth.register("bob", "Zq8#vLp2" * 32)  # 256 characters
    assert auth.login("bob", "Zq8#vLp2" * 32).status_code == 200


# --- /qrcode/<username> -------------------------------------------------------------------


def test_qrcode_decodes_to_otpauth_uri(client, auth):
    enrolment = auth.register("alice")
    response = client.get("/qrcode/alice", headers=basic("alice", PASSWORD))
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.headers["Cache-Control"] == "no-store"
    (result,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(response.data)))
    assert result.format == zxingcpp.BarcodeFormat.QRCode
    assert result.text == enrolment["otpauth_uri"]
    assert pyotp.parse_uri(result.text).secret == enrolment["secret"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("alice", "wrong password!"),
        basic("bob", PASSWORD),  # another user's valid credentials
        basic("nobody", PASSWORD),
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic " + base64.b64encode(b"alice:\xff\xfe").decode()},
        {"Authorization": "Basic \u00e9"},
        {"Authorization": "Basic "},
        {"Authorization": "Bearer something"},
    ],
)
def test_qrcode_refuses_without_that_users_credentials(client, auth, headers):
    auth.register("alice")
    auth.register("bob")
    response = client.get("/qrcode/alice", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert "secret" not in response.get_data(as_text=True)


def test_qrcode_password_guesses_count_towards_lockout(client, auth):
    auth.register("alice")
    for _ in range(5):
        assert client.get("/qrcode/alice", auth=("alice", "wrong password!")).status_code == 401
    response = client.get("/qrcode/alice", auth=("alice", PASSWORD))
    assert response.status_code == 429
    assert auth.login("alice").status_code == 429


def test_qrcode_unknown_user_looks_like_wrong_password(client, auth):
    auth.register("alice")
    unknown = client.get("/qrcode/nobody", headers=basic("nobody", PASSWORD))
    wrong = client.get("/qrcode/alice", headers=basic("alice", "wrong password!"))
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json == wrong.json


def closed_qrcode_answers_like_a_wrong_password(client, db):
    """The QR code's answer to the right password equals a wrong password's, and the right
    one is counted as a failure."""
    right = client.get("/qrcode/alice", headers=basic("alice", PASSWORD))
    wrong = client.get("/qrcode/alice", headers=basic("alice", "wrong password!"))
    assert right.status_code == wrong.status_code == 401
    assert right.json == wrong.json
    for header in ("WWW-Authenticate", "Content-Type", "Cache-Control"):
        assert right.headers[header] == wrong.headers[header]
    assert sql(db, "SELECT failures FROM login_failures")[0]["failures"] == 2


def test_qrcode_is_no_password_oracle_after_the_first_login(client, auth, db, caplog):
    caplog.set_level(logging.INFO, logger="secureapi.audit")
    auth.register("alice")
    assert auth.login("alice").status_code == 200
    closed_qrcode_answers_like_a_wrong_password(client, db)
    assert '"reason": "enrolment_closed"' in caplog.text  # a right guess is audited too


def test_a_recovery_code_login_closes_enrolment_too(client, auth, db):
    auth.register("alice")
    body = {"username": "alice", "password": PASSWORD}
    body["recovery_code"] = auth.recovery_codes["alice"][0]
    assert client.post("/login", json=body).status_code == 200
    closed_qrcode_answers_like_a_wrong_password(client, db)


def test_qrcode_is_served_only_within_the_enrolment_window(client, auth, db, clock):
    auth.register("alice")
    clock.advance(899)
    assert client.get("/qrcode/alice", headers=basic("alice", PASSWORD)).status_code == 200
    clock.advance(2)
    closed_qrcode_answers_like_a_wrong_password(client, db)


def test_a_2fa_reset_reopens_enrolment_for_the_window(client, auth, db, clock):
    auth.register("alice")
    clock.advance(1000)  # past the registration's window (tokens follow this clock too)
    headers = auth.headers()
    body = {"password": PASSWORD, "recovery_code": auth.recovery_codes["alice"][0]}
    assert client.post("/2fa/reset", json=body, headers=headers).status_code == 200
    assert client.get("/qrcode/alice", headers=basic("alice", PASSWORD)).status_code == 200
    clock.advance(901)
    closed_qrcode_answers_like_a_wrong_password(client, db)


# --- /login -------------------------------------------------------------------------------


def test_login_returns_bearer_token_and_stores_only_its_digest(auth, db):
    auth.register("alice")
    response = auth.login("alice")
    assert response.status_code == 200
    body = response.json
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert response.headers["Cache-Control"] == "no-store"

    claims = jwt.decode(body["token"], TEST_SECRET_KEY, algorithms=["HS256"], audience="SecureAPI")
    assert claims["exp"] - claims["iat"] == 600
    assert claims["iss"] == "SecureAPI"
    assert jwt.get_unverified_header(body["token"])["typ"] == "at+jwt"
    (user,) = sql(db, "SELECT id, twofa_confirmed_at FROM users")
    assert claims["sub"] == str(user["id"])
    assert claims["sid"] == body["session_id"]
    assert user["twofa_confirmed_at"] is not None
    # The session's refresh token: opaque, 256 bits, stored only as a keyed digest.
    assert re.fullmatch(r"sapi_rt_[A-Za-z0-9_-]{43}", body["refresh_token"])
    assert body["refresh_expires_in"] == 1800
    (session,) = sql(db, "SELECT * FROM sessions")
    assert session["id"] == body["session_id"] and session["user_id"] == user["id"]
    (stored,) = sql(db, "SELECT * FROM refresh_tokens")
    assert stored["session_id"] == session["id"]
    assert stored["digest"] != hashlib.sha256(body["refresh_token"].encode()).hexdigest()
    assert body["refresh_token"] not in str(stored) and body["token"] not in str(session)


@pytest.mark.parametrize(
    ("username", "password", "otp"),
    [
        ("alice", "wrong password!", None),
        ("alice", PASSWORD, "000000"),
        ("nobody", PASSWORD, "123456"),
        ("ALICE", "wrong password!", None),
        ("alice", PASSWORD, "12345"),
        ("alice", PASSWORD, "abcdef"),
        ("alice", "x" * 100, None),
        ("a", PASSWORD, "123456"),
    ],
)
def test_login_failures_look_the_same(auth, username, password, otp):
    auth.register("alice")
    if otp is None:
        otp = auth.code("alice")
    response = auth.login(username, password, otp)
    assert response.status_code == 401
    assert response.json["message"] == "Invalid username, password or one-time code."


def test_login_is_case_insensitive_on_username(auth):
    auth.register("Alice")
    auth.secrets["alice"] = auth.secrets["Alice"]
    assert auth.login("alice").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "password": PASSWORD},
        {"username": "alice", "otp": "123456"},
        {"username": "alice", "password": PASSWORD, "otp": 123456},
        {"username": "alice", "password": PASSWORD, "otp": "123456", "extra": 1},
    ],
)
def test_login_malformed_body_is_400(client, body):
    assert client.post("/login", json=body).status_code == 400


def test_login_code_is_refused_the_second_time(auth):
    auth.register("alice")
    code = auth.code("alice")
    assert auth.login("alice", otp=code).status_code == 200
    assert auth.login("alice", otp=code).status_code == 401


def test_login_refuses_older_step_after_newer_one(auth):
    auth.register("alice")
    assert auth.login("alice", offset=1).status_code == 200
    assert auth.login("alice", offset=0).status_code == 401
    assert auth.login("alice", offset=-1).status_code == 401


def test_login_accepts_one_step_either_side_only(auth):
    auth.register("alice")
    assert auth.login("alice", offset=-2).status_code == 401
    assert auth.login("alice", offset=2).status_code == 401
    assert auth.login("alice", offset=-1).status_code == 200
    assert auth.login("alice", offset=1).status_code == 200


def test_racing_logins_with_one_code_get_one_token(app, auth):
    app.config["LOGIN_MAX_FAILURES"] = 100  # here only replay protection is under test
    auth.register("alice")
    code = auth.code("alice")
    body = {"username": "alice", "password": PASSWORD, "otp": code}
    statuses = post_concurrently(app, 8, "/login", body)
    assert statuses == [200] + [401] * 7


# --- Bearer tokens ------------------------------------------------------------------------


def forge(claims, key=TEST_SECRET_KEY, algorithm="HS256", **kwargs):
    return jwt.encode(claims, key, algorithm=algorithm, **kwargs)


def test_token_opens_product_routes(client, auth):
    assert client.get("/products", headers=auth.headers()).status_code == 200


def test_a_flood_of_bad_tokens_writes_one_audit_line_a_minute(client, clock, caplog):
    # December's review: each bad token wrote a line (2,244 in the review): a log flood.
    with caplog.at_level(logging.INFO, logger="secureapi.audit"):
        for n in range(50):
            assert client.get("/products", headers=bearer(f"bad{n}")).status_code == 401
        clock.advance(61)
        client.get("/products", headers=bearer("bad-again"))
        client.get("/products")  # another reason: a line of its own
    lines = [r.getMessage() for r in caplog.records if '"token_refused"' in r.getMessage()]
    assert len(lines) == 3
    assert '"repeated"' not in lines[0] and '"repeated": 49' in lines[1]
    assert '"reason": "missing"' in lines[2]


def test_missing_token_is_401_with_challenge(client):
    response = client.get("/products")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="SecureAPI"'
    assert response.mimetype == "application/problem+json"


def test_token_in_query_string_is_not_accepted(client, auth):
    token = auth.token()
    response = client.get(f"/products?access_token={token}&token={token}")
    assert response.status_code == 401


def invalid_token_cases(user_id, session_id):
    now = int(time.time())
    good = {"sub": user_id, "sid": session_id, "iat": now, "exp": now + 600}
    good |= {"iss": "SecureAPI", "aud": "SecureAPI"}
    at_jwt = {"typ": "at+jwt"}
    return [
        # RFC 9068: signed with the key, but not an access token of this API.
        forge(good),  # typ JWT, not at+jwt
        forge(good | {"aud": "another-api"}, headers=at_jwt),
        forge(good | {"iss": "someone-else"}, headers=at_jwt),
        forge({k: v for k, v in good.items() if k != "aud"}, headers=at_jwt),
        forge({k: v for k, v in good.items() if k != "iss"}, headers=at_jwt),
        "",
        "garbage",
        "a.b.c",
        "Bearer",
        forge(good, key="another-secret-key-that-is-long-enough-too"),
        forge(good | {"exp": now - 1, "iat": now - 700}),
        forge({"sub": user_id, "iat": now}),
        forge({"sub": user_id, "exp": now + 600}),
        forge({"iat": now, "exp": now + 600}),
        forge(good | {"sub": "999999"}),
        forge(good | {"sub": "1 OR 1=1"}),
        forge(good | {"sub": "-1"}),
        forge(good | {"iat": now + 3600}),
        # Sessions: a token without one (issued before the upgrade), another user's, made up.
        forge({k: v for k, v in good.items() if k != "sid"}, headers=at_jwt),
        forge(good | {"sub": str(int(user_id) + 1)}, headers=at_jwt),
        forge(good | {"sid": "A" * 22}, headers=at_jwt),
        forge(good | {"sid": 12345}, headers=at_jwt),
        forge(good | {"sid": "x' OR '1'='1"}, headers=at_jwt),
        jwt.encode(good, None, algorithm="none"),
        forge(good, key=TEST_SECRET_KEY + "x" * 30, algorithm="HS512"),
        forge(good).rsplit(".", 1)[0] + ".",
        "é" * 50,
        "x" * 10_000,
    ]


def test_invalid_tokens_are_401_invalid_token(client, auth, db):
    token = auth.token()  # alice exists and is logged in
    (user,) = sql(db, "SELECT id FROM users")
    (session,) = sql(db, "SELECT id FROM sessions")
    for case in invalid_token_cases(str(user["id"]), session["id"]):
        response = client.get("/products", headers=bearer(case))
        assert response.status_code == 401, case
        assert response.headers["WWW-Authenticate"].endswith('error="invalid_token"'), case
    assert client.get("/products", headers=bearer(token)).status_code == 200


def test_token_signed_with_key_but_not_issued_by_login_is_refused(client, auth, db):
    """Even a correctly signed token is useless unless a login started its session."""
    auth.token()
    (user,) = sql(db, "SELECT id FROM users")
    now = int(time.time())
    claims = {"sub": str(user["id"]), "sid": "B" * 22, "iat": now, "exp": now + 600}
    token = forge(claims | {"iss": "SecureAPI", "aud": "SecureAPI"}, headers={"typ": "at+jwt"})
    assert client.get("/products", headers=bearer(token)).status_code == 401


def test_pyjwt_checks_a_token_once_not_per_request(client, auth, monkeypatch):
    # PyJWT checks the key each time it is handed one (no public key as an HMAC secret); the
    # per-token cache (tokens.checked_token) hands it over once per token, and the check stays.
    token = auth.token()
    checked = []
    check = HMACAlgorithm.prepare_key
    monkeypatch.setattr(
        HMACAlgorithm, "prepare_key", lambda self, key: checked.append(key) or check(self, key)
    )
    for _ in range(3):
        assert client.get("/products", headers=bearer(token)).status_code == 200
    assert checked == [TEST_SECRET_KEY]
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(jwt.InvalidKeyError):
        forge({"sub": "1"}, key=pem)


def current_forged_token(db, lifetime):
    """A token valid for `lifetime` seconds, signed with the test key, of the user's
    session, as a login would have issued it."""
    (user,) = sql(db, "SELECT id FROM users")
    (session,) = sql(db, "SELECT id FROM sessions")
    now = int(time.time())
    claims = {"sub": str(user["id"]), "sid": session["id"], "iat": now, "exp": now + lifetime}
    return forge(claims | {"iss": "SecureAPI", "aud": "SecureAPI"}, headers={"typ": "at+jwt"})


def test_a_token_checked_before_is_refused_once_it_expires(client, auth, db, clock):
    # A token's signature is checked once; its lifetime is checked on every request, by the
    # app's clock.
    auth.token()
    token = current_forged_token(db, lifetime=2)
    assert client.get("/products", headers=bearer(token)).status_code == 200
    clock.advance(2)
    response = client.get("/products", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].endswith('error="invalid_token"')


def test_a_token_checked_by_one_key_is_not_taken_by_another(client, auth, db, make_app):
    auth.token()
    token = current_forged_token(db, lifetime=600)
    assert client.get("/products", headers=bearer(token)).status_code == 200
    for other in (
        {"SECRET_KEY": "another-secret-key-that-is-long-enough-" + "x" * 16},
        {"JWT_ISSUER": "another-issuer"},
        {"JWT_AUDIENCE": "another-api"},
    ):
        other_app = make_app(**other)
        response = other_app.test_client().get("/products", headers=bearer(token))
        assert response.status_code == 401, other


@pytest.mark.parametrize(
    "header",
    ["Basic abc", "Bearer a b", "Token abc", "bearer", "Bearer  x", "\x00", "Bearer \u0100"],
)
def test_odd_authorization_headers_are_401(client, header):
    response = client.get("/products", headers={"Authorization": header})
    assert response.status_code == 401


def test_a_new_login_leaves_the_other_sessions_logged_in(client, auth):
    auth.register("alice")
    first = auth.login("alice", offset=0).json
    second = auth.login("alice", offset=1).json
    assert first["session_id"] != second["session_id"]
    assert client.get("/products", headers=bearer(first["token"])).status_code == 200
    assert client.get("/products", headers=bearer(second["token"])).status_code == 200


def test_logout_revokes_token(client, auth, db):
    headers = auth.headers()
    response = client.post("/logout", headers=headers)
    assert response.status_code == 200
    assert response.json == {"message": "Logged out"}
    assert sql(db, "SELECT COUNT(*) AS n FROM sessions")[0]["n"] == 0
    response = client.get("/products", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert client.post("/logout", headers=headers).status_code == 401


def test_tokens_are_per_user(client, auth):
    alice = auth.headers("alice")
    bob = auth.headers("bob")
    client.post("/logout", headers=alice)
    assert client.get("/products", headers=bob).status_code == 200


# --- Reserved names, TOTP window ---------------------------------------------------------


@pytest.mark.parametrize("name", ["admin", "Root", "ADMINISTRATOR", "support", "security"])
def test_self_registration_refuses_reserved_names(client, runner, name):
    response = client.post("/register", json={"username": name, "password": PASSWORD})
    assert response.status_code == 400
    assert "reserved" in response.json["message"]
    result = runner.invoke(args=["create-user", name, "--role", "admin"], input=PASSWORD)
    assert result.exit_code == 0, result.output  # the operator may


def test_totp_valid_window_zero_accepts_only_the_current_step(app, auth):
    app.config["TOTP_VALID_WINDOW"] = 0
    auth.register("alice")
    assert auth.login("alice", offset=1).status_code == 401
    assert auth.login("alice", offset=-1).status_code == 401
    assert auth.login("alice").status_code == 200


# --- Password hashes: upgrade and equal timing (review finding 9) --------------------------


def test_v1_and_other_cost_hashes_are_upgraded_at_the_next_login(app, auth, db, clock):
    auth.register("alice")
    v1 = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    sql(db, "UPDATE users SET password = %s", (v1,))
    assert auth.login("alice").status_code == 200
    upgraded = sql(db, "SELECT password FROM users")[0]["password"]
    assert upgraded.startswith("sha256$$2b$04$")
    app.config["BCRYPT_ROUNDS"] = 5
    clock.advance(30)
    assert auth.login("alice").status_code == 200
    assert sql(db, "SELECT password FROM users")[0]["password"].startswith("sha256$$2b$05$")


def test_after_a_cost_raise_unknown_and_known_users_cost_the_same_bcrypt_work(
    app, auth, db, monkeypatch
):
    """Known users whose hash has the old cost are padded to the new one: the same work
    (sum of 2**cost over the bcrypt checks) as an unknown user's dummy check."""
    auth.register("alice")  # cost 4
    work = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password, hashed):
        work.append(2 ** int(hashed.split(b"$")[2]))
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    app.config["BCRYPT_ROUNDS"] = 6
    app.config["DUMMY_PASSWORD_HASH"] = dummy_password_hash(6)
    auth.login("alice", "wrong password!")
    known = sum(work)
    work.clear()
    auth.login("nobody", "wrong password!", otp="000000")
    assert known == sum(work) == 2**6


# --- Strict JSON (review finding 17) --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        ('{"username": "alice", "username": "admin", "password": "x"}', None, "appears twice"),
        ('{"username": "alice"}'.encode("utf-16"), None, "must be UTF-8"),
        ('{"username": "alice"}'.encode("utf-32"), None, "must be UTF-8"),
        ('{"username": "alice"}', "application/json; charset=latin-1", "charset=utf-8"),
    ],
)
def test_bodies_must_be_utf8_json_without_duplicate_keys(client, db, data, content_type, message):
    response = client.post("/register", data=data, content_type=content_type or "application/json")
    assert response.status_code == 400
    assert message in response.json["message"]
    assert sql(db, "SELECT COUNT(*) AS n FROM users")[0]["n"] == 0


def test_a_utf8_bom_is_fine(client):
    body = '\ufeff{"username": "alice", "password": "correct horse battery staple"}'
    response = client.post("/register", data=body.encode(), content_type="application/json")
    assert response.status_code == 201


def test_compressed_bodies_are_415(client):
    response = client.post(
        "/register",
        data=b"\x1f\x8b...",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 415
    assert "Content-Encoding" in response.json["message"]

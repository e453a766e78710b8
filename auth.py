"""Blueprint for signing in: register, the enrolment QR code, login, logout and the 2FA
changes of a logged-in user. Rules live in passwords, two_factor, tokens and lockout;
this module only orders them."""

import io

import MySQLdb
import pyotp
import qrcode
from flask import Blueprint, current_app, g, request, send_file, url_for

from audit import audit
from db import execute, query, transaction
from errors import ValidationError, error_response
from lockout import claim_attempt, clear_failures, give_back_attempt, refuse
from passwords import (
    check_password,
    hash_password,
    password_matches,
    validate_new_password,
)
from rate_limits import limiter
from tokens import invalid_token, issue_token, lock_token_holder, token_digest, token_required
from two_factor import (
    decrypt_secret,
    encrypt_secret,
    matching_otp_step,
    new_recovery_codes,
    recovery_code_digest,
)
from validation import USERNAME_PATTERN, json_object, refuse_unknown_fields, require_text

bp = Blueprint("auth", __name__)

LOGIN_FAILED = "Invalid username, password or one-time code."
BASIC_REALM = 'Basic realm="SecureAPI", charset="UTF-8"'


def validate_registration(data):
    refuse_unknown_fields(data, ("username", "password"))
    username = require_text(data, "username")
    password = require_text(data, "password")
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationError(
            "'username' must be 3-64 characters: letters, digits, '.', '_', '-' or '@'."
        )
    return username, validate_new_password(password)


def validate_login(data):
    refuse_unknown_fields(data, ("username", "password", "otp", "recovery_code"))
    username = require_text(data, "username")
    password = require_text(data, "password")
    if ("otp" in data) == ("recovery_code" in data):
        raise ValidationError("Give exactly one of 'otp' and 'recovery_code'.")
    field = "otp" if "otp" in data else "recovery_code"
    return username, password, field, require_text(data, field)


def find_user(username):
    if not USERNAME_PATTERN.fullmatch(username):
        return None
    rows = query(
        "SELECT id, username, password, twofa_secret, last_otp_step, twofa_confirmed_at"
        " FROM users WHERE username = %s",
        (username,),
    )
    return rows[0] if rows else None


def enrolment(username, secret):
    uri = pyotp.TOTP(secret).provisioning_uri(
        name=username, issuer_name=current_app.config["TOTP_ISSUER"]
    )
    return {
        "secret": secret,
        "otpauth_uri": uri,
        # Relative URLs: nothing in a response comes from the client's Host header.
        "qrcode_url": url_for("auth.get_qrcode", username=username),
    }


def confirm_password(data):
    """For 2FA changes the token is not enough: the password must come too.
    Returns the refusal to send, or None."""
    refuse_unknown_fields(data, ("password",))
    password = require_text(data, "password")
    username = g.user["username"]
    refusal, lockout = claim_attempt(username)
    if refusal:
        return refusal
    if not check_password(password, g.user["password"]):
        refuse("password_confirmation_failed", username, lockout)
        return error_response(403, "The password is incorrect.")
    give_back_attempt(username)
    return None


def basic_credentials():
    """(username, password) from HTTP Basic auth, or None."""
    try:
        auth = request.authorization
    except ValueError:  # credentials that do not decode
        return None
    if auth is None or auth.type != "basic" or auth.username is None or auth.password is None:
        return None
    return auth.username, auth.password


def qrcode_unauthorized():
    return error_response(
        401,
        "Give this user's username and password (HTTP Basic) to fetch the QR code.",
        {"WWW-Authenticate": BASIC_REALM},
    )


@bp.post("/register")
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"])
def register():
    username, password = validate_registration(json_object())
    password_hash = hash_password(password)
    secret = pyotp.random_base32()  # 160 bits from the secrets module
    try:
        with transaction() as cursor:
            cursor.execute(
                "INSERT INTO users (username, password, twofa_secret) VALUES (%s, %s, %s)",
                (username, password_hash, encrypt_secret(secret)),
            )
            codes = new_recovery_codes(cursor, cursor.lastrowid)
    except MySQLdb.IntegrityError:
        return error_response(409, "That username is already taken.")
    audit("register", username)
    body = {"message": "User registered successfully"} | enrolment(username, secret)
    return body | {"recovery_codes": codes}, 201


@bp.get("/qrcode/<username>")
@limiter.limit(lambda: current_app.config["RATELIMIT_QRCODE"])
def get_qrcode(username):
    credentials = basic_credentials()
    if credentials is None or credentials[0].lower() != username.lower():
        audit("qrcode_refused", None, reason="no_credentials")
        return qrcode_unauthorized()
    # Password guesses here count towards the same lockout as logins.
    refusal, lockout = claim_attempt(username)
    if refusal:
        return refusal
    user = find_user(username)
    secret = (
        decrypt_secret(user["twofa_secret"]) if password_matches(user, credentials[1]) else None
    )
    if secret is None:
        name = user["username"] if user else username
        refuse("qrcode_refused", name, lockout, reason="bad_credentials")
        return qrcode_unauthorized()
    give_back_attempt(username)
    if user["twofa_confirmed_at"] is not None:
        return error_response(
            403,
            "Two-factor enrolment is already confirmed; the QR code is no longer served.",
        )
    uri = enrolment(user["username"], secret)["otpauth_uri"]
    image = io.BytesIO()
    qrcode.make(uri).save(image, format="PNG")
    image.seek(0)
    audit("qrcode_served", user["username"])
    return send_file(image, mimetype="image/png")


@bp.post("/login")
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"])
def login():
    username, password, field, code = validate_login(json_object())
    refusal, lockout = claim_attempt(username)
    if refusal:
        return refusal
    user = find_user(username)
    if not password_matches(user, password):
        reason = "bad_password" if user else "unknown_user"
        refuse("login_failed", user["username"] if user else username, lockout, reason=reason)
        return error_response(401, LOGIN_FAILED)

    token = issue_token(user["id"])
    body = {"token": token, "token_type": "Bearer"}
    with transaction() as cursor:
        if field == "otp":
            secret = decrypt_secret(user["twofa_secret"])
            step = matching_otp_step(secret, code)  # None too if the secret is unreadable
            # One atomic statement: of two requests with the same code, only one can move
            # last_otp_step forward (RFC 6238 section 5.2), so only one gets a token; and
            # none if a 2FA reset replaced the secret meanwhile. Rewriting the secret
            # encrypts a v1 plain one and moves it to the newest key.
            accepted = step is not None and cursor.execute(
                "UPDATE users SET last_otp_step = %s, last_token = %s, twofa_secret = %s,"
                " twofa_confirmed_at = COALESCE(twofa_confirmed_at, UTC_TIMESTAMP())"
                " WHERE id = %s AND twofa_secret = %s"
                " AND (last_otp_step IS NULL OR last_otp_step < %s)",
                (
                    step,
                    token_digest(token),
                    encrypt_secret(secret),
                    user["id"],
                    user["twofa_secret"],
                    step,
                ),
            )
            reason = "bad_otp"
        else:
            # Marking the code used is atomic too: it works once, even under racing requests.
            accepted = cursor.execute(
                "UPDATE recovery_codes SET used_at = UTC_TIMESTAMP()"
                " WHERE user_id = %s AND code_hash = %s AND used_at IS NULL",
                (user["id"], recovery_code_digest(user["id"], code)),
            )
            if accepted:
                cursor.execute(
                    "UPDATE users SET last_token = %s WHERE id = %s",
                    (token_digest(token), user["id"]),
                )
                cursor.execute(
                    "SELECT COUNT(*) AS remaining FROM recovery_codes"
                    " WHERE user_id = %s AND used_at IS NULL",
                    (user["id"],),
                )
                body["recovery_codes_remaining"] = cursor.fetchone()["remaining"]
            reason = "bad_recovery_code"
        if accepted:
            clear_failures(cursor, user["username"])
    if not accepted:
        refuse("login_failed", user["username"], lockout, reason=reason)
        return error_response(401, LOGIN_FAILED)
    if field == "recovery_code":
        audit("recovery_code_used", user["username"], remaining=body["recovery_codes_remaining"])
    audit("login_succeeded", user["username"], method=field)
    return body | {"expires_in": current_app.config["JWT_EXPIRES_SECONDS"]}


@bp.post("/logout")
@token_required
def logout():
    execute("UPDATE users SET last_token = NULL WHERE id = %s", (g.user["id"],))
    audit("logout", g.user["username"])
    return {"message": "Logged out"}


@bp.post("/2fa/recovery-codes")
@token_required
def regenerate_recovery_codes():
    refusal = confirm_password(json_object())
    if refusal:
        return refusal
    with transaction() as cursor:
        if not lock_token_holder(cursor):
            return invalid_token("revoked", g.user["username"])
        codes = new_recovery_codes(cursor, g.user["id"])
    audit("recovery_codes_regenerated", g.user["username"])
    return {
        "message": "New recovery codes issued; the old ones no longer work.",
        "recovery_codes": codes,
    }


@bp.post("/2fa/reset")
@token_required
def reset_two_factor():
    refusal = confirm_password(json_object())
    if refusal:
        return refusal
    secret = pyotp.random_base32()
    with transaction() as cursor:
        if not lock_token_holder(cursor):
            return invalid_token("revoked", g.user["username"])
        # The new secret reopens the QR code until a login with it; the current token dies.
        cursor.execute(
            "UPDATE users SET twofa_secret = %s, twofa_confirmed_at = NULL,"
            " last_otp_step = NULL, last_token = NULL WHERE id = %s",
            (encrypt_secret(secret), g.user["id"]),
        )
    audit("twofa_reset", g.user["username"])
    body = {"message": "Two-factor authentication reset; log in with a code of the new secret."}
    return body | enrolment(g.user["username"], secret)

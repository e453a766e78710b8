"""Blueprint for signing in: register, the enrolment QR code, login, logout and the 2FA
changes of a logged-in user. Rules live in passwords, two_factor, tokens and lockout;
this module only orders them."""

import io
import logging

import qrcode
from flask import Blueprint, current_app, g, request, send_file, url_for

from config import now
from secureapi.core.metrics import count_login
from secureapi.core.refusals import (
    AccountLocked,
    ClientLockedOut,
    Forbidden,
    InvalidRefreshToken,
    Unauthorized,
    ValidationError,
)
from secureapi.core.validation import (
    USERNAME_PATTERN,
    json_object,
    refuse_unknown_fields,
    require_text,
)
from secureapi.data.database import execute, in_transaction, query
from secureapi.security.accounts import (
    create_account,
    reauthenticated,
    second_factor,
    validate_username,
)
from secureapi.security.audit import audit
from secureapi.security.lockout import (
    claim_attempt,
    clear_failures,
    give_back_attempt,
    lockout_account,
    refuse,
)
from secureapi.security.passwords import (
    hash_password,
    needs_rehash,
    password_matches,
    validate_new_password,
)
from secureapi.security.rate_limits import limiter
from secureapi.security.sessions import (
    audit_ended,
    end_user_sessions,
    expires_at,
    refresh_lifetime,
    rotate,
    start_session,
)
from secureapi.security.tokens import (
    issue_token,
    refuse_personal_access_token,
    token_required,
)
from secureapi.security.two_factor import (
    decrypt_secret,
    encrypt_secret,
    matching_otp_step,
    new_recovery_codes,
    otpauth_uri,
    remaining_recovery_codes,
    reset_secret,
    use_recovery_code,
)

bp = Blueprint("auth", __name__)

LOGIN_FAILED = "Invalid username, password or one-time code."
BASIC_REALM = 'Basic realm="SecureAPI", charset="UTF-8"'


# Names that look like the operator's: only the CLI may give them out.
RESERVED_USERNAMES = frozenset(
    ("admin", "administrator", "root", "system", "support", "security", "superuser",
     "sysadmin", "operator", "moderator", "staff", "owner", "webmaster", "postmaster",
     "hostmaster", "abuse", "noc", "secureapi", "api", "help", "info", "official")
)  # fmt: skip


def validate_registration(data):
    refuse_unknown_fields(data, ("username", "password"))
    username = validate_username(require_text(data, "username"))
    if username.lower() in RESERVED_USERNAMES:
        raise ValidationError("That username is reserved; choose another.")
    return username, validate_new_password(require_text(data, "password"), username=username)


def validate_login(data):
    refuse_unknown_fields(data, ("username", "password", "otp", "recovery_code"))
    username = require_text(data, "username")
    password = require_text(data, "password")
    return username, password, *second_factor(data)


def find_user(username):
    if not USERNAME_PATTERN.fullmatch(username):
        return None
    rows = query(
        "SELECT id, username, password, twofa_secret, last_otp_step, enrolment_until,"
        " role, disabled FROM users WHERE username = %s",
        (username,),
    )
    return rows[0] if rows else None


def enrolment(username, secret):
    return {
        "secret": secret,
        "otpauth_uri": otpauth_uri(username, secret),
        # Relative URLs: nothing in a response comes from the client's Host header.
        "qrcode_url": url_for("auth.get_qrcode", username=username),
    }


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
    return Unauthorized(
        "Give this user's username and password (HTTP Basic) to fetch the QR code, while"
        " enrolment is open.",
        {"WWW-Authenticate": BASIC_REALM},
    )


@bp.post("/register")
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"])
def register():
    if current_app.config["REGISTRATION"] == "closed":
        raise Forbidden("Registration is closed.")
    username, password = validate_registration(json_object())
    role = current_app.config["REGISTRATION_ROLE"]
    _, secret, codes = create_account(username, password, role)
    audit("register", username, role=role)
    body = {"message": "User registered successfully", "role": role}
    return body | enrolment(username, secret) | {"recovery_codes": codes}, 201


@bp.get("/qrcode/<username>")
@limiter.limit(lambda: current_app.config["RATELIMIT_QRCODE"])
def get_qrcode(username):
    credentials = basic_credentials()
    if credentials is None or credentials[0].lower() != username.lower():
        audit("qrcode_refused", None, reason="no_credentials")
        raise qrcode_unauthorized()
    # Password guesses here count towards the same lockout as logins.
    user = find_user(username)
    account = lockout_account(username, user)
    lockout = claim_attempt(account)
    right_password = password_matches(user, credentials[1])
    # Once enrolment has closed, a right password gets exactly what a wrong one gets (and
    # counts as a failure): this endpoint must not tell an attacker the password is right.
    enrolling = right_password and not user["disabled"] and (user["enrolment_until"] or 0) > now()
    if not enrolling:
        reason = "enrolment_closed" if right_password else "bad_credentials"
        refuse("qrcode_refused", account, lockout, reason=reason)
        raise qrcode_unauthorized()
    secret = decrypt_secret(user["twofa_secret"])
    if secret is None:
        refuse("qrcode_refused", account, lockout, reason="unreadable_secret")
        raise qrcode_unauthorized()
    give_back_attempt(account)
    image = io.BytesIO()
    qrcode.make(otpauth_uri(user["username"], secret)).save(image, format="PNG")
    image.seek(0)
    audit("qrcode_served", user["username"])
    return send_file(image, mimetype="image/png")


@bp.post("/login")
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"])
def login():
    """Password, then the second factor, then the token: each failure counts toward the
    lockout and gets the same 401, whichever factor was wrong."""
    username, password, field, code = validate_login(json_object())
    user = find_user(username)
    account = lockout_account(username, user)
    lockout = claim_login_attempt(account)
    if not password_matches(user, password):
        fail_login(account, lockout, "bad_password" if user else "unknown_user")
    used = use_second_factor(user, field, code)
    if used is None:
        fail_login(user["username"], lockout, f"bad_{field}")
    fields, session = used
    if user["disabled"]:  # its right code is consumed like any other, but starts no session
        audit("login_refused", user["username"], reason="disabled")
        count_login("disabled")
        raise Forbidden("This account is disabled.")
    if field == "recovery_code":
        audit("recovery_code_used", user["username"], remaining=fields["recovery_codes_remaining"])
    audit("login_succeeded", user["username"], method=field)
    audit("session_started", user["username"], session_id=session["id"])
    audit_ended(user["username"], session["ended"], "session_limit")
    count_login("success")
    rehash_if_needed(user, password)
    return session_tokens(user["id"], session) | fields


@bp.post("/token/refresh")
@limiter.limit(lambda: current_app.config["RATELIMIT_REFRESH"])
def refresh():
    """A new access token and a new refresh token for the session of a refresh token,
    which is then spent. Every refusal gets the same 401: no oracle for a guesser."""
    refuse_personal_access_token()
    data = json_object()
    refuse_unknown_fields(data, ("refresh_token",))
    why, session, new_token = rotate(require_text(data, "refresh_token"))
    if why is not None:
        username = session["username"] if session else None
        if why == "reused":  # RFC 9700 4.14.2: someone else has (had) this token
            audit("refresh_reused", username, session_id=session["id"], level=logging.WARNING)
        if session:
            audit_ended(username, [session["id"]], why)
        else:
            audit("refresh_refused", None, reason=why)
        raise InvalidRefreshToken()
    audit("session_refreshed", session["username"], session_id=session["id"])
    return session_tokens(session["user_id"], session | {"refresh_token": new_token})


def session_tokens(user_id, session):
    """The answer of a login or a refresh: an access token of the session, its refresh
    token, and when each stops working."""
    token, expires_in = issue_token(user_id, session["id"], expires_at(session["created_at"]))
    return {
        "token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": session["refresh_token"],
        "refresh_expires_in": refresh_lifetime(session["created_at"]),
        "session_id": session["id"],
    }


def claim_login_attempt(account):
    """lockout.claim_attempt, with the refusal counted by kind in the login metrics."""
    try:
        return claim_attempt(account)
    except ClientLockedOut:
        count_login("locked")
        raise
    except AccountLocked:
        count_login("account_locked")
        raise


def fail_login(account, lockout, reason):
    """Log and count a failed login (claim_login_attempt has counted it toward the
    lockout), and refuse it with the one answer every wrong factor gets."""
    refuse("login_failed", account, lockout, reason=reason)
    count_login(reason)
    raise Unauthorized(LOGIN_FAILED)


def use_second_factor(user, field, code):
    """Consume the one-time or recovery code and start a session, in one transaction:
    (the fields the code adds to the answer, the session), or None if the code was
    refused."""
    if field == "otp":
        secret = decrypt_secret(user["twofa_secret"])
        step = matching_otp_step(secret, code)  # None too if the secret is unreadable
        if step is None:
            return None
        return in_transaction(use_otp_at_login, user, secret, step)
    return in_transaction(use_recovery_code_at_login, user, code)


def use_otp_at_login(cursor, user, secret, step):
    """One atomic statement: of two requests with the same code, only one can move
    last_otp_step forward (RFC 6238 section 5.2), so only one gets a token; and none if a
    2FA reset replaced the secret meanwhile. Rewriting the secret encrypts a v1 plain one
    and moves it to the newest key. The loser of a race on another Galera node fails at
    commit (1213); its rerun matches no row. Database work only (it may run twice)."""
    if not cursor.execute(
        "UPDATE users SET last_otp_step = %s, twofa_secret = %s,"
        " twofa_confirmed_at = COALESCE(twofa_confirmed_at, UTC_TIMESTAMP()),"
        " enrolment_until = NULL"
        " WHERE id = %s AND twofa_secret = %s AND password = %s"
        " AND (last_otp_step IS NULL OR last_otp_step < %s)",
        (
            step,
            encrypt_secret(secret),
            user["id"],
            user["twofa_secret"],
            user["password"],  # unchanged since bcrypt checked it
            step,
        ),
    ):
        return None
    return logged_in(cursor, user, {})


def use_recovery_code_at_login(cursor, user, code):
    """The row lock holds off a password change racing this login (bcrypt checked the
    password that is still there); the code is marked used atomically. Database work only
    (it may run twice)."""
    if not cursor.execute(
        "SELECT id FROM users WHERE id = %s AND password = %s FOR UPDATE",
        (user["id"], user["password"]),
    ) or not use_recovery_code(cursor, user["id"], code):
        return None
    # Any login closes enrolment: whoever has the password and a recovery code must not be
    # able to fetch the TOTP secret afterwards.
    cursor.execute("UPDATE users SET enrolment_until = NULL WHERE id = %s", (user["id"],))
    remaining = remaining_recovery_codes(cursor, user["id"])
    return logged_in(cursor, user, {"recovery_codes_remaining": remaining})


def logged_in(cursor, user, fields):
    """Both factors are right: forgive the client's failures and start a session (none
    for a disabled account). (fields, the session)."""
    clear_failures(cursor, user["username"])
    return fields, None if user["disabled"] else start_session(cursor, user["id"])


def rehash_if_needed(user, password):
    """A v1 hash, or another cost than BCRYPT_ROUNDS: replaced now that the password is
    known, unless it changed meanwhile."""
    if needs_rehash(user["password"]):
        execute(
            "UPDATE users SET password = %s WHERE id = %s AND password = %s",
            (hash_password(password), user["id"], user["password"]),
        )


@bp.post("/logout")
@token_required("viewer")
def logout():
    """Ends this session only: the user's other devices stay logged in."""
    execute("DELETE FROM sessions WHERE id = %s", (g.user["session_id"],))
    audit("logout", g.user["username"])
    audit_ended(g.user["username"], [g.user["session_id"]], "logout")
    return {"message": "Logged out"}


@bp.post("/2fa/recovery-codes")
@token_required("viewer")
def regenerate_recovery_codes():
    data = json_object()
    refuse_unknown_fields(data, ("password", "otp", "recovery_code"))
    codes = reauthenticated(
        data, "password", lambda cursor: new_recovery_codes(cursor, g.user["id"])
    )
    audit("recovery_codes_regenerated", g.user["username"])
    return {
        "message": "New recovery codes issued; the old ones no longer work.",
        "recovery_codes": codes,
    }


@bp.post("/2fa/reset")
@token_required("viewer")
def reset_two_factor():
    data = json_object()
    refuse_unknown_fields(data, ("password", "otp", "recovery_code"))

    def reset(cursor):
        # Every session ends, this one too: the next login proves the new secret.
        return reset_secret(cursor, g.user["id"]), end_user_sessions(cursor, g.user["id"])

    secret, ended = reauthenticated(data, "password", reset)
    audit("twofa_reset", g.user["username"])
    audit_ended(g.user["username"], ended, "two_factor_reset")
    body = {"message": "Two-factor authentication reset; log in with a code of the new secret."}
    return body | enrolment(g.user["username"], secret)

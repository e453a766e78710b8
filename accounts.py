"""Accounts: creating one (for /register and the CLI), the rule that an enabled admin always
remains, deleting one, and re-authentication with both factors. Routes and CLI commands
call these; no HTTP route lives here."""

import contextlib

import MySQLdb
import pyotp
from flask import abort, g

from audit import audit
from db import transaction, utc_iso
from errors import ValidationError, error_response
from lockout import claim_attempt, give_back_attempt, refuse
from passwords import check_password, hash_password, validate_new_password
from tokens import ROLES, invalid_token, lock_token_holder
from two_factor import (
    encrypt_secret,
    enrolment_deadline,
    new_recovery_codes,
    use_otp,
    use_recovery_code,
)
from validation import USERNAME_PATTERN, require_text

REAUTHENTICATION_FAILED = "The password, one-time code or recovery code is incorrect."
LAST_ADMIN = "This is the last enabled admin: promote or enable another admin first."


class UsernameTaken(Exception):
    pass


def validate_username(username):
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationError(
            "'username' must be 3-64 characters: letters, digits, '.', '_', '-' or '@'."
        )
    return username


def validate_role(value):
    if value not in ROLES:
        raise ValidationError("'role' must be one of: viewer, editor, admin.")
    return value


def create_account(username, password, role):
    """Store a new user with a fresh TOTP secret and recovery codes; return
    (id, secret, recovery codes). Raises UsernameTaken."""
    password_hash = hash_password(validate_new_password(password))
    secret = pyotp.random_base32()  # 160 bits from the secrets module
    try:
        with transaction() as cursor:
            cursor.execute(
                "INSERT INTO users (username, password, twofa_secret, role, enrolment_until)"
                " VALUES (%s, %s, %s, %s, %s)",
                (username, password_hash, encrypt_secret(secret), role, enrolment_deadline()),
            )
            user_id = cursor.lastrowid
            codes = new_recovery_codes(cursor, user_id)
    except MySQLdb.IntegrityError:
        raise UsernameTaken(username) from None
    return user_id, secret, codes


def account_json(row):
    return {
        "id": row["id"],
        "username": row["username"],
        "role": row["role"],
        "disabled": bool(row["disabled"]),
        "created_at": utc_iso(row["created_at"]),
        "twofa_confirmed": row["twofa_confirmed_at"] is not None,
    }


def keeps_an_admin(cursor, user_id):
    """Whether an enabled admin other than user_id exists. Locks the enabled admins' rows
    until the caller's transaction ends, so two admins demoting each other at once take
    turns, and the second sees that only one is left."""
    cursor.execute("SELECT id FROM users WHERE role = 'admin' AND disabled = FALSE")
    ids = [row["id"] for row in cursor.fetchall()]
    if not ids:
        return False
    # Then lock them by primary key, in id order, and read them again as they are now. A
    # locking read through the role index would take gap locks that deadlock with the
    # role update itself; one promoted meanwhile is missed, which only errs toward a 409.
    placeholders = ", ".join(["%s"] * len(ids))
    cursor.execute(
        f"SELECT id FROM users WHERE id IN ({placeholders})"  # noqa: S608 (placeholders only)
        " AND role = 'admin' AND disabled = FALSE ORDER BY id FOR UPDATE",
        ids,
    )
    return any(row["id"] != user_id for row in cursor.fetchall())


def is_last_admin(cursor, user):
    """Whether taking `user` out of the enabled admins would leave none."""
    return (
        user["role"] == "admin" and not user["disabled"] and not keeps_an_admin(cursor, user["id"])
    )


def refuse_last_admin(cursor, user):
    if is_last_admin(cursor, user):
        abort(error_response(409, LAST_ADMIN))


def delete_account(cursor, user):
    """The user, their recovery codes (ON DELETE CASCADE) and lockout row; products stay."""
    cursor.execute("DELETE FROM users WHERE id = %s", (user["id"],))
    cursor.execute("DELETE FROM login_failures WHERE username = %s", (user["username"],))


def second_factor(data):
    """('otp' or 'recovery_code', the code): exactly one must be given."""
    if ("otp" in data) == ("recovery_code" in data):
        raise ValidationError("Give exactly one of 'otp' and 'recovery_code'.")
    field = "otp" if "otp" in data else "recovery_code"
    return field, require_text(data, field)


@contextlib.contextmanager
def reauthenticated(data, password_field):
    """A transaction (its cursor) in which the token holder has just proven both factors
    again: the password in `password_field`, and a one-time code or recovery code, which is
    consumed (ASVS 5.0 V7.5.1). A stolen token alone changes nothing. Failures count toward
    the lockout like failed logins and abort with 403 (or 429 while locked)."""
    password = require_text(data, password_field)
    field, code = second_factor(data)
    username = g.user["username"]
    refusal, lockout = claim_attempt(username)
    if refusal:
        abort(refusal)
    if not check_password(password, g.user["password"]):
        refuse("reauthentication_failed", username, lockout, reason="bad_password")
        abort(error_response(403, REAUTHENTICATION_FAILED))
    proven = False
    try:
        with transaction() as cursor:
            # A logout or login may have revoked the token while bcrypt was running.
            if not lock_token_holder(cursor):
                abort(invalid_token("revoked", username))
            used = use_otp if field == "otp" else use_recovery_code
            if not used(cursor, g.user["id"], code):
                refuse("reauthentication_failed", username, lockout, reason=f"bad_{field}")
                abort(error_response(403, REAUTHENTICATION_FAILED))
            proven = True
            audit("reauthenticated", username, method=field)
            yield cursor
    finally:
        # Right credentials give the attempt back, even if the change itself was refused.
        if proven:
            give_back_attempt(username)

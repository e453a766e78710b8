"""Accounts: creating one (for /register and the CLI), the rule that an enabled admin always
remains, deleting one, and re-authentication with both factors. Routes and CLI commands
call these; no HTTP route lives here."""

import MySQLdb
import pyotp
from flask import g

from secureapi.core.refusals import Conflict, Forbidden, LastAdmin, ValidationError
from secureapi.core.validation import USERNAME_PATTERN, require_text
from secureapi.data.database import in_transaction, utc_iso
from secureapi.security.audit import audit
from secureapi.security.lockout import claim_attempt, give_back_attempt, refuse, unlock
from secureapi.security.passwords import check_password, hash_password
from secureapi.security.sessions import end_user_sessions
from secureapi.security.tokens import ROLES, invalid_token, lock_token_holder
from secureapi.security.two_factor import (
    encrypt_secret,
    enrolment_deadline,
    new_recovery_codes,
    use_otp,
    use_recovery_code,
)

REAUTHENTICATION_FAILED = "The password, one-time code or recovery code is incorrect."


class UsernameTaken(Conflict):
    def __init__(self):
        super().__init__("That username is already taken.")


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
    password_hash = hash_password(password)  # the caller has validated it
    secret = pyotp.random_base32()  # 160 bits from the secrets module

    def insert(cursor):
        cursor.execute(
            "INSERT INTO users (username, password, twofa_secret, role, enrolment_until)"
            " VALUES (%s, %s, %s, %s, %s)",
            (username, password_hash, encrypt_secret(secret), role, enrolment_deadline()),
        )
        return cursor.lastrowid, secret, new_recovery_codes(cursor, cursor.lastrowid)

    try:
        # A name registered at once on another Galera node fails the commit (1213); the
        # rerun then meets the other row and answers "taken" like any duplicate.
        return in_transaction(insert)
    except MySQLdb.IntegrityError:
        raise UsernameTaken() from None


def account_json(row):
    return {
        "id": row["id"],
        "username": row["username"],
        "role": row["role"],
        "disabled": bool(row["disabled"]),
        "locked": bool(row["locked"]),
        "created_at": utc_iso(row["created_at"]),
        "twofa_confirmed": row["twofa_confirmed_at"] is not None,
    }


def lock_enabled_admins(cursor):
    """Lock the enabled admins' rows until the caller's transaction ends and return their
    ids, so that two admins demoting each other at once take turns, and the second sees
    that only one is left. Every change that may remove an admin takes these locks first,
    before any other user row: one order everywhere, so racing changes never deadlock."""
    cursor.execute("SELECT id FROM users WHERE role = 'admin' AND disabled = FALSE")
    ids = [row["id"] for row in cursor.fetchall()]
    if not ids:
        return []
    # Then lock them by primary key (forced: the optimizer likes the role index), in id
    # order, and read them again as they are now. Locks on the role index would deadlock
    # with the role update itself. One promoted meanwhile is missed: that errs toward a 409.
    placeholders = ", ".join(["%s"] * len(ids))
    cursor.execute(
        f"SELECT id FROM users FORCE INDEX (PRIMARY) WHERE id IN ({placeholders})"  # noqa: S608
        " AND role = 'admin' AND disabled = FALSE ORDER BY id FOR UPDATE",
        ids,
    )
    return [row["id"] for row in cursor.fetchall()]


def is_last_admin(cursor, user):
    """Whether taking `user` (a row read under lock_enabled_admins, in the same
    transaction) out of the enabled admins would leave none."""
    admins = lock_enabled_admins(cursor)  # already held: this only reads them again
    return user["role"] == "admin" and not user["disabled"] and admins == [user["id"]]


def refuse_last_admin(cursor, user):
    """Raise LastAdmin if taking `user` out of the enabled admins would leave none (for
    the API and the CLI alike; the CLI has no g.user)."""
    if is_last_admin(cursor, user):
        actor = g.user["username"] if "user" in g else None
        audit("last_admin_refused", actor, user=user["username"])
        raise LastAdmin()


def delete_account(cursor, user):
    """The user, their sessions, tokens, recovery codes (ON DELETE CASCADE) and lockout rows;
    products stay. Returns the ids of the sessions that ended, for the audit log."""
    ended = end_user_sessions(cursor, user["id"])
    cursor.execute("DELETE FROM users WHERE id = %s", (user["id"],))
    unlock(cursor, user["username"])
    return ended


def second_factor(data):
    """('otp' or 'recovery_code', the code): exactly one must be given."""
    if ("otp" in data) == ("recovery_code" in data):
        raise ValidationError("Give exactly one of 'otp' and 'recovery_code'.")
    field = "otp" if "otp" in data else "recovery_code"
    return field, require_text(data, field)


class WrongFactor(Exception):
    """The one-time or recovery code was wrong (raised inside the transaction, answered after
    it, so the refusal is logged and counted once and not rolled back)."""


def reauthenticated(data, password_field, change, may_remove_admin=False):
    """Run change(cursor) in a transaction in which the token holder has just proven both
    factors again: the password in `password_field`, and a one-time code or recovery code,
    which is consumed if the change commits (ASVS 5.0 V7.5.1); return what change returned.
    A stolen token alone changes nothing. Failures count toward the lockout like failed
    logins and raise Forbidden (or the lockout's refusal while locked). g.user is read
    again under lock; with may_remove_admin the admins' locks are taken first (see
    lock_enabled_admins). change may run more than once (see database.in_transaction)."""
    password = require_text(data, password_field)
    field, code = second_factor(data)
    username = g.user["username"]
    lockout = claim_attempt(username)
    if not check_password(password, g.user["password"]):
        refuse("reauthentication_failed", username, lockout, reason="bad_password")
        raise Forbidden(REAUTHENTICATION_FAILED)

    def verify_then_change(cursor):
        if may_remove_admin:
            lock_enabled_admins(cursor)
        user = lock_token_holder(cursor)
        if user is None:
            raise invalid_token("revoked", username)
        used = use_otp if field == "otp" else use_recovery_code
        if not used(cursor, user["id"], code):
            raise WrongFactor
        g.user = user
        return change(cursor)

    wrong_factor = False
    try:
        result = in_transaction(verify_then_change)
        audit("reauthenticated", username, method=field)
        return result
    except WrongFactor:
        wrong_factor = True
        # After the rollback: inside the transaction, the hard lock it may set would be
        # rolled back with it.
        refuse("reauthentication_failed", username, lockout, reason=f"bad_{field}")
        raise Forbidden(REAUTHENTICATION_FAILED) from None
    finally:
        if not wrong_factor:
            # The password was right: give the attempt back, even if the token was revoked
            # meanwhile or the change itself was refused.
            give_back_attempt(username)

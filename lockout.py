"""Per-account lockout after failed password or code attempts, shared by every worker and
instance through the login_failures table. Routes call claim_attempt before checking a
secret, then give_back_attempt on success or refuse on failure."""

import math

from flask import current_app

from audit import audit
from config import now
from db import execute, transaction
from errors import error_response
from validation import USERNAME_PATTERN


def claim_attempt(username):
    """Count a password or code attempt as failed before checking it (a success gives it
    back), so that concurrent guesses cannot all slip in before the lockout starts.

    Returns (refusal, lockout): a 429 to send now, or else the lockout in seconds that
    this attempt starts if it fails (0 for none)."""
    if not USERNAME_PATTERN.fullmatch(username):
        return None, 0  # no such account can exist, and nothing is stored for it
    config = current_app.config
    with transaction() as cursor:
        cursor.execute(
            "INSERT INTO login_failures (username, failures) VALUES (%s, 0)"
            " ON DUPLICATE KEY UPDATE username = username",
            (username,),
        )
        # Concurrent attempts on one account take turns on this row lock.
        cursor.execute(
            "SELECT failures, locked_until FROM login_failures WHERE username = %s FOR UPDATE",
            (username,),
        )
        row = cursor.fetchone()
        retry_after = math.ceil(row["locked_until"] - now()) if row["locked_until"] else 0
        if retry_after <= 0:
            failures = row["failures"] + 1
            lockout = 0
            if failures >= config["LOGIN_MAX_FAILURES"]:
                doublings = min(failures - config["LOGIN_MAX_FAILURES"], 32)
                lockout = min(
                    config["LOGIN_LOCKOUT_SECONDS"] * 2**doublings,
                    config["LOGIN_LOCKOUT_MAX_SECONDS"],
                )
            cursor.execute(
                "UPDATE login_failures SET failures = %s, locked_until = %s WHERE username = %s",
                (failures, now() + lockout if lockout else None, username),
            )
    if retry_after > 0:
        audit("login_locked", username, retry_after=retry_after)
        return error_response(
            429,
            f"Too many failed attempts for this account; try again in {retry_after} seconds.",
            {"Retry-After": str(retry_after)},
        ), 0
    return None, lockout


def give_back_attempt(username):
    """The password was right (QR code, password confirmation): uncount the attempt."""
    execute(
        "UPDATE login_failures SET locked_until = IF(failures - 1 < %s, NULL, locked_until),"
        " failures = GREATEST(failures, 1) - 1 WHERE username = %s",
        (current_app.config["LOGIN_MAX_FAILURES"], username),
    )


def refuse(event, username, lockout, **details):
    """Log a failed attempt (already counted by claim_attempt) and the lockout it starts."""
    # A name no account can have is not logged: it could be a megabyte of anything.
    audit(event, username if USERNAME_PATTERN.fullmatch(username) else None, **details)
    if lockout:
        audit("lockout", username, seconds=lockout)


def clear_failures(cursor, username):
    """A successful login forgives the account's earlier failures (in the login's
    transaction, so a failed commit forgives nothing)."""
    cursor.execute("DELETE FROM login_failures WHERE username = %s", (username,))

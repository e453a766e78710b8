"""Lockout after failed password or code attempts, shared by every worker and instance
through the database, in two tiers: per account and client (a doubling lockout that only
that client feels) and per account (a hard lock after LOGIN_HARD_LOCK_FAILURES consecutive
failures, until an admin unlocks it). Routes call claim_attempt before checking a secret,
then give_back_attempt on a right one, clear_failures on a login, or refuse. Rows that no
attempt has touched for LOGIN_FAILURES_TTL_SECONDS are purged (purge_stale_rows)."""

import hashlib
import hmac
import ipaddress
import itertools
import logging
import math

from flask import current_app, request

from config import now
from secureapi.core import metrics
from secureapi.core.refusals import AccountLocked, ClientLockedOut
from secureapi.core.validation import USERNAME_PATTERN
from secureapi.data.database import execute, in_transaction, query
from secureapi.security.audit import audit

# Every PURGE_EVERY-th attempt a process counts also trims up to PURGE_BATCH stale rows of
# each table, so a flood of made-up usernames cannot grow them without bound even where no
# cron job runs `flask purge`: a flood adds at most two rows per attempt, and is trimmed
# much faster than that.
PURGE_EVERY = 100
PURGE_BATCH = 1000
attempts_counted = itertools.count(1)


def lockout_account(username, user):
    """What failures are counted under: the user's own name, or, for a name no user has, a
    keyed hash (never the typed text, which may be a password typed in the wrong field);
    None for text no username can be."""
    if user is not None:
        return user["username"]
    if not USERNAME_PATTERN.fullmatch(username):
        return None
    key = current_app.config["SECRET_KEY"].encode()
    return "~" + hmac.new(key, username.lower().encode(), hashlib.sha256).hexdigest()[:40]


def client_key():
    """The client's address; for IPv6 its /64, which one subscriber usually holds whole."""
    try:
        address = ipaddress.ip_address(request.remote_addr or "0.0.0.0")  # noqa: S104
    except ValueError:
        # Behind PROXY_FIX_X_FOR the address is what X-Forwarded-For said, which may be
        # any text: such clients share one bucket rather than getting a 500.
        return "unparsable"
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def claim_attempt(account):
    """Count a password or code attempt as failed before checking it (a success gives it
    back), so that concurrent guesses cannot all slip in before the lockout starts.

    Returns the lockout in seconds that this attempt starts for this client if it fails
    (0 for none); raises AccountLocked (403) or ClientLockedOut (429) to refuse it now."""
    if account is None:
        return 0  # no such account can exist, and nothing is stored for it
    config = current_app.config
    client = client_key()

    def count_attempt(cursor):
        # Concurrent attempts on one account take turns on its row lock.
        cursor.execute(
            "INSERT INTO login_failures (username, failures, updated_at) VALUES (%s, 0, %s)"
            " ON DUPLICATE KEY UPDATE updated_at = VALUES(updated_at)",
            (account, now()),
        )
        cursor.execute(
            "SELECT failures, locked FROM login_failures WHERE username = %s FOR UPDATE",
            (account,),
        )
        account_row = cursor.fetchone()
        cursor.execute(
            "SELECT failures, locked_until FROM client_failures WHERE account = %s AND client = %s",
            (account, client),
        )
        client_row = cursor.fetchone() or {"failures": 0, "locked_until": None}
        locked_until = client_row["locked_until"]
        retry_after = math.ceil(locked_until - now()) if locked_until else 0
        lockout = 0
        if not account_row["locked"] and retry_after <= 0:
            failures = client_row["failures"] + 1
            if failures >= config["LOGIN_MAX_FAILURES"]:
                doublings = min(failures - config["LOGIN_MAX_FAILURES"], 32)
                lockout = min(
                    config["LOGIN_LOCKOUT_SECONDS"] * 2**doublings,
                    config["LOGIN_LOCKOUT_MAX_SECONDS"],
                )
            cursor.execute(
                "INSERT INTO client_failures (account, client, failures, locked_until, updated_at)"
                " VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE failures = VALUES(failures),"
                " locked_until = VALUES(locked_until), updated_at = VALUES(updated_at)",
                (account, client, failures, now() + lockout if lockout else None, now()),
            )
            cursor.execute(
                "UPDATE login_failures SET failures = failures + 1 WHERE username = %s",
                (account,),
            )
        return account_row, retry_after, lockout

    # Racing attempts through other Galera nodes fail at commit (1213) and are counted again.
    account_row, retry_after, lockout = in_transaction(count_attempt)
    if next(attempts_counted) % PURGE_EVERY == 0:
        purge_stale_rows(PURGE_BATCH)
    # Attempts still being checked count already: at the limit, wait for them.
    if account_row["locked"] or account_row["failures"] >= config["LOGIN_HARD_LOCK_FAILURES"]:
        audit("login_locked", account, hard=True)
        raise AccountLocked()
    if retry_after > 0:
        audit("login_locked", account, retry_after=retry_after)
        raise ClientLockedOut(retry_after)
    return lockout


def give_back_attempt(account):
    """The password was right (QR code, re-authentication): uncount the attempt."""
    execute(
        "UPDATE client_failures SET locked_until = IF(failures - 1 < %s, NULL, locked_until),"
        " failures = GREATEST(failures, 1) - 1 WHERE account = %s AND client = %s",
        (current_app.config["LOGIN_MAX_FAILURES"], account, client_key()),
    )
    execute(
        "UPDATE login_failures SET failures = GREATEST(failures, 1) - 1"
        " WHERE username = %s AND NOT locked",
        (account,),
    )


def refuse(event, account, lockout, **details):
    """Log a failed attempt (already counted by claim_attempt) and the lockout it starts."""
    audit(event, account, **details)
    if lockout:
        audit("lockout", account, seconds=lockout)
        metrics.LOCKOUTS.labels("client").inc()
    if account is not None and execute(
        "UPDATE login_failures SET locked = TRUE"
        " WHERE username = %s AND failures >= %s AND NOT locked",
        (account, current_app.config["LOGIN_HARD_LOCK_FAILURES"]),
    ):
        # NIST SP 800-63B 5.2.2: at most 100 consecutive failures, then an admin decides.
        audit("account_locked", account, level=logging.WARNING)
        metrics.LOCKOUTS.labels("account").inc()


def clear_failures(cursor, username):
    """A successful login forgives this client's failures and ends the account's run of
    consecutive ones (in the login's transaction, so a failed commit forgives nothing)."""
    # login_failures first, as claim_attempt does: one lock order, no deadlocks.
    cursor.execute("DELETE FROM login_failures WHERE username = %s AND NOT locked", (username,))
    cursor.execute(
        "DELETE FROM client_failures WHERE account = %s AND client = %s",
        (username, client_key()),
    )


def unlock(cursor, username):
    """An admin ends a hard lock (and every client's lockout) of the account."""
    cursor.execute("DELETE FROM login_failures WHERE username = %s", (username,))
    cursor.execute("DELETE FROM client_failures WHERE account = %s", (username,))


def purge_stale_rows(batch=None):
    """Delete the lockout rows that no attempt has touched for LOGIN_FAILURES_TTL_SECONDS
    and that hold nothing back: of login_failures, unlocked rows of names no user has
    (the keyed hashes a flood of made-up names leaves) or with no failures left; a real
    account's run of failures stays, since the hard lock counts consecutive failures (it
    is bounded by the number of users). Of client_failures, rows whose lockout is over.
    Up to `batch` rows of each table (None: all); returns the numbers deleted.

    The keys are read first, then deleted by key with the test repeated: the DELETE
    locks only rows that are stale, never a range that a login is writing into."""
    stale_before = now() - current_app.config["LOGIN_FAILURES_TTL_SECONDS"]
    account_rule = "updated_at < %s AND NOT locked AND (failures = 0 OR username LIKE %s)"
    client_rule = "updated_at < %s AND (locked_until IS NULL OR locked_until <= %s)"
    account_args = (stale_before, "~%")
    client_args = (stale_before, now())
    removed = {"login_failures": 0, "client_failures": 0}
    size = batch or PURGE_BATCH
    while True:
        names = [
            row["username"]
            for row in query(
                f"SELECT username FROM login_failures WHERE {account_rule} LIMIT %s",  # noqa: S608
                (*account_args, size),
            )
        ]
        clients = [
            (row["account"], row["client"])
            for row in query(
                f"SELECT account, client FROM client_failures WHERE {client_rule} LIMIT %s",  # noqa: S608
                (*client_args, size),
            )
        ]
        if names:
            removed["login_failures"] += execute(
                f"DELETE FROM login_failures WHERE username IN ({placeholders(len(names))})"  # noqa: S608
                f" AND {account_rule}",
                (*names, *account_args),
            )
        if clients:
            removed["client_failures"] += execute(
                "DELETE FROM client_failures WHERE (account, client) IN"  # noqa: S608
                f" ({placeholders(len(clients), '(%s, %s)')}) AND {client_rule}",
                (*itertools.chain.from_iterable(clients), *client_args),
            )
        if batch or (len(names) < size and len(clients) < size):
            return removed


def placeholders(count, one="%s"):
    return ", ".join([one] * count)

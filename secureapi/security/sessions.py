"""Sessions (OWASP ASVS 5.0 V7): one per login, so a user may be logged in on a laptop, a
phone and Postman at once, list them and end each. A session has refresh tokens: opaque,
stored as keyed digests, rotated on every use; a spent one presented again is theft (RFC
9700 section 4.14.2) and ends its whole session. A session ends unused after
SESSION_IDLE_SECONDS and in any case SESSION_MAX_SECONDS after its login. Ending a session
deletes its row, which the token check reads on every request: its access tokens stop at
once, on every instance.

Functions that take a cursor work inside the caller's transaction (which may run twice:
database work only); the caller writes the audit lines after it commits."""

import ipaddress
import re
import secrets
from datetime import UTC, timedelta

from flask import current_app, request

from config import now
from secureapi.core.keys import keyed_digest
from secureapi.data.database import execute, in_transaction, query, utc_datetime, utc_iso
from secureapi.security.audit import audit

REFRESH_TOKEN_PREFIX = "sapi_rt_"  # noqa: S105 (a prefix, recognisable in a leak or a scanner)
REFRESH_TOKEN = re.compile(r"sapi_rt_[A-Za-z0-9_-]{43}")  # 256 random bits
DIGEST_PURPOSE = b"SecureAPI refresh token v1"
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # 128 random bits
# last_used_at is written by reads at most this often per session: a write per request
# would double the cost of the hottest path for a figure nobody needs to the second.
LAST_USED_EVERY_SECONDS = 60
USER_AGENT_CHARACTERS = 255
SESSION_COLUMNS = "id, created_at, last_used_at, client, user_agent"


def seconds():
    """The app clock in whole seconds, as the DATETIME columns hold it."""
    return int(now())


def refresh_digest(token):
    """What is stored of a refresh token: a leaked digest is no token."""
    return keyed_digest(current_app.config["SECRET_KEY"], DIGEST_PURPOSE, token)


def new_refresh_token(cursor, session_id, at):
    token = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
    cursor.execute(
        "INSERT INTO refresh_tokens (digest, session_id, created_at) VALUES (%s, %s, %s)",
        (refresh_digest(token), session_id, at),
    )
    return token


def client_address():
    """The client's address, if it is one (behind PROXY_FIX_X_FOR it is what a header said)."""
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return None
    # Without an IPv6 zone ("%eth0"): any text, meaningless for a remote client.
    return str(address).partition("%")[0]


def user_agent():
    value = request.headers.get("User-Agent", "")
    return value[:USER_AGENT_CHARACTERS] or None


def start_session(cursor, user_id):
    """A new session for the user, in the login's transaction: its id, first refresh
    token, created_at, and the ids of the sessions it ended (the user's least recently used
    past SESSIONS_PER_USER)."""
    session_id = secrets.token_urlsafe(16)
    at = utc_datetime(seconds())
    cursor.execute(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, client, user_agent)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (session_id, user_id, at, at, client_address(), user_agent()),
    )
    token = new_refresh_token(cursor, session_id, at)
    cursor.execute(
        "SELECT id FROM sessions WHERE user_id = %s"
        " ORDER BY last_used_at DESC, created_at DESC, id LIMIT 1000000 OFFSET %s",
        (user_id, current_app.config["SESSIONS_PER_USER"]),
    )
    ended = [row["id"] for row in cursor.fetchall() if row["id"] != session_id]
    end_sessions(cursor, ended)
    return {"id": session_id, "refresh_token": token, "created_at": at, "ended": ended}


def end_sessions(cursor, session_ids):
    """End these sessions (their refresh tokens go with them: ON DELETE CASCADE)."""
    if session_ids:
        cursor.execute("DELETE FROM sessions WHERE id IN %s", (tuple(session_ids),))


def end_user_sessions(cursor, user_id, keep=None):
    """End every session of the user but `keep`; the ids ended."""
    cursor.execute(
        "SELECT id FROM sessions WHERE user_id = %s AND id <> %s FOR UPDATE",
        (user_id, keep or ""),
    )
    ended = [row["id"] for row in cursor.fetchall()]
    end_sessions(cursor, ended)
    return ended


def expires_at(created_at):
    """When a session ends in any case (Unix time; created_at is a UTC DATETIME)."""
    started = created_at.replace(tzinfo=UTC).timestamp()
    return started + current_app.config["SESSION_MAX_SECONDS"]


def refresh_lifetime(created_at):
    """Seconds a refresh token given now stays usable if the session is not used meanwhile."""
    config = current_app.config
    return max(0, int(min(config["SESSION_IDLE_SECONDS"], expires_at(created_at) - seconds())))


def rotate(token):
    """Spend a refresh token and give its session a new one, in one transaction.

    Returns (None, session, new token) on success, or (why, session or None, None) when
    the token is refused: why is "unknown", "reused" (the session ended: RFC 9700
    4.14.2), "idle", "expired" (absolute age) or "disabled" (the session ended too).
    Racing refreshes with one token take turns on its row lock, and only the first matches
    (on a Galera cluster, the loser fails at commit, and its rerun finds the token spent):
    exactly one succeeds. Five round trips, BEGIN and COMMIT included."""
    if not REFRESH_TOKEN.fullmatch(token):
        return "unknown", None, None
    digest = refresh_digest(token)
    config = current_app.config

    def spend(cursor):
        at = utc_datetime(seconds())
        # One statement checks and writes: the token unspent, the session neither idle
        # nor past its age; both rows matched means this refresh may go on.
        spent = cursor.execute(
            "UPDATE refresh_tokens JOIN sessions ON sessions.id = refresh_tokens.session_id"
            " SET refresh_tokens.spent_at = %s, sessions.last_used_at = %s"
            " WHERE refresh_tokens.digest = %s AND refresh_tokens.spent_at IS NULL"
            " AND sessions.last_used_at > %s AND sessions.created_at > %s",
            (
                at,
                at,
                digest,
                at - timedelta(seconds=config["SESSION_IDLE_SECONDS"]),
                at - timedelta(seconds=config["SESSION_MAX_SECONDS"]),
            ),
        )
        # A locking read: the rows as they are now, not as an older snapshot had them.
        cursor.execute(
            "SELECT refresh_tokens.spent_at, sessions.id, sessions.user_id,"
            " sessions.created_at, sessions.last_used_at, users.username, users.disabled"
            " FROM refresh_tokens JOIN sessions ON sessions.id = refresh_tokens.session_id"
            " JOIN users ON users.id = sessions.user_id"
            " WHERE refresh_tokens.digest = %s LOCK IN SHARE MODE",
            (digest,),
        )
        session = cursor.fetchone()
        if session is None:
            return "unknown", None, None
        if spent and not session["disabled"]:
            return None, session, new_refresh_token(cursor, session["id"], at)
        if session["disabled"]:
            why = "disabled"
        elif session["spent_at"] is not None and not spent:
            why = "reused"
        elif at - session["last_used_at"] >= timedelta(seconds=config["SESSION_IDLE_SECONDS"]):
            why = "idle"
        else:
            why = "expired"
        end_sessions(cursor, [session["id"]])
        return why, session, None

    return in_transaction(spend)


def touch(session_id, last_used_at):
    """Record a use of the session, at most once per LAST_USED_EVERY_SECONDS."""
    at = utc_datetime(seconds())
    if at - last_used_at >= timedelta(seconds=LAST_USED_EVERY_SECONDS):
        execute(
            "UPDATE sessions SET last_used_at = %s WHERE id = %s AND last_used_at < %s",
            (at, session_id, at),
        )


def purge_dead_sessions():
    """Delete the sessions that went idle or past their age (with their refresh tokens);
    how many went. A refresh would refuse them anyway; this keeps the tables small."""
    condition, args = live(utc_datetime(seconds()))
    return execute(f"DELETE FROM sessions WHERE NOT ({condition})", args)  # noqa: S608


def audit_ended(username, session_ids, why):
    for session_id in session_ids:
        audit("session_ended", username, session_id=session_id, why=why)


def live(at):
    """The SQL condition (and its arguments) of a session neither idle nor past its age."""
    config = current_app.config
    return " last_used_at > %s AND created_at > %s", (
        at - timedelta(seconds=config["SESSION_IDLE_SECONDS"]),
        at - timedelta(seconds=config["SESSION_MAX_SECONDS"]),
    )


def user_sessions(user_id, current=None):
    """The user's sessions that can still be used, as the API shows them, newest first."""
    condition, args = live(utc_datetime(seconds()))
    rows = query(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = %s AND {condition}"  # noqa: S608
        " ORDER BY created_at DESC, id",
        (user_id, *args),
    )
    return [
        {
            "id": row["id"],
            "created_at": utc_iso(row["created_at"]),
            "last_used_at": utc_iso(row["last_used_at"]),
            "client": row["client"],
            "user_agent": row["user_agent"],
            "current": row["id"] == current,
        }
        for row in rows
    ]

"""Personal access tokens (PATs), for scripts and CI: a credential that works on the product
routes only, with the scopes it was given (products:read; products:write, which implies
read), until it expires or its owner revokes it. Never wider than its owner: the owner's role
and state are read with the token on every request, so a demotion or a disabled account
applies at once. A token is `sapi_pat_`, its id and 256 random bits; only an HMAC digest of
it is stored, and it is shown once, when it is created. A password change or a 2FA reset
does not end PATs (scripts keep working; the owner ends them here)."""

import hmac
import re
import secrets
from datetime import timedelta

from flask import current_app

from config import now
from secureapi.core.keys import keyed_digest
from secureapi.core.refusals import Conflict, ValidationError
from secureapi.core.validation import has_control_characters, require_text
from secureapi.data.database import execute, query, utc_datetime, utc_iso
from secureapi.security.audit import audit

PREFIX = "sapi_pat_"  # noqa: S105 (a prefix, recognisable in a leak or a scanner)
TOKEN = re.compile(r"sapi_pat_([A-Za-z0-9_-]{16})[A-Za-z0-9_-]{43}")
DIGEST_PURPOSE = b"SecureAPI personal access token v1"
TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{16}")
READ, WRITE = "products:read", "products:write"
SCOPES = (READ, WRITE)
IMPLIED = {READ: {READ}, WRITE: {READ, WRITE}}
NAME_CHARACTERS = 100
DAYS = range(1, 366)
DEFAULT_DAYS = 90
LAST_USED_EVERY_SECONDS = 60
PURGE_AFTER_DAYS = 30
COLUMNS = "id, name, scopes, created_at, expires_at, last_used_at"


def token_digest(token):
    """What is stored of a token: a leaked digest is no token."""
    return keyed_digest(current_app.config["SECRET_KEY"], DIGEST_PURPOSE, token)


def validate_new_token(data):
    """(name, scopes, expires_in_days) of a POST /me/tokens body."""
    name = require_text(data, "name")
    if not 1 <= len(name) <= NAME_CHARACTERS or not name.strip():
        raise ValidationError(f"'name' must be 1 to {NAME_CHARACTERS} characters, not blank.")
    if has_control_characters(name):
        raise ValidationError("'name' must not contain control characters.")
    scopes = data.get("scopes")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise ValidationError(f"'scopes' must be a non-empty list of: {', '.join(SCOPES)}.")
    unknown = sorted({scope for scope in scopes if scope not in SCOPES})
    if unknown:
        names = ", ".join(repr(scope[:40]) for scope in unknown[:5])
        raise ValidationError(f"Unknown scope(s): {names}. Known: {', '.join(SCOPES)}.")
    days = data.get("expires_in_days", DEFAULT_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or days not in DAYS:
        raise ValidationError("'expires_in_days' must be a whole number from 1 to 365.")
    return name, tuple(scope for scope in SCOPES if scope in scopes), days


def create_token(cursor, user_id, name, scopes, days):
    """A new token of the user, in the caller's transaction, which holds the user's row lock
    (accounts.reauthenticated): so the cap and the name check cannot race another create."""
    config = current_app.config
    at = utc_datetime(int(now()))
    # Names compare as the unique key does (the column's collation: case, accents and
    # trailing spaces aside), so the database says whether one is taken.
    cursor.execute(
        "SELECT name = %s AS same, expires_at FROM personal_access_tokens WHERE user_id = %s",
        (name, user_id),
    )
    mine = cursor.fetchall()
    if any(row["same"] for row in mine):
        raise Conflict("You already have a token of that name; choose another.")
    if sum(row["expires_at"] > at for row in mine) >= config["TOKENS_PER_USER"]:
        raise Conflict(
            f"You have {config['TOKENS_PER_USER']} live tokens, the most allowed: revoke one first."
        )
    token_id = secrets.token_urlsafe(12)
    token = PREFIX + token_id + secrets.token_urlsafe(32)
    expires = at + timedelta(days=days)
    cursor.execute(
        "INSERT INTO personal_access_tokens"
        " (id, user_id, name, scopes, digest, created_at, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (token_id, user_id, name, " ".join(scopes), token_digest(token), at, expires),
    )
    row = {"id": token_id, "name": name, "scopes": " ".join(scopes), "created_at": at}
    return token_json(row | {"expires_at": expires, "last_used_at": None}) | {"token": token}


def token_json(row):
    return {
        "id": row["id"],
        "name": row["name"],
        "scopes": row["scopes"].split(),
        "created_at": utc_iso(row["created_at"]),
        "expires_at": utc_iso(row["expires_at"]),
        "last_used_at": utc_iso(row["last_used_at"]),
        "prefix": PREFIX + row["id"][:4],
    }


def user_tokens(user_id):
    rows = query(
        f"SELECT {COLUMNS} FROM personal_access_tokens WHERE user_id = %s"  # noqa: S608
        " ORDER BY created_at DESC, id",
        (user_id,),
    )
    return [token_json(row) for row in rows]


def revoke_token(user_id, token_id):
    """Whether the user had that token (now gone)."""
    return bool(TOKEN_ID.fullmatch(token_id)) and bool(
        execute(
            "DELETE FROM personal_access_tokens WHERE id = %s AND user_id = %s",
            (token_id, user_id),
        )
    )


def holder(token, holder_columns):
    """The token's owner (users row, as the session check gives it) with the token's
    `scopes` (a frozenset, implied ones included) and `token_id`; or (None, why)."""
    match = TOKEN.fullmatch(token)
    if not match:
        return None, "malformed"
    rows = query(
        f"SELECT {holder_columns}, personal_access_tokens.id AS token_id,"  # noqa: S608
        " personal_access_tokens.scopes, personal_access_tokens.digest,"
        " personal_access_tokens.expires_at, personal_access_tokens.last_used_at"
        " FROM personal_access_tokens JOIN users ON users.id = personal_access_tokens.user_id"
        " WHERE personal_access_tokens.id = %s",
        (match.group(1),),
    )
    # Constant time: the digest of a guess tells nothing of the stored one.
    if not rows or not hmac.compare_digest(rows[0].pop("digest"), token_digest(token)):
        return None, "unknown"
    user = rows[0]
    at = utc_datetime(int(now()))
    if user.pop("expires_at") <= at:
        return None, "expired"
    user["scopes"] = frozenset().union(*(IMPLIED[scope] for scope in user["scopes"].split()))
    user["session_id"] = None
    return user, None


def record_use(user):
    """The owner's request with the token passed every check: note the use (the first in
    the audit log; last_used_at at most once a minute)."""
    at = utc_datetime(int(now()))
    last_used = user["last_used_at"]
    if last_used is None:
        audit("token_first_used", user["username"], token_id=user["token_id"])
    if last_used is None or at - last_used >= timedelta(seconds=LAST_USED_EVERY_SECONDS):
        execute(
            "UPDATE personal_access_tokens SET last_used_at = %s WHERE id = %s",
            (at, user["token_id"]),
        )


def purge_expired_tokens():
    """Delete tokens expired more than PURGE_AFTER_DAYS ago; how many went."""
    cutoff = utc_datetime(int(now())) - timedelta(days=PURGE_AFTER_DAYS)
    return execute("DELETE FROM personal_access_tokens WHERE expires_at < %s", (cutoff,))

"""Access tokens and roles: issuing JWTs, and token_required, the one reader of the
Authorization header, which lets a view run only for the holder of a token of a session that
has not ended (g.user) whose role allows it."""

import functools
import hmac
import re
import secrets

import jwt
from flask import current_app, g, request
from flask.sessions import SessionInterface

from config import now
from secureapi.core.refusals import (
    InsufficientRole,
    InsufficientScope,
    InvalidToken,
    MissingToken,
)
from secureapi.data.database import query
from secureapi.security import access_tokens
from secureapi.security.audit import audit, audit_once_a_minute
from secureapi.security.lockout import client_key
from secureapi.security.sessions import SESSION_ID, touch

# Each role may do what the ones before it may.
ROLES = ("viewer", "editor", "admin")
# The token holder as token_required gives it to a view (g.user).
HOLDER_COLUMNS_OF_USER = "users.id, users.username, users.password, users.role, users.disabled"
HOLDER_COLUMNS = f"{HOLDER_COLUMNS_OF_USER}, sessions.id AS session_id, sessions.last_used_at"


class NoCookieSessions(SessionInterface):
    """The API authenticates by bearer token only: no request opens, and no response sets,
    a signed-cookie session (Flask's default would do both, with the JWT key, on every
    request). flask.session is then a null session that refuses writes."""

    def open_session(self, app, request):
        return None

    def save_session(self, app, session, response):
        pass


def issue_token(user_id, session_id, session_ends):
    """(an access token of the session, its lifetime in seconds): JWT_EXPIRES_SECONDS, but
    never past the session's absolute end (Unix time `session_ends`)."""
    issued_at = int(now())  # the app's clock, which tests move instead of sleeping
    config = current_app.config
    expires = min(issued_at + config["JWT_EXPIRES_SECONDS"], int(session_ends))
    claims = {
        "iss": config["JWT_ISSUER"],
        "aud": config["JWT_AUDIENCE"],
        "sub": str(user_id),
        "sid": session_id,
        "iat": issued_at,
        "exp": expires,
        "jti": secrets.token_urlsafe(16),
    }
    # RFC 9068: typ at+jwt tells this access token apart from any other JWT the key signs.
    token = jwt.encode(claims, config["SECRET_KEY"], algorithm="HS256", headers={"typ": "at+jwt"})
    return token, expires - issued_at


def invalid_token(reason, username=None):
    """The refusal to raise for a token that does not (or no longer) let its holder in: one
    audit line per client, reason and user a minute (with a count of the rest)."""
    key = ("token_refused", client_key(), reason, username)
    audit_once_a_minute(key, "token_refused", username, reason=reason)
    return InvalidToken()


def token_required(role, scope=None):
    """Let the view run only for the holder of a valid token of a session that has not
    ended (g.user, with its session_id), if the account is enabled and its role is `role`
    or above. Session, role and disabled come from the one row the token check reads, so a
    change takes effect on the next request. A personal access token is let in only where
    the route names a `scope` that the token has (and the owner's role allows)."""
    needed = ROLES.index(role)

    def decorator(view):
        @functools.wraps(view)
        def wrapped(**kwargs):
            user = token_holder()
            if user["session_id"] is None and scope not in user["scopes"]:
                audit("forbidden", user["username"], needed=scope, token_id=user["token_id"])
                raise InsufficientScope()
            if ROLES.index(user["role"]) < needed:
                audit("forbidden", user["username"], needed=role, role=user["role"])
                raise InsufficientRole(role, user["role"])
            if user["session_id"] is None:
                access_tokens.record_use(user)
            g.user = user
            return view(**kwargs)

        return wrapped

    return decorator


def token_holder():
    """The token holder's users row and session; else raises the 401."""
    header = request.headers.get("Authorization")
    if not header:
        key = ("token_refused", client_key(), "missing")
        audit_once_a_minute(key, "token_refused", None, reason="missing")
        raise MissingToken()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise invalid_token("malformed")
    if token.startswith(access_tokens.PREFIX):
        user, why = access_tokens.holder(token, HOLDER_COLUMNS_OF_USER)
        if user is None:
            raise invalid_token(f"pat_{why}")
        if user["disabled"]:
            raise invalid_token("disabled", user["username"])
        return user
    config = current_app.config
    try:
        subject, session_id = verified_token(
            token, config["SECRET_KEY"], config["JWT_ISSUER"], config["JWT_AUDIENCE"]
        )
    except jwt.ExpiredSignatureError:
        raise invalid_token("expired") from None
    except jwt.InvalidTokenError:
        raise invalid_token("invalid") from None
    # One round trip by primary keys: the session (gone once ended) and its user.
    rows = query(
        f"SELECT {HOLDER_COLUMNS} FROM sessions JOIN users ON users.id = sessions.user_id"  # noqa: S608
        " WHERE sessions.id = %s AND sessions.user_id = %s",
        (session_id, subject),
    )
    if not rows:  # the session ended: say whose it was (only this refusal pays for it)
        holders = query("SELECT username FROM users WHERE id = %s", (subject,))
        raise invalid_token("revoked", holders[0]["username"] if holders else None)
    user = rows[0]
    if user["disabled"]:
        raise invalid_token("disabled", user["username"])
    touch(session_id, user.pop("last_used_at"))
    return user


def verified_token(token, key, issuer, audience):
    """The subject and session of a token this API issued, signed with `key`, unexpired;
    else jwt.InvalidTokenError. Its times are checked on every call, the rest once per
    token."""
    subject, session_id, expires, issued, not_before = checked_token(token, key, issuer, audience)
    current = now()
    if expires <= current:
        raise jwt.ExpiredSignatureError("Signature has expired")
    if issued > current or not_before > current:
        raise jwt.ImmatureSignatureError("The token is not yet valid")
    return subject, session_id


# A client sends the same token with every request: its signature, claims and digest are
# checked and worked out once (a seventh of a product read's worker CPU), not each time.
# Only tokens that pass every check are kept (a refusal raises, and lru_cache keeps no
# exceptions), so the cache holds only tokens this API signed; key, issuer and audience
# are part of the cache key, so changing any of them starts afresh. Revocation is still
# read from the database on every request.
@functools.lru_cache(maxsize=4096)
def checked_token(token, key, issuer, audience):
    decoded = jwt.decode_complete(  # the header too, without parsing the token twice
        token,
        key,
        algorithms=["HS256"],  # pinned: no "none", no algorithm confusion
        issuer=issuer,
        audience=audience,
        # Its times are checked by verified_token against the app's clock (config.now), on
        # every request; here only that they are integers, as PyJWT would.
        options={
            "require": ["exp", "iat", "sub", "sid", "iss", "aud"],
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
        },
    )
    # The header is signed too, so after the signature check it can be trusted.
    if decoded["header"].get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("not an access token")
    payload = decoded["payload"]
    subject = payload["sub"]
    if not (isinstance(subject, str) and re.fullmatch(r"[0-9]{1,10}", subject)):
        raise jwt.InvalidTokenError("not a user id")
    # A token issued before sessions has no sid: refused (the upgrade logs everyone out).
    session_id = payload["sid"]
    if not (isinstance(session_id, str) and SESSION_ID.fullmatch(session_id)):
        raise jwt.InvalidTokenError("not a session id")
    # As PyJWT reads them; a tuple, which no caller can change in the cache.
    try:
        times = (int(payload["exp"]), int(payload["iat"]), int(payload.get("nbf", 0)))
    except (ValueError, TypeError, OverflowError):
        raise jwt.InvalidTokenError("exp, iat and nbf must be integers") from None
    return subject, session_id, *times


def refuse_personal_access_token():
    """A route no personal access token may use, whatever its scopes, that reads no
    Authorization header itself (POST /token/refresh): 403 for a PAT, nothing otherwise."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.startswith(access_tokens.PREFIX):
        audit("forbidden", None, needed="a session")
        raise InsufficientScope()


def bearer_token_matches(expected):
    """Whether the request carries `Authorization: Bearer <expected>`, compared in constant
    time: for a fixed operator's token (METRICS_TOKEN), not a user's JWT."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


def lock_token_holder(cursor):
    """Lock the user's row and the request's session for the rest of the transaction and
    return them as they are now, if the session has not ended (None if it has): a logout,
    demotion or disable may have happened while bcrypt was running."""
    cursor.execute(
        f"SELECT {HOLDER_COLUMNS} FROM users JOIN sessions ON sessions.user_id = users.id"  # noqa: S608
        " WHERE users.id = %s AND sessions.id = %s AND NOT users.disabled FOR UPDATE",
        (g.user["id"], g.user["session_id"]),
    )
    user = cursor.fetchone()
    if user:
        del user["last_used_at"]
    return user

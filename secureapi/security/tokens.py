"""Access tokens and roles: issuing JWTs, and token_required, the one reader of the
Authorization header, which lets a view run only for the holder of the user's current token
(g.user) whose role allows it."""

import functools
import hashlib
import hmac
import re
import secrets

import jwt
from flask import current_app, g, request
from flask.sessions import SessionInterface

from config import now
from secureapi.core.refusals import InsufficientRole, InvalidToken, MissingToken
from secureapi.data.database import query
from secureapi.security.audit import audit

# Each role may do what the ones before it may.
ROLES = ("viewer", "editor", "admin")


class NoCookieSessions(SessionInterface):
    """The API authenticates by bearer token only: no request opens, and no response sets,
    a signed-cookie session (Flask's default would do both, with the JWT key, on every
    request). flask.session is then a null session that refuses writes."""

    def open_session(self, app, request):
        return None

    def save_session(self, app, session, response):
        pass


def token_digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user_id):
    issued_at = int(now())  # the app's clock, which tests move instead of sleeping
    config = current_app.config
    claims = {
        "iss": config["JWT_ISSUER"],
        "aud": config["JWT_AUDIENCE"],
        "sub": str(user_id),
        "iat": issued_at,
        "exp": issued_at + config["JWT_EXPIRES_SECONDS"],
        "jti": secrets.token_urlsafe(16),
    }
    # RFC 9068: typ at+jwt tells this access token apart from any other JWT the key signs.
    return jwt.encode(claims, config["SECRET_KEY"], algorithm="HS256", headers={"typ": "at+jwt"})


def invalid_token(reason, username=None):
    """The refusal to raise for a token that does not (or no longer) let its holder in."""
    audit("token_refused", username, reason=reason)
    return InvalidToken()


def token_required(role):
    """Let the view run only for the holder of the user's current, valid token (g.user),
    if the account is enabled and its role is `role` or above. Role and disabled come from
    the row the token check reads anyway, so a change takes effect on the next request."""
    needed = ROLES.index(role)

    def decorator(view):
        @functools.wraps(view)
        def wrapped(**kwargs):
            user = token_holder()
            if ROLES.index(user["role"]) < needed:
                audit("forbidden", user["username"], needed=role, role=user["role"])
                raise InsufficientRole(role, user["role"])
            g.user = user
            return view(**kwargs)

        return wrapped

    return decorator


def token_holder():
    """The users row of the request's token holder; else raises the 401."""
    header = request.headers.get("Authorization")
    if not header:
        audit("token_refused", None, reason="missing")
        raise MissingToken()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise invalid_token("malformed")
    config = current_app.config
    try:
        subject, digest = verified_token(
            token, config["SECRET_KEY"], config["JWT_ISSUER"], config["JWT_AUDIENCE"]
        )
    except jwt.ExpiredSignatureError:
        raise invalid_token("expired") from None
    except jwt.InvalidTokenError:
        raise invalid_token("invalid") from None
    rows = query(
        "SELECT id, username, password, last_token, role, disabled FROM users WHERE id = %s",
        (subject,),
    )
    # Only the digest of the latest login's token is stored: logout, a new login and
    # a 2FA reset revoke every earlier token.
    if (
        not rows
        or not rows[0]["last_token"]
        or not hmac.compare_digest(rows[0]["last_token"], digest)
    ):
        raise invalid_token("revoked", rows[0]["username"] if rows else None)
    if rows[0]["disabled"]:
        raise invalid_token("disabled", rows[0]["username"])
    return rows[0]


def verified_token(token, key, issuer, audience):
    """The subject and digest of a token this API issued, signed with `key`, unexpired; else
    jwt.InvalidTokenError. Its times are checked on every call, the rest once per token."""
    subject, digest, expires, issued, not_before = checked_token(token, key, issuer, audience)
    current = now()
    if expires <= current:
        raise jwt.ExpiredSignatureError("Signature has expired")
    if issued > current or not_before > current:
        raise jwt.ImmatureSignatureError("The token is not yet valid")
    return subject, digest


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
            "require": ["exp", "iat", "sub", "iss", "aud"],
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
    # As PyJWT reads them; a tuple, which no caller can change in the cache.
    try:
        times = (int(payload["exp"]), int(payload["iat"]), int(payload.get("nbf", 0)))
    except (ValueError, TypeError, OverflowError):
        raise jwt.InvalidTokenError("exp, iat and nbf must be integers") from None
    return subject, token_digest(token), *times


def bearer_token_matches(expected):
    """Whether the request carries `Authorization: Bearer <expected>`, compared in constant
    time: for a fixed operator's token (METRICS_TOKEN), not a user's JWT."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


def lock_token_holder(cursor):
    """Lock the user's row for the rest of the transaction and return it as it is now, if
    the request's token is still the current one (None if not): a logout, login, demotion
    or disable may have happened while bcrypt was running."""
    cursor.execute(
        "SELECT id, username, password, last_token, role, disabled FROM users"
        " WHERE id = %s AND last_token = %s AND NOT disabled FOR UPDATE",
        (g.user["id"], g.user["last_token"]),
    )
    return cursor.fetchone()

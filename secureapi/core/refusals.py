"""The one way a rule says no: raise a Refused (or a subclass naming why), carrying the
status, the message for the client and any headers. secureapi/web/errors.py alone turns
it into a problem+json response; the CLI shows its message. Rules never build or inspect
responses, so the API and the CLI share every rule."""

BEARER_REALM = 'Bearer realm="SecureAPI"'


class Refused(Exception):
    status = 400

    def __init__(self, message, headers=None):
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class ValidationError(Refused):
    """Bad input from the client."""


class Unauthorized(Refused):
    status = 401


class InvalidToken(Unauthorized):
    def __init__(self, message="The access token is invalid, expired or revoked; log in again."):
        super().__init__(message, {"WWW-Authenticate": f'{BEARER_REALM}, error="invalid_token"'})


class MissingToken(Unauthorized):
    def __init__(self):
        super().__init__(
            "An access token is required (Authorization: Bearer <token>).",
            {"WWW-Authenticate": BEARER_REALM},
        )


class InvalidRefreshToken(Unauthorized):
    """Unknown, malformed, spent, expired or another session's: one answer for all."""

    def __init__(self):
        super().__init__("The refresh token is invalid, expired or revoked; log in again.")


class Forbidden(Refused):
    status = 403


class InsufficientRole(Forbidden):
    def __init__(self, needed, role):
        super().__init__(
            f"This needs the {needed} role or higher; this account is a {role}.",
            {"WWW-Authenticate": f'{BEARER_REALM}, error="insufficient_scope"'},
        )


class InsufficientScope(Forbidden):
    """A personal access token on a route its scopes do not cover (RFC 6750 section 3.1)."""

    def __init__(self):
        super().__init__(
            "A personal access token works on the product routes only: GET with"
            " products:read, writes with products:write. Use a session's token here.",
            {"WWW-Authenticate": f'{BEARER_REALM}, error="insufficient_scope"'},
        )


class AccountLocked(Forbidden):
    """The hard lock: locked for every client until an admin unlocks it."""

    def __init__(self):
        super().__init__(
            "This account is locked after too many failed attempts; an admin can unlock it."
        )


class NotFound(Refused):
    status = 404


class Conflict(Refused):
    status = 409


class LastAdmin(Conflict):
    def __init__(self):
        super().__init__("This is the last enabled admin: promote or enable another admin first.")


class PreconditionFailed(Refused):
    status = 412


class UnsupportedMediaType(Refused):
    status = 415


class UnprocessableContent(Refused):
    status = 422


class TooManyRequests(Refused):
    status = 429

    def __init__(self, message, retry_after):
        super().__init__(message, {"Retry-After": str(retry_after)})


class ClientLockedOut(TooManyRequests):
    """The per-client lockout: this client waits, others may still try."""

    def __init__(self, retry_after):
        super().__init__(
            f"Too many failed attempts from this client; try again in {retry_after} seconds.",
            retry_after,
        )


class Unavailable(Refused):
    status = 503

    def __init__(self, message, retry_after=5):
        super().__init__(message, {"Retry-After": str(retry_after)})

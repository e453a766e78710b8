"""Per-client rate limits (Flask-Limiter): the unbound extension, the audit line each
refusal writes, and the 429 it answers. The limits are RATELIMIT_* settings (config.py)."""

import math
import time

from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_qualified_name, get_remote_address

import metrics
from audit import audit
from errors import error_response


def audit_rate_limited(limit):
    audit("rate_limited", None, limit=str(limit.limit), endpoint=request.endpoint)
    metrics.RATE_LIMITED.labels(request.endpoint).inc()


limiter = Limiter(get_remote_address, on_breach=audit_rate_limited)


def note_limited_routes(app):
    """Record which endpoints have a limit, once the blueprints are registered. Only routes
    decorated with limiter.limit have one (no default, application or blueprint limits are
    set), and Flask-Limiter resolves every route's limits on every request otherwise: on a
    read that is about a tenth of the request's time, for no limit at all."""
    manager = limiter.limit_manager
    if manager.default_limits or manager.application_limits:
        return  # every route has a limit: check them all
    with app.app_context():  # the limits are callables that read the config
        app.extensions["rate_limited_endpoints"] = frozenset(
            endpoint
            for endpoint, view in app.view_functions.items()
            if manager.decorated_limits(get_qualified_name(view))
        )


@limiter.request_filter
def has_no_limit():
    # An app that has not noted its limited routes checks every request, as before.
    limited = current_app.extensions.get("rate_limited_endpoints")
    return limited is not None and request.endpoint not in limited


def handle_rate_limited(error):
    """Flask-Limiter's own headers are off (they went on every response, and overrode the
    lockout's Retry-After): the 429 says when to come back, in the header and the text."""
    limit = limiter.current_limit
    if limit is None:
        retry_after = 60
    else:  # reset_at is rounded up to a whole second: never say more than the window
        window = limit.limit.get_expiry()
        retry_after = min(window, max(1, math.ceil(limit.reset_at - time.time())))
    return error_response(
        429,
        f"Too many requests from this client; try again in {retry_after} seconds.",
        {"Retry-After": str(retry_after)},
    )

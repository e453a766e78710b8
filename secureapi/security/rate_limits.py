"""Per-client rate limits (Flask-Limiter): the unbound extension, the audit line each
refusal writes, and when a refused client may come back. The limits are RATELIMIT_*
settings (config.py)."""

import math
import time

from flask import request
from flask_limiter import Limiter

from secureapi.core import metrics
from secureapi.security.audit import audit
from secureapi.security.lockout import client_key


def audit_rate_limited(limit):
    audit("rate_limited", None, limit=str(limit.limit), endpoint=request.endpoint)
    metrics.RATE_LIMITED.labels(request.endpoint).inc()


# Per client as the lockout counts clients: an IPv6 /64, which one subscriber usually holds
# whole, is one client (December's review: one host could rotate through 2**64 addresses).
limiter = Limiter(client_key, on_breach=audit_rate_limited)


def skip_unlimited_routes(app):
    """Take Flask-Limiter's app-wide hooks off the app when only routes decorated with
    limiter.limit have a limit (no default, application or blueprint limit). Each decorator
    checks its own limit around its view; the hooks check only the other kinds, add headers
    (off) and clear per-request state. They do nothing then, yet cost every read about a
    tenth of its time."""
    manager = limiter.limit_manager
    with app.app_context():  # limits are callables that read the config
        on_blueprints = any(manager.blueprint_limits(app, name) for name in app.blueprints)
    if manager.default_limits or manager.application_limits or on_blueprints:
        return
    if app.config["RATELIMIT_HEADERS_ENABLED"]:
        return

    def added_by_limiter(hook):  # its bound methods, and a partial(method, limiter)
        return limiter in (getattr(hook, "__self__", None), *getattr(hook, "args", ()))

    # Flask-Limiter's private shape (4.x: an enabled Limiter's init_app adds one hook of
    # each kind, a disabled one none): if an upgrade changes it, refuse to start rather
    # than leave its hooks on, or take ours off.
    expected = 1 if app.config["RATELIMIT_ENABLED"] else 0
    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        kept = [hook for hook in hooks.get(None, []) if not added_by_limiter(hook)]
        if len(hooks.get(None, [])) - len(kept) != expected:
            raise RuntimeError(
                "Flask-Limiter's request hooks are not what skip_unlimited_routes knows:"
                " check secureapi/security/rate_limits.py against the installed version."
            )
        hooks[None] = kept


def rate_limit_retry_after():
    """Seconds until the limit the request broke lets it in again (errors.py's 429)."""
    limit = limiter.current_limit
    if limit is None:
        return 60
    # reset_at is rounded up to a whole second: never say more than the window.
    window = limit.limit.get_expiry()
    return min(window, max(1, math.ceil(limit.reset_at - time.time())))

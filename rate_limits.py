"""Per-client rate limits (Flask-Limiter): the unbound extension, and the audit line each
refusal writes. The limits themselves are RATELIMIT_* settings (config.py)."""

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from audit import audit


def audit_rate_limited(limit):
    audit("rate_limited", None, limit=str(limit.limit), endpoint=request.endpoint)


limiter = Limiter(get_remote_address, on_breach=audit_rate_limited)

"""The audit log: one JSON line per security event on the "secureapi.audit" logger.
Never give it passwords, codes or tokens."""

import json
import logging
import sys
from datetime import UTC, datetime

from flask import g, has_request_context, request

audit_log = logging.getLogger("secureapi.audit")


def init_audit_log():
    """Audit lines go to standard error unless the deployment routes the logger itself."""
    if not audit_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        audit_log.addHandler(handler)
        audit_log.setLevel(logging.INFO)


def audit(event, username, level=logging.INFO, **details):
    """One JSON line per security event. json.dumps escapes control characters, so a
    username or header cannot forge a line."""
    record = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": event,
        "username": username,
        # None for the CLI, which has no client.
        "client": request.remote_addr if has_request_context() else None,
        "request_id": g.get("request_id"),
    } | details
    audit_log.log(level, json.dumps(record, ensure_ascii=True))

"""The audit log: one JSON line per security event on the "secureapi.audit" logger.
Never give it passwords, codes or tokens."""

import json
import logging
import sys
import threading
from datetime import UTC, datetime

from flask import current_app, g, has_request_context, request

from config import now

audit_log = logging.getLogger("secureapi.audit")
# Repeated events of one kind are written once per window, with how many were held back.
WINDOW_SECONDS = 60
WINDOWS_KEPT = 10_000  # a flood of distinct keys costs at most this many entries


def init_audit_log(app):
    """Audit lines go to standard error unless the deployment routes the logger itself."""
    app.extensions["audit_windows"] = ({}, threading.Lock())
    if not audit_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        audit_log.addHandler(handler)
        audit_log.setLevel(logging.INFO)


def audit_once_a_minute(key, event, username, **details):
    """audit(), but of events with the same `key` only the first in each WINDOW_SECONDS is
    written; the next line written says how many were held back (`repeated`). For refusals
    anyone can cause at line rate (December review: 2,244 token_refused lines), which would
    otherwise flood the log."""
    windows, lock = current_app.extensions["audit_windows"]
    at = now()
    with lock:
        window = windows.get(key)
        if window and at - window[0] < WINDOW_SECONDS:
            window[1] += 1
            return
        if len(windows) >= WINDOWS_KEPT:
            windows.clear()
        windows[key] = [at, 0]
    repeated = {"repeated": window[1]} if window and window[1] else {}
    audit(event, username, **details, **repeated)


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

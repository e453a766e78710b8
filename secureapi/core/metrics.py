"""Prometheus metrics (prometheus_client): the counters and histograms, the request hooks
that fill them, and the text that GET /metrics serves (operations.py).

Under gunicorn.conf.py every worker writes its numbers to files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode, chosen when the module is first imported), and a
scrape, whichever worker answers it, adds up every worker's files. Without that variable
(flask run, tests) the numbers are this process's own.
"""

import os
import time

from flask import g, request
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "secureapi_http_requests",
    "Requests answered, by route template (unmatched: no route), method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "secureapi_http_request_duration_seconds",
    "Time from the start of the request hooks to the finished response, by route template"
    " and method.",
    ["route", "method"],
)
LOGINS = Counter(
    "secureapi_logins",
    "POST /login attempts by outcome: success, bad_password, unknown_user, bad_otp,"
    " bad_recovery_code, locked (a client's lockout), account_locked (the hard lock),"
    " disabled.",
    ["outcome"],
)
LOCKOUTS = Counter(
    "secureapi_lockouts",
    "Lockouts started: client (one client address locked out of one account for a"
    " while) or account (locked for everyone until an admin unlocks it).",
    ["tier"],
)
RATE_LIMITED = Counter(
    "secureapi_rate_limited",
    "Requests refused by a rate limit, by endpoint.",
    ["endpoint"],
)
DATABASE_UNAVAILABLE = Counter(
    "secureapi_database_unavailable",
    "503 answers because the database could not be reached or did not answer in time.",
)

# The method label takes only these: a client sending made-up methods must not be able to
# create a series per method (every series costs memory in the app and in Prometheus).
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def init_app(app):
    """Time and count every request, when metrics are on (METRICS_TOKEN is set): nobody
    could read them otherwise. The factory calls this before it binds anything else, so
    the timer starts before every other hook (the rate limiter's too)."""
    if app.config["METRICS_TOKEN"]:
        app.before_request(start_timer)
        app.after_request(count_request)


def start_timer():
    g.request_started = time.perf_counter()


def count_request(response):
    # The rule's template, never the path: ids and made-up URLs would be a series each.
    route = request.url_rule.rule if request.url_rule else "unmatched"
    method = request.method if request.method in METHODS else "other"
    REQUESTS.labels(route, method, str(response.status_code)).inc()
    started = g.get("request_started")
    if started is not None:
        REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)
    return response


def count_login(outcome):
    LOGINS.labels(outcome).inc()


def exposition():
    """(body, content type): every worker's numbers in the Prometheus text format 0.0.4,
    which every Prometheus version reads."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4

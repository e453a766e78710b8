"""Every error answer (RFC 9457 problem+json) and the hooks every response passes through:
request ids, the body-size limit, security headers. No route and no business rule here.

The one error flow: rules raise a Refused (secureapi/core/refusals.py) and handle_refused
answers it; Werkzeug's own errors (no such route, wrong method, body too large), a rate
limit, a database outage and anything unexpected have a handler each below. Only this
module and the blueprints build responses."""

import logging
import uuid

from flask import abort, current_app, g, jsonify, request

from secureapi.core import metrics
from secureapi.core.refusals import UnsupportedMediaType
from secureapi.data.database import forget_connection
from secureapi.security.rate_limits import rate_limit_retry_after

log = logging.getLogger(__name__)

HTTP_STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

HTTP_ERROR_MESSAGES = {
    404: "The requested URL was not found.",
    405: "The method is not allowed for the requested URL.",
    413: "The request body is larger than 1 MiB.",
    415: "The request body must be JSON (Content-Type: application/json).",
    429: "Too many requests from this client; try again later.",
}


def error_response(status, message, headers=None):
    """The one builder of error bodies: RFC 9457 problem details plus `message`."""
    response = jsonify(
        {
            "type": "about:blank",
            "title": HTTP_STATUS_TITLES.get(status, "Error"),
            "status": status,
            "message": message,
        }
    )
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(headers or {})
    return response


def handle_refused(refusal):
    return error_response(refusal.status, refusal.message, refusal.headers)


def handle_rate_limited(error):
    """Flask-Limiter's own headers are off (they went on every response, and overrode the
    lockout's Retry-After): the 429 says when to come back, in the header and the text."""
    retry_after = rate_limit_retry_after()
    return error_response(
        429,
        f"Too many requests from this client; try again in {retry_after} seconds.",
        {"Retry-After": str(retry_after)},
    )


def handle_http_error(error):
    message = HTTP_ERROR_MESSAGES.get(error.code, error.description)
    headers = {}
    if error.code == 405 and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    return error_response(error.code, message, headers)


def handle_database_unavailable(error):
    forget_connection()
    metrics.DATABASE_UNAVAILABLE.inc()
    log.warning("database unavailable (request %s): %s", g.get("request_id"), error)
    return error_response(
        503, "The database is unavailable; try again shortly.", {"Retry-After": "5"}
    )


def handle_unexpected_error(error):
    forget_connection()
    log.exception("unhandled error (request %s)", g.get("request_id"))
    return error_response(500, f"Internal server error (request id {g.get('request_id')}).")


def assign_request_id():
    g.request_id = uuid.uuid4().hex


def refuse_oversized_body():
    """413 for any body over the limit, even where the view never reads it; 415 for a
    compressed one (the size limit, and every check, would apply to the compressed bytes)."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaType(
            "Content-Encoding is not supported: send the body uncompressed (identity)."
        )
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None:
        if request.content_length > limit:
            abort(413)
    # A chunked body has no length up front; Werkzeug cuts it at the limit without a word.
    elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        if len(request.get_data()) >= limit:
            abort(413)


API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"


def add_security_headers(response):
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    # Responses carry secrets, tokens, QR codes or private inventory: no cache keeps them.
    # Only the docs page's versioned files (docs.py) are marked public, and they keep it.
    if not response.cache_control.public:
        headers["Cache-Control"] = "no-store"
    headers["X-Request-ID"] = g.get("request_id", "")
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    # JSON and images need nothing loaded and no frame; /docs sets its own policy.
    headers.setdefault("Content-Security-Policy", API_CONTENT_SECURITY_POLICY)
    if current_app.config["HSTS_SECONDS"] > 0:
        headers["Strict-Transport-Security"] = f"max-age={current_app.config['HSTS_SECONDS']}"
    if response.status_code not in (429, 503):
        headers.pop("Retry-After", None)
    return response

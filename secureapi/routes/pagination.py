"""Keyset pagination for list routes: the limit and after parameters, and a page that stops
at `limit` rows or before MAX_PAGE_BYTES of JSON, with a Link to the rest (RFC 8288)."""

from flask import current_app, request, url_for

from secureapi.core.validation import validate_cursor, validate_limit
from secureapi.web.json_provider import COMPACT

MAX_PAGE_BYTES = 4 * 1024 * 1024  # a page of 1,000 long descriptions would be 64 MiB


def page_parameters():
    """(limit, after) from the query string: rows per page, and the last id already seen."""
    return validate_limit(request.args.get("limit")), validate_cursor(request.args.get("after"))


def page(rows, limit, to_json, next_parameters=lambda row: {"after": row["id"]}):
    """The JSON response for `rows` (fetched with LIMIT limit + 1, in the list's order). The
    page stops before it passes MAX_PAGE_BYTES (at least one row), and the next link
    continues after the last row sent: its query is `limit` and next_parameters(that row)."""
    items = [to_json(row) for row in rows[:limit]]
    # Compact, as every other response: one call in the common case.
    body = current_app.json.dumps(items, separators=COMPACT).encode("utf-8")
    if len(body) > MAX_PAGE_BYTES:
        parts, size = [], 2
        for item in items:
            part = current_app.json.dumps(item, separators=COMPACT).encode("utf-8")
            size += len(part) + 1
            if parts and size > MAX_PAGE_BYTES:
                break
            parts.append(part)
        items, body = items[: len(parts)], b"[" + b",".join(parts) + b"]"
    response = current_app.response_class(body, mimetype="application/json")
    if len(rows) > len(items):
        last_sent = rows[len(items) - 1]
        next_url = url_for(request.endpoint, limit=limit, **next_parameters(last_sent))
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response

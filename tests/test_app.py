import dataclasses
import io
import json
import os
import stat
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from config import load_instance_secret
from secureapi.data.database import mysql
from secureapi.web.json_provider import COMPACT, FastJSONProvider
from tests.support import sql


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        {"price": 1500.99, "cheap": 0.01, "top": 99999999.99, "name": "Müsli", "id": 2**32},
        ['\u2028 \x00\x1f\x7f / \\ " é 🙂', None, True, [], {}],
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "day": date(2026, 1, 2)},
        [Decimal("1.10"), Point(3)],
        [2**64, {1: "not a string key"}, "\ud800"],  # orjson refuses these: the json module
    ],
)
def test_compact_json_is_what_the_json_module_writes(app, value):
    # Compact JSON (every response) comes from orjson (json_provider.FastJSONProvider), and
    # must be byte for byte what Flask's provider wrote with the json module.
    expected = json.dumps(
        value, default=app.json.default, ensure_ascii=False, sort_keys=True, separators=COMPACT
    )
    assert app.json.dumps(value, separators=COMPACT) == expected
    assert isinstance(app.json, FastJSONProvider)


def test_unknown_route_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "message": "The requested URL was not found.",
    }


@pytest.mark.parametrize("path", ["/products//1", "//products", "/qrcode//alice"])
def test_doubled_slashes_are_404_not_a_redirect_to_the_host_header(client, path):
    response = client.get(path, headers={"Host": "attacker.example"})
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert response.mimetype == "application/problem+json"


def test_wrong_method_is_json_405_with_allow(client):
    response = client.delete("/register")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "POST" in response.headers["Allow"]


def test_oversized_body_is_json_413(client, db):
    body = b'{"username": "alice", "password": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post("/register", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert sql(db, "SELECT COUNT(*) AS n FROM users")[0]["n"] == 0


def test_oversized_body_is_413_even_where_unread(client, auth):
    headers = auth.headers() | {"Content-Type": "application/json"}
    response = client.post("/logout", data=b"x" * (1024 * 1024 + 1), headers=headers)
    assert response.status_code == 413
    assert client.get("/products", headers=headers).status_code == 200  # not logged out


def test_oversized_chunked_body_is_413(client):
    response = client.post(
        "/register",
        input_stream=io.BytesIO(b"x" * (2 * 1024 * 1024)),
        headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        environ_base={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


def test_response_urls_ignore_the_host_header(client):
    response = client.post(
        "/register",
        json={"username": "alice", "password": "correct horse battery"},
        headers={"Host": "evil.example"},
    )
    assert "evil.example" not in response.get_data(as_text=True)


def test_every_response_has_security_headers(client, auth):
    for response in (client.get("/nope"), client.get("/products", headers=auth.headers())):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert len(response.headers["X-Request-ID"]) == 32


def test_unexpected_error_is_generic_500(app, client):
    def explode():
        raise RuntimeError("SELECT secret FROM users -- internal detail")

    app.add_url_rule("/explode", view_func=explode)
    response = client.get("/explode")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    text = response.get_data(as_text=True)
    assert "SELECT" not in text and "RuntimeError" not in text
    assert response.headers["X-Request-ID"] in response.json["message"]


def test_database_down_is_503_with_retry_after(make_app):
    app = make_app(MYSQL_HOST="127.0.0.1", MYSQL_PORT=1)
    response = app.test_client().post(
        "/register", json={"username": "alice", "password": "correct horse battery"}
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "2003" not in response.get_data(as_text=True)


def test_short_secret_key_refuses_to_start(make_app):
    with pytest.raises(RuntimeError, match="at least 32 bytes"):
        make_app(SECRET_KEY="too-short")


def test_generated_secret_key_is_private_and_persistent(tmp_path):
    instance = tmp_path / "instance"
    key = load_instance_secret(str(instance), "secret_key")
    assert len(key) >= 32
    assert stat.S_IMODE(os.stat(instance / "secret_key").st_mode) == 0o600
    assert load_instance_secret(str(instance), "secret_key") == key
    assert os.listdir(instance) == ["secret_key"]  # no temporary file left behind


def test_init_db_is_idempotent_and_keeps_data(runner, auth, db):
    auth.register("alice")
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert "is ready" in result.output
    assert sql(db, "SELECT username FROM users")[0]["username"] == "alice"


def test_debug_is_off_by_default(app):
    assert app.debug is False


def session_questions(connection):
    """Statements run on this one connection (its session counter: no other client of the
    server moves it); the SHOW that reads it counts itself."""
    cursor = connection.cursor()
    cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
    return int(cursor.fetchone()["Value"])


def test_authenticated_read_costs_two_queries_and_no_connection(client, auth):
    headers = auth.headers()
    product_id = client.post(
        "/products", json={"name": "x", "price": 1, "quantity": 1}, headers=headers
    ).json["id"]
    client.get(f"/products/{product_id}", headers=headers)  # warm: the connection exists
    # The test client runs the app in this thread: this is the connection it keeps.
    kept = mysql.kept.connection
    questions = session_questions(kept.connection)
    assert client.get(f"/products/{product_id}", headers=headers).status_code == 200
    # Token check + product query, + 1: the SHOW STATUS that reads the count counts itself.
    assert session_questions(kept.connection) - questions == 3
    assert mysql.kept.connection is kept  # the same connection, no new one


# --- Security headers (review finding 15) --------------------------------------------------


def test_every_response_carries_the_security_headers(client, auth):
    for response in (
        client.get("/products", headers=auth.headers()),
        client.get("/products"),
        client.get("/no-such-page"),
        client.get("/openapi.json"),
    ):
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
        csp = response.headers["Content-Security-Policy"]
        assert csp == "default-src 'none'; frame-ancestors 'none'"
        assert "Strict-Transport-Security" not in response.headers
    docs = client.get("/docs")
    assert docs.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "script-src 'self'" in docs.headers["Content-Security-Policy"]


def test_hsts_when_configured(make_app):
    app = make_app(HSTS_SECONDS=31536000)
    response = app.test_client().get("/openapi.json")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"

"""openapi.yaml against the app: a valid document, the same routes, and a fuzz run that agrees."""

import base64
import os
import re
from html.parser import HTMLParser

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import missing_required_header, positive_data_acceptance

from app import create_app
from secureapi.core import validation
from secureapi.data import words
from tests.support import AuthActions, Clock, app_config

DOCUMENT_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "openapi.yaml")
# The README's example user: the document's examples fetch this user's QR code.
EXAMPLE_USER = "alice"
EXAMPLE_PASSWORD = "a long passphrase of mine"
# Per operation and generation mode: a couple of minutes for the whole fuzz run.
# Examples per operation: make test runs 100; make test-fast fewer (FUZZ_EXAMPLES), for speed.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
# schemathesis' default for valid data, to which an operation adds its state-dependent answers.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


@pytest.fixture(scope="module")
def document():
    with open(DOCUMENT_PATH) as f:
        return yaml.safe_load(f)


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    validate(document)


def documented_operations(document):
    methods = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in methods
    }


def routed_operations(app):
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        # Flask's <int:product_id> is OpenAPI's {product_id}.
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        operations |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return operations


def test_document_describes_every_route_and_nothing_else(app, document):
    routed = routed_operations(app)
    documented = documented_operations(document)
    assert routed - documented == set(), "routes missing from openapi.yaml"
    assert documented - routed == set(), "operations in openapi.yaml that the app lacks"


def test_route_comparison_notices_drift(app, document):
    app.add_url_rule("/undocumented", "undocumented", lambda: "", methods=["PUT"])
    assert ("/undocumented", "PUT") in routed_operations(app) - documented_operations(document)


def test_openapi_json_serves_the_document_without_auth(client, document):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == document
    assert response.headers["Cache-Control"] == "no-store"


def test_document_is_read_once_at_start_up(app, client, monkeypatch):
    def no_reading(*args, **kwargs):
        raise AssertionError("openapi.yaml read during a request")

    monkeypatch.setattr(yaml, "safe_load", no_reading)
    assert client.get("/openapi.json").status_code == 200


class AssetCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []
        self.inline_scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            if "src" in attrs:
                self.urls.append(attrs["src"])
            else:
                self.inline_scripts += 1
        elif tag == "link":
            self.urls.append(attrs["href"])


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/oauth2-redirect.html",
        "/docs/assets/LICENSE",
        "/docs/assets/../app.py",
        "/docs/assets/%2e%2e%2fapp.py",
        "/docs/assets/swagger-ui.js",
    ],
)
def test_docs_assets_serve_only_what_the_page_loads(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_docs_page_uses_only_local_assets_which_browsers_may_cache(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy
    # Swagger UI shows a PNG answer (the QR code) as a blob: image.
    assert "img-src 'self' data: blob:;" in policy

    page = AssetCollector()
    page.feed(response.get_data(as_text=True))
    assert page.inline_scripts == 0
    assert any("/swagger-ui-bundle.js?v=" in url for url in page.urls)
    versions = set()
    for url in page.urls:
        assert url.startswith("/docs/assets/") and "?v=" in url, url
        versions.add(url.split("?v=")[1])
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable", url
        assert asset.headers["ETag"]
        revalidated = client.get(url, headers={"If-None-Match": asset.headers["ETag"]})
        assert revalidated.status_code == 304
    assert len(versions) == 1
    # Another version, or none, is not cached; nor is anything of the API.
    (version,) = versions
    for url in ("/docs/assets/docs.js", "/docs/assets/docs.js?v=0" + version[1:]):
        assert client.get(url).headers["Cache-Control"] == "no-store"
    for url in ("/openapi.json", "/products", "/qrcode/alice", "/docs/assets/nothing.js"):
        assert client.get(url).headers["Cache-Control"] == "no-store", url


def test_docs_assets_version_follows_their_content(app, make_app, monkeypatch, tmp_path):
    from secureapi.routes import docs

    own = tmp_path / "docs.js"
    own.write_text("// changed\n")
    before = app.extensions["docs_assets_version"]
    assert make_app().extensions["docs_assets_version"] == before
    monkeypatch.setitem(docs.DOCS_ASSETS, "docs.js", str(tmp_path))
    changed = make_app()
    assert changed.extensions["docs_assets_version"] != before


# --- What generators and Postman need from the document -------------------------------------


def test_document_puts_auth_in_one_place(document):
    """A top-level Bearer requirement, and public operations say `security: []`, so that
    importers put auth on the collection instead of on every request."""
    assert document["security"] == [{"bearerAuth": []}]
    public = {("/register", "post"), ("/login", "post"), ("/docs", "get")}
    public |= {("/openapi.json", "get"), ("/docs/assets/{name}", "get")}
    public |= {("/healthz", "get"), ("/readyz", "get")}
    for path, method in public:
        assert document["paths"][path][method]["security"] == [], (path, method)
    assert "`" not in document["servers"][0]["description"]


def test_every_parameter_and_request_body_has_a_valid_example(document):
    """Postman and Swagger UI fill requests from the examples: each one must be one the
    server accepts, so at least valid against its own schema."""

    def follow(ref):
        node = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def check(example, schema, where):
        # The schema as the root of a document that also holds the components its $refs name.
        validator = Draft202012Validator(schema | {"components": document["components"]})
        errors = [error.message for error in validator.iter_errors(example)]
        assert errors == [], where

    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for parameter in item.get("parameters", []) + operation.get("parameters", []):
                parameter = follow(parameter["$ref"]) if "$ref" in parameter else parameter
                where = f"{method.upper()} {path} {parameter['name']}"
                assert "example" in parameter, where
                check(parameter["example"], parameter["schema"], where)
                checked += 1
            body = operation.get("requestBody")
            if body is None:
                continue
            body = follow(body["$ref"]) if "$ref" in body else body
            media = body["content"]["application/json"]
            assert "example" in media, f"{method.upper()} {path} body"
            check(media["example"], media["schema"], f"{method.upper()} {path} body")
            checked += 1
    assert checked > 20


# --- Fuzzing: schemathesis against the real app and the test database ---------------------

# schemathesis' pytest integration needs the schema when the module is imported, before any
# fixture has run. The app only connects to its database per request, so `fuzz_app` below
# points it at the test database once that exists (so not make_app, a fixture).
# Metrics on, so that every fuzzed request also goes through their hooks.
fuzz_app = create_app(
    app_config("set_by_a_fixture", METRICS_TOKEN="fuzz-metrics-token-that-is-long-enough")
)
fuzz_schema = schemathesis.openapi.from_wsgi(
    "/openapi.json",
    fuzz_app,
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": FUZZ_EXAMPLES, "database": "none"},
            "operations": [
                {
                    # JSON Schema cannot say "strong enough by zxcvbn" or "not containing the
                    # username": openapi.yaml says it in prose, and a schema-valid password
                    # may still get its documented 400.
                    "include-path": "/register",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "409"],
                        }
                    },
                },
                {
                    # A schema-valid If-Match may name a version the product no longer
                    # has: 412 is the documented answer, not a refusal of valid data.
                    "include-path": "/products/{product_id}",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ACCEPTED + ["412"],
                        }
                    },
                },
                {
                    # A schema-valid Idempotency-Key may already belong to another body
                    # (422) or to a request still running (409).
                    "include-path": ["/products", "/product"],
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ACCEPTED + ["422"],
                        }
                    },
                },
                {
                    # Exactly one of otp and recovery_code, said in words: expires_in_days is
                    # optional, so a count of properties (as Login has) cannot say it.
                    "include-path": "/me/tokens",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "401", "403", "409", "429"],
                        }
                    },
                },
                {
                    # The same password rules for the new password.
                    "include-path": "/me/password",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "401", "403", "429"],
                        }
                    },
                },
            ],
        }
    ),
)
# One app, database and token serve every example of an operation: that is the intent.
SHARED_FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def fuzz_app_on_test_database(database, db):
    fuzz_app.config["MYSQL_DB"] = database
    return fuzz_app


@pytest.fixture
def credentials(fuzz_app_on_test_database):
    """Headers by security scheme: a real admin token (created with the CLI, then a login
    with the TOTP code), so every operation can succeed, and the example user's Basic
    credentials for the QR code."""
    auth = AuthActions(fuzz_app_on_test_database.test_client(), Clock())
    auth.register(EXAMPLE_USER, EXAMPLE_PASSWORD)
    auth.create_user("fuzzer", "admin")
    basic = base64.b64encode(f"{EXAMPLE_USER}:{EXAMPLE_PASSWORD}".encode()).decode()
    return {
        "bearerAuth": {"Authorization": f"Bearer {auth.token('fuzzer')}"},
        "basicAuth": {"Authorization": f"Basic {basic}"},
    }


def credentials_for(case, credentials):
    """The headers the operation's `security` asks for, unless the case tests their absence."""
    headers = {}
    if case.operation.schema.is_security_param_negated(case):
        return headers
    for requirement in case.operation.definition.raw.get("security", []):
        for scheme in requirement:
            headers |= credentials[scheme]
    return headers


# /login and /logout would revoke the token that the other operations use, so they are
# fuzzed without it (the token then fails them all, which is what they must do).
@fuzz_schema.exclude(path=["/login", "/logout"]).parametrize()
@SHARED_FIXTURES
def test_fuzz_with_credentials(case, credentials, fuzz_app_on_test_database):
    with fuzz_app_on_test_database.app_context():
        prose = search_rule_applies(case.query)
    case.call_and_validate(
        headers=credentials_for(case, credentials),
        excluded_checks=([positive_data_acceptance] if prose else []) + metrics_exclusion(case),
    )


def metrics_exclusion(case):
    """Without its token /metrics is the 404 of any unknown URL, as documented (it tells
    nobody that metrics exist); schemathesis insists on 401 for a missing Authorization."""
    return [missing_required_header] if case.operation.path == "/metrics" else []


def search_rule_applies(query):
    """Whether GET /products' query string breaks a rule openapi.yaml states in prose: a
    cursor is only valid as a Link gave it, `after` goes with sort=id alone, and `q` needs a
    word (letters, digits or _: a rule JSON Schema's ASCII-only \\w cannot state)."""
    query = query or {}
    if "cursor" in query or ("after" in query and query.get("sort", "id") != "id"):
        return True
    q = query.get("q")
    return isinstance(q, str) and not words.words_in(q)


# Not `include(path=[...])`: schemathesis ORs an include with the filter it builds from the
# config's "operations" entries, which takes every operation, so that fuzzed all 26 here
# (without credentials, a second time) instead of these two.
WITHOUT_CREDENTIALS = ("/login", "/logout")
login_and_logout = fuzz_schema.exclude(lambda ctx: ctx.operation.path not in WITHOUT_CREDENTIALS)


def fuzzed_operations(schema):
    return {
        (result.ok().method.upper(), result.ok().path)
        for result in schema.get_all_operations()
        if schema.filter_set.applies_to(result.ok())
    }


def test_login_and_logout_are_fuzzed_on_their_own():
    assert fuzzed_operations(login_and_logout) == {("POST", "/login"), ("POST", "/logout")}


@login_and_logout.parametrize()
@SHARED_FIXTURES
def test_fuzz_login_and_logout(case, fuzz_app_on_test_database):
    case.call_and_validate(excluded_checks=metrics_exclusion(case))


def test_product_name_patterns_refuse_exactly_what_the_app_refuses(document):
    # The fuzzer trusts these patterns: a character they allow must be one the app takes.
    patterns = [
        re.compile(rule["pattern"])
        for rule in document["components"]["schemas"]["ProductName"]["allOf"]
    ]
    refused_by_schema = {
        code
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF  # surrogates are no text; json_object refuses them
        and not all(pattern.search(chr(code)) for pattern in patterns)
    }
    refused_by_app = {
        code
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF
        and (
            not chr(code).strip()
            or validation.has_control_characters(chr(code))
            or validation.has_format_characters(chr(code))
        )
    }
    assert refused_by_schema == refused_by_app

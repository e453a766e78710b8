"""openapi.yaml against the app: a valid document that lists exactly the app's routes."""

import os
import re
from html.parser import HTMLParser

import pytest
import yaml
from openapi_spec_validator import validate

DOCUMENT_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "openapi.yaml")


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


def test_docs_page_uses_only_local_assets(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy

    page = AssetCollector()
    page.feed(response.get_data(as_text=True))
    assert page.inline_scripts == 0
    assert any(url.endswith("swagger-ui-bundle.js") for url in page.urls)
    for url in page.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["X-Content-Type-Options"] == "nosniff"

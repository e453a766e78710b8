"""Blueprint for the API description: openapi.yaml served as /openapi.json, and the
Swagger UI page at /docs with only its own assets (no CDN). It reads no database."""

import json
import os

import flask_swagger_ui
import yaml
from flask import Blueprint, abort, current_app, render_template, send_from_directory

bp = Blueprint("docs", __name__)

# Swagger UI's own files ship in the flask-swagger-ui wheel: the page needs no CDN.
SWAGGER_UI_FILES = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")
# Only what templates/docs.html loads; not the rest of the package (an OAuth page, etc.).
DOCS_ASSETS = ("swagger-ui.css", "index.css", "favicon-32x32.png", "swagger-ui-bundle.js")
# Scripts and styles from this origin only; "Try it out" may only call this API.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.record_once
def load_openapi_document(state):
    """Read openapi.yaml once, when the app is built, and keep it as JSON."""
    with open(os.path.join(os.path.dirname(__file__), "openapi.yaml")) as f:
        document = yaml.safe_load(f)
    state.app.extensions["openapi_json"] = json.dumps(document).encode()


@bp.get("/openapi.json")
def get_openapi_document():
    return current_app.response_class(
        current_app.extensions["openapi_json"], mimetype="application/json"
    )


@bp.get("/docs/assets/<name>")
def get_docs_asset(name):
    if name not in DOCS_ASSETS:
        abort(404)
    return send_from_directory(SWAGGER_UI_FILES, name)


@bp.get("/docs")
def get_docs():
    response = current_app.make_response(render_template("docs.html"))
    response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return response

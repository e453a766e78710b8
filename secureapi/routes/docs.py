"""Blueprint for the API description: openapi.yaml served as /openapi.json, and the
Swagger UI page at /docs with only its own assets (no CDN). It reads no database."""

import functools
import hashlib
import json
import os

import flask_swagger_ui
import yaml
from flask import Blueprint, abort, current_app, render_template, request, send_from_directory

bp = Blueprint("docs", __name__, template_folder="../templates")

# Swagger UI's own files ship in the flask-swagger-ui wheel: the page needs no CDN.
SWAGGER_UI_FILES = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")
OWN_FILES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static")
# Only what templates/docs.html loads (not the rest of the package: an OAuth page, etc.),
# and the folder each comes from.
DOCS_ASSETS = {
    "swagger-ui.css": SWAGGER_UI_FILES,
    "index.css": SWAGGER_UI_FILES,
    "favicon-32x32.png": SWAGGER_UI_FILES,
    "swagger-ui-bundle.js": SWAGGER_UI_FILES,
    "docs.js": OWN_FILES,
}
# The page links its files with ?v=<a digest of them all>: a browser keeps them for a year
# (the 1.7 MB bundle is fetched once), and an upgrade changes every URL.
ASSET_MAX_AGE = 365 * 24 * 3600
# Scripts and styles from this origin only; "Try it out" may only call this API. blob: images
# are how Swagger UI shows a PNG answer (the QR code); this policy is for this page only.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.record_once
def load_openapi_document(state):
    """Read openapi.yaml when the app is built, and keep it as JSON."""
    path = os.path.join(state.app.root_path, "openapi.yaml")
    state.app.extensions["openapi_json"] = openapi_json(path, os.stat(path).st_mtime_ns)
    state.app.extensions["docs_assets_version"] = assets_version()


# Once per process and version of the file, with libyaml's parser where PyYAML has it: the
# pure-Python one takes a third of a second, which every app (and every test) would pay.
@functools.lru_cache(maxsize=4)
def openapi_json(path, modified):
    with open(path) as f:
        document = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (safe loaders only)
    return json.dumps(document).encode()


def assets_version():
    files = tuple(os.path.join(folder, name) for name, folder in sorted(DOCS_ASSETS.items()))
    return assets_digest(tuple((path, os.stat(path).st_mtime_ns) for path in files))


@functools.lru_cache(maxsize=4)  # once per set of files and their modification times
def assets_digest(files):
    digest = hashlib.sha256()
    for path, _ in files:
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]


@bp.get("/openapi.json")
def get_openapi_document():
    return current_app.response_class(
        current_app.extensions["openapi_json"], mimetype="application/json"
    )


@bp.get("/docs/assets/<name>")
def get_docs_asset(name):
    if name not in DOCS_ASSETS:
        abort(404)
    versioned = request.args.get("v") == current_app.extensions["docs_assets_version"]
    # Public and long-lived only under the current version's URL; otherwise no-store, like
    # every other response (errors.add_security_headers).
    response = send_from_directory(
        DOCS_ASSETS[name], name, max_age=ASSET_MAX_AGE if versioned else None
    )
    if versioned:
        response.cache_control.immutable = True
    return response


@bp.get("/docs")
def get_docs():
    page = render_template("docs.html", version=current_app.extensions["docs_assets_version"])
    response = current_app.make_response(page)
    response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return response

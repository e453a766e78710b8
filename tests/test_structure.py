"""The code's shape, which the docs promise a maintainer: imports run down the layers with no
cycle, only the blueprints and errors.py build responses, the library overrides still fit
the installed libraries, and the versions agree. No database."""

import ast
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

import secureapi
from app import create_app
from secureapi.security.rate_limits import limiter, skip_unlimited_routes
from tests.support import app_config

pytestmark = pytest.mark.unit

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "secureapi"
LAYERS = ("routes", "web", "security", "data", "core")  # from the top down
# What builds, sends or inspects an HTTP response.
RESPONSE_NAMES = {
    "Response",
    "abort",
    "error_response",
    "jsonify",
    "make_response",
    "response_class",
    "send_file",
    "send_from_directory",
    "status_code",
}


def package_modules():
    """{dotted name: parsed module} of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imports_of(tree, known):
    """The package's modules that `tree` imports."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def layer(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_sits_in_a_layer():
    assert [name for name in package_modules() if not layer(name)] == ["secureapi"]


def test_imports_run_down_the_layers():
    modules = package_modules()
    upward = [
        f"{name} imports {other}"
        for name, tree in modules.items()
        if layer(name)
        for other in imports_of(tree, modules)
        if layer(other) and LAYERS.index(layer(other)) < LAYERS.index(layer(name))
    ]
    assert upward == []


def test_no_import_cycles():
    modules = package_modules()
    graph = {name: imports_of(tree, modules) - {name} for name, tree in modules.items()}
    graph = {name: {o for o in others if layer(o)} for name, others in graph.items()}
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", " -> ".join([*path, name])
        state[name] = "open"
        for other in sorted(graph.get(name, ())):
            visit(other, [*path, name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_only_blueprints_and_errors_build_responses():
    """Rules raise refusals (core/refusals.py); they never build or inspect a response."""
    offenders = []
    for name, tree in package_modules().items():
        if layer(name) == "routes" or name == "secureapi.web.errors":
            continue
        # Its after-request hook counts every response by status: it reads, never builds.
        exempt = {"status_code"} if name == "secureapi.core.metrics" else set()
        for node in ast.walk(tree):
            used = (
                node.id
                if isinstance(node, ast.Name)
                else node.attr
                if isinstance(node, ast.Attribute)
                else None
            )
            if used in RESPONSE_NAMES - exempt:
                offenders.append(f"{name}:{node.lineno} {used}")
            if isinstance(node, ast.ImportFrom):
                offenders += [
                    f"{name}:{node.lineno} imports {alias.name}"
                    for alias in node.names
                    if alias.name in RESPONSE_NAMES
                ]
    assert offenders == []


def test_no_top_level_module_shadows_an_installed_package():
    top = {path.stem for path in ROOT.glob("*.py")}
    assert top == {"app", "config", "gunicorn.conf"}


def test_flask_limiters_hooks_come_off_and_a_changed_shape_fails_loudly():
    app = create_app(app_config("unused", RATELIMIT_ENABLED=True))
    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        owners = [getattr(hook, "__self__", None) for hook in hooks.get(None, [])]
        assert limiter not in owners
    # Hooks of another shape (here: none left to take off) stop the app from starting.
    with pytest.raises(RuntimeError, match="Flask-Limiter's request hooks"):
        skip_unlimited_routes(app)


def test_routes_limits_still_apply_without_the_hooks():
    app = create_app(
        app_config("unused", RATELIMIT_ENABLED=True, RATELIMIT_KEY_PREFIX=f"t{id(object())}")
    )
    client = app.test_client()
    # A body with no username is refused before the database: the limit counts it first.
    statuses = [client.post("/register", json={}).status_code for _ in range(6)]
    assert statuses == [400] * 5 + [429]


def test_rate_limits_count_an_ipv6_64_as_one_client():
    # December's review: per address, one host rotated through its /64 and was never limited.
    app = create_app(
        app_config("unused", RATELIMIT_ENABLED=True, RATELIMIT_KEY_PREFIX=f"v6{id(object())}")
    )
    client = app.test_client()
    statuses = [
        client.post(
            "/register", json={}, environ_base={"REMOTE_ADDR": f"2001:db8:1:2::{n:x}"}
        ).status_code
        for n in range(6)
    ]
    assert statuses == [400] * 5 + [429]
    other = client.post("/register", json={}, environ_base={"REMOTE_ADDR": "2001:db8:1:3::1"})
    assert other.status_code == 400  # another /64 is another client


def test_versions_agree():
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    assert document["info"]["version"] == secureapi.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(secureapi.__version__)}\]", changelog, re.M)


def test_openapi_unicode_patterns_are_this_pythons():
    # Generated, not pinned: a Python with a newer Unicode fails here with what to run.
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "openapi-unicode-patterns"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr

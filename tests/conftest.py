"""Fixtures and hooks only (the helpers are in tests/support.py): a real MariaDB database
created for the test run and dropped after it, the app, its clients, and the test lanes."""

import os
import shutil
import tempfile
import uuid

import MySQLdb
import pytest

from app import create_app
from secureapi.data.database import init_db
from tests.support import AuthActions, Clock, PrivateMariaDB, app_config, connect, server_settings

# --- Lanes: make test-fast runs `-m "unit or db"`, make test runs them all ------------------

LANES = ("unit", "db", "system", "cluster", "clients", "container")


def pytest_collection_modifyitems(config, items):
    """Every test in a lane. A test marked with a lane (system, cluster, clients...) keeps
    it; any other is `db` if it reaches the database fixture, else `unit`. (A test that talks
    to MariaDB without that fixture says `db` itself: unit tests cannot connect.)"""
    for item in items:
        marked = {mark.name for mark in item.iter_markers() if mark.name in LANES}
        uses_database = "database" in getattr(item, "fixturenames", ())
        if "unit" in marked and uses_database:
            raise pytest.UsageError(f"{item.nodeid} is marked unit but uses the database")
        if not marked:
            item.add_marker("db" if uses_database else "unit")


@pytest.fixture(autouse=True)
def unit_tests_open_no_connection(request, monkeypatch):
    """The unit lane runs where no MariaDB may be: a unit test that connects fails here."""
    if request.node.get_closest_marker("unit"):

        def refuse(*args, **kwargs):
            raise AssertionError("a unit test opened a database connection: mark it db")

        monkeypatch.setattr(MySQLdb, "connect", refuse)


# --- The database ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database():
    name = f"secure_api_test_{uuid.uuid4().hex[:12]}"
    try:
        init_db(server_settings() | {"MYSQL_DB": name})
        yield name
    finally:  # also when the schema failed to apply
        connection = connect()
        connection.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


@pytest.fixture
def db(database):
    """A direct connection for checking side effects in the database itself."""
    connection = connect(database)
    yield connection
    cursor = connection.cursor()
    for table in ("users", "products", "login_failures", "client_failures"):
        cursor.execute(f"DELETE FROM {table}")  # noqa: S608 (constant names)
    connection.close()


@pytest.fixture(scope="module")
def private_db():
    """A mariadbd of our own on the `outage` database, which tests may stop, freeze and
    kill (tests/test_resilience.py, tests/test_operations.py)."""
    if os.geteuid() != 0 or not shutil.which("mariadbd"):
        pytest.skip("needs root and mariadbd to run a private database server")
    # Not under pytest's tmp_path: mariadbd runs as mysql and cannot enter root's 0700 folder.
    directory = tempfile.mkdtemp(prefix="secureapi-mariadb-")
    server = PrivateMariaDB(directory)
    server.start()
    init_db(
        {
            "MYSQL_HOST": "127.0.0.1",
            "MYSQL_PORT": server.port,
            "MYSQL_USER": "root",
            "MYSQL_PASSWORD": "",
            "MYSQL_CONNECT_TIMEOUT": 2,
            "MYSQL_DB": "outage",
        }
    )
    yield server
    if server.process.poll() is not None:
        server.stop()
    shutil.rmtree(directory)


# --- The app -----------------------------------------------------------------------------------


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_app(database, db, clock):
    """The one app factory: an app on the test database and the test clock, with `overrides`
    on top of tests/support.py's app_config (cleaned up after the test by `db`)."""

    def make(**overrides):
        return create_app(app_config(database, CLOCK=clock, **overrides))

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def auth(client, clock):
    return AuthActions(client, clock)


@pytest.fixture
def headers(auth):
    """A working token of alice's (registered on first use)."""
    return auth.headers()

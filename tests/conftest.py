"""Fixtures: a real MariaDB database created for the test run and dropped after it."""

import base64
import json
import re
import threading
import time
import uuid

import MySQLdb
import pyotp
import pytest

from app import create_app
from config import Config
from secureapi.data.database import init_db

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256"
PASSWORD = "correct horse battery staple"
# Fixed, not generated: tests import this module under two names.
TEST_TOTP_KEY = base64.urlsafe_b64encode(b"test-only-totp-encryption-key-32").decode()
TEST_RECOVERY_CODE_KEY = "test-only-recovery-code-key-that-is-long-enough"


def server_settings():
    return {
        key: getattr(Config, key)
        for key in (
            "MYSQL_HOST",
            "MYSQL_PORT",
            "MYSQL_USER",
            "MYSQL_PASSWORD",
            "MYSQL_CONNECT_TIMEOUT",
        )
    }


def connect(database=None):
    settings = server_settings()
    kwargs = {"db": database} if database else {}
    return MySQLdb.connect(
        host=settings["MYSQL_HOST"],
        port=settings["MYSQL_PORT"],
        user=settings["MYSQL_USER"],
        password=settings["MYSQL_PASSWORD"],
        charset="utf8mb4",
        autocommit=True,
        cursorclass=MySQLdb.cursors.DictCursor,
        **kwargs,
    )


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


def next_link(response):
    """The path and query of a list page's `Link: <...>; rel="next"`, or None on the last."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = re.fullmatch(r'<(/products\?[^>]+)>; rel="next"', link)
    assert match, link
    return match.group(1)


def sql(db, statement, args=()):
    cursor = db.cursor()
    cursor.execute(statement, args)
    return cursor.fetchall()


class Clock:
    """A clock the tests move by hand, so lockout periods pass without sleeping."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset

    def advance(self, seconds):
        self.offset += seconds


def app_config(database, **overrides):
    return {
        "TESTING": True,
        "MYSQL_DB": database,
        "SECRET_KEY": TEST_SECRET_KEY,
        "TOTP_ENCRYPTION_KEY": TEST_TOTP_KEY,
        "RECOVERY_CODE_KEY": TEST_RECOVERY_CODE_KEY,
        "BCRYPT_ROUNDS": 4,  # fast tests; production default stays 12
        "RATELIMIT_ENABLED": False,  # tests/test_abuse.py turns it on where it is tested
    } | overrides


def at_once(*calls):
    """The results of calls released at the same moment, each in its own thread (and so on
    its own database connection), in the order given."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def post_concurrently(app, count, path, body):
    """The sorted statuses of `count` identical POSTs released at the same moment."""
    clients = [app.test_client() for _ in range(count)]
    calls = [lambda client=client: client.post(path, json=body).status_code for client in clients]
    return sorted(at_once(*calls))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(database, db, clock):
    return create_app(app_config(database, CLOCK=clock))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    def __init__(self, client, clock):
        self.client = client
        self.clock = clock
        self.secrets = {}
        self.recovery_codes = {}

    def register(self, username="alice", password=PASSWORD):
        response = self.client.post("/register", json={"username": username, "password": password})
        assert response.status_code == 201, response.json
        self.secrets[username] = response.json["secret"]
        self.recovery_codes[username] = response.json["recovery_codes"]
        return response.json

    def create_user(self, username, role, password=PASSWORD):
        """Create a user with the CLI, as an operator would (any role, admin too)."""
        runner = self.client.application.test_cli_runner()
        result = runner.invoke(
            args=["create-user", username, "--role", role, "--json"], input=f"{password}\n"
        )
        assert result.exit_code == 0, result.output
        record = json.loads(result.output)
        self.secrets[username] = record["secret"]
        self.recovery_codes[username] = record["recovery_codes"]
        return record

    def code(self, username="alice", offset=0):
        """The TOTP code an authenticator shows, `offset` steps from now."""
        return pyotp.TOTP(self.secrets[username]).at(self.clock() + 30 * offset)

    def login(self, username="alice", password=PASSWORD, otp=None, offset=0):
        otp = self.code(username, offset) if otp is None else otp
        return self.client.post(
            "/login", json={"username": username, "password": password, "otp": otp}
        )

    def token(self, username="alice"):
        """Register, log in and return a working token."""
        if username not in self.secrets:
            self.register(username)
        response = self.login(username)
        assert response.status_code == 200, response.json
        return response.json["token"]

    def headers(self, username="alice"):
        return {"Authorization": f"Bearer {self.token(username)}"}


@pytest.fixture
def auth(client, clock):
    return AuthActions(client, clock)

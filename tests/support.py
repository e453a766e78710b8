"""Helpers the test modules share: import them from here (`from tests.support import ...`),
never from conftest.py, which holds only fixtures and hooks."""

import base64
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import MySQLdb
import MySQLdb.cursors
import pyotp
import pytest

from config import Config

ROOT = Path(__file__).resolve().parent.parent

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256"
PASSWORD = "correct horse battery staple"
TEST_TOTP_KEY = base64.urlsafe_b64encode(b"test-only-totp-encryption-key-32").decode()
TEST_RECOVERY_CODE_KEY = "test-only-recovery-code-key-that-is-long-enough"


# --- The database server -------------------------------------------------------------------


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


def sql(db, statement, args=()):
    cursor = db.cursor()
    cursor.execute(statement, args)
    return cursor.fetchall()


def running(db, database, statement):
    """(connection, query) ids of the connections to `database` running `statement` (its
    beginning) now. Only this run's database: other suites share the server."""
    rows = sql(
        db,
        "SELECT ID, QUERY_ID FROM information_schema.PROCESSLIST"
        " WHERE DB = %s AND INFO LIKE CONCAT(%s, '%%')",
        (database, statement),
    )
    return {(row["ID"], row["QUERY_ID"]) for row in rows}


def lock_waits(db, database):
    """How many transactions on `database` wait for a lock now. Only this run's database:
    other suites share the server, and their lock waits are none of ours."""
    rows = sql(
        db,
        "SELECT COUNT(*) AS n FROM information_schema.innodb_trx AS trx"
        " JOIN information_schema.processlist AS process ON process.id = trx.trx_mysql_thread_id"
        " WHERE trx.trx_state = 'LOCK WAIT' AND process.db = %s",
        (database,),
    )
    return rows[0]["n"]


# --- The app -------------------------------------------------------------------------------


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


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def basic(username, password):
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def next_link(response):
    """The path and query of a list page's `Link: <...>; rel="next"`, or None on the last."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = re.fullmatch(r'<(/products\?[^>]+)>; rel="next"', link)
    assert match, link
    return match.group(1)


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
        return bearer(self.token(username))


# --- Concurrency ---------------------------------------------------------------------------


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


def during_bcrypt(monkeypatch, module, name, action):
    """Run `action` right after `module.name` (a real bcrypt check) returns: the widest
    moment of a real race, without sleeping."""
    original = getattr(module, name)

    def checked_then_raced(*args):
        result = original(*args)
        # Another thread: its own request context and database connection, as another
        # client's request would have.
        racer = threading.Thread(target=action)
        racer.start()
        racer.join()
        return result

    monkeypatch.setattr(module, name, checked_then_raced)


def post_concurrently(app, count, path, body):
    """The sorted statuses of `count` identical POSTs released at the same moment."""
    clients = [app.test_client() for _ in range(count)]
    calls = [lambda client=client: client.post(path, json=body).status_code for client in clients]
    return sorted(at_once(*calls))


# --- Other processes: servers of our own, optional tools -----------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(0.1)
    raise TimeoutError("server did not come up")


def require_tool(path_or_name, why):
    """The full path of an optional tool (Node, Chromium...). Missing, its test is skipped
    with a reason; but not when REQUIRE_ALL_TOOLS=1 (make test, and so CI): there it fails,
    so that a machine without the tool cannot pass the full suite by skipping."""
    found = shutil.which(str(path_or_name))
    if found:
        return found
    message = f"{path_or_name} is missing: {why}"
    if os.environ.get("REQUIRE_ALL_TOOLS") == "1":
        pytest.fail(f"{message} (REQUIRE_ALL_TOOLS=1: make test needs every tool)")
    pytest.skip(message)


class PrivateMariaDB:
    """A mariadbd of our own (own data directory and port) that tests may stop and kill."""

    def __init__(self, directory, *options):
        self.directory = directory
        self.options = options
        self.port = free_port()
        self.process = None
        shutil.chown(directory, "mysql", "mysql")
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={directory}/data",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )

    def start(self):
        self.process = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.directory}/data",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--user=mysql",
                f"--socket={self.directory}/mysqld.sock",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                f"--pid-file={self.directory}/mysqld.pid",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", **self.tls)
        )

    @property
    def tls(self):
        ca = f"{self.directory}/ca.pem"
        return {"ssl": {"ca": ca}} if os.path.exists(ca) else {}

    def stop(self):
        self.process.terminate()
        self.process.wait(30)

    def kill(self):
        self.process.kill()
        self.process.wait(30)


class Instance:
    """One gunicorn running the app, with its own workers."""

    def __init__(self, database, log_path, **environment):
        self.port = free_port()
        env = os.environ | {
            "MYSQL_DB": database,
            "SECRET_KEY": TEST_SECRET_KEY,
            "TOTP_ENCRYPTION_KEY": TEST_TOTP_KEY,
            "RECOVERY_CODE_KEY": TEST_RECOVERY_CODE_KEY,
            "BCRYPT_ROUNDS": "4",
            "RATELIMIT_ENABLED": "false",
            "WORKERS": "2",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        env |= environment
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-c",
                "gunicorn.conf.py",
                "app:create_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        wait_until(lambda: self.call("GET", "/products")[0] == 401)

    def call(self, method, path, body=None, token=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if token:
            headers |= bearer(token)
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, json.loads(data) if data else None

    def login(self, username, secret, offset=0, password=PASSWORD):
        code = pyotp.TOTP(secret).at(time.time() + 30 * offset)
        return self.call(
            "POST", "/login", {"username": username, "password": password, "otp": code}
        )

    def stop(self):
        self.process.terminate()
        self.process.wait(30)
        self.log.close()

"""The database: each worker thread's kept-open connection, query/execute/in_transaction
(retried on conflicts), init-db.

The lowest layer: it imports nothing of the project's, and knows no table but through SQL
handed to it (schema.sql holds the tables).
"""

import os
import random
import re
import runpy
import select
import threading
import time
from datetime import UTC, datetime
from typing import NamedTuple

import click
import MySQLdb
from flask import current_app, g
from flask.cli import with_appcontext
from flask_mysqldb import MySQL
from MySQLdb.connections import Connection
from MySQLdb.constants import CLIENT, ER, FIELD_TYPE
from MySQLdb.converters import conversions
from MySQLdb.times import DateTime_or_None

# A kept connection is reused only by an app with these same settings.
CONNECTION_SETTINGS = (
    "MYSQL_HOST",
    "MYSQL_PORT",
    "MYSQL_USER",
    "MYSQL_PASSWORD",
    "MYSQL_DB",
    "MYSQL_SSL_CA",
    "MYSQL_SSL_CERT",
    "MYSQL_SSL_KEY",
    "MYSQL_INIT_COMMAND",
)

# MySQL errors the app answers by trying again: a deadlock (on Galera also a certification
# conflict another node won) or a lock wait timeout.
CONFLICTS = (ER.LOCK_DEADLOCK, ER.LOCK_WAIT_TIMEOUT)
# Galera answers 1047 on a node outside the primary component, or still joining...
NODE_NOT_READY = ER.UNKNOWN_COM_ERROR
# ...and 1180 to a commit on a node that lost the primary component while replicating it:
# the write set went nowhere, so the transaction did not happen and may run again elsewhere.
COMMIT_FAILED = ER.ERROR_DURING_COMMIT
NOT_IN_PRIMARY = "Not connected to Primary Component"
# New connections tried after a 1047: the first at once, the others a second apart, so that
# a load balancer's health check has time to notice (deploy/haproxy.cfg: about 1.5 s).
NODE_NOT_READY_RECONNECTS = 4
CONFLICT_ATTEMPTS = 6


class KeptConnection(NamedTuple):
    settings: tuple  # CONNECTION_SETTINGS' values when it was opened
    connection: Connection
    opened_at: float  # by the app's clock


class MySQLKeptOpen(MySQL):
    """Flask-MySQLdb, but each thread keeps its connection between requests.

    Connecting costs more round trips (handshake, authentication, session settings) than
    a whole authenticated read. Connections run in autocommit mode, so a read leaves no
    transaction open; writes of several statements use in_transaction()."""

    def __init__(self):
        super().__init__()
        self.kept = threading.local()

    def init_app(self, app):
        app.config["MYSQL_CUSTOM_OPTIONS"] = {
            # FOUND_ROWS: an UPDATE reports the rows it matched, so "no such product" is
            # told apart from "no value changed".
            "client_flag": CLIENT.FOUND_ROWS,
            # A database that hangs costs a request at most this long (the C client tries
            # a read up to three times), then the request gets a 503.
            "read_timeout": app.config["MYSQL_READ_TIMEOUT"],
            "write_timeout": app.config["MYSQL_READ_TIMEOUT"],
            "init_command": init_command(app.config["MYSQL_INIT_COMMAND"]),
            "conv": CONVERSIONS,
        } | tls_options(app.config)
        super().init_app(app)

    @property
    def connection(self):
        if "mysql_db" not in g:
            settings = tuple(current_app.config[key] for key in CONNECTION_SETTINGS)
            kept = getattr(self.kept, "connection", None)
            if kept and (
                kept.settings != settings or too_old(kept.opened_at) or not is_open(kept.connection)
            ):
                close_quietly(kept.connection)
                kept = None
            if kept is None:
                kept = KeptConnection(settings, self.connect, current_app.config["CLOCK"]())
            self.kept.connection = kept
            g.mysql_db = kept.connection
        return g.mysql_db

    def drop_connection(self):
        """Close the request's connection now; the next statement gets a new one."""
        connection = g.pop("mysql_db", None)
        if connection is not None:
            close_quietly(connection)
        self.kept.connection = None

    def teardown(self, exception):
        connection = g.pop("mysql_db", None)
        # After a database error or a 500 the connection's state is unknown: connect
        # afresh next time.
        if connection is not None and (exception or g.pop("database_failed", False)):
            close_quietly(connection)
            self.kept.connection = None


def datetime_or_none(value):
    """A DATETIME value as the server sends it, 'YYYY-MM-DD hh:mm:ss[.fraction]', read by
    datetime.fromisoformat (C), some ten times faster than MySQLdb's parser in Python: a
    100-row page has 200 of them. Anything else (a zero date) gets MySQLdb's own answer."""
    if len(value) >= 19:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return DateTime_or_None(value)


CONVERSIONS = conversions | {
    FIELD_TYPE.DATETIME: datetime_or_none,
    FIELD_TYPE.TIMESTAMP: datetime_or_none,
}


def init_command(extra):
    """What every new connection runs first: UTC for DATETIME columns (see utc_iso), then
    MYSQL_INIT_COMMAND's session settings (e.g. SET SESSION wsrep_sync_wait = 1). The client
    runs one statement, so both become one SET."""
    command = "SET time_zone = '+00:00'"
    if not extra:
        return command
    settings = re.fullmatch(r"\s*SET\s+(.+?)[\s;]*", extra, re.IGNORECASE | re.DOTALL)
    if not settings:
        raise RuntimeError("MYSQL_INIT_COMMAND must be one SET statement (session settings)")
    return f"{command}, {settings.group(1)}"


def too_old(connected_at):
    """Whether a kept connection has lived past MYSQL_CONNECTION_MAX_AGE: behind a load
    balancer, reconnecting now and then is what moves the app back to a node that returned."""
    max_age = current_app.config["MYSQL_CONNECTION_MAX_AGE"]
    return max_age > 0 and current_app.config["CLOCK"]() - connected_at >= max_age


def tls_options(config):
    """mysqlclient's options for TLS with full verification, when MYSQL_SSL_CA is set."""
    if not config.get("MYSQL_SSL_CA"):
        return {}
    files = {"ca": "MYSQL_SSL_CA", "cert": "MYSQL_SSL_CERT", "key": "MYSQL_SSL_KEY"}
    ssl = {name: config[key] for name, key in files.items() if config.get(key)}
    return {"ssl": ssl, "ssl_mode": "VERIFY_IDENTITY"}


def forget_connection():
    """The request failed in a way that leaves the connection's state unknown: close it
    at the end of the request instead of keeping it for the next one."""
    g.database_failed = True


def is_open(connection):
    """Whether an idle connection is still usable, without a round trip: the server
    never writes to an idle connection unless it is closing it (restart, timeout)."""
    try:
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (MySQLdb.Error, OSError, ValueError):
        return False


def close_quietly(connection):
    try:
        connection.close()
    except MySQLdb.Error:
        pass


mysql = MySQLKeptOpen()


def error_number(error):
    return error.args[0] if error.args and isinstance(error.args[0], int) else None


def node_not_ready(error):
    number = error_number(error)
    return number == NODE_NOT_READY or (number == COMMIT_FAILED and NOT_IN_PRIMARY in str(error))


def retried(attempt):
    """attempt() (a whole transaction, or one autocommitted statement), run again when the
    database undid it without effect: on a deadlock, a Galera certification conflict or a
    lock wait timeout, a few times after a random pause, so that the rerun sees what the
    winner wrote and the client gets the answer it would have got one request later (a
    409, 401 or 429), not a 503; and on a new connection when the node is not ready (behind
    a load balancer the new one goes to another node, once the balancer has noticed). Inside
    a transaction a statement is not retried on its own: the transaction is."""
    if g.get("in_transaction"):
        return attempt()
    conflicts = reconnects = 0
    while True:
        try:
            return attempt()
        except MySQLdb.Error as error:
            if node_not_ready(error) and reconnects < NODE_NOT_READY_RECONNECTS:
                mysql.drop_connection()
                if reconnects:
                    time.sleep(1)
                reconnects += 1
            elif error_number(error) in CONFLICTS and conflicts < CONFLICT_ATTEMPTS - 1:
                conflicts += 1
                # Full jitter: racers that collided once do not collide again in step.
                time.sleep(random.uniform(0, 0.01 * 2**conflicts))  # noqa: S311
            else:
                raise


def query(sql, args=()):
    """Run one statement on the request's connection; return its rows."""

    def attempt():
        cursor = mysql.connection.cursor()
        try:
            cursor.execute(sql, args)
            return cursor.fetchall()
        finally:
            cursor.close()

    return retried(attempt)


def execute(sql, args=()):
    """Run one write (autocommitted); return the number of rows it matched."""

    def attempt():
        cursor = mysql.connection.cursor()
        try:
            return cursor.execute(sql, args)
        finally:
            cursor.close()

    return retried(attempt)


def utc_iso(value):
    """A DATETIME column (UTC: every connection sets time_zone) as ISO 8601 with Z, to the
    second. isoformat() without arguments is the quicker (a 100-row page has 200 of these);
    the columns hold whole seconds, so there is seldom a fraction to drop first."""
    if not value:
        return None
    if value.microsecond:
        value = value.replace(microsecond=0)
    return value.isoformat() + "Z"


def utc_datetime(timestamp):
    """Unix time as the naive UTC datetime a DATETIME column holds: how the app writes a
    time from its clock (config.now), which tests can move."""
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)


def in_transaction(work, *args):
    """Run work(cursor, *args) in one transaction, commit, and return what it returned; if
    it raises, nothing it wrote stays. On a conflict the whole of work runs again, its
    reads included (see retried): so it must only read and write the database, and leave
    audit lines, bcrypt and anything else done once to its caller, after it returns."""
    if g.get("in_transaction"):
        # BEGIN would commit the outer transaction, and a rerun could not include it.
        raise RuntimeError("in_transaction() cannot be nested")

    def attempt():
        connection = mysql.connection
        connection.begin()
        cursor = connection.cursor()
        g.in_transaction = True
        try:
            result = work(cursor, *args)
            connection.commit()
            return result
        except BaseException:
            try:
                connection.rollback()
            except MySQLdb.Error:
                pass  # the connection broke: the server rolls back
            raise
        finally:
            g.in_transaction = False
            cursor.close()

    return retried(attempt)


# The project folder: schema.sql and migrations/ stay at the top, beside app.py.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIGRATIONS = os.path.join(ROOT, "migrations")


def sql_statements(path):
    with open(path) as f:
        # Whole-line "--" comments only, so that ";" can end each statement.
        lines = [line for line in f if not line.lstrip().startswith("--")]
    return [statement for statement in "".join(lines).split(";") if statement.strip()]


def init_db(config):
    """Create the database if missing, apply schema.sql (idempotent, never drops), then
    every migration the database has not had yet, in name order, each recorded once."""
    database = config["MYSQL_DB"]
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", database):
        raise click.ClickException("MYSQL_DB may only contain letters, digits and _")
    connection = MySQLdb.connect(
        host=config["MYSQL_HOST"],
        port=config["MYSQL_PORT"],
        user=config["MYSQL_USER"],
        password=config["MYSQL_PASSWORD"],
        charset="utf8mb4",
        connect_timeout=config["MYSQL_CONNECT_TIMEOUT"],
        **tls_options(config),
    )
    applied = []
    try:
        cursor = connection.cursor()
        cursor.execute(
            f"CREATE DATABASE IF NOT EXISTS `{database}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
        cursor.execute(f"USE `{database}`")
        # Two instances starting at once must not both apply a migration.
        cursor.execute("SELECT GET_LOCK(%s, 60)", (f"{database}.init_db",))
        if cursor.fetchone()[0] != 1:
            raise click.ClickException("Another init-db holds the lock; try again.")
        for statement in sql_statements(os.path.join(ROOT, "schema.sql")):
            cursor.execute(statement)
        cursor.execute("SELECT name FROM schema_migrations")
        done = {row[0] for row in cursor.fetchall()}
        for name in sorted(os.listdir(MIGRATIONS)):
            if not name.endswith((".sql", ".py")) or name in done:
                continue
            # MariaDB commits DDL statement by statement, so a migration is written to be
            # safe to run again (IF NOT EXISTS) should it stop halfway.
            path = os.path.join(MIGRATIONS, name)
            connection.begin()
            if name.endswith(".py"):  # data that SQL cannot compute: migrate(cursor)
                runpy.run_path(path)["migrate"](cursor)
            else:
                for statement in sql_statements(path):
                    cursor.execute(statement)
            cursor.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            connection.commit()
            applied.append(name)
    finally:
        connection.close()
    return applied


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the database and tables if they do not exist yet."""
    for name in init_db(current_app.config):
        click.echo(f"Applied migration {name}.")
    click.echo(f"Database {current_app.config['MYSQL_DB']} is ready.")

"""The database: each worker thread's kept-open connection, query/execute/transaction, init-db.

The lowest layer: it imports nothing of the project's, and knows no table but through SQL
handed to it (schema.sql holds the tables).
"""

import contextlib
import os
import re
import select
import threading

import click
import MySQLdb
from flask import current_app, g
from flask.cli import with_appcontext
from flask_mysqldb import MySQL
from MySQLdb.constants import CLIENT

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
)


class MySQLKeptOpen(MySQL):
    """Flask-MySQLdb, but each thread keeps its connection between requests.

    Connecting costs more round trips (handshake, authentication, session settings) than
    a whole authenticated read. Connections run in autocommit mode, so a read leaves no
    transaction open; writes of several statements use transaction()."""

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
            # DATETIME columns hold UTC, whatever the server's time zone (see utc_iso).
            "init_command": "SET time_zone = '+00:00'",
        } | tls_options(app.config)
        super().init_app(app)

    @property
    def connection(self):
        if "mysql_db" not in g:
            settings = tuple(current_app.config[key] for key in CONNECTION_SETTINGS)
            kept = getattr(self.kept, "connection", None)
            if kept and (kept[0] != settings or not is_open(kept[1])):
                close_quietly(kept[1])
                kept = None
            self.kept.connection = kept or (settings, self.connect)
            g.mysql_db = self.kept.connection[1]
        return g.mysql_db

    def teardown(self, exception):
        connection = g.pop("mysql_db", None)
        # After a database error or a 500 the connection's state is unknown: connect
        # afresh next time.
        if connection is not None and (exception or g.pop("database_failed", False)):
            close_quietly(connection)
            self.kept.connection = None


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


def query(sql, args=()):
    """Run one statement on the request's connection; return its rows."""
    cursor = mysql.connection.cursor()
    try:
        cursor.execute(sql, args)
        return cursor.fetchall()
    finally:
        cursor.close()


def execute(sql, args=()):
    """Run one write (autocommitted); return the number of rows it matched."""
    cursor = mysql.connection.cursor()
    try:
        return cursor.execute(sql, args)
    finally:
        cursor.close()


def utc_iso(value):
    """A DATETIME column (UTC: every connection sets time_zone) as ISO 8601 with Z."""
    return value.isoformat(timespec="seconds") + "Z" if value else None


@contextlib.contextmanager
def transaction():
    """A cursor whose statements are committed together, or not at all."""
    connection = mysql.connection
    connection.begin()
    cursor = connection.cursor()
    try:
        yield cursor
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()


ROOT = os.path.dirname(os.path.abspath(__file__))
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
            if not name.endswith(".sql") or name in done:
                continue
            # MariaDB commits DDL statement by statement, so a migration is written to be
            # safe to run again (IF NOT EXISTS) should it stop halfway.
            connection.begin()
            for statement in sql_statements(os.path.join(MIGRATIONS, name)):
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

"""The database layer: transactions the server aborts for a conflict are run again, whole;
session settings from MYSQL_INIT_COMMAND; kept connections replaced after their max age."""

import logging
import threading
import time
from datetime import datetime

import pytest
from MySQLdb.constants import FIELD_TYPE
from MySQLdb.times import DateTime_or_None

from secureapi.data.database import datetime_or_none, mysql, query, utc_iso
from tests.support import connect, running, sql


def wait_for(check, seconds=30):
    deadline = time.monotonic() + seconds
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return result


def in_thread(call):
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=call()))
    thread.start()
    return thread, result


def failures(db, account):
    return (
        sql(db, "SELECT failures FROM login_failures WHERE username = %s", (account,)),
        sql(db, "SELECT failures FROM client_failures WHERE account = %s", (account,)),
    )


def test_a_deadlock_victim_is_run_again_and_gets_the_right_answer(app, auth, db, database, caplog):
    """The login's lockout transaction loses a real InnoDB deadlock (error 1213, as a Galera
    certification conflict would fail it): rerun whole, it answers 401 for the wrong
    password, not 503, and counts the failure and logs it once."""
    auth.register("alice")
    other = connect(database)
    other.begin()
    # The heavier transaction: InnoDB rolls back the one that wrote less, the app's.
    other.cursor().executemany(
        "INSERT INTO client_failures (account, client, failures) VALUES (%s, '10.0.0.1', 0)",
        [(f"filler-{n}",) for n in range(200)],
    )
    # Hold the row the app's attempt writes second...
    sql(
        other,
        "INSERT INTO client_failures (account, client, failures) VALUES ('alice', '127.0.0.1', 0)",
    )
    caplog.set_level(logging.INFO, logger="secureapi.audit")
    thread, result = in_thread(lambda: auth.login("alice", password="wrong password!!"))
    wait_for(lambda: running(db, database, "INSERT INTO client_failures"))
    # ...and ask for the one it holds (its login_failures row): a deadlock.
    sql(other, "SELECT * FROM login_failures WHERE username = 'alice' FOR UPDATE")
    other.rollback()
    other.close()
    thread.join(30)

    assert result["value"].status_code == 401
    assert failures(db, "alice") == (({"failures": 1},), ({"failures": 1},))
    lines = [r.message for r in caplog.records if '"login_failed"' in r.message]
    assert len(lines) == 1


def test_a_lock_wait_timeout_is_tried_again(database, db, make_app, auth):
    """Error 1205 (a lock held past innodb_lock_wait_timeout, set to 1 s here through
    MYSQL_INIT_COMMAND) is tried again: once the lock is free the client gets its answer."""
    app = make_app(MYSQL_INIT_COMMAND="SET SESSION innodb_lock_wait_timeout = 1")
    auth.client = app.test_client()
    auth.register("alice")
    other = connect(database)
    other.begin()
    sql(other, "SELECT * FROM login_failures WHERE username = 'alice' FOR UPDATE")
    thread, result = in_thread(lambda: auth.login("alice", password="wrong password!!"))
    waiting = lambda: running(db, database, "INSERT INTO login_failures")  # noqa: E731
    first = wait_for(waiting)
    # The first attempt timed out and a second one waits: let it through.
    wait_for(lambda: waiting() - first)
    other.rollback()
    other.close()
    thread.join(30)

    assert result["value"].status_code == 401
    assert failures(db, "alice") == (({"failures": 1},), ({"failures": 1},))


def test_init_command_adds_session_settings_to_utc(make_app):
    app = make_app(MYSQL_INIT_COMMAND="SET SESSION wait_timeout = 1234, sql_notes = 0;")
    with app.app_context():
        row = query("SELECT @@time_zone AS zone, @@wait_timeout AS wait, @@sql_notes AS notes")
    assert row == ({"zone": "+00:00", "wait": 1234, "notes": 0},)


def test_init_command_must_be_a_set_statement(make_app):
    with pytest.raises(RuntimeError, match="MYSQL_INIT_COMMAND must be one SET statement"):
        make_app(MYSQL_INIT_COMMAND="DELETE FROM users")


def test_datetimes_are_read_as_mysqldb_reads_them(app):
    # The app reads DATETIME columns with its own, faster converter: it must give what
    # MySQLdb's would for everything the server sends, fractions and zero dates included.
    values = ("2026-12-02 16:19:33", "1000-01-01 00:00:00", "9999-12-31 23:59:59")
    values += ("2020-01-02 03:04:05.25", "2020-01-02 03:04:05.123456", "0000-00-00 00:00:00")
    with app.app_context():
        assert mysql.connection.converter[FIELD_TYPE.DATETIME] is datetime_or_none
        for value in values:
            precision = len(value.partition(".")[2])
            row = query(f"SELECT CAST(%s AS DATETIME({precision})) AS value", (value,))[0]
            assert row["value"] == DateTime_or_None(value)
            assert row["value"] is None or row["value"].isoformat(" ").startswith(value)


@pytest.mark.parametrize(
    "value, text",
    [
        (datetime(2026, 12, 2, 16, 19, 33), "2026-12-02T16:19:33Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 678), "2026-01-02T03:04:05Z"),  # to the second
        (datetime(1, 1, 1), "0001-01-01T00:00:00Z"),
        (None, None),
    ],
)
def test_utc_iso_is_iso_8601_to_the_second_with_z(value, text):
    assert utc_iso(value) == text


def connection_id(app):
    with app.app_context():
        return query("SELECT CONNECTION_ID() AS id")[0]["id"]


def test_kept_connections_are_replaced_after_their_max_age(make_app, db, clock):
    app = make_app(MYSQL_CONNECTION_MAX_AGE=60)
    first = connection_id(app)
    assert connection_id(app) == first  # kept between requests
    clock.advance(59)
    assert connection_id(app) == first
    clock.advance(1)
    second = connection_id(app)
    assert second != first
    assert connection_id(app) == second
    # The old one is closed, not left open on the server (its id, which no other connection
    # of the server can have).
    process = "SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s"
    wait_for(lambda: not sql(db, process, (first,)))


def test_max_age_zero_keeps_connections(make_app, clock):
    app = make_app(MYSQL_CONNECTION_MAX_AGE=0)
    first = connection_id(app)
    clock.advance(10**6)
    assert connection_id(app) == first

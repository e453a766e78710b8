"""Blueprint for operators: GET /healthz (alive), GET /readyz (able to serve), GET /metrics
(Prometheus, behind METRICS_TOKEN), and the `purge` command that deletes stale rows.

A load balancer calls the probes every second: they take no token, write no audit line,
are not rate-limited, and /readyz answers within about a second whatever the database does.
"""

import functools
import logging
import threading
from concurrent.futures import Future, wait

import click
import MySQLdb
from flask import Blueprint, abort, current_app
from flask.cli import with_appcontext
from limits.storage import storage_from_string

from config import now
from secureapi.core import metrics
from secureapi.core.refusals import Unavailable
from secureapi.data.database import init_command, tls_options
from secureapi.data.idempotency import purge_expired
from secureapi.security.access_tokens import PURGE_AFTER_DAYS, purge_expired_tokens
from secureapi.security.lockout import purge_stale_rows
from secureapi.security.rate_limits import limiter
from secureapi.security.sessions import purge_dead_sessions
from secureapi.security.tokens import bearer_token_matches

bp = Blueprint("operations", __name__)
log = logging.getLogger(__name__)

# How long /readyz waits for its checks: a database slower than this cannot serve either.
READINESS_SECONDS = 1.0
# How long a check's result answers this worker's probes (by the app's clock).
FRESH_SECONDS = 1.0


class Check:
    """One dependency's check, run in a thread of its own so that the probe can stop
    waiting after READINESS_SECONDS even where a client library cannot (a frozen server:
    the MySQL client tries a read up to three times). Probes that come while a check is
    still running wait for that one: a hung dependency costs one thread, not one per probe;
    and the result of a check started less than FRESH_SECONDS ago answers the next probes
    (December review: 300 probes were 301 new database connections). The server log says
    why a check fails, once per outage (not once per probe)."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.running = None
        self.started_at = None
        self.failing = False

    def start(self, run, at):
        """The check's result to come: the last one if it is fresh or still running."""
        with self.lock:
            fresh = self.started_at is not None and at - self.started_at < FRESH_SECONDS
            if self.running is None or (self.running.done() and not fresh):
                self.started_at = at
                self.running = Future()
                threading.Thread(target=self.finish, args=(self.running, run), daemon=True).start()
            return self.running

    def finish(self, future, run):
        try:
            ready, reason = bool(run()), "it answered wrongly"
        except Exception as error:  # any failure means "not ready"; the text is for the log
            ready, reason = False, error
        if not ready and not self.failing:
            log.warning("readiness: the %s check fails: %s", self.name, reason)
        elif ready and self.failing:
            log.warning("readiness: the %s check passes again", self.name)
        self.failing = not ready
        future.set_result(ready)


def database_answers(config):
    """A new connection set up as the workers' are, and one statement, with short timeouts:
    it proves what a request needs (the server answers statements, the credentials, TLS and
    the session settings of MYSQL_INIT_COMMAND work, a connection is to be had), and leaves
    the workers' kept connections alone."""
    connection = MySQLdb.connect(
        host=config["MYSQL_HOST"],
        port=config["MYSQL_PORT"],
        user=config["MYSQL_USER"],
        password=config["MYSQL_PASSWORD"],
        db=config["MYSQL_DB"],
        connect_timeout=1,
        read_timeout=1,
        write_timeout=1,
        init_command=init_command(config["MYSQL_INIT_COMMAND"]),
        **tls_options(config),
    )
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)
    finally:
        connection.close()


@functools.lru_cache(maxsize=4)
def rate_limit_storage(uri):
    """A client of the rate-limit storage for the probes, kept between them."""
    options = {}
    if uri.startswith(("redis://", "rediss://", "redis+unix://")):
        options = {"socket_connect_timeout": 1, "socket_timeout": 1}
    return storage_from_string(uri, **options)


def readiness_checks(config):
    """{name: what to run} for this app's dependencies. The rate-limit storage counts when
    it is shared (Redis): an instance that cannot reach it would count each worker's
    requests on its own, a weaker limit."""
    checks = {"database": functools.partial(database_answers, config)}
    uri = config["RATELIMIT_STORAGE_URI"]
    if config["RATELIMIT_ENABLED"] and not uri.startswith("memory://"):
        checks["rate-limit storage"] = rate_limit_storage(uri).check
    return checks


@bp.record_once
def create_checks(state):
    state.app.extensions["readiness_checks"] = {
        name: Check(name) for name in ("database", "rate-limit storage")
    }


@bp.get("/healthz")
@limiter.exempt
def healthz():
    """Alive: the process answers. Touches nothing else, so that a database outage does
    not make the load balancer restart healthy instances."""
    return {"status": "ok"}


@bp.get("/readyz")
@limiter.exempt
def readyz():
    checks = current_app.extensions["readiness_checks"]
    running = {
        name: checks[name].start(run, now())
        for name, run in readiness_checks(current_app.config).items()
    }
    wait(running.values(), timeout=READINESS_SECONDS)  # all at once: one second in all
    down = [name for name, future in running.items() if not (future.done() and future.result())]
    if down:
        raise Unavailable(f"Not ready: the {' and the '.join(down)} did not answer in time.")
    return {"status": "ready"}


@bp.get("/metrics")
@limiter.exempt
def get_metrics():
    """Only for the holder of METRICS_TOKEN; for anyone else, the 404 of any unknown URL,
    so that the endpoint does not advertise itself."""
    token = current_app.config["METRICS_TOKEN"]
    if not token or not bearer_token_matches(token):
        abort(404)
    body, content_type = metrics.exposition()
    return body, 200, {"Content-Type": content_type}


@click.command("purge")
@with_appcontext
def purge_command():
    """Delete stale rows: lockout rows untouched for LOGIN_FAILURES_TTL_SECONDS, expired
    idempotency keys, dead sessions, and personal access tokens expired over 30 days ago."""
    removed = purge_stale_rows()
    ttl = current_app.config["LOGIN_FAILURES_TTL_SECONDS"]
    for table, count in removed.items():
        click.echo(f"Removed {count} {table} rows untouched for {ttl} seconds.")
    click.echo(f"Removed {purge_expired()} expired idempotency keys.")
    click.echo(f"Removed {purge_dead_sessions()} sessions that went idle or past their age.")
    days = PURGE_AFTER_DAYS
    click.echo(f"Removed {purge_expired_tokens()} access tokens expired over {days} days ago.")

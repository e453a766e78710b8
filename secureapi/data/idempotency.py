"""Idempotency-Key for creates (the IETF httpapi draft, as Stripe runs it): a client that
timed out may send its POST again with the same key and gets the first answer back instead
of a second product.

Each key belongs to one user. Its row is inserted in the same transaction as the write it
guards, so the row and the write commit together or not at all: a request that failed
(a 503, a crash) leaves no trace and may be retried. A second request with the key waits
briefly on the first one's uncommitted row: if the first commits in time, the second gets
its answer replayed; if not, a 409."""

import hashlib
import json
import re
from typing import NamedTuple

import MySQLdb
from flask import current_app, g, request
from MySQLdb.constants import ER

from config import now
from secureapi.core.refusals import Conflict, InvalidToken, UnprocessableContent, ValidationError
from secureapi.data.database import execute, mysql, utc_datetime

KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
# How long a request waits for another request with its key to finish, before a 409.
WAIT_SECONDS = 1
REPLAYED_HEADERS = ("Location", "ETag")
# Each keyed create removes up to this many expired keys: the table cannot outgrow a day of
# creates even where nobody runs `flask purge`.
PURGE_PER_CREATE = 2


def idempotency_key():
    """The request's Idempotency-Key, or None; a 400 if it is not 1-255 visible ASCII."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not KEY_PATTERN.fullmatch(key):
        raise ValidationError(
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good key)."
        )
    return key


def fingerprint(request_data):
    """SHA-256 of the validated request, so an equal body written differently (10 or 10.00,
    keys in another order) is the same request."""
    canonical = json.dumps(request_data, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Answer(NamedTuple):
    """A create's answer, kept for a retry with its key."""

    status: int
    body: bytes
    headers: dict


def reserve(cursor, key, request_fingerprint):
    """Claim `key` for this request inside the caller's transaction: None when the request
    should run, the first request's Answer to send again, or a refusal: 422 for a different
    body, 409 while the first request is still running."""
    try:
        return claim(cursor, key, request_fingerprint)
    except MySQLdb.OperationalError as error:
        # 1205: the first request still holds the key after WAIT_SECONDS. 1213: retries of
        # one key waited on a first request that then rolled back, and InnoDB ended their
        # deadlock by rolling this one back. Either way, nothing was written: retry.
        if error.args[0] not in (ER.LOCK_WAIT_TIMEOUT, ER.LOCK_DEADLOCK):
            raise
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry shortly."
        ) from None
    except MySQLdb.IntegrityError as error:
        if error.args[0] != ER.NO_REFERENCED_ROW_2:
            raise
        raise InvalidToken() from None  # the user is gone since the token check


def claim(cursor, key, request_fingerprint):
    user_id = g.user["id"]
    expires_at = utc_datetime(now() + current_app.config["IDEMPOTENCY_KEY_TTL_SECONDS"])
    for _ in range(2):  # a second go only after removing an expired row of the key
        try:
            # MariaDB's per-statement lock wait: a running request holds the key's row.
            cursor.execute(
                f"SET STATEMENT innodb_lock_wait_timeout = {WAIT_SECONDS} FOR"  # noqa: S608
                " INSERT INTO idempotency_keys (user_id, idempotency_key, fingerprint,"
                " expires_at) VALUES (%s, %s, %s, %s)",
                (user_id, key, request_fingerprint, expires_at),
            )
            return None
        except MySQLdb.IntegrityError as error:
            if error.args[0] != ER.DUP_ENTRY:
                raise
        cursor.execute(
            "SELECT fingerprint, status, response_body, response_headers, expires_at"
            " FROM idempotency_keys WHERE user_id = %s AND idempotency_key = %s"
            " LOCK IN SHARE MODE",
            (user_id, key),
        )
        earlier = cursor.fetchone()
        if earlier and earlier["expires_at"] > utc_datetime(now()):
            return replay(earlier, request_fingerprint)
        cursor.execute(
            "DELETE FROM idempotency_keys WHERE user_id = %s AND idempotency_key = %s",
            (user_id, key),
        )
    raise RuntimeError("an Idempotency-Key row came back after it was removed")


def replay(earlier, request_fingerprint):
    if earlier["fingerprint"] != request_fingerprint:
        raise UnprocessableContent(
            "This Idempotency-Key was already used with a different request; use a new key."
        )
    headers = json.loads(earlier["response_headers"])
    return Answer(earlier["status"], bytes(earlier["response_body"]), headers)


def remember(cursor, key, answer):
    """Keep `answer` (of REPLAYED_HEADERS only) for `key`, in the transaction that
    reserved it."""
    headers = {name: answer.headers[name] for name in REPLAYED_HEADERS if name in answer.headers}
    cursor.execute(
        "UPDATE idempotency_keys SET status = %s, response_body = %s, response_headers = %s"
        " WHERE user_id = %s AND idempotency_key = %s",
        (answer.status, answer.body, json.dumps(headers), g.user["id"], key),
    )


def purge_expired(batch=1000, batches=None):
    """Delete expired keys, `batch` rows per statement so no lock is held long, until none
    is left or after `batches` statements; return how many went."""
    removed, statements = 0, 0
    while batches is None or statements < batches:
        count = execute(
            "DELETE FROM idempotency_keys WHERE expires_at <= %s LIMIT %s",
            (utc_datetime(now()), batch),
        )
        removed, statements = removed + count, statements + 1
        if count < batch:
            break
    return removed


def purge_a_few():
    """After a keyed create has committed: remove up to PURGE_PER_CREATE expired keys, if
    no lock is in the way. Best effort, without waiting or retrying: a DELETE's range lock
    can queue behind another request's uncommitted key row, and the create has already
    succeeded, so its answer must not wait (or turn into a 503) for housekeeping."""
    cursor = mysql.connection.cursor()
    try:
        cursor.execute(
            "SET STATEMENT innodb_lock_wait_timeout = 0 FOR"
            " DELETE FROM idempotency_keys WHERE expires_at <= %s LIMIT %s",
            (utc_datetime(now()), PURGE_PER_CREATE),
        )
    except MySQLdb.OperationalError as error:
        if error.args[0] not in (ER.LOCK_WAIT_TIMEOUT, ER.LOCK_DEADLOCK):
            raise
    finally:
        cursor.close()

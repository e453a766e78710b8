"""No lost updates and no duplicate creates: ETag and If-Match / If-None-Match on products
(RFC 9110 section 13), and Idempotency-Key on creates."""

import logging
import threading
import time

import pytest

from secureapi.data import idempotency
from tests.support import at_once, connect, running, sql

LAPTOP = {"name": "Laptop", "description": "14-inch", "price": 1500.99, "quantity": 3}


def create(client, headers, product=LAPTOP):
    response = client.post("/products", json=product, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


def stored(db, product_id):
    rows = sql(db, "SELECT name, quantity, version FROM products WHERE id = %s", (product_id,))
    return rows[0] if rows else None


# --- ETag ---------------------------------------------------------------------------------


def test_every_change_gives_a_new_etag_and_version(client, headers):
    created = client.post("/products", json=LAPTOP, headers=headers)
    assert created.headers["ETag"] == '"1"'
    assert created.json["product"]["version"] == 1
    url = created.headers["Location"]
    got = client.get(url, headers=headers)
    assert (got.headers["ETag"], got.json["version"]) == ('"1"', 1)

    put = client.put(url, json=LAPTOP | {"quantity": 2}, headers=headers)
    assert (put.headers["ETag"], put.json["product"]["version"]) == ('"2"', 2)
    # A write that changes no value is still a write: the version moves.
    patch = client.patch(url, json={"quantity": 2}, headers=headers)
    assert (patch.headers["ETag"], patch.json["product"]["version"]) == ('"3"', 3)
    assert client.get(url, headers=headers).headers["ETag"] == '"3"'
    listed = client.get("/products", headers=headers).json
    assert listed[0]["version"] == 3


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_stale_if_match_is_412_and_changes_nothing(client, headers, db, method):
    product_id = create(client, headers)
    url = f"/products/{product_id}"
    assert client.patch(url, json={"quantity": 9}, headers=headers).status_code == 200  # v2
    response = client.open(
        url, method=method, json=LAPTOP | {"name": "Mine"}, headers=headers | {"If-Match": '"1"'}
    )
    assert response.status_code == 412
    assert response.mimetype == "application/problem+json"
    assert "changed since it was read" in response.json["message"]
    assert stored(db, product_id) == {"name": "Laptop", "quantity": 9, "version": 2}


@pytest.mark.parametrize(
    "if_match",
    ['"1"', '"7", "1"', "*", ' "1" , W/"5"'],
)
def test_a_current_if_match_lets_the_write_through(client, headers, db, if_match):
    product_id = create(client, headers)
    response = client.patch(
        f"/products/{product_id}", json={"quantity": 4}, headers=headers | {"If-Match": if_match}
    )
    assert response.status_code == 200
    assert response.headers["ETag"] == '"2"'
    assert stored(db, product_id) == {"name": "Laptop", "quantity": 4, "version": 2}


@pytest.mark.parametrize("if_match", ['W/"1"', '"01x"', '""', '"01"', 'w/"1"', 'x"1"y', '"1"junk'])
def test_weak_or_foreign_tags_never_match(client, headers, db, if_match):
    # If-Match compares strongly (RFC 9110 section 13.1.1): a weak tag is never a match.
    product_id = create(client, headers)
    response = client.patch(
        f"/products/{product_id}", json={"quantity": 4}, headers=headers | {"If-Match": if_match}
    )
    assert response.status_code == 412
    assert stored(db, product_id)["version"] == 1


@pytest.mark.parametrize("if_match", ["1", '"1', "W/1", "", "*, *"])
def test_a_malformed_if_match_matches_nothing(client, headers, db, if_match):
    # Ignored, it would turn a careful write into a blind overwrite: it fails safe instead.
    product_id = create(client, headers)
    response = client.put(
        f"/products/{product_id}", json=LAPTOP, headers=headers | {"If-Match": if_match}
    )
    assert response.status_code == 412
    assert "send it as it came" in response.json["message"]
    assert stored(db, product_id)["version"] == 1


def test_delete_with_if_match(client, headers, db):
    product_id = create(client, headers)
    url = f"/products/{product_id}"
    stale = client.delete(url, headers=headers | {"If-Match": '"2"'})
    assert stale.status_code == 412
    assert stored(db, product_id) is not None
    assert client.delete(url, headers=headers | {"If-Match": '"1"'}).status_code == 200
    assert stored(db, product_id) is None


def test_if_none_match_on_a_write_refuses_to_overwrite_what_the_client_knows(client, headers, db):
    # RFC 9110 section 13.2.2: on a write, a matching If-None-Match (weak comparison) is 412.
    product_id = create(client, headers)
    url = f"/products/{product_id}"
    for if_none_match in ("*", '"1"', 'W/"1"', '"4", "1"'):
        response = client.put(url, json=LAPTOP, headers=headers | {"If-None-Match": if_none_match})
        assert response.status_code == 412, if_none_match
    assert stored(db, product_id)["version"] == 1
    other = client.put(url, json=LAPTOP, headers=headers | {"If-None-Match": '"7"'})
    assert other.status_code == 200


def test_a_read_with_a_stale_if_match_is_412(client, headers):
    product_id = create(client, headers)
    url = f"/products/{product_id}"
    assert client.get(url, headers=headers | {"If-Match": '"2"'}).status_code == 412
    assert client.get(url, headers=headers | {"If-Match": '"1"'}).status_code == 200


def test_a_missing_product_is_404_whatever_if_match_says(client, headers):
    # RFC 9110 section 13.2.1: preconditions are ignored when the answer would be a 404.
    for if_match in ('"1"', "*"):
        with_match = headers | {"If-Match": if_match}
        assert client.put("/products/99", json=LAPTOP, headers=with_match).status_code == 404
        assert client.delete("/products/99", headers=with_match).status_code == 404


def test_without_if_match_writes_go_through_as_before(client, headers, db):
    product_id = create(client, headers)
    client.patch(f"/products/{product_id}", json={"quantity": 1}, headers=headers)
    response = client.put(f"/products/{product_id}", json=LAPTOP, headers=headers)
    assert response.status_code == 200
    assert stored(db, product_id)["version"] == 3


def test_two_racing_writes_with_one_etag_give_one_200_and_one_412(app, auth, db):
    headers = auth.headers()
    clients = [app.test_client() for _ in range(2)]
    for round_number in range(5):
        product_id = create(clients[0], headers)

        def write(client, quantity, product_id=product_id):
            response = client.put(
                f"/products/{product_id}",
                json=LAPTOP | {"quantity": quantity},
                headers=headers | {"If-Match": '"1"'},
            )
            return response.status_code, quantity

        results = at_once(lambda: write(clients[0], 100), lambda: write(clients[1], 200))
        assert sorted(status for status, _ in results) == [200, 412], round_number
        (winner,) = [quantity for status, quantity in results if status == 200]
        assert stored(db, product_id)["quantity"] == winner
        assert stored(db, product_id)["version"] == 2


def test_if_none_match_gives_304_without_a_body(client, headers):
    product_id = create(client, headers)
    url = f"/products/{product_id}"
    for if_none_match in ('"1"', 'W/"1"', '"5", "1"', "*"):
        response = client.get(url, headers=headers | {"If-None-Match": if_none_match})
        assert response.status_code == 304, if_none_match
        assert response.data == b""
        assert response.headers["ETag"] == '"1"'
    client.patch(url, json={"quantity": 1}, headers=headers)
    changed = client.get(url, headers=headers | {"If-None-Match": '"1"'})
    assert changed.status_code == 200
    assert changed.json["quantity"] == 1


def test_conditional_reads_still_need_a_token(client, headers):
    product_id = create(client, headers)
    response = client.get(f"/products/{product_id}", headers={"If-None-Match": "*"})
    assert response.status_code == 401


# --- Idempotency-Key ----------------------------------------------------------------------


def post(client, headers, key, product=LAPTOP, path="/products"):
    return client.post(path, json=product, headers=headers | {"Idempotency-Key": key})


def product_count(db):
    return sql(db, "SELECT COUNT(*) AS n FROM products")[0]["n"]


def test_a_retried_create_gets_the_first_answer_and_creates_nothing(client, headers, db):
    first = post(client, headers, "order-17")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    again = post(client, headers, "order-17", path="/product")  # the alias too
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    for header in ("Location", "ETag"):
        assert again.headers[header] == first.headers[header]
    assert product_count(db) == 1


def test_the_same_request_written_differently_is_replayed(client, headers, db):
    first = post(client, headers, "k1", {"name": "Pen", "price": 10, "quantity": 1})
    same = client.post(
        "/products",
        data='{"quantity": 1.0, "price": 10.00, "name": "Pen"}',
        content_type="application/json",
        headers=headers | {"Idempotency-Key": "k1"},
    )
    assert same.status_code == 201
    assert same.headers["Idempotent-Replayed"] == "true"
    assert same.json["id"] == first.json["id"]
    assert product_count(db) == 1


def test_the_same_key_with_another_body_is_422(client, headers, db):
    post(client, headers, "k1")
    response = post(client, headers, "k1", LAPTOP | {"quantity": 4})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "different request" in response.json["message"]
    assert product_count(db) == 1


def test_keys_belong_to_the_user_who_sent_them(client, auth, db):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    first = post(client, alice, "shared-key")
    other = post(client, bob, "shared-key")
    assert other.status_code == 201
    assert "Idempotent-Replayed" not in other.headers
    assert other.json["id"] != first.json["id"]
    assert product_count(db) == 2


@pytest.mark.parametrize("key", ["", " ", "a b", "x" * 256, "ключ", "tab\there"])
def test_a_malformed_key_is_400_and_creates_nothing(client, headers, db, key):
    response = post(client, headers, key)
    assert response.status_code == 400
    assert "Idempotency-Key must be" in response.json["message"]
    assert product_count(db) == 0


def test_a_key_longer_than_any_other_still_works(client, headers, db):
    key = "~" * 255
    assert post(client, headers, key).status_code == 201
    assert post(client, headers, key).headers["Idempotent-Replayed"] == "true"


def test_an_invalid_body_keeps_no_answer_for_its_key(client, headers, db):
    # Like Stripe: only a request that ran is remembered; a corrected retry goes through.
    assert post(client, headers, "k1", LAPTOP | {"price": "free"}).status_code == 400
    assert post(client, headers, "k1").status_code == 201
    assert product_count(db) == 1


def test_answers_are_kept_for_24_hours_then_the_key_is_new(client, auth, headers, db, clock):
    first = post(client, headers, "k1")
    clock.advance(24 * 3600 - 60)
    headers = auth.headers()  # a token of the later time (tokens follow the app's clock)
    assert post(client, headers, "k1").headers["Idempotent-Replayed"] == "true"
    clock.advance(120)
    headers = auth.headers()  # a token of the later time (tokens follow the app's clock)
    later = post(client, headers, "k1", LAPTOP | {"quantity": 1})
    assert later.status_code == 201
    assert "Idempotent-Replayed" not in later.headers
    assert later.json["id"] != first.json["id"]
    assert product_count(db) == 2


def key_in_flight(database, user_id, key, expires_at):
    """A connection whose uncommitted transaction holds a key row, as a request still
    running would; roll it back and close it when done."""
    holder = connect(database)
    holder.autocommit(False)
    holder.cursor().execute(
        "INSERT INTO idempotency_keys (user_id, idempotency_key, fingerprint, expires_at)"
        f" VALUES (%s, %s, REPEAT('0', 64), {expires_at})",  # noqa: S608 (the tests' SQL)
        (user_id, key),
    )
    return holder


WAITING_RETRY = "SET STATEMENT innodb_lock_wait_timeout = 1 FOR INSERT INTO idempotency_keys"


def test_retries_waiting_on_a_first_request_that_rolls_back_get_201_or_409(app, auth, database, db):
    # The retry storm after a timeout: three retries wait on the first request's key row,
    # which then rolls back. InnoDB ends the retries' deadlock by rolling one back: a 409
    # (retry), never a 503 that says the database is down.
    headers = auth.headers() | {"Idempotency-Key": "storm"}
    (user,) = sql(db, "SELECT id FROM users")
    for _ in range(3):
        holder = key_in_flight(database, user["id"], "storm", "NOW() + INTERVAL 1 DAY")
        clients = [app.test_client() for _ in range(3)]
        results = []
        threads = [
            threading.Thread(
                target=lambda c=c, results=results: results.append(
                    c.post("/products", json=LAPTOP, headers=headers).status_code
                )
            )
            for c in clients
        ]
        for thread in threads:
            thread.start()
        # All three wait on the key row (information_schema.innodb_trx does not list an
        # INSERT that waits in its duplicate check, so ask which statements run).
        deadline = time.monotonic() + 0.9  # within the 1 s wait of idempotency.reserve
        while len(running(db, database, WAITING_RETRY)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        holder.rollback()
        holder.close()
        for thread in threads:
            thread.join()
        assert set(results) <= {201, 409}, results
        assert product_count(db) == 1
        sql(db, "DELETE FROM products")
        sql(db, "DELETE FROM idempotency_keys")


def test_concurrent_retries_of_an_expired_key_make_one_product(app, auth, db, clock):
    headers = auth.headers() | {"Idempotency-Key": "old"}
    assert app.test_client().post("/products", json=LAPTOP, headers=headers).status_code == 201
    clock.advance(24 * 3600 + 1)
    headers = auth.headers() | {"Idempotency-Key": "old"}  # tokens follow the app's clock
    clients = [app.test_client() for _ in range(4)]
    responses = at_once(
        *[lambda c=c: c.post("/products", json=LAPTOP, headers=headers) for c in clients]
    )
    assert {r.status_code for r in responses} <= {201, 409}
    assert product_count(db) == 2


def test_a_user_deleted_during_a_keyed_create_gets_401(client, headers, db, monkeypatch):
    fingerprint = idempotency.fingerprint

    def deleted_meanwhile(data):
        sql(db, "DELETE FROM users")  # an admin deletes the account mid-request
        return fingerprint(data)

    monkeypatch.setattr(idempotency, "fingerprint", deleted_meanwhile)
    response = post(client, headers, "k1")
    assert response.status_code == 401
    assert product_count(db) == 0


def test_replays_are_audited(client, headers, caplog):
    caplog.set_level(logging.INFO, logger="secureapi.audit")
    post(client, headers, "k1")
    post(client, headers, "k1")
    assert caplog.text.count('"event": "idempotent_replay"') == 1
    assert caplog.text.count('"event": "product_created"') == 1


def test_keyed_creates_remove_expired_keys_as_they_go(client, auth, headers, db, clock):
    for key in ("a", "b", "c"):
        post(client, headers, key)
    clock.advance(24 * 3600 + 1)
    headers = auth.headers()  # a token of the later time (tokens follow the app's clock)
    post(client, headers, "d")
    keys = {
        row["idempotency_key"] for row in sql(db, "SELECT idempotency_key FROM idempotency_keys")
    }
    assert len(keys - {"d"}) == 1  # two of the three expired keys went with this create


def test_housekeeping_never_holds_up_a_create_that_succeeded(app, auth, database, db, clock):
    # Another request's key row, uncommitted (its request still running), sits right after
    # the expired keys in the expiry index: the purge after a create must not queue on it.
    headers = auth.headers()
    for key in ("a", "b", "c"):
        post(app.test_client(), headers, key)
    clock.advance(24 * 3600 + 1)
    headers = auth.headers()  # a token of the later time (tokens follow the app's clock)
    (user,) = sql(db, "SELECT id FROM users")
    holder = key_in_flight(database, user["id"], "running", "NOW()")
    try:
        started = time.monotonic()
        response = post(app.test_client(), headers, "d")
        assert response.status_code == 201
        assert time.monotonic() - started < 1, "the create waited for another request's lock"
    finally:
        holder.rollback()
        holder.close()


def test_ten_concurrent_creates_with_one_key_make_one_product(app, auth, db):
    headers = auth.headers() | {"Idempotency-Key": "retry-storm"}
    clients = [app.test_client() for _ in range(10)]
    calls = [lambda c=c: c.post("/products", json=LAPTOP, headers=headers) for c in clients]
    responses = at_once(*calls)
    assert product_count(db) == 1
    created = [r for r in responses if r.status_code == 201]
    assert len([r for r in created if "Idempotent-Replayed" not in r.headers]) == 1
    assert {r.json["id"] for r in created} == {sql(db, "SELECT id FROM products")[0]["id"]}
    # Whoever did not wait long enough for the first to commit was told to retry.
    assert all(r.status_code in (201, 409) for r in responses)


def test_the_same_key_while_the_first_request_runs_is_409(app, auth, database, db):
    headers = auth.headers() | {"Idempotency-Key": "slow"}
    # Another connection holds the gap past the last product: the first request's INSERT
    # waits on it, so that request stays running until the lock is released.
    holder = connect(database)
    holder.autocommit(False)
    holder.cursor().execute("SELECT id FROM products WHERE id > 0 FOR UPDATE")
    first = {}
    thread = threading.Thread(
        target=lambda: first.update(
            response=app.test_client().post("/products", json=LAPTOP, headers=headers)
        )
    )
    thread.start()
    try:
        # This run's database only: other test runs share the server.
        waiting = (
            "SELECT 1 FROM information_schema.processlist"
            " WHERE db = %s AND info LIKE 'INSERT INTO products%%'"
        )
        deadline = time.monotonic() + 4  # within the app's 5 s database read timeout
        while not sql(db, waiting, (database,)):
            assert time.monotonic() < deadline, "the first request never started waiting"
            time.sleep(0.01)
        second = app.test_client().post("/products", json=LAPTOP, headers=headers)
        assert second.status_code == 409
        assert "still being processed" in second.json["message"]
    finally:
        holder.rollback()
        holder.close()
        thread.join()
    assert first["response"].status_code == 201
    third = app.test_client().post("/products", json=LAPTOP, headers=headers)
    assert third.headers["Idempotent-Replayed"] == "true"
    assert third.json["id"] == first["response"].json["id"]
    assert product_count(db) == 1


def test_expired_keys_are_purged(app, client, auth, headers, db, clock):
    for key in ("a", "b", "c"):
        post(client, headers, key)
    clock.advance(3600)
    headers = auth.headers()  # a token of the later time (tokens follow the app's clock)
    post(client, headers, "fresh")
    clock.advance(24 * 3600 - 3599)  # a, b and c have expired; fresh has not
    with app.app_context():
        assert idempotency.purge_expired(batch=2) == 3
    keys = sql(db, "SELECT idempotency_key FROM idempotency_keys")
    assert keys == ({"idempotency_key": "fresh"},)

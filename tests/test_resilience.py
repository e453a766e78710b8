"""Database outages, several app instances over one database, and load without loss.

These run real servers: a private mariadbd that the tests stop, freeze and kill, and two
gunicorn instances of the app on loopback ports.
"""

import datetime
import ipaddress
import os
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import MySQLdb
import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app import create_app
from secureapi.data.database import init_db
from tests.support import (
    PASSWORD,
    Instance,
    PrivateMariaDB,
    app_config,
    server_settings,
    sql,
    wait_until,
)

# Each test here starts a server of its own: a private mariadbd (root), gunicorn instances.
pytestmark = pytest.mark.system


@pytest.fixture
def outage_app(private_db, clock):
    if private_db.process.poll() is not None:
        private_db.start()
    app = create_app(
        app_config(
            "outage",
            CLOCK=clock,
            MYSQL_HOST="127.0.0.1",
            MYSQL_PORT=private_db.port,
            MYSQL_CONNECT_TIMEOUT=2,
            MYSQL_READ_TIMEOUT=1,
        )
    )
    yield app
    if private_db.process.poll() is not None:
        private_db.start()
    connection = MySQLdb.connect(
        host="127.0.0.1", port=private_db.port, user="root", db="outage", autocommit=True
    )
    for table in ("users", "products", "login_failures"):
        connection.cursor().execute(f"DELETE FROM {table}")  # noqa: S608
    connection.close()


def private_rows(private_db, statement):
    connection = MySQLdb.connect(
        host="127.0.0.1",
        port=private_db.port,
        user="root",
        db="outage",
        cursorclass=MySQLdb.cursors.DictCursor,
    )
    cursor = connection.cursor()
    cursor.execute(statement)
    rows = cursor.fetchall()
    connection.close()
    return rows


def every_endpoint(client, headers, product_id):
    body = {"name": "x", "price": 1, "quantity": 1}
    return {
        "register": client.post("/register", json={"username": "bob", "password": PASSWORD}),
        "qrcode": client.get("/qrcode/alice", auth=("alice", PASSWORD)),
        "login": client.post(
            "/login", json={"username": "alice", "password": PASSWORD, "otp": "123456"}
        ),
        "list": client.get("/products", headers=headers),
        "create": client.post("/products", json=body, headers=headers),
        "get": client.get(f"/products/{product_id}", headers=headers),
        "put": client.put(f"/products/{product_id}", json=body, headers=headers),
        "patch": client.patch(f"/products/{product_id}", json={"quantity": 2}, headers=headers),
        "delete": client.delete(f"/products/{product_id}", headers=headers),
        "recovery-codes": client.post(
            "/2fa/recovery-codes", json={"password": PASSWORD, "otp": "123456"}, headers=headers
        ),
        "reset": client.post(
            "/2fa/reset", json={"password": PASSWORD, "otp": "123456"}, headers=headers
        ),
        "logout": client.post("/logout", headers=headers),
    }


def test_every_endpoint_answers_503_while_the_database_is_down(outage_app, private_db, auth):
    client = auth.client = outage_app.test_client()
    headers = auth.headers()
    product_id = client.post(
        "/products", json={"name": "kept", "price": 1, "quantity": 1}, headers=headers
    ).json["id"]
    private_db.stop()
    started = time.monotonic()
    responses = every_endpoint(client, headers, product_id)
    assert time.monotonic() - started < 10  # refused at once, nothing hangs
    for name, response in responses.items():
        assert response.status_code == 503, name
        assert response.mimetype == "application/problem+json", name
        assert response.headers["Retry-After"] == "5", name
        assert "MySQL" not in response.get_data(as_text=True), name

    private_db.start()
    # The first request after the database is back succeeds, with the same token.
    assert client.get(f"/products/{product_id}", headers=headers).status_code == 200
    assert private_rows(private_db, "SELECT username FROM users") == ({"username": "alice"},)
    assert len(private_rows(private_db, "SELECT id FROM products")) == 1


def test_a_hung_database_costs_a_bounded_wait_then_503(outage_app, private_db, auth):
    client = auth.client = outage_app.test_client()
    headers = auth.headers()
    assert client.get("/products", headers=headers).status_code == 200
    os.kill(private_db.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = client.get("/products", headers=headers)
        waited = time.monotonic() - started
    finally:
        os.kill(private_db.process.pid, signal.SIGCONT)
    assert response.status_code == 503
    assert waited < 3 * 1 + 3  # MYSQL_READ_TIMEOUT=1, tried up to three times by the client
    assert client.get("/products", headers=headers).status_code == 200


def test_a_database_dying_mid_request_leaves_nothing_half_written(outage_app, private_db):
    client = outage_app.test_client()
    client.post("/login", json={"username": "nobody", "password": "x", "otp": "1"})  # warm up
    os.kill(private_db.process.pid, signal.SIGSTOP)
    result = {}
    request = threading.Thread(
        target=lambda: result.update(
            response=client.post("/register", json={"username": "carol", "password": PASSWORD})
        )
    )
    request.start()
    time.sleep(0.5)  # the registration is now waiting on the frozen server
    private_db.kill()  # it dies with the transaction open
    request.join(30)
    assert result["response"].status_code == 503
    private_db.start()
    # No user, and none of the recovery codes that the same transaction wrote.
    assert private_rows(private_db, "SELECT id FROM users") == ()
    assert private_rows(private_db, "SELECT id FROM recovery_codes") == ()
    response = client.post("/register", json={"username": "carol", "password": PASSWORD})
    assert response.status_code == 201


# --- Two instances over one database ------------------------------------------------------


@pytest.fixture(scope="module")
def instances(database, tmp_path_factory):
    logs = tmp_path_factory.mktemp("gunicorn")
    pair = [Instance(database, logs / f"{name}.log") for name in ("a", "b")]
    yield pair
    for instance in pair:
        instance.stop()


def test_instances_agree_on_tokens_at_once(instances, auth):
    a, b = instances
    secret = auth.register("alice")["secret"]
    status, body = a.login("alice", secret)
    assert status == 200
    first = body["token"]
    assert b.call("GET", "/products", token=first)[0] == 200

    status, body = b.login("alice", secret, offset=1)  # a second session, on B
    assert status == 200
    second = body["token"]
    assert a.call("GET", "/products", token=second)[0] == 200
    assert a.call("POST", "/logout", token=second)[0] == 200  # logout on A...
    assert b.call("GET", "/products", token=second)[0] == 401  # ...is seen by B at once
    assert b.call("GET", "/products", token=first)[0] == 200  # and ends that session only


def test_instances_share_otp_replay_protection(instances, auth):
    a, b = instances
    secret = auth.register("alice")["secret"]
    code = pyotp.TOTP(secret).now()
    body = {"username": "alice", "password": PASSWORD, "otp": code}
    assert a.call("POST", "/login", body)[0] == 200
    assert b.call("POST", "/login", body)[0] == 401


def test_instances_share_the_lockout(instances, auth):
    a, b = instances
    secret = auth.register("alice")["secret"]
    for instance in (a, b, a, b, a):
        assert instance.login("alice", secret, password="wrong password!")[0] == 401
    assert b.login("alice", secret)[0] == 429
    assert a.login("alice", secret)[0] == 429


def test_concurrent_writes_lose_nothing(instances, auth, db):
    a, b = instances
    secret = auth.register("alice")["secret"]
    token = a.login("alice", secret)[1]["token"]

    def create(n):
        instance = (a, b)[n % 2]
        body = {"name": f"item-{n}", "price": n, "quantity": n}
        return instance.call("POST", "/products", body, token)

    with ThreadPoolExecutor(16) as pool:
        created = list(pool.map(create, range(200)))
    assert {status for status, _ in created} == {201}
    ids = sorted(body["id"] for _, body in created)
    rows = sql(db, "SELECT id, name FROM products ORDER BY id")
    assert [row["id"] for row in rows] == ids  # every 201 has its row, and only those
    assert len({row["name"] for row in rows}) == 200  # no duplicates

    # Delete half (each id twice, from both instances), update the other half.
    to_delete, to_update = ids[:100], ids[100:]
    jobs = [("DELETE", i, a) for i in to_delete] + [("DELETE", i, b) for i in to_delete]
    jobs += [("PATCH", i, (a, b)[i % 2]) for i in to_update]

    def run(job):
        method, product_id, instance = job
        body = {"quantity": 7} if method == "PATCH" else None
        return method, product_id, instance.call(method, f"/products/{product_id}", body, token)[0]

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(run, jobs))
    for product_id in to_delete:
        statuses = sorted(s for m, i, s in outcomes if m == "DELETE" and i == product_id)
        assert statuses == [200, 404]  # exactly one delete removed it
    assert all(s == 200 for m, _, s in outcomes if m == "PATCH")
    rows = sql(db, "SELECT id, quantity FROM products ORDER BY id")
    assert [row["id"] for row in rows] == to_update
    assert {row["quantity"] for row in rows} == {7}


def test_access_log_escapes_control_characters(instances):
    """Review finding 10: a decoded %0a or %1b in the path cannot forge a log line or reach
    a terminal."""
    a = instances[0]
    a.call("GET", "/products%0a127.0.0.1%20-%20%22GET%20/forged%20HTTP/1.1%22%20200%1b[31m")
    wait_until(lambda: "forged" in a.log_path.read_text())
    line = next(line for line in a.log_path.read_text().splitlines() if "forged" in line)
    assert line.startswith("127.0.0.1 ")
    assert "\\x0a" in line and "\\x1b[31m" in line and "\\x22" in line
    assert "\x1b" not in a.log_path.read_text()
    assert not any(
        line.startswith('127.0.0.1 - "GET /forged') for line in a.log_path.read_text().splitlines()
    )


# --- TLS to the database (review finding 19) ------------------------------------------------


def write_test_ca_and_server_certificate(directory):
    """A throwaway CA, and a certificate it signs for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, public_key, signer, serial, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            address = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
            builder = builder.add_extension(x509.SubjectAlternativeName([address]), critical=False)
        return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    name = lambda text: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])  # noqa: E731
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = name("SecureAPI test CA")
    Path(directory, "ca.pem").write_bytes(
        certificate(ca_name, ca_name, ca_key.public_key(), ca_key, 1, True)
    )
    Path(directory, "server.pem").write_bytes(
        certificate(name("127.0.0.1"), ca_name, key.public_key(), ca_key, 2, False)
    )
    Path(directory, "server-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def test_the_app_talks_tls_to_a_database_that_requires_it(clock):
    if os.geteuid() != 0 or not shutil.which("mariadbd"):
        pytest.skip("needs root and mariadbd to run a private database server")
    directory = tempfile.mkdtemp(prefix="secureapi-mariadb-tls-")
    write_test_ca_and_server_certificate(directory)
    server = PrivateMariaDB(
        directory,
        f"--ssl-ca={directory}/ca.pem",
        f"--ssl-cert={directory}/server.pem",
        f"--ssl-key={directory}/server-key.pem",
        "--require-secure-transport=ON",
    )
    for path in Path(directory).glob("*.pem"):
        shutil.chown(path, "mysql", "mysql")
    server.start()
    try:
        settings = {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": server.port, "MYSQL_DB": "tls"}
        with_ca = settings | {"MYSQL_SSL_CA": f"{directory}/ca.pem"}
        init_db(server_settings() | with_ca)  # init-db speaks TLS too
        client = create_app(app_config("tls", CLOCK=clock, **with_ca)).test_client()
        response = client.post("/register", json={"username": "alice", "password": PASSWORD})
        assert response.status_code == 201
        # Without TLS, or trusting another CA, the server is refused: 503, not plaintext.
        login = {"username": "alice", "password": PASSWORD, "otp": "123456"}
        stranger = tempfile.mkdtemp(prefix="secureapi-other-ca-")
        write_test_ca_and_server_certificate(stranger)
        other_ca = f"{stranger}/ca.pem"
        for refused in (settings, settings | {"MYSQL_SSL_CA": other_ca}):
            other = create_app(app_config("tls", CLOCK=clock, **refused)).test_client()
            assert other.post("/login", json=login).status_code == 503
        shutil.rmtree(stranger)
    finally:
        server.stop()
        shutil.rmtree(directory)

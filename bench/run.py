"""make bench: SecureAPI under gunicorn and wrk, on a fresh database, on this machine.

Seeds a products table of BENCH_ROWS rows (1,000,000), drives each scenario for
BENCH_SECONDS (10) with wrk, measures two references in the same run (a trivial JSON
route on the same gunicorn: the framework ceiling; bcrypt checks per second at the
configured cost across as many processes as gunicorn has workers: the login floor),
prints a table with ratios and appends the results to bench/results/results.jsonl.
"""

import json
import multiprocessing
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bcrypt
import MySQLdb
import pyotp
from cryptography.fernet import Fernet

from config import Config
from secureapi.core.keys import keyed_digest
from secureapi.data.database import init_db
from secureapi.data.search import SORT_COLUMNS, Search, cursor_key, make_cursor
from secureapi.data.words import prefixes
from secureapi.security.access_tokens import DIGEST_PURPOSE as PAT_PURPOSE
from secureapi.security.access_tokens import PREFIX as PAT_PREFIX
from secureapi.security.passwords import PREHASHED, prehash
from secureapi.security.sessions import DIGEST_PURPOSE as REFRESH_PURPOSE
from secureapi.security.sessions import REFRESH_TOKEN_PREFIX

DATABASE = "secure_api_bench"
PORT = int(os.environ.get("BENCH_PORT", "5099"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
SEARCH_SECONDS = int(os.environ.get("BENCH_SEARCH_SECONDS", "5"))
# Each seeded name carries one of 100 tags: `q=tag42` matches 1 % of the rows.
SEARCH_WORD = "tag42"
SEARCH_RATIO_TARGET = 1.5
THREADS = 2
CONNECTIONS = 16
LOGIN_USERS = 600
COMPARISON_ROUNDS = 3
# BENCH_ONLY=production runs only the side-by-side rows, BENCH_ONLY=refresh only the
# refresh row (while iterating on performance).
ONLY = os.environ.get("BENCH_ONLY", "")
REFRESH = "POST /token/refresh"
# Refreshes a second no run will reach: each refresh token works once (a second use would be
# taken as theft and end its session), so each request needs one of its own.
REFRESH_TOKENS_PER_SECOND = 5000
REFRESH_TARGET = 1000
BARE_CEILING = "bare Flask ceiling"
ONE = "GET /products/<id>"
PAGE = "GET /products?limit=100"
PRODUCTION = "limiter + metrics on"
FEATURES_OFF = "limiter + metrics off"
FLOOR = "floor"
PAT_ROW = "personal access token"
PASSWORD = "bench password 0123"
BASE = f"http://127.0.0.1:{PORT}"


def main():
    if not shutil.which("wrk"):
        subprocess.run(
            ["sudo"] * (os.getuid() != 0) + ["apt-get", "install", "-y", "wrk"], check=True
        )
    rounds = Config.BCRYPT_ROUNDS
    totp_key = Fernet.generate_key().decode()
    secret_key = secrets.token_urlsafe(48)
    env = os.environ | {
        "MYSQL_DB": DATABASE,
        "SECRET_KEY": secret_key,
        "TOTP_ENCRYPTION_KEY": totp_key,
        "RATELIMIT_ENABLED": "false",  # measure the API, not the limiter
        "LOGIN_MAX_FAILURES": "1000000",
        "HOST": "127.0.0.1",
        "PORT": str(PORT),
        "METRICS_TOKEN": secrets.token_urlsafe(32),  # metrics on, as in production
    }
    settings = {key: getattr(Config, key) for key in dir(Config) if key.startswith("MYSQL_")}
    connection = MySQLdb.connect(
        host=Config.MYSQL_HOST,
        port=Config.MYSQL_PORT,
        user=Config.MYSQL_USER,
        password=Config.MYSQL_PASSWORD,
        charset="utf8mb4",
        autocommit=True,
        local_infile=True,  # seed_words
    )
    cursor = connection.cursor()
    cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    init_db(settings | {"MYSQL_DB": DATABASE})
    cursor.execute(f"USE {DATABASE}")
    print(f"Seeding {ROWS:,} products and {LOGIN_USERS} users (bcrypt cost {rounds})...")
    started = time.time()
    # Into the indexed table (init-db applied migrations/008), as an inventory grows. Prices
    # repeat (ties), and updated_at is spread in an order other than the ids'.
    cursor.execute(
        "INSERT INTO products (name, description, price, quantity, created_at, updated_at)"
        " SELECT CONCAT('Product ', seq, ' tag', LPAD(seq % 100, 2, '0')),"
        " 'Seeded for the benchmark', (seq % 100000) / 100, seq % 1000, stamp, stamp FROM"
        f" (SELECT seq, UTC_TIMESTAMP() - INTERVAL (seq * 7919 % {ROWS}) SECOND AS stamp"
        f" FROM seq_1_to_{ROWS}) AS seeded"
    )
    seed_words(cursor)
    cursor.execute("ANALYZE TABLE products, product_words")
    cursor.fetchall()
    users = seed_users(cursor, Fernet(totp_key), rounds)
    print(f"  seeded in {time.time() - started:.0f} s")

    server = start_server(env)
    try:
        workers = int(
            subprocess.run(
                [sys.executable, "-c", "exec(open('gunicorn.conf.py').read()); print(workers)"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        token = login(users.pop(0))
        last_after = ROWS - 100
        scenarios = [
            ("ceiling: GET /bench/ceiling", {"BENCH_PATH": "/bench/ceiling"}),
            ("GET /products/<id>", {"BENCH_PATH": "/products/{id}", "BENCH_ID_MAX": str(ROWS)}),
            ("GET /products?limit=100 (first page)", {"BENCH_PATH": "/products?limit=100"}),
            (
                "GET /products?limit=100 (last page)",
                {"BENCH_PATH": f"/products?limit=100&after={last_after}"},
            ),
            (
                "POST /product",
                {
                    "BENCH_METHOD": "POST",
                    "BENCH_PATH": "/product",
                    "BENCH_BODY": json.dumps({"name": "Bench", "price": 9.99, "quantity": 1}),
                },
            ),
        ]
        results = {}
        if ONLY == "refresh":
            refresh = run_refresh(cursor, secret_key)
            print(f"\n{REFRESH}: {refresh['rps']:.0f}/s, p50 {refresh['p50_us'] / 1000:.2f} ms,"
                  f" {refresh['errors']} errors (target >= {REFRESH_TARGET}/s)")  # fmt: skip
            return None
        if ONLY == "production":
            production = production_comparison(env, token, seed_access_token(cursor, secret_key))
            return report_production(production)
        for name, scenario in scenarios:
            results[name] = run_wrk(scenario | {"BENCH_TOKEN": token}, CONNECTIONS)
        # Each search page right after a plain first page of as long: the ratio of the two
        # p50s, measured side by side, holds when the machine's load changes in between.
        search_results = {}
        for name, path in search_scenarios(cursor, cursor_key(secret_key)):
            search_results[name] = [
                run_wrk({"BENCH_PATH": page, "BENCH_TOKEN": token}, CONNECTIONS, SEARCH_SECONDS)
                for page in ("/products?limit=100", path)
            ]
        bodies = ROOT / "bench/results/login-bodies.txt"
        bodies.write_text(
            "".join(
                json.dumps({"username": u, "password": PASSWORD, "otp": pyotp.TOTP(s).now()}) + "\n"
                for u, s in users
            )
        )
        results["POST /login"] = run_wrk(
            {"BENCH_METHOD": "POST", "BENCH_PATH": "/login", "BENCH_BODIES": str(bodies)},
            workers * 2,
        )
        bodies.unlink()
        results[REFRESH] = run_refresh(cursor, secret_key)
        production = production_comparison(env, token, seed_access_token(cursor, secret_key))
    finally:
        stop_server(server)
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    bcrypt_rate = bcrypt_per_second(rounds, workers)
    report(results, bcrypt_rate, workers, rounds)
    report_search(search_results)
    report_production(production)


def search_scenarios(cursor, key):
    """(name, path) of a first page and of a page 90 % of the way through the results, for
    every sort in both directions and for `q` with a word that 1 % of the rows have. The
    deep page's cursor is the one the app would put in the Link there."""
    searches = [
        Search(sort=f"{prefix}{column}", descending=prefix == "-")
        for column in SORT_COLUMNS
        for prefix in ("", "-")
    ]
    searches.append(Search(filters={"q": (SEARCH_WORD,)}))
    scenarios = []
    for search in searches:
        query = f"q={SEARCH_WORD}" if search.filters else f"sort={search.sort}"
        where, matches = "", ROWS
        if search.filters:
            where = f"JOIN product_words ON product_id = id WHERE word = '{SEARCH_WORD}'"
            matches = ROWS // 100
        direction = "DESC" if search.descending else "ASC"
        column = search.column
        order = f"{column} {direction}" + (f", id {direction}" if column != "id" else "")
        cursor.execute(
            f"SELECT id, {column} FROM products {where} ORDER BY {order}"  # noqa: S608
            f" LIMIT 1 OFFSET {matches * 9 // 10}"
        )
        last_id, value = cursor.fetchone()
        deep = make_cursor(search, {"id": last_id, column: value}, key)
        scenarios.append((f"{query} (first page)", f"/products?limit=100&{query}"))
        scenarios.append((f"{query} (90 % deep)", f"/products?limit=100&{query}&cursor={deep}"))
    return scenarios


def seed_words(cursor):
    """The product_words rows the app writes with each product (words.prefixes), loaded in
    one statement into the empty table: InnoDB then sorts and builds its indexes in bulk."""
    words = ROOT / "bench/results/words.tsv"
    cursor.execute("SELECT id, name, description FROM products")
    with open(words, "w") as f:
        for product_id, name, description in cursor.fetchall():
            f.writelines(f"{product_id}\t{word}\n" for word in prefixes(name, description))
    # The rows are distinct and their products exist: no checks, so InnoDB loads in bulk.
    cursor.execute("SET unique_checks = 0, foreign_key_checks = 0")
    cursor.execute(
        f"LOAD DATA LOCAL INFILE '{words}' INTO TABLE product_words"
        " CHARACTER SET utf8mb4 (product_id, word)"
    )
    cursor.execute("SET unique_checks = 1, foreign_key_checks = 1")
    words.unlink()


def seed_users(cursor, fernet, rounds):
    """Users for the login scenario: one code each, as a phone would show."""
    # The format the app writes (no v1 hash, which a login would replace: a second bcrypt).
    password_hash = PREHASHED + bcrypt.hashpw(prehash(PASSWORD), bcrypt.gensalt(rounds)).decode()
    users = [(f"bench{n}", pyotp.random_base32()) for n in range(LOGIN_USERS)]
    cursor.executemany(
        "INSERT INTO users (username, password, twofa_secret) VALUES (%s, %s, %s)",
        [(name, password_hash, fernet.encrypt(secret.encode()).decode()) for name, secret in users],
    )
    return users


def run_refresh(cursor, secret_key):
    """POST /token/refresh, each request with a refresh token of its own, of sessions
    written straight into the database as a login would have (no bcrypt on this path)."""
    count = SECONDS * REFRESH_TOKENS_PER_SECOND
    cursor.execute("SELECT id FROM users ORDER BY id LIMIT 1")
    (user_id,) = cursor.fetchone()
    tokens = [REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32) for _ in range(count)]
    sessions = [secrets.token_urlsafe(16) for _ in range(count)]
    cursor.executemany(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at)"
        " VALUES (%s, %s, UTC_TIMESTAMP(), UTC_TIMESTAMP())",
        [(session, user_id) for session in sessions],
    )
    cursor.executemany(
        "INSERT INTO refresh_tokens (digest, session_id, created_at)"
        " VALUES (%s, %s, UTC_TIMESTAMP())",
        [
            (keyed_digest(secret_key, REFRESH_PURPOSE, token), session)
            for token, session in zip(tokens, sessions, strict=True)
        ],
    )
    bodies = ROOT / "bench/results/refresh-bodies.txt"
    bodies.write_text("".join(json.dumps({"refresh_token": t}) + "\n" for t in tokens))
    try:
        return run_wrk(
            {"BENCH_METHOD": "POST", "BENCH_PATH": "/token/refresh", "BENCH_BODIES": str(bodies)},
            CONNECTIONS,
        )
    finally:
        bodies.unlink()


def seed_access_token(cursor, secret_key):
    """A products:read personal access token of the first user, as POST /me/tokens makes."""
    cursor.execute("SELECT id FROM users ORDER BY id LIMIT 1")
    (user_id,) = cursor.fetchone()
    token_id = secrets.token_urlsafe(12)
    token = PAT_PREFIX + token_id + secrets.token_urlsafe(32)
    digest = keyed_digest(secret_key, PAT_PURPOSE, token)
    cursor.execute(
        "INSERT INTO personal_access_tokens (id, user_id, name, scopes, digest, created_at,"
        " expires_at) VALUES (%s, %s, 'bench', 'products:read', %s, UTC_TIMESTAMP(),"
        " UTC_TIMESTAMP() + INTERVAL 1 DAY)",
        (token_id, user_id, digest),
    )
    return token


def production_comparison(env, token, access_token):
    """The bare-Flask ceiling, and one product and a 100-row page with the production
    defaults (rate limiter and metrics on), with both off, and on the floor (bare Flask
    doing only the work a read cannot skip), on four servers side by side, in alternating
    rounds so that each sees the same load from whatever else runs on the machine: the
    median round of each row."""
    servers = {
        BARE_CEILING: (PORT + 1, env, "bench.wsgi:bare"),
        PRODUCTION: (PORT + 2, env | {"RATELIMIT_ENABLED": "true"}, "bench.wsgi:app"),
        FEATURES_OFF: (PORT + 3, env | {"METRICS_TOKEN": ""}, "bench.wsgi:app"),
        FLOOR: (PORT + 4, env, "bench.wsgi:floor"),
    }
    started = [start_server(e, port, app) for port, e, app in servers.values()]
    one = {"BENCH_PATH": "/products/{id}", "BENCH_ID_MAX": str(ROWS), "BENCH_TOKEN": token}
    page = {"BENCH_PATH": "/products?limit=100", "BENCH_TOKEN": token}
    rows = [(BARE_CEILING, BARE_CEILING, {"BENCH_PATH": "/bench/ceiling"})]
    rows += [
        (f"{path}, {server}", server, scenario)
        for path, scenario in ((ONE, one), (PAGE, page))
        for server in (PRODUCTION, FEATURES_OFF, FLOOR)
    ]
    # The same read with a personal access token, on the production server (target: within
    # 5 % of the session token's row).
    rows.append((f"{ONE}, {PAT_ROW}", PRODUCTION, one | {"BENCH_TOKEN": access_token}))
    rounds = {name: [] for name, _, _ in rows}
    try:
        for _ in range(COMPARISON_ROUNDS):
            for name, server, scenario in rows:
                rounds[name].append(run_wrk(scenario, CONNECTIONS, port=servers[server][0]))
    finally:
        for server in started:
            stop_server(server)

    def median(runs):
        return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2] | {
            "rounds_rps": [r["rps"] for r in runs]
        }

    return {name: median(runs) for name, runs in rounds.items()}


def report_production(results):
    """Each row as a share of the bare-Flask ceiling of the same run, and what the limiter
    and metrics together cost (issue 16's targets); and how close the production row comes
    to the floor, the most a read could reach with every feature free."""
    ceiling = results[BARE_CEILING]["rps"]
    print(
        f"\nProduction defaults side by side, median of {COMPARISON_ROUNDS} alternating rounds"
        f" of {SECONDS} s (req/s of each round in brackets)\n"
    )
    print(
        f"| {'scenario':<45} | {'req/s':>8} | {'p50 ms':>7} | {'errors':>6} | {'of ceiling':>10} |"
    )
    print(f"|{'-' * 47}|{'-' * 10}|{'-' * 9}|{'-' * 8}|{'-' * 12}|")
    for name, r in results.items():
        spread = ", ".join(f"{rps:.0f}" for rps in r["rounds_rps"])
        print(
            f"| {name:<45} | {r['rps']:>8.1f} | {r['p50_us'] / 1000:>7.2f} | {r['errors']:>6} |"
            f" {r['rps'] / ceiling:>9.1%} | [{spread}]"
        )
    print()
    for path, target in ((ONE, 0.6), (PAGE, 0.4)):
        on = results[f"{path}, {PRODUCTION}"]["rps"]
        off = results[f"{path}, {FEATURES_OFF}"]["rps"]
        floor = results[f"{path}, {FLOOR}"]["rps"]
        share, cost = on / ceiling, 1 - on / off
        print(
            f"{path}: {share:.1%} of the ceiling with the production defaults (target >="
            f" {target:.0%}) {'OK' if share >= target else 'MISSED'}; limiter + metrics cost"
            f" {cost:.1%} (target < 10%) {'OK' if cost < 0.1 else 'MISSED'}; the floor is at"
            f" {floor / ceiling:.1%} of the ceiling, production at {on / floor:.1%} of the floor"
        )
    session = results[f"{ONE}, {PRODUCTION}"]["rps"]
    pat = results[f"{ONE}, {PAT_ROW}"]["rps"]
    print(
        f"{ONE} with a personal access token: {pat / session:.1%} of the session token's row"
        f" (target >= 95%) {'OK' if pat >= 0.95 * session else 'MISSED'}"
    )
    with open(ROOT / "bench/results/results.jsonl", "a") as f:
        f.write(json.dumps({"production": results}) + "\n")


def start_server(env, port=PORT, app="bench.wsgi:app"):
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "--access-logfile",
            "/dev/null",
            app,
        ],
        cwd=ROOT,
        env=env | {"PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_up(port)
    return server


def stop_server(server):
    server.terminate()
    server.wait()


def wait_until_up(port):
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/ceiling", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def login(user):
    username, secret = user
    body = json.dumps(
        {"username": username, "password": PASSWORD, "otp": pyotp.TOTP(secret).now()}
    ).encode()
    request = urllib.request.Request(f"{BASE}/login", body, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))["token"]


def run_wrk(scenario, connections, seconds=SECONDS, port=PORT):
    env = os.environ | scenario | {"BENCH_THREADS": str(THREADS)}
    output = subprocess.run(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench/wrk.lua"),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def bcrypt_worker(args):
    rounds, seconds = args
    hashed = bcrypt.hashpw(b"reference", bcrypt.gensalt(rounds))
    count, deadline = 0, time.time() + seconds
    while time.time() < deadline:
        bcrypt.checkpw(b"reference", hashed)
        count += 1
    return count


def bcrypt_per_second(rounds, processes, seconds=5):
    with multiprocessing.Pool(processes) as pool:
        return sum(pool.map(bcrypt_worker, [(rounds, seconds)] * processes)) / seconds


def report(results, bcrypt_rate, workers, rounds):
    ceiling = results["ceiling: GET /bench/ceiling"]["rps"]
    first = results["GET /products?limit=100 (first page)"]
    last = results["GET /products?limit=100 (last page)"]
    login = results["POST /login"]
    print(
        f"\n{ROWS:,} products, gunicorn with {workers} sync workers, {os.cpu_count()} cores,"
        f" wrk {THREADS} threads, {SECONDS} s per row\n"
    )
    print(
        f"| {'scenario':<38} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |"
        f" {'of ceiling':>10} |"
    )
    print(f"|{'-' * 40}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 12}|")
    for name, r in results.items():
        print(
            f"| {name:<38} | {r['rps']:>8.1f} | {r['p50_us'] / 1000:>7.2f} |"
            f" {r['p99_us'] / 1000:>7.2f} | {r['errors']:>6} | {r['rps'] / ceiling:>9.1%} |"
        )
    page_ratio = last["p50_us"] / first["p50_us"]
    login_ratio = login["rps"] / bcrypt_rate
    errors = sum(r["errors"] for r in results.values())
    print(f"\nbcrypt reference: {bcrypt_rate:.1f} checks/s at cost {rounds} in {workers} processes")
    print(
        f"last page / first page p50 time: {page_ratio:.2f}  (target <= 1.2)"
        f" {'OK' if page_ratio <= 1.2 else 'MISSED'}"
    )
    print(
        f"login / bcrypt bound: {login_ratio:.1%}  (target >= 90%)"
        f" {'OK' if login_ratio >= 0.9 else 'MISSED'}"
    )
    refresh = results[REFRESH]["rps"]
    print(
        f"refresh: {refresh:.0f}/s  (target >= {REFRESH_TARGET}/s)"
        f" {'OK' if refresh >= REFRESH_TARGET else 'MISSED'}"
    )
    print(f"errors under load: {errors}  (target 0) {'OK' if errors == 0 else 'MISSED'}")
    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "rows": ROWS,
        "workers": workers,
        "cores": os.cpu_count(),
        "bcrypt_rounds": rounds,
        "bcrypt_per_second": bcrypt_rate,
        "results": results,
        "last_over_first_page": page_ratio,
        "login_over_bcrypt": login_ratio,
    }
    with open(ROOT / "bench/results/results.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print("\nAppended to bench/results/results.jsonl")


def report_search(results):
    """Each search page against the plain first page (GET /products?limit=100) run just
    before it."""
    print(
        f"\nGET /products?limit=100&..., {SEARCH_SECONDS} s per row; ratio: p50 over the p50 of"
        f" the plain first page run just before it, target <= {SEARCH_RATIO_TARGET}\n"
    )
    print(
        f"| {'scenario':<32} | {'req/s':>8} | {'p50 ms':>7} | {'plain ms':>8} | {'ratio':>5} |"
        f" {'errors':>6} |"
    )
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 9}|{'-' * 10}|{'-' * 7}|{'-' * 8}|")
    missed = []
    for name, (plain, r) in results.items():
        ratio = r["p50_us"] / plain["p50_us"]
        if ratio > SEARCH_RATIO_TARGET or r["errors"]:
            missed.append(name)
        print(
            f"| {name:<32} | {r['rps']:>8.1f} | {r['p50_us'] / 1000:>7.2f} |"
            f" {plain['p50_us'] / 1000:>8.2f} | {ratio:>5.2f} | {r['errors']:>6} |"
        )
    print(f"\nsearch pages within {SEARCH_RATIO_TARGET}x: {'OK' if not missed else 'MISSED'}")
    for name in missed:
        print(f"  MISSED: {name}")
    with open(ROOT / "bench/results/results.jsonl", "a") as f:
        f.write(json.dumps({"search": results}) + "\n")


if __name__ == "__main__":
    (ROOT / "bench/results").mkdir(exist_ok=True)
    main()

"""SecureAPI: register, enrol TOTP, log in for a JWT, manage a shared product inventory."""

import contextlib
import functools
import hashlib
import hmac
import io
import json
import logging
import math
import os
import re
import secrets
import select
import sys
import threading
import time
import unicodedata
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import bcrypt
import click
import flask_swagger_ui
import jwt
import MySQLdb
import pyotp
import qrcode
import yaml
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    jsonify,
    render_template,
    request,
    send_file,
    send_from_directory,
    url_for,
)
from flask.cli import with_appcontext
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_mysqldb import MySQL
from MySQLdb.constants import CLIENT
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from config import Config


class MySQLKeptOpen(MySQL):
    """Flask-MySQLdb, but each thread keeps its connection between requests.

    Connecting costs more round trips (handshake, authentication, session settings) than
    a whole authenticated read. Connections run in autocommit mode, so a read leaves no
    transaction open; writes of several statements use transaction()."""

    def __init__(self):
        super().__init__()
        self.kept = threading.local()

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


CONNECTION_SETTINGS = ("MYSQL_HOST", "MYSQL_PORT", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DB")


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
# Limits and storage come from each app's RATELIMIT_* config (see config.py).
limiter = Limiter(get_remote_address, on_breach=lambda limit: audit_rate_limited(limit))
api = Blueprint("api", __name__)
log = logging.getLogger(__name__)
audit_log = logging.getLogger("secureapi.audit")

# 30,000 most common passwords (zxcvbn's list), compared without regard to case.
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{3,64}")
MAX_PRICE = Decimal("99999999.99")
MAX_QUANTITY = 2_147_483_647
TOTP_STEP_SECONDS = 30
PLAIN_TOTP_SECRET = re.compile(r"[A-Z2-7]{16,64}")  # v1 stored base32 unencrypted
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 symbols, no 0/o or 1/l
LOGIN_FAILED = "Invalid username, password or one-time code."
BEARER_REALM = 'Bearer realm="SecureAPI"'
BASIC_REALM = 'Basic realm="SecureAPI", charset="UTF-8"'


# --- Application factory -------------------------------------------------------------


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(Config)
    app.config["CLOCK"] = time.time
    if test_config:
        app.config.update(test_config)

    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = load_instance_secret(app.instance_path, "secret_key")
    if len(app.config["SECRET_KEY"].encode()) < 32:
        raise RuntimeError("SECRET_KEY must be at least 32 bytes long")
    app.extensions["totp_fernet"] = totp_fernet(app)
    # bcrypt for unknown users too, against this hash, so timing does not tell them apart.
    app.config["DUMMY_PASSWORD_HASH"] = bcrypt.hashpw(
        secrets.token_bytes(16), bcrypt.gensalt(app.config["BCRYPT_ROUNDS"])
    ).decode("ascii")
    if app.config["PROXY_FIX_X_FOR"]:
        # Trust X-Forwarded-For only as far as the operator says proxies add to it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])
    if not audit_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        audit_log.addHandler(handler)
        audit_log.setLevel(logging.INFO)

    app.config["MYSQL_CUSTOM_OPTIONS"] = {
        # FOUND_ROWS: an UPDATE reports the rows it matched, so "no such product" is
        # told apart from "no value changed".
        "client_flag": CLIENT.FOUND_ROWS,
        # A database that hangs costs a request at most this long (the C client tries
        # a read up to three times), then the request gets a 503.
        "read_timeout": app.config["MYSQL_READ_TIMEOUT"],
        "write_timeout": app.config["MYSQL_READ_TIMEOUT"],
    }
    app.url_map.converters["id"] = ProductIdConverter
    # "//" would be a 308 redirect built from the client's Host header: a 404 instead.
    app.url_map.merge_slashes = False
    mysql.init_app(app)
    limiter.init_app(app)
    app.register_blueprint(api)
    app.register_blueprint(docs)
    app.cli.add_command(init_db_command)
    app.cli.add_command(rotate_totp_keys_command)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(ValidationError, lambda e: error_response(400, e.message))
    app.register_error_handler(MySQLdb.OperationalError, handle_database_unavailable)
    app.register_error_handler(Exception, handle_unexpected_error)
    app.before_request(assign_request_id)
    app.before_request(refuse_oversized_body)
    app.after_request(add_security_headers)
    return app


class ProductIdConverter(IntegerConverter):
    """ASCII digits only: Werkzeug's int converter also takes other scripts' digits."""

    regex = r"[0-9]+"


def load_instance_secret(instance_path, name, generate=lambda: secrets.token_urlsafe(48)):
    """Return the key kept in instance/<name>, creating it on first use."""
    path = os.path.join(instance_path, name)
    if not os.path.exists(path):
        os.makedirs(instance_path, exist_ok=True)
        temporary = f"{path}.{os.getpid()}"
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(generate())
        # link() is atomic and never overwrites: concurrent workers all end up with one key.
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    with open(path) as f:
        return f.read().strip()


def totp_fernet(app):
    """TOTP secrets are encrypted at rest with their own key(s), never the JWT key.
    TOTP_ENCRYPTION_KEY lists Fernet keys, newest first: the first encrypts, all decrypt."""
    keys = app.config["TOTP_ENCRYPTION_KEY"] or load_instance_secret(
        app.instance_path, "totp_encryption_key", lambda: Fernet.generate_key().decode()
    )
    keys = [key.strip() for key in keys.split(",") if key.strip()]
    if app.config["SECRET_KEY"] in keys:
        raise RuntimeError("TOTP_ENCRYPTION_KEY must not be the SECRET_KEY")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise RuntimeError(
            "TOTP_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64-encoded bytes),"
            " separated by commas"
        ) from None


# --- Database --------------------------------------------------------------------------


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


def init_db(config):
    """Create the database if missing and apply schema.sql (idempotent, never drops)."""
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
    )
    try:
        cursor = connection.cursor()
        cursor.execute(
            f"CREATE DATABASE IF NOT EXISTS `{database}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
        cursor.execute(f"USE `{database}`")
        with open(os.path.join(os.path.dirname(__file__), "schema.sql")) as f:
            # Whole-line "--" comments only, so that ";" can end each statement.
            lines = [line for line in f if not line.lstrip().startswith("--")]
        for statement in "".join(lines).split(";"):
            if statement.strip():
                cursor.execute(statement)
        connection.commit()
    finally:
        connection.close()


@click.command("rotate-totp-keys")
@with_appcontext
def rotate_totp_keys_command():
    """Re-encrypt every TOTP secret under the first TOTP_ENCRYPTION_KEY."""
    fernet = current_app.extensions["totp_fernet"]
    rotated = unreadable = 0
    for user in query("SELECT id, twofa_secret FROM users"):
        stored = user["twofa_secret"]
        try:
            if PLAIN_TOTP_SECRET.fullmatch(stored):
                new = fernet.encrypt(stored.encode()).decode("ascii")
            else:
                new = fernet.rotate(stored.encode()).decode("ascii")
        except InvalidToken:
            unreadable += 1
            continue
        # Only if unchanged meanwhile (a login or a 2FA reset may have written it).
        rotated += execute(
            "UPDATE users SET twofa_secret = %s WHERE id = %s AND twofa_secret = %s",
            (new, user["id"], stored),
        )
    click.echo(f"Re-encrypted {rotated} TOTP secrets; {unreadable} could not be decrypted.")
    if unreadable:
        raise click.ClickException("Some secrets need a key that TOTP_ENCRYPTION_KEY lacks.")


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the database and tables if they do not exist yet."""
    init_db(current_app.config)
    click.echo(f"Database {current_app.config['MYSQL_DB']} is ready.")


# --- Errors and response headers -------------------------------------------------------


class ValidationError(Exception):
    """Bad input from the client; becomes a 400 with this message."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def error_response(status, message, headers=None):
    """The one builder of error bodies: RFC 9457 problem details plus `message`."""
    response = jsonify(
        {
            "type": "about:blank",
            "title": HTTP_STATUS_TITLES.get(status, "Error"),
            "status": status,
            "message": message,
        }
    )
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(headers or {})
    return response


HTTP_STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

HTTP_ERROR_MESSAGES = {
    404: "The requested URL was not found.",
    405: "The method is not allowed for the requested URL.",
    413: "The request body is larger than 1 MiB.",
    415: "The request body must be JSON (Content-Type: application/json).",
    429: "Too many requests from this client; try again later.",
}


def handle_http_error(error):
    message = HTTP_ERROR_MESSAGES.get(error.code, error.description)
    headers = {}
    if error.code == 405 and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    return error_response(error.code, message, headers)


def handle_database_unavailable(error):
    g.database_failed = True
    log.warning("database unavailable (request %s): %s", g.get("request_id"), error)
    return error_response(
        503, "The database is unavailable; try again shortly.", {"Retry-After": "5"}
    )


def handle_unexpected_error(error):
    g.database_failed = True
    log.exception("unhandled error (request %s)", g.get("request_id"))
    return error_response(500, f"Internal server error (request id {g.get('request_id')}).")


def assign_request_id():
    g.request_id = uuid.uuid4().hex


def refuse_oversized_body():
    """413 for any body over the limit, even where the view never reads it."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None:
        if request.content_length > limit:
            abort(413)
    # A chunked body has no length up front; Werkzeug cuts it at the limit without a word.
    elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        if len(request.get_data()) >= limit:
            abort(413)


def add_security_headers(response):
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Responses carry secrets, tokens, QR codes or private inventory: no cache keeps them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


# --- Validation --------------------------------------------------------------------------


def json_object():
    """The request body as a dict, or a clear 415/400."""
    if not request.is_json:
        abort(415)
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting
        data = None
    if not isinstance(data, dict):
        raise ValidationError("The request body must be a JSON object.")
    return data


def require_text(data, field):
    value = data.get(field)
    if value is None:
        raise ValidationError(f"'{field}' is required.")
    return text(value, field)


def text(value, field):
    if not isinstance(value, str):
        raise ValidationError(f"'{field}' must be a string.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"'{field}' must be valid Unicode text.") from None
    return value


def has_control_characters(value):
    return any(unicodedata.category(character) == "Cc" for character in value)


def refuse_unknown_fields(data, allowed):
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        # Echo a few short names only: a key can be a megabyte long.
        names = ", ".join(name[:40] for name in unknown[:5])
        raise ValidationError(f"Unknown field(s): {names}{', ...' if len(unknown) > 5 else ''}.")


def validate_registration(data):
    refuse_unknown_fields(data, ("username", "password"))
    username = require_text(data, "username")
    password = require_text(data, "password")
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationError(
            "'username' must be 3-64 characters: letters, digits, '.', '_', '-' or '@'."
        )
    if len(password) < 8:
        raise ValidationError("'password' must be at least 8 characters long.")
    if len(password.encode("utf-8")) > 72:
        raise ValidationError("'password' must be at most 72 bytes in UTF-8 (the limit of bcrypt).")
    # bcrypt stops at NUL: "\0\0\0\0\0\0\0\0" would be the empty password.
    if has_control_characters(password):
        raise ValidationError("'password' must not contain control characters.")
    if password.lower() in COMMON_PASSWORDS:
        raise ValidationError("'password' is too common; choose a less guessable one.")
    return username, password


PRODUCT_FIELDS = ("name", "description", "price", "quantity")


def validate_product(data, partial=False):
    """Return the cleaned product fields of a create (PUT too) or a partial update."""
    refuse_unknown_fields(data, PRODUCT_FIELDS)
    if partial and not data:
        raise ValidationError("Give at least one of: name, description, price, quantity.")
    required = () if partial else ("name", "price", "quantity")
    for field in required:
        if data.get(field) is None:
            raise ValidationError(f"'{field}' is required.")
    product = {}
    if "name" in data:
        product["name"] = validate_name(data["name"])
    if "description" in data:
        product["description"] = validate_description(data["description"])
    elif not partial:
        product["description"] = None
    if "price" in data:
        product["price"] = validate_price(data["price"])
    if "quantity" in data:
        product["quantity"] = validate_quantity(data["quantity"])
    return product


def validate_name(value):
    name = text(value, "name")
    if not name.strip():
        raise ValidationError("'name' must not be blank.")
    if has_control_characters(name):
        raise ValidationError("'name' must not contain control characters.")
    if len(name) > 255:
        raise ValidationError("'name' must be at most 255 characters.")
    return name


def validate_description(value):
    if value is None:
        return None
    description = text(value, "description")
    if len(description) > 65_535:
        raise ValidationError("'description' must be at most 65,535 characters.")
    return description


def validate_price(value):
    # bool is a subclass of int; true is not a price.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError("'price' must be a number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError("'price' must be a finite number.")
    price = Decimal(str(value))
    if not 0 <= price <= MAX_PRICE:
        raise ValidationError("'price' must be between 0 and 99999999.99.")
    if price.as_tuple().exponent < -2:
        raise ValidationError("'price' must have at most 2 decimal places.")
    return abs(price)  # -0.0 is 0


def validate_quantity(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("'quantity' must be an integer.")
    if not 0 <= value <= MAX_QUANTITY:
        raise ValidationError("'quantity' must be between 0 and 2147483647.")
    return value


def validate_limit(value):
    if value is None:
        return 100
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= 1000:
        raise ValidationError("'limit' must be an integer from 1 to 1000.")
    return int(value)


def validate_cursor(value):
    if value is None:
        return 0
    if not re.fullmatch(r"[0-9]{1,10}", value):
        raise ValidationError("'after' must be a product id from a previous page's Link.")
    return int(value)


# --- Passwords, one-time codes, recovery codes and tokens ----------------------------------


def check_password(password, password_hash):
    """bcrypt check that always costs one bcrypt, whatever the input."""
    candidate = password.encode("utf-8")
    # Past 72 bytes or a NUL, bcrypt would compare a truncated password.
    usable = len(candidate) <= 72 and b"\0" not in candidate
    matches = bcrypt.checkpw(candidate if usable else b"", password_hash.encode("ascii"))
    return usable and matches


def hash_password(password):
    rounds = current_app.config["BCRYPT_ROUNDS"]
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def find_user(username):
    if not USERNAME_PATTERN.fullmatch(username):
        return None
    rows = query(
        "SELECT id, username, password, twofa_secret, last_otp_step, twofa_confirmed_at"
        " FROM users WHERE username = %s",
        (username,),
    )
    return rows[0] if rows else None


def password_matches(user, password):
    """One bcrypt whether the user exists or not, so timing does not tell them apart."""
    password_hash = user["password"] if user else current_app.config["DUMMY_PASSWORD_HASH"]
    return check_password(password, password_hash) and user is not None


def now():
    """Unix time; tests move it through the CLOCK setting instead of sleeping."""
    return current_app.config["CLOCK"]()


def encrypt_secret(secret):
    return current_app.extensions["totp_fernet"].encrypt(secret.encode()).decode("ascii")


def decrypt_secret(stored):
    """The base32 secret, or None when no configured key opens it."""
    # Secrets written in plain base32 by v1 still work; login encrypts them.
    if PLAIN_TOTP_SECRET.fullmatch(stored):
        return stored
    try:
        return current_app.extensions["totp_fernet"].decrypt(stored.encode()).decode("ascii")
    except InvalidToken:
        log.error("A TOTP secret cannot be decrypted: is a key missing from TOTP_ENCRYPTION_KEY?")
        return None


def matching_otp_step(secret, code):
    """The time step (current one or one either side) whose TOTP equals code, else None."""
    if secret is None or not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now()) // TOTP_STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes(cursor, user_id):
    """Replace the user's recovery codes with fresh ones (in the caller's transaction)."""
    codes = [
        "-".join("".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(4)) for _ in range(3))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    cursor.execute("DELETE FROM recovery_codes WHERE user_id = %s", (user_id,))
    cursor.executemany(
        "INSERT INTO recovery_codes (user_id, code_hash) VALUES (%s, %s)",
        [(user_id, recovery_code_digest(user_id, code)) for code in codes],
    )
    return codes


def recovery_code_digest(user_id, code):
    # 60 random bits per code: too many to brute-force from a dump; salted by user id.
    normalized = re.sub(r"[\s-]", "", code).lower()
    return hashlib.sha256(f"{user_id}:{normalized}".encode()).hexdigest()


def token_digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user_id):
    issued_at = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": issued_at,
        "exp": issued_at + current_app.config["JWT_EXPIRES_SECONDS"],
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm="HS256")


def invalid_token(reason, username=None):
    audit("token_refused", username, reason=reason)
    return error_response(
        401,
        "The access token is invalid, expired or revoked; log in again.",
        {"WWW-Authenticate": f'{BEARER_REALM}, error="invalid_token"'},
    )


def token_required(view):
    """Let the view run only for the holder of the user's current, valid token (g.user)."""

    @functools.wraps(view)
    def wrapped(**kwargs):
        header = request.headers.get("Authorization")
        if not header:
            audit("token_refused", None, reason="missing")
            return error_response(
                401,
                "An access token is required (Authorization: Bearer <token>).",
                {"WWW-Authenticate": BEARER_REALM},
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or " " in token:
            return invalid_token("malformed")
        try:
            claims = jwt.decode(
                token,
                current_app.config["SECRET_KEY"],
                algorithms=["HS256"],  # pinned: no "none", no algorithm confusion
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            return invalid_token("expired")
        except jwt.InvalidTokenError:
            return invalid_token("invalid")
        subject = claims["sub"]
        if not (isinstance(subject, str) and re.fullmatch(r"[0-9]{1,10}", subject)):
            return invalid_token("invalid")
        rows = query(
            "SELECT id, username, password, last_token FROM users WHERE id = %s", (subject,)
        )
        # Only the digest of the latest login's token is stored: logout, a new login and
        # a 2FA reset revoke every earlier token.
        if (
            not rows
            or not rows[0]["last_token"]
            or not hmac.compare_digest(rows[0]["last_token"], token_digest(token))
        ):
            return invalid_token("revoked", rows[0]["username"] if rows else None)
        g.user = rows[0]
        return view(**kwargs)

    return wrapped


# --- Lockout and audit -----------------------------------------------------------------


def claim_attempt(username):
    """Count a password or code attempt as failed before checking it (a success gives it
    back), so that concurrent guesses cannot all slip in before the lockout starts.

    Returns (refusal, lockout): a 429 to send now, or else the lockout in seconds that
    this attempt starts if it fails (0 for none)."""
    if not USERNAME_PATTERN.fullmatch(username):
        return None, 0  # no such account can exist, and nothing is stored for it
    config = current_app.config
    with transaction() as cursor:
        cursor.execute(
            "INSERT INTO login_failures (username, failures) VALUES (%s, 0)"
            " ON DUPLICATE KEY UPDATE username = username",
            (username,),
        )
        # Concurrent attempts on one account take turns on this row lock.
        cursor.execute(
            "SELECT failures, locked_until FROM login_failures WHERE username = %s FOR UPDATE",
            (username,),
        )
        row = cursor.fetchone()
        retry_after = math.ceil(row["locked_until"] - now()) if row["locked_until"] else 0
        if retry_after <= 0:
            failures = row["failures"] + 1
            lockout = 0
            if failures >= config["LOGIN_MAX_FAILURES"]:
                doublings = min(failures - config["LOGIN_MAX_FAILURES"], 32)
                lockout = min(
                    config["LOGIN_LOCKOUT_SECONDS"] * 2**doublings,
                    config["LOGIN_LOCKOUT_MAX_SECONDS"],
                )
            cursor.execute(
                "UPDATE login_failures SET failures = %s, locked_until = %s WHERE username = %s",
                (failures, now() + lockout if lockout else None, username),
            )
    if retry_after > 0:
        audit("login_locked", username, retry_after=retry_after)
        return error_response(
            429,
            f"Too many failed attempts for this account; try again in {retry_after} seconds.",
            {"Retry-After": str(retry_after)},
        ), 0
    return None, lockout


def give_back_attempt(username):
    """The password was right (QR code, password confirmation): uncount the attempt."""
    execute(
        "UPDATE login_failures SET locked_until = IF(failures - 1 < %s, NULL, locked_until),"
        " failures = GREATEST(failures, 1) - 1 WHERE username = %s",
        (current_app.config["LOGIN_MAX_FAILURES"], username),
    )


def refuse(event, username, lockout, **details):
    """Log a failed attempt (already counted by claim_attempt) and the lockout it starts."""
    # A name no account can have is not logged: it could be a megabyte of anything.
    audit(event, username if USERNAME_PATTERN.fullmatch(username) else None, **details)
    if lockout:
        audit("lockout", username, seconds=lockout)


def audit_rate_limited(limit):
    audit("rate_limited", None, limit=str(limit.limit), endpoint=request.endpoint)


def audit(event, username, **details):
    """One JSON line per security event. json.dumps escapes control characters, so a
    username or header cannot forge a line. Never pass passwords, codes or tokens."""
    record = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": event,
        "username": username,
        "client": request.remote_addr,
        "request_id": g.get("request_id"),
    } | details
    audit_log.info(json.dumps(record, ensure_ascii=True))


# --- Auth routes ---------------------------------------------------------------------------


def enrolment(username, secret):
    uri = pyotp.TOTP(secret).provisioning_uri(
        name=username, issuer_name=current_app.config["TOTP_ISSUER"]
    )
    return {
        "secret": secret,
        "otpauth_uri": uri,
        # Relative URLs: nothing in a response comes from the client's Host header.
        "qrcode_url": url_for("api.get_qrcode", username=username),
    }


def confirm_password(data):
    """For 2FA changes the token is not enough: the password must come too.
    Returns the refusal to send, or None."""
    refuse_unknown_fields(data, ("password",))
    password = require_text(data, "password")
    username = g.user["username"]
    refusal, lockout = claim_attempt(username)
    if refusal:
        return refusal
    if not check_password(password, g.user["password"]):
        refuse("password_confirmation_failed", username, lockout)
        return error_response(403, "The password is incorrect.")
    give_back_attempt(username)
    return None


def lock_token_holder(cursor):
    """Lock the user's row for the rest of the transaction, if the request's token is still
    the current one: a logout or login may have revoked it while bcrypt was running."""
    return cursor.execute(
        "SELECT id FROM users WHERE id = %s AND last_token = %s FOR UPDATE",
        (g.user["id"], g.user["last_token"]),
    )


def basic_credentials():
    """(username, password) from HTTP Basic auth, or None."""
    try:
        auth = request.authorization
    except ValueError:  # credentials that do not decode
        return None
    if auth is None or auth.type != "basic" or auth.username is None or auth.password is None:
        return None
    return auth.username, auth.password


@api.post("/register")
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"])
def register():
    username, password = validate_registration(json_object())
    password_hash = hash_password(password)
    secret = pyotp.random_base32()  # 160 bits from the secrets module
    try:
        with transaction() as cursor:
            cursor.execute(
                "INSERT INTO users (username, password, twofa_secret) VALUES (%s, %s, %s)",
                (username, password_hash, encrypt_secret(secret)),
            )
            codes = new_recovery_codes(cursor, cursor.lastrowid)
    except MySQLdb.IntegrityError:
        return error_response(409, "That username is already taken.")
    audit("register", username)
    body = {"message": "User registered successfully"} | enrolment(username, secret)
    return body | {"recovery_codes": codes}, 201


@api.get("/qrcode/<username>")
@limiter.limit(lambda: current_app.config["RATELIMIT_QRCODE"])
def get_qrcode(username):
    credentials = basic_credentials()
    if credentials is None or credentials[0].lower() != username.lower():
        audit("qrcode_refused", None, reason="no_credentials")
        return qrcode_unauthorized()
    # Password guesses here count towards the same lockout as logins.
    refusal, lockout = claim_attempt(username)
    if refusal:
        return refusal
    user = find_user(username)
    secret = (
        decrypt_secret(user["twofa_secret"]) if password_matches(user, credentials[1]) else None
    )
    if secret is None:
        name = user["username"] if user else username
        refuse("qrcode_refused", name, lockout, reason="bad_credentials")
        return qrcode_unauthorized()
    give_back_attempt(username)
    if user["twofa_confirmed_at"] is not None:
        return error_response(
            403,
            "Two-factor enrolment is already confirmed; the QR code is no longer served.",
        )
    uri = enrolment(user["username"], secret)["otpauth_uri"]
    image = io.BytesIO()
    qrcode.make(uri).save(image, format="PNG")
    image.seek(0)
    audit("qrcode_served", user["username"])
    return send_file(image, mimetype="image/png")


def qrcode_unauthorized():
    return error_response(
        401,
        "Give this user's username and password (HTTP Basic) to fetch the QR code.",
        {"WWW-Authenticate": BASIC_REALM},
    )


def validate_login(data):
    refuse_unknown_fields(data, ("username", "password", "otp", "recovery_code"))
    username = require_text(data, "username")
    password = require_text(data, "password")
    if ("otp" in data) == ("recovery_code" in data):
        raise ValidationError("Give exactly one of 'otp' and 'recovery_code'.")
    field = "otp" if "otp" in data else "recovery_code"
    return username, password, field, require_text(data, field)


@api.post("/login")
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"])
def login():
    username, password, field, code = validate_login(json_object())
    refusal, lockout = claim_attempt(username)
    if refusal:
        return refusal
    user = find_user(username)
    if not password_matches(user, password):
        reason = "bad_password" if user else "unknown_user"
        refuse("login_failed", user["username"] if user else username, lockout, reason=reason)
        return error_response(401, LOGIN_FAILED)

    token = issue_token(user["id"])
    body = {"token": token, "token_type": "Bearer"}
    with transaction() as cursor:
        if field == "otp":
            secret = decrypt_secret(user["twofa_secret"])
            step = matching_otp_step(secret, code)  # None too if the secret is unreadable
            # One atomic statement: of two requests with the same code, only one can move
            # last_otp_step forward (RFC 6238 section 5.2), so only one gets a token; and
            # none if a 2FA reset replaced the secret meanwhile. Rewriting the secret
            # encrypts a v1 plain one and moves it to the newest key.
            accepted = step is not None and cursor.execute(
                "UPDATE users SET last_otp_step = %s, last_token = %s, twofa_secret = %s,"
                " twofa_confirmed_at = COALESCE(twofa_confirmed_at, UTC_TIMESTAMP())"
                " WHERE id = %s AND twofa_secret = %s"
                " AND (last_otp_step IS NULL OR last_otp_step < %s)",
                (
                    step,
                    token_digest(token),
                    encrypt_secret(secret),
                    user["id"],
                    user["twofa_secret"],
                    step,
                ),
            )
            reason = "bad_otp"
        else:
            # Marking the code used is atomic too: it works once, even under racing requests.
            accepted = cursor.execute(
                "UPDATE recovery_codes SET used_at = UTC_TIMESTAMP()"
                " WHERE user_id = %s AND code_hash = %s AND used_at IS NULL",
                (user["id"], recovery_code_digest(user["id"], code)),
            )
            if accepted:
                cursor.execute(
                    "UPDATE users SET last_token = %s WHERE id = %s",
                    (token_digest(token), user["id"]),
                )
                cursor.execute(
                    "SELECT COUNT(*) AS remaining FROM recovery_codes"
                    " WHERE user_id = %s AND used_at IS NULL",
                    (user["id"],),
                )
                body["recovery_codes_remaining"] = cursor.fetchone()["remaining"]
            reason = "bad_recovery_code"
        if accepted:
            cursor.execute("DELETE FROM login_failures WHERE username = %s", (user["username"],))
    if not accepted:
        refuse("login_failed", user["username"], lockout, reason=reason)
        return error_response(401, LOGIN_FAILED)
    if field == "recovery_code":
        audit("recovery_code_used", user["username"], remaining=body["recovery_codes_remaining"])
    audit("login_succeeded", user["username"], method=field)
    return body | {"expires_in": current_app.config["JWT_EXPIRES_SECONDS"]}


@api.post("/logout")
@token_required
def logout():
    execute("UPDATE users SET last_token = NULL WHERE id = %s", (g.user["id"],))
    audit("logout", g.user["username"])
    return {"message": "Logged out"}


@api.post("/2fa/recovery-codes")
@token_required
def regenerate_recovery_codes():
    refusal = confirm_password(json_object())
    if refusal:
        return refusal
    with transaction() as cursor:
        if not lock_token_holder(cursor):
            return invalid_token("revoked", g.user["username"])
        codes = new_recovery_codes(cursor, g.user["id"])
    audit("recovery_codes_regenerated", g.user["username"])
    return {
        "message": "New recovery codes issued; the old ones no longer work.",
        "recovery_codes": codes,
    }


@api.post("/2fa/reset")
@token_required
def reset_two_factor():
    refusal = confirm_password(json_object())
    if refusal:
        return refusal
    secret = pyotp.random_base32()
    with transaction() as cursor:
        if not lock_token_holder(cursor):
            return invalid_token("revoked", g.user["username"])
        # The new secret reopens the QR code until a login with it; the current token dies.
        cursor.execute(
            "UPDATE users SET twofa_secret = %s, twofa_confirmed_at = NULL,"
            " last_otp_step = NULL, last_token = NULL WHERE id = %s",
            (encrypt_secret(secret), g.user["id"]),
        )
    audit("twofa_reset", g.user["username"])
    body = {"message": "Two-factor authentication reset; log in with a code of the new secret."}
    return body | enrolment(g.user["username"], secret)


# --- Product routes -------------------------------------------------------------------------


def product_json(row):
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": float(row["price"]),  # a JSON number; DECIMAL(10,2) fits a float exactly enough
        "quantity": row["quantity"],
    }


def fetch_product(product_id):
    rows = query(
        "SELECT id, name, description, price, quantity FROM products WHERE id = %s",
        (product_id,),
    )
    return rows[0] if rows else None


def product_not_found():
    return error_response(404, "No product has that id.")


@api.post("/product")
@api.post("/products")
@token_required
def create_product():
    product = validate_product(json_object())
    execute(
        "INSERT INTO products (name, description, price, quantity) VALUES (%s, %s, %s, %s)",
        (product["name"], product["description"], product["price"], product["quantity"]),
    )
    product_id = mysql.connection.insert_id()
    body = {
        "message": "Product created successfully",
        "id": product_id,
        "product": product_json(product | {"id": product_id}),
    }
    return body, 201, {"Location": url_for("api.get_product", product_id=product_id)}


@api.get("/products")
@token_required
def list_products():
    limit = validate_limit(request.args.get("limit"))
    after = validate_cursor(request.args.get("after"))
    # Keyset pagination: the primary key index finds the page start, whatever the page.
    rows = query(
        "SELECT id, name, description, price, quantity FROM products"
        " WHERE id > %s ORDER BY id LIMIT %s",
        (after, limit + 1),
    )
    response = jsonify([product_json(row) for row in rows[:limit]])
    if len(rows) > limit:
        next_url = url_for("api.list_products", limit=limit, after=rows[limit - 1]["id"])
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@api.get("/products/<id:product_id>")
@token_required
def get_product(product_id):
    row = fetch_product(product_id)
    return product_json(row) if row else product_not_found()


@api.put("/products/<id:product_id>")
@api.patch("/products/<id:product_id>")
@token_required
def update_product(product_id):
    changes = validate_product(json_object(), partial=request.method == "PATCH")
    # Column names come from PRODUCT_FIELDS (validate_product refuses any other key).
    assignments = ", ".join(f"{field} = %s" for field in changes)
    updated = execute(
        f"UPDATE products SET {assignments} WHERE id = %s",  # noqa: S608
        (*changes.values(), product_id),
    )
    row = fetch_product(product_id) if updated else None
    if row is None:  # absent, or deleted by someone else in between
        return product_not_found()
    return {"message": "Product updated", "product": product_json(row)}


@api.delete("/products/<id:product_id>")
@token_required
def delete_product(product_id):
    if not execute("DELETE FROM products WHERE id = %s", (product_id,)):
        return product_not_found()
    return {"message": "Product deleted"}


# --- API description and docs page ---------------------------------------------------------

# Swagger UI's own files ship in the flask-swagger-ui wheel: the page needs no CDN.
docs = Blueprint("docs", __name__)
SWAGGER_UI_FILES = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")
# Only what templates/docs.html loads; not the rest of the package (an OAuth page, etc.).
DOCS_ASSETS = ("swagger-ui.css", "index.css", "favicon-32x32.png", "swagger-ui-bundle.js")
# Scripts and styles from this origin only; "Try it out" may only call this API.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@docs.record_once
def load_openapi_document(state):
    """Read openapi.yaml once, when the app is built, and keep it as JSON."""
    with open(os.path.join(os.path.dirname(__file__), "openapi.yaml")) as f:
        document = yaml.safe_load(f)
    state.app.extensions["openapi_json"] = json.dumps(document).encode()


@docs.get("/openapi.json")
def get_openapi_document():
    return current_app.response_class(
        current_app.extensions["openapi_json"], mimetype="application/json"
    )


@docs.get("/docs/assets/<name>")
def get_docs_asset(name):
    if name not in DOCS_ASSETS:
        abort(404)
    return send_from_directory(SWAGGER_UI_FILES, name)


@docs.get("/docs")
def get_docs():
    response = current_app.make_response(render_template("docs.html"))
    response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    return response


if __name__ == "__main__":
    # Development server only; debug comes from FLASK_DEBUG=1, never from source.
    create_app().run(debug=os.environ.get("FLASK_DEBUG") == "1")

"""SecureAPI: register, enrol TOTP, log in for a JWT, manage a shared product inventory."""

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
import time
import uuid
from decimal import Decimal

import bcrypt
import click
import flask_swagger_ui
import jwt
import MySQLdb
import pyotp
import qrcode
import yaml
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
    url_for,
)
from flask.cli import with_appcontext
from flask_mysqldb import MySQL
from werkzeug.exceptions import HTTPException
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from config import Config

mysql = MySQL()
api = Blueprint("api", __name__)
log = logging.getLogger(__name__)

# 30,000 most common passwords (zxcvbn's list), compared without regard to case.
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{3,64}")
MAX_PRICE = Decimal("99999999.99")
MAX_QUANTITY = 2_147_483_647
TOTP_STEP_SECONDS = 30
BEARER_REALM = 'Bearer realm="SecureAPI"'
BASIC_REALM = 'Basic realm="SecureAPI", charset="UTF-8"'


# --- Application factory -------------------------------------------------------------


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(Config)
    if test_config:
        app.config.update(test_config)

    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = load_secret_key(app.instance_path)
    if len(app.config["SECRET_KEY"].encode()) < 32:
        raise RuntimeError("SECRET_KEY must be at least 32 bytes long")
    # bcrypt for unknown users too, against this hash, so timing does not tell them apart.
    app.config["DUMMY_PASSWORD_HASH"] = bcrypt.hashpw(
        secrets.token_bytes(16), bcrypt.gensalt(app.config["BCRYPT_ROUNDS"])
    )

    mysql.init_app(app)
    app.register_blueprint(api)
    app.register_blueprint(docs)
    app.cli.add_command(init_db_command)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(ValidationError, lambda e: error_response(400, e.message))
    app.register_error_handler(MySQLdb.OperationalError, handle_database_unavailable)
    app.register_error_handler(Exception, handle_unexpected_error)
    app.before_request(assign_request_id)
    app.after_request(add_security_headers)
    return app


def load_secret_key(instance_path):
    """Return the key kept in instance/secret_key, creating it on first use."""
    path = os.path.join(instance_path, "secret_key")
    if not os.path.exists(path):
        os.makedirs(instance_path, exist_ok=True)
        temporary = f"{path}.{os.getpid()}"
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(48))
        # link() is atomic and never overwrites: concurrent workers all end up with one key.
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    with open(path) as f:
        return f.read().strip()


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
    """Run one write and commit it; return the number of rows it changed."""
    cursor = mysql.connection.cursor()
    try:
        cursor.execute(sql, args)
        mysql.connection.commit()
        return cursor.rowcount
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
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

HTTP_ERROR_MESSAGES = {
    404: "The requested URL was not found.",
    405: "The method is not allowed for the requested URL.",
    413: "The request body is larger than 1 MiB.",
    415: "The request body must be JSON (Content-Type: application/json).",
}


def handle_http_error(error):
    message = HTTP_ERROR_MESSAGES.get(error.code, error.description)
    headers = {}
    if error.code == 405 and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    return error_response(error.code, message, headers)


def handle_database_unavailable(error):
    log.warning("database unavailable (request %s): %s", g.get("request_id"), error)
    return error_response(
        503, "The database is unavailable; try again shortly.", {"Retry-After": "5"}
    )


def handle_unexpected_error(error):
    log.exception("unhandled error (request %s)", g.get("request_id"))
    return error_response(500, f"Internal server error (request id {g.get('request_id')}).")


def assign_request_id():
    g.request_id = uuid.uuid4().hex


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
    data = request.get_json(silent=True)
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


def refuse_unknown_fields(data, allowed):
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.")


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
    return price


def validate_quantity(value):
    # JSON has one number type: 3.0 is the integer 3 (so says JSON Schema, and openapi.yaml).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
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


# --- Passwords, one-time codes and tokens -------------------------------------------------


def check_password(password, password_hash):
    """bcrypt check that always costs one bcrypt, whatever the input."""
    candidate = password.encode("utf-8")
    fits = len(candidate) <= 72
    matches = bcrypt.checkpw(candidate if fits else b"", password_hash.encode("ascii"))
    return fits and matches


def find_user(username):
    rows = query(
        "SELECT id, username, password, twofa_secret, last_token, last_otp_step,"
        " twofa_confirmed_at FROM users WHERE username = %s",
        (username,),
    )
    return rows[0] if rows else None


def authenticate(username, password):
    """The user with these credentials, or None. One bcrypt whether the user exists or not."""
    user = find_user(username) if USERNAME_PATTERN.fullmatch(username) else None
    password_hash = user["password"] if user else current_app.config["DUMMY_PASSWORD_HASH"].decode()
    if check_password(password, password_hash) and user:
        return user
    return None


def matching_otp_step(secret, code):
    """The time step (current one or one either side) whose TOTP equals code, else None."""
    if not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    now = int(time.time()) // TOTP_STEP_SECONDS
    for step in (now - 1, now, now + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def token_digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user_id):
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + current_app.config["JWT_EXPIRES_SECONDS"],
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm="HS256")


def invalid_token():
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
            return error_response(
                401,
                "An access token is required (Authorization: Bearer <token>).",
                {"WWW-Authenticate": BEARER_REALM},
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or " " in token:
            return invalid_token()
        try:
            claims = jwt.decode(
                token,
                current_app.config["SECRET_KEY"],
                algorithms=["HS256"],  # pinned: no "none", no algorithm confusion
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError:
            return invalid_token()
        subject = claims["sub"]
        if not (isinstance(subject, str) and re.fullmatch(r"[0-9]{1,10}", subject)):
            return invalid_token()
        rows = query("SELECT id, username, last_token FROM users WHERE id = %s", (subject,))
        # Only the digest of the latest login's token is stored: logout and a new login
        # revoke every earlier token.
        if (
            not rows
            or not rows[0]["last_token"]
            or not hmac.compare_digest(rows[0]["last_token"], token_digest(token))
        ):
            return invalid_token()
        g.user = rows[0]
        return view(**kwargs)

    return wrapped


def basic_auth_user(username):
    """The user named in the URL if the request carries that user's Basic credentials."""
    auth = request.authorization
    if not auth or auth.type != "basic" or auth.username is None or auth.password is None:
        return None
    user = authenticate(auth.username, auth.password)
    if user and user["username"].lower() == username.lower():
        return user
    return None


# --- Auth routes ---------------------------------------------------------------------------


def enrolment(username, secret):
    uri = pyotp.TOTP(secret).provisioning_uri(
        name=username, issuer_name=current_app.config["TOTP_ISSUER"]
    )
    return {
        "secret": secret,
        "otpauth_uri": uri,
        "qrcode_url": url_for("api.get_qrcode", username=username, _external=True),
    }


@api.post("/register")
def register():
    username, password = validate_registration(json_object())
    password_hash = bcrypt.hashpw(
        password.encode("utf-8"), bcrypt.gensalt(current_app.config["BCRYPT_ROUNDS"])
    )
    secret = pyotp.random_base32()  # 160 bits from the secrets module
    try:
        execute(
            "INSERT INTO users (username, password, twofa_secret) VALUES (%s, %s, %s)",
            (username, password_hash.decode("ascii"), secret),
        )
    except MySQLdb.IntegrityError:
        return error_response(409, "That username is already taken.")
    body = {"message": "User registered successfully"} | enrolment(username, secret)
    return body, 201


@api.get("/qrcode/<username>")
def get_qrcode(username):
    user = basic_auth_user(username)
    if user is None:
        return error_response(
            401,
            "Give this user's username and password (HTTP Basic) to fetch the QR code.",
            {"WWW-Authenticate": BASIC_REALM},
        )
    if user["twofa_confirmed_at"] is not None:
        return error_response(
            403,
            "Two-factor enrolment is already confirmed; the QR code is no longer served.",
        )
    uri = enrolment(user["username"], user["twofa_secret"])["otpauth_uri"]
    image = io.BytesIO()
    qrcode.make(uri).save(image, format="PNG")
    image.seek(0)
    return send_file(image, mimetype="image/png")


@api.post("/login")
def login():
    data = json_object()
    refuse_unknown_fields(data, ("username", "password", "otp"))
    username = require_text(data, "username")
    password = require_text(data, "password")
    code = require_text(data, "otp")
    user = authenticate(username, password)
    step = matching_otp_step(user["twofa_secret"], code) if user else None
    token = issue_token(user["id"]) if step is not None else None
    # One atomic statement: of two requests with the same code, only one can move
    # last_otp_step forward (RFC 6238 section 5.2), so only one gets a token.
    if token is None or not execute(
        "UPDATE users SET last_otp_step = %s, last_token = %s,"
        " twofa_confirmed_at = COALESCE(twofa_confirmed_at, UTC_TIMESTAMP())"
        " WHERE id = %s AND (last_otp_step IS NULL OR last_otp_step < %s)",
        (step, token_digest(token), user["id"], step),
    ):
        return error_response(401, "Invalid username, password or one-time code.")
    return {
        "token": token,
        "token_type": "Bearer",
        "expires_in": current_app.config["JWT_EXPIRES_SECONDS"],
    }


@api.post("/logout")
@token_required
def logout():
    execute("UPDATE users SET last_token = NULL WHERE id = %s", (g.user["id"],))
    return {"message": "Logged out"}


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
    cursor = mysql.connection.cursor()
    cursor.execute(
        "INSERT INTO products (name, description, price, quantity) VALUES (%s, %s, %s, %s)",
        (product["name"], product["description"], product["price"], product["quantity"]),
    )
    product_id = cursor.lastrowid
    mysql.connection.commit()
    cursor.close()
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
        next_url = url_for(
            "api.list_products", limit=limit, after=rows[limit - 1]["id"], _external=True
        )
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@api.get("/products/<int:product_id>")
@token_required
def get_product(product_id):
    row = fetch_product(product_id)
    return product_json(row) if row else product_not_found()


@api.put("/products/<int:product_id>")
@api.patch("/products/<int:product_id>")
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


@api.delete("/products/<int:product_id>")
@token_required
def delete_product(product_id):
    if not execute("DELETE FROM products WHERE id = %s", (product_id,)):
        return product_not_found()
    return {"message": "Product deleted"}


# --- API description and docs page ---------------------------------------------------------

# Swagger UI's own files ship in the flask-swagger-ui wheel: the page needs no CDN.
docs = Blueprint(
    "docs",
    __name__,
    static_folder=os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist"),
    static_url_path="/docs/assets",
)
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


@docs.get("/docs")
def get_docs():
    response = current_app.make_response(render_template("docs.html"))
    response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    return response


if __name__ == "__main__":
    # Development server only; debug comes from FLASK_DEBUG=1, never from source.
    create_app().run(debug=os.environ.get("FLASK_DEBUG") == "1")

"""The app as `make run` serves it, plus one trivial JSON route: the framework ceiling.

`bare` is Flask alone with that route (no hooks, no extensions): the bare-Flask ceiling
that the production rows are measured against.

`floor` is Flask alone with the work an authenticated read cannot skip, and nothing else:
check the token's HMAC and expiry, read its session and holder by primary keys (one join),
read the product (or a page of 100) by primary key, send it as JSON (with
the app's own column converters, JSON of a row and JSON encoder). No validation, audit,
headers, metrics or error handling: what the production rows would reach if every feature
of the API cost nothing."""

import base64
import hmac
import json
import os
import threading
import time

import MySQLdb
import MySQLdb.cursors
from flask import Flask, request

from app import create_app
from config import Config
from secureapi.data.database import CONVERSIONS
from secureapi.routes.products import PRODUCT_COLUMNS, product_json
from secureapi.web.json_provider import FastJSONProvider

app = create_app()
app.add_url_rule("/bench/ceiling", "ceiling", lambda: {"status": "ok"})

bare = Flask(__name__)
bare.add_url_rule("/bench/ceiling", "ceiling", lambda: {"status": "ok"})

floor = Flask(__name__)
floor.json = FastJSONProvider(floor)  # as the app's
floor.add_url_rule("/bench/ceiling", "ceiling", lambda: {"status": "ok"})
KEY = os.environ.get("SECRET_KEY", "").encode()
kept = threading.local()


def query(statement, args):
    if not hasattr(kept, "connection"):
        kept.connection = MySQLdb.connect(
            host=Config.MYSQL_HOST,
            port=Config.MYSQL_PORT,
            user=Config.MYSQL_USER,
            password=Config.MYSQL_PASSWORD,
            database=os.environ["MYSQL_DB"],
            charset="utf8mb4",
            autocommit=True,
            cursorclass=MySQLdb.cursors.DictCursor,
            conv=CONVERSIONS,
        )
    cursor = kept.connection.cursor()
    cursor.execute(statement, args)
    return cursor.fetchall()


def holder():
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    signed, _, signature = token.rpartition(".")
    expected = hmac.digest(KEY, signed.encode(), "sha256")
    if not hmac.compare_digest(base64.urlsafe_b64decode(signature + "=="), expected):
        return None
    claims = json.loads(base64.urlsafe_b64decode(signed.partition(".")[2] + "=="))
    if claims["exp"] <= time.time():
        return None
    rows = query(
        "SELECT users.role FROM sessions JOIN users ON users.id = sessions.user_id"
        " WHERE sessions.id = %s AND sessions.user_id = %s",
        (claims["sid"], claims["sub"]),
    )
    return rows[0] if rows else None


@floor.get("/products/<int:product_id>")
def floor_product(product_id):
    if holder() is None:
        return {"error": "unauthorized"}, 401
    rows = query(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = %s", (product_id,))  # noqa: S608
    return product_json(rows[0]) if rows else ({"error": "not found"}, 404)


@floor.get("/products")
def floor_page():
    if holder() is None:
        return {"error": "unauthorized"}, 401
    rows = query(f"SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id LIMIT %s", (101,))  # noqa: S608
    return {"products": [product_json(row) for row in rows[:100]], "more": len(rows) > 100}

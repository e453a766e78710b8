import json
import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from flask import Blueprint, Flask

from secureapi.security.rate_limits import limiter, skip_unlimited_routes
from tests.support import AuthActions, next_link, sql

LAPTOP = {"name": "Laptop", "description": "14-inch", "price": 1500.99, "quantity": 3}


def fields(product):
    """A product's JSON without the version and timestamps the database gives it."""
    return {key: value for key, value in product.items() if key not in GIVEN_BY_THE_DATABASE}


GIVEN_BY_THE_DATABASE = ("version", "created_at", "updated_at")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def create(client, headers, product=LAPTOP, path="/products"):
    response = client.post(path, json=product, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


@pytest.mark.parametrize("path", ["/product", "/products"])
def test_create_product(client, headers, db, path):
    response = client.post(path, json=LAPTOP, headers=headers)
    assert response.status_code == 201
    body = response.json
    assert body["message"] == "Product created successfully"
    assert fields(body["product"]) == LAPTOP | {"id": body["id"]}
    assert response.headers["Location"] == f"/products/{body['id']}"
    (row,) = sql(db, "SELECT * FROM products")
    assert row["id"] == body["id"]
    assert row["price"] == Decimal("1500.99")
    assert (row["name"], row["description"], row["quantity"]) == ("Laptop", "14-inch", 3)


def test_create_without_description_stores_null(client, headers):
    product = {"name": "Pen", "price": 2, "quantity": 0}
    response = client.post("/products", json=product, headers=headers)
    assert fields(response.json["product"]) == product | {
        "description": None,
        "id": response.json["id"],
    }


def test_negative_zero_price_is_zero(client, headers):
    response = client.post("/products", json=LAPTOP | {"price": -0.0}, headers=headers)
    assert response.json["product"]["price"] == 0
    assert re.search(rb'"price":\s*0(\.0)?[,}]', response.data)


def test_get_product_returns_numbers(client, headers):
    product_id = create(client, headers)
    response = client.get(f"/products/{product_id}", headers=headers)
    assert response.status_code == 200
    assert fields(response.json) == LAPTOP | {"id": product_id}
    assert re.search(rb'"price":\s*1500\.99[,}]', response.data)  # a number, not "1500.99"


@pytest.mark.parametrize("product_id", ["0", "999999", "99999999999999999999999"])
def test_missing_product_is_404_everywhere(client, headers, product_id):
    url = f"/products/{product_id}"
    assert client.get(url, headers=headers).status_code == 404
    assert client.put(url, json=LAPTOP, headers=headers).status_code == 404
    assert client.patch(url, json={"quantity": 1}, headers=headers).status_code == 404
    response = client.delete(url, headers=headers)
    assert response.status_code == 404
    assert response.json["message"] == "No product has that id."


def test_non_numeric_product_id_is_404(client, headers):
    assert client.get("/products/abc", headers=headers).status_code == 404
    assert client.get("/products/-1", headers=headers).status_code == 404
    product_id = create(client, headers)
    arabic_digit = chr(0x0660 + product_id % 10) if product_id < 10 else "\u0661"
    assert client.get(f"/products/{arabic_digit}", headers=headers).status_code == 404


def test_put_replaces_whole_product(client, headers):
    product_id = create(client, headers)
    new = {"name": "Desk", "price": 99.5, "quantity": 1}
    response = client.put(f"/products/{product_id}", json=new, headers=headers)
    assert response.status_code == 200
    assert response.json["message"] == "Product updated"
    assert fields(response.json["product"]) == new | {"id": product_id, "description": None}
    assert client.get(f"/products/{product_id}", headers=headers).json["description"] is None


def test_put_with_unchanged_values_is_200(client, headers):
    product_id = create(client, headers)
    response = client.put(f"/products/{product_id}", json=LAPTOP, headers=headers)
    assert response.status_code == 200


def test_put_requires_every_required_field(client, headers, db):
    product_id = create(client, headers)
    response = client.put(f"/products/{product_id}", json={"name": "X"}, headers=headers)
    assert response.status_code == 400
    assert sql(db, "SELECT name FROM products")[0]["name"] == "Laptop"


def test_patch_changes_only_given_fields(client, headers):
    product_id = create(client, headers)
    response = client.patch(f"/products/{product_id}", json={"quantity": 7}, headers=headers)
    assert response.status_code == 200
    assert fields(response.json["product"]) == LAPTOP | {"id": product_id, "quantity": 7}
    response = client.patch(f"/products/{product_id}", json={"description": None}, headers=headers)
    assert response.json["product"]["description"] is None


def test_patch_with_empty_object_is_400(client, headers):
    product_id = create(client, headers)
    response = client.patch(f"/products/{product_id}", json={}, headers=headers)
    assert response.status_code == 400


def test_delete_product(client, headers, db):
    product_id = create(client, headers)
    response = client.delete(f"/products/{product_id}", headers=headers)
    assert response.status_code == 200
    assert response.json == {"message": "Product deleted"}
    assert sql(db, "SELECT COUNT(*) AS n FROM products")[0]["n"] == 0
    assert client.delete(f"/products/{product_id}", headers=headers).status_code == 404


def test_products_are_shared_between_users(client, auth):
    alice = auth.headers("alice")
    bob = auth.headers("bob")
    product_id = create(client, alice)
    assert client.get(f"/products/{product_id}", headers=bob).status_code == 200


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": None}, "'name' is required"),
        ({"name": ""}, "'name' must not be blank"),
        ({"name": "   "}, "'name' must not be blank"),
        ({"name": "x" * 256}, "at most 255 characters"),
        ({"name": 5}, "'name' must be a string"),
        ({"name": "bad \udc80 text"}, "valid Unicode"),
        ({"name": "a\u0000b"}, "control characters"),
        ({"description": 5}, "'description' must be a string"),
        ({"description": "x" * 65_536}, "at most 65,535 characters"),
        ({"description": "ü" * 65_536}, "at most 65,535 characters"),
        ({"description": "line\u0000break"}, "control characters"),
        ({"description": "\u001b[31mred"}, "control characters"),
        ({"name": "\u202egnp.exe"}, "invisible formatting"),  # right-to-left override
        ({"name": "pay\u200bpal"}, "invisible formatting"),  # zero-width space
        ({"name": "\u00a0\u3000"}, "must not be blank"),  # no-break and ideographic spaces
        ({"name": "\U000e0041\U000e0042"}, "invisible formatting"),  # tag characters
        ({"price": None}, "'price' is required"),
        ({"price": "1500.99"}, "'price' must be a number"),
        ({"price": True}, "'price' must be a number"),
        ({"price": [1]}, "'price' must be a number"),
        ({"price": -0.01}, "between 0 and 99999999.99"),
        ({"price": 100_000_000}, "between 0 and 99999999.99"),
        ({"price": 1e300}, "between 0 and 99999999.99"),
        ({"price": 10**400}, "between 0 and 99999999.99"),
        ({"price": 1.999}, "at most 2 decimal places"),
        ({"price": 0.1 + 0.2}, "at most 2 decimal places"),
        ({"quantity": None}, "'quantity' is required"),
        ({"quantity": 1.5}, "'quantity' must be an integer"),
        ({"quantity": 1e-30}, "'quantity' must be an integer"),
        ({"quantity": "3"}, "'quantity' must be an integer"),
        ({"quantity": False}, "'quantity' must be an integer"),
        ({"quantity": -1}, "between 0 and 2147483647"),
        ({"quantity": 2_147_483_648}, "between 0 and 2147483647"),
        ({"quantity": 10**30}, "between 0 and 2147483647"),
        ({"id": 5}, "Unknown field(s): id"),
        ({"owner": "bob"}, "Unknown field(s): owner"),
    ],
)
def test_product_validation(client, headers, db, change, message):
    product_id = create(client, headers)
    bad = LAPTOP | change
    for method, url in [
        ("POST", "/products"),
        ("POST", "/product"),
        ("PUT", f"/products/{product_id}"),
        ("PATCH", f"/products/{product_id}"),
    ]:
        # json.dumps escapes what UTF-8 cannot carry (a lone surrogate) as JSON does.
        body = json.dumps(bad, default=str)
        response = client.open(
            url, method=method, data=body, content_type="application/json", headers=headers
        )
        assert response.status_code == 400, (url, response.json)
        if method != "PATCH":  # PATCH may leave fields out, so null is a type error there
            assert message in response.json["message"]
    assert sql(db, "SELECT COUNT(*) AS n FROM products")[0]["n"] == 1
    assert fields(client.get(f"/products/{product_id}", headers=headers).json) == LAPTOP | {
        "id": product_id
    }


@pytest.mark.parametrize("data", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_price_is_400(client, headers, data):
    body = f'{{"name": "x", "price": {data}, "quantity": 1}}'
    response = client.post("/products", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 400


@pytest.mark.parametrize(
    "product",
    [
        {"name": "x" * 255, "price": 0, "quantity": 0},
        {"name": "Max", "price": 99_999_999.99, "quantity": 2_147_483_647},
        {"name": "Emoji 🚀", "description": "ü" * 65_535, "price": 0.5, "quantity": 1},
        {"name": "Marks \u0301\u0302", "price": 1, "quantity": 1},
        {"name": "Tabs", "description": "a\tb\r\nc\n", "price": 1, "quantity": 1},
        {"name": "Quote ' \" ; DROP TABLE products; --", "price": 1.1, "quantity": 1},
    ],
)
def test_boundary_values_round_trip(client, headers, product):
    product_id = create(client, headers, product)
    stored = client.get(f"/products/{product_id}", headers=headers).json
    assert fields(stored) == {"description": None} | product | {"id": product_id}


@pytest.mark.parametrize("literal, price", [("1.500", 1.5), ("1.0e-2", 0.01), ("0.000", 0)])
def test_a_price_that_is_a_multiple_of_a_cent_is_accepted_however_written(
    client, headers, literal, price
):
    # openapi.yaml says multipleOf 0.01: trailing zeros are no extra decimals.
    body = f'{{"name": "Lamp", "price": {literal}, "quantity": 1}}'
    response = client.post("/products", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 201, response.json
    assert response.json["product"]["price"] == price


@pytest.mark.parametrize("literal", ["4044.0", "4044.000", "4.044e3", "404400e-2"])
def test_an_integral_quantity_written_with_a_fraction_is_that_integer(client, headers, db, literal):
    # JSON Schema's "integer" and RFC 8259 alike: 4044.0 is the number 4044.
    body = f'{{"name": "Lamp", "price": 5, "quantity": {literal}}}'
    response = client.post("/products", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 201, response.json
    assert re.search(rb'"quantity":\s*4044[,}]', response.data)
    assert sql(db, "SELECT quantity FROM products")[0]["quantity"] == 4044
    patch = client.patch(
        f"/products/{response.json['id']}",
        data='{"quantity": 7.0}',
        content_type="application/json",
        headers=headers,
    )
    assert patch.json["product"]["quantity"] == 7


@pytest.mark.parametrize(
    "literal, message",
    [("1e999999999", "between 0"), ("4044.5", "an integer"), ("-1.0", "between 0")],
)
def test_quantity_literals_that_are_no_valid_integer(client, headers, literal, message):
    body = f'{{"name": "Lamp", "price": 5, "quantity": {literal}}}'
    response = client.post("/products", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 400
    assert message in response.json["message"]


# --- Pagination ---------------------------------------------------------------------------


def test_pagination_covers_every_row_exactly_once(client, headers, db):
    cursor = db.cursor()
    cursor.executemany(
        "INSERT INTO products (name, price, quantity) VALUES (%s, %s, %s)",
        [(f"item {n}", n, n) for n in range(250)],
    )
    # Gaps in the ids must not matter.
    cursor.execute("DELETE FROM products WHERE quantity % 7 = 0")
    expected = [row["id"] for row in sql(db, "SELECT id FROM products ORDER BY id")]

    seen, url, pages = [], "/products?limit=30", 0
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200
        assert len(response.json) <= 30
        seen += [product["id"] for product in response.json]
        url, pages = next_link(response), pages + 1
    assert seen == expected
    assert pages == -(-len(expected) // 30)


def test_pagination_exact_multiple_has_no_empty_last_page(client, headers):
    for _ in range(4):
        create(client, headers)
    first = client.get("/products?limit=2", headers=headers)
    second = client.get(next_link(first), headers=headers)
    assert len(second.json) == 2
    assert next_link(second) is None


def test_default_limit_is_100(client, headers, db):
    db.cursor().executemany(
        "INSERT INTO products (name, price, quantity) VALUES (%s, %s, %s)",
        [(f"item {n}", n, n) for n in range(101)],
    )
    response = client.get("/products", headers=headers)
    assert len(response.json) == 100
    assert "limit=100" in response.headers["Link"]


def test_empty_inventory_is_empty_list(client, headers):
    response = client.get("/products", headers=headers)
    assert response.json == []
    assert "Link" not in response.headers


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=1.5",
        "after=abc",
        "after=-1",
        "after=99999999999",
    ],
)
def test_bad_pagination_parameters_are_400(client, headers, query):
    response = client.get(f"/products?{query}", headers=headers)
    assert response.status_code == 400
    assert re.search(r"'(limit|after)'", response.json["message"])


@pytest.mark.parametrize("limit", ["1", "1000"])
def test_limit_bounds_are_accepted(client, headers, limit):
    assert client.get(f"/products?limit={limit}", headers=headers).status_code == 200


def test_unknown_fields_are_named_briefly(client, headers):
    body = LAPTOP | {"x" * 100_000: 1} | {f"extra{n}": n for n in range(10)}
    response = client.post("/products", json=body, headers=headers)
    assert response.status_code == 400
    assert len(response.json["message"]) < 300


# --- Timestamps ---------------------------------------------------------------------------


def test_products_carry_utc_timestamps_and_updates_move_updated_at(client, headers, db, clock):
    response = client.post("/products", json=LAPTOP, headers=headers)
    product = response.json["product"]
    assert ISO_UTC.fullmatch(product["created_at"]) and ISO_UTC.fullmatch(product["updated_at"])
    # UTC: the database's own UTC clock agrees.
    created = datetime.strptime(product["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(sql(db, "SELECT UTC_TIMESTAMP() AS t")[0]["t"] - created) < timedelta(minutes=1)
    sql(db, "UPDATE products SET created_at = '2020-01-02 03:04:05', updated_at = created_at")
    listed = client.get("/products", headers=headers).json[0]
    assert (listed["created_at"], listed["updated_at"]) == ("2020-01-02T03:04:05Z",) * 2
    changed = client.patch(f"/products/{product['id']}", json={"quantity": 9}, headers=headers)
    assert changed.json["product"]["created_at"] == "2020-01-02T03:04:05Z"
    assert changed.json["product"]["updated_at"] > "2026"


def test_decimal_rules_apply_to_the_json_literal(client, headers, db):
    """1.10000000000000001 is the float 1.1, but the client wrote 17 decimals: refused."""
    body = '{"name": "Pen", "price": 1.10000000000000001, "quantity": 1}'
    response = client.post("/products", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 400
    assert "at most 2 decimal places" in response.json["message"]
    body = '{"name": "Pen", "price": 1.10, "quantity": 1}'
    response = client.post("/products", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 201 and response.json["product"]["price"] == 1.1


# --- Bounded responses (review finding 3) --------------------------------------------------


def test_a_page_stops_before_4_mib_and_the_link_continues(client, headers, db):
    description = "d" * 60_000
    rows = [(f"Big {n}", description, 1, 1) for n in range(100)]  # 6 MB in all
    cursor = db.cursor()
    cursor.executemany(
        "INSERT INTO products (name, description, price, quantity) VALUES (%s, %s, %s, %s)", rows
    )
    seen, url, pages = [], "/products?limit=1000", 0
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200
        assert len(response.data) <= 4 * 1024 * 1024
        seen += [product["name"] for product in response.json]
        url, pages = next_link(response), pages + 1
    assert pages == 2
    assert seen == [f"Big {n}" for n in range(100)]  # each exactly once, in order


def test_json_is_utf8_not_escaped(client, headers):
    client.post("/products", json={"name": "Müsli", "price": 1, "quantity": 1}, headers=headers)
    response = client.get("/products", headers=headers)
    assert "Müsli".encode() in response.data and b"\\u00fc" not in response.data


def test_product_writes_are_rate_limited_per_user(make_app, db, clock):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_WRITES="3 per minute")
    auth = AuthActions(app.test_client(), clock)
    alice, bob = auth.headers("alice"), auth.headers("bob")
    statuses = [
        auth.client.post("/products", json=LAPTOP, headers=alice).status_code for _ in range(4)
    ]
    assert statuses == [201, 201, 201, 429]
    # Per user, whatever the address; reads and other users are not limited.
    other_address = {"REMOTE_ADDR": "10.9.9.9"}
    refused = auth.client.post("/products", json=LAPTOP, headers=alice, environ_base=other_address)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert auth.client.get("/products", headers=alice).status_code == 200
    assert auth.client.post("/products", json=LAPTOP, headers=bob).status_code == 201
    assert sql(db, "SELECT COUNT(*) AS n FROM products")[0]["n"] == 4


def test_every_product_write_route_is_limited_and_reads_are_not(make_app, clock):
    # Only decorated routes are limited (rate_limits.skip_unlimited_routes): every
    # write route must still be counted, against one budget per user (not one per route,
    # which would triple it), and no read refused.
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_WRITES="4 per minute")
    auth = AuthActions(app.test_client(), clock)
    alice = auth.headers("alice")
    url = f"/products/{auth.client.post('/products', json=LAPTOP, headers=alice).json['id']}"
    writes = [
        auth.client.put(url, json=LAPTOP, headers=alice).status_code,
        auth.client.patch(url, json={"quantity": 1}, headers=alice).status_code,
        auth.client.delete(url, headers=alice).status_code,
        auth.client.post("/product", json=LAPTOP, headers=alice).status_code,
    ]
    assert writes == [200, 200, 200, 429]
    reads = {auth.client.get(path, headers=alice).status_code for path in ("/products", url) * 10}
    assert reads == {200, 404}


def test_a_blueprint_limit_keeps_the_limiters_hooks():
    # A limit on a whole blueprint is checked by Flask-Limiter's app-wide hooks: they stay.
    app = Flask(__name__)
    app.config.update(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://")
    limiter.init_app(app)
    blueprint = Blueprint("limited_as_a_whole", __name__)
    blueprint.add_url_rule("/whole", "whole", lambda: "ok")
    limiter.limit("1 per minute")(blueprint)
    app.register_blueprint(blueprint)
    skip_unlimited_routes(app)
    client = app.test_client()
    assert [client.get("/whole").status_code for _ in range(2)] == [200, 429]


def test_reads_never_enter_the_rate_limiter(make_app, clock, monkeypatch):
    # Only decorated routes have a limit, and each decorator checks its own: Flask-Limiter's
    # app-wide hooks are off (rate_limits.skip_unlimited_routes): a read does no limiter work.
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_WRITES="1 per minute")
    auth = AuthActions(app.test_client(), clock)
    alice = auth.headers("alice")
    checked = []  # the endpoint of every request the limiter looks at
    identify = limiter.identify_request
    monkeypatch.setattr(
        limiter, "identify_request", lambda: checked.append(identify()) or identify()
    )
    product_id = create(auth.client, alice)
    for path in ("/products", f"/products/{product_id}", "/me", "/healthz"):
        assert auth.client.get(path, headers=alice).status_code == 200
    assert set(checked) == {"products.create_product"}
    assert auth.client.post("/products", json=LAPTOP, headers=alice).status_code == 429

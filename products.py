"""Blueprint for the shared product inventory: strict validation of product fields and
the CRUD routes, all behind token_required."""

import math
from decimal import Decimal

from flask import Blueprint, current_app, g, request, url_for

from audit import audit
from db import execute, last_insert_id, query, utc_iso
from errors import ValidationError, error_response
from pagination import page
from rate_limits import limiter
from search import find_page, next_parameters, product_search
from tokens import token_required
from validation import (
    has_control_characters,
    has_format_characters,
    has_visible_character,
    json_object,
    refuse_unknown_fields,
    text,
)

bp = Blueprint("products", __name__)

PRODUCT_FIELDS = ("name", "description", "price", "quantity")
PRODUCT_COLUMNS = "id, name, description, price, quantity, created_at, updated_at"
MAX_PRICE = Decimal("99999999.99")
MAX_QUANTITY = 2_147_483_647


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
    if not has_visible_character(name):
        raise ValidationError("'name' must not be blank.")
    if has_control_characters(name):
        raise ValidationError("'name' must not contain control characters.")
    if has_format_characters(name):
        raise ValidationError(
            "'name' must not contain invisible formatting characters (bidi overrides,"
            " zero-width characters)."
        )
    if len(name) > 255:
        raise ValidationError("'name' must be at most 255 characters.")
    return name


def validate_description(value):
    if value is None:
        return None
    description = text(value, "description")
    if len(description.encode("utf-8")) > 65_535:
        raise ValidationError("'description' must be at most 65,535 bytes in UTF-8.")
    if has_control_characters(description, allowed="\t\r\n"):
        raise ValidationError(
            "'description' must not contain control characters other than tab and line breaks."
        )
    return description


def validate_price(value):
    # bool is a subclass of int; true is not a price. JSON fractions arrive as exact
    # Decimals (validation.json_object); NaN and Infinity as floats.
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValidationError("'price' must be a number.")
    if not math.isfinite(value):
        raise ValidationError("'price' must be a finite number.")
    price = Decimal(value)
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


def product_json(row):
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": float(row["price"]),  # a JSON number; DECIMAL(10,2) fits a float exactly enough
        "quantity": row["quantity"],
        "created_at": utc_iso(row["created_at"]),
        "updated_at": utc_iso(row["updated_at"]),
    }


def fetch_product(product_id):
    rows = query(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = %s",  # noqa: S608
        (product_id,),
    )
    return rows[0] if rows else None


# Per user, not per address: one account cannot fill the database at line rate. Below
# token_required, so g.user is known when the limit is checked.
limit_writes = limiter.limit(
    lambda: current_app.config["RATELIMIT_WRITES"],
    key_func=lambda: f"user:{g.user['id']}",
    scope="product-writes",
)


def product_not_found():
    return error_response(404, "No product has that id.")


@bp.post("/product")
@bp.post("/products")
@token_required("editor")
@limit_writes
def create_product():
    product = validate_product(json_object())
    execute(
        "INSERT INTO products (name, description, price, quantity) VALUES (%s, %s, %s, %s)",
        (product["name"], product["description"], product["price"], product["quantity"]),
    )
    product_id = last_insert_id()
    audit("product_created", g.user["username"], product_id=product_id)
    # Read back for the timestamps the database gave it (None only if deleted meanwhile).
    row = fetch_product(product_id) or product | {
        "id": product_id,
        "created_at": None,
        "updated_at": None,
    }
    body = {
        "message": "Product created successfully",
        "id": product_id,
        "product": product_json(row),
    }
    return body, 201, {"Location": url_for("products.get_product", product_id=product_id)}


@bp.get("/products")
@token_required("viewer")
def list_products():
    search = product_search()  # filters, sort and keyset start: search.py
    rows = find_page(PRODUCT_COLUMNS, search)
    return page(rows, search.limit, product_json, next_parameters(search))


@bp.get("/products/<id:product_id>")
@token_required("viewer")
def get_product(product_id):
    row = fetch_product(product_id)
    return product_json(row) if row else product_not_found()


@bp.put("/products/<id:product_id>")
@bp.patch("/products/<id:product_id>")
@token_required("editor")
@limit_writes
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
    audit("product_updated", g.user["username"], product_id=product_id, fields=sorted(changes))
    return {"message": "Product updated", "product": product_json(row)}


@bp.delete("/products/<id:product_id>")
@token_required("editor")
@limit_writes
def delete_product(product_id):
    if not execute("DELETE FROM products WHERE id = %s", (product_id,)):
        return product_not_found()
    audit("product_deleted", g.user["username"], product_id=product_id)
    return {"message": "Product deleted"}

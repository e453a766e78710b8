"""Blueprint for the shared product inventory: strict validation of product fields and
the CRUD routes, all behind token_required."""

from decimal import Decimal

from flask import Blueprint, current_app, g, request, url_for

from secureapi.core.refusals import NotFound, PreconditionFailed, ValidationError
from secureapi.core.validation import (
    MAX_PRICE,
    has_control_characters,
    has_format_characters,
    json_object,
    refuse_unknown_fields,
    text,
)
from secureapi.data import idempotency
from secureapi.data.database import execute, in_transaction, query, utc_iso
from secureapi.data.idempotency import idempotency_key
from secureapi.data.search import find_page, next_parameters, product_search
from secureapi.data.words import index_words
from secureapi.routes.pagination import page
from secureapi.security.access_tokens import READ, WRITE
from secureapi.security.audit import audit
from secureapi.security.rate_limits import limiter
from secureapi.security.tokens import token_required
from secureapi.web.conditional import etag, not_modified, precondition_fails, write_condition

bp = Blueprint("products", __name__)

PRODUCT_FIELDS = ("name", "description", "price", "quantity")
PRODUCT_COLUMNS = "id, name, description, price, quantity, version, created_at, updated_at"
CENT = Decimal("0.01")
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
    if not name.strip():
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
    if len(description) > 65_535:  # characters, as JSON Schema's maxLength counts them
        raise ValidationError("'description' must be at most 65,535 characters.")
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
    price = Decimal(value)  # exact, whatever the size: 10**400 is no float
    if not price.is_finite():
        raise ValidationError("'price' must be a finite number.")
    if not 0 <= price <= MAX_PRICE:
        raise ValidationError("'price' must be between 0 and 99999999.99.")
    # A multiple of 0.01, as openapi.yaml's multipleOf says: 1.500 is 1.50; the value as
    # written counts, so 1.10000000000000001 is refused rather than rounded.
    if price != price.quantize(CENT):
        raise ValidationError("'price' must have at most 2 decimal places.")
    return abs(price).quantize(CENT)  # -0.0 is 0; 10 and 10.00 are one price


def validate_quantity(value):
    # JSON has one number type: 4044.0 and 4.044e3 are the integer 4044 (RFC 8259, and JSON
    # Schema's "integer"), as a client's float serialiser may well write them.
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValidationError("'quantity' must be an integer.")
    if not 0 <= value <= MAX_QUANTITY:  # before the next test: 1e999999999 is integral too
        raise ValidationError("'quantity' must be between 0 and 2147483647.")
    if value != int(value):
        raise ValidationError("'quantity' must be an integer.")
    return int(value)


def product_json(row):
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": float(row["price"]),  # a JSON number; DECIMAL(10,2) fits a float exactly enough
        "quantity": row["quantity"],
        "version": row["version"],
        "created_at": utc_iso(row["created_at"]),
        "updated_at": utc_iso(row["updated_at"]),
    }


def fetch_product(product_id):
    rows = query(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = %s",  # noqa: S608
        (product_id,),
    )
    return rows[0] if rows else None


def read_product(cursor, product_id):
    """The product as the caller's transaction sees it (its own writes included)."""
    cursor.execute(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = %s", (product_id,))  # noqa: S608
    return cursor.fetchone()


# Per user, not per address: one account cannot fill the database at line rate. Below
# token_required, so g.user is known when the limit is checked.
limit_writes = limiter.shared_limit(  # shared: one budget for creates, changes and deletes
    lambda: current_app.config["RATELIMIT_WRITES"],
    scope="product-writes",
    key_func=lambda: f"user:{g.user['id']}",
)


def texts(row):
    """What `q` searches in a product (words.index_words); its rows go with the product's
    own (ON DELETE CASCADE)."""
    return row["name"], row["description"]


def product_not_found():
    return NotFound("No product has that id.")


@bp.post("/product")
@bp.post("/products")
@token_required("editor", scope=WRITE)
@limit_writes
def create_product():
    product = validate_product(json_object())
    key = idempotency_key()

    def create(cursor):
        """(the response, the new product's id); (the earlier answer, None) for a key seen
        before. The same request with its key on another Galera node fails the commit (1213):
        rerun, it finds that node's key row and replays its answer."""
        if key is not None:
            earlier = idempotency.reserve(cursor, key, idempotency.fingerprint(product))
            if earlier is not None:
                return earlier, None
        cursor.execute(
            "INSERT INTO products (name, description, price, quantity) VALUES (%s, %s, %s, %s)",
            (product["name"], product["description"], product["price"], product["quantity"]),
        )
        row = read_product(cursor, cursor.lastrowid)
        index_words(cursor, row["id"], texts(row), created=True)
        body = {"message": "Product created successfully", "id": row["id"]}
        response = product_response(row, body | {"product": product_json(row)}, 201)
        response.headers["Location"] = url_for("products.get_product", product_id=row["id"])
        if key is not None:
            answer = idempotency.Answer(201, response.get_data(), dict(response.headers))
            idempotency.remember(cursor, key, answer)
        return response, row["id"]

    response, product_id = in_transaction(create)
    if product_id is None:  # after the transaction, which a conflict may run again
        audit("idempotent_replay", g.user["username"], status=response.status)
        return replayed(response)
    audit("product_created", g.user["username"], product_id=product_id)
    if key is not None:  # after the commit: no lock on other users' keys in our transaction
        idempotency.purge_a_few()
    return response


@bp.get("/products")
@token_required("viewer", scope=READ)
def list_products():
    search = product_search()  # filters, sort and keyset start: search.py
    rows = find_page(PRODUCT_COLUMNS, search)
    return page(rows, search.limit, product_json, next_parameters(search))


@bp.get("/products/<id:product_id>")
@token_required("viewer", scope=READ)
def get_product(product_id):
    row = fetch_product(product_id)
    if row is None:
        raise product_not_found()
    if precondition_fails(row["version"]):
        raise precondition_failed()
    if not_modified(row["version"]):
        return current_app.response_class(status=304, headers={"ETag": etag(row["version"])})
    return product_response(row, product_json(row))


@bp.put("/products/<id:product_id>")
@bp.patch("/products/<id:product_id>")
@token_required("editor", scope=WRITE)
@limit_writes
def update_product(product_id):
    changes = validate_product(json_object(), partial=request.method == "PATCH")
    condition, versions = write_condition()
    # Column names come from PRODUCT_FIELDS (validate_product refuses any other key).
    assignments = ", ".join(f"{field} = %s" for field in changes)
    # The version check and the write are one statement: two writers holding the same
    # ETag cannot both succeed. The read-back in the same transaction shows this write.

    def update(cursor):
        updated = cursor.execute(
            f"UPDATE products SET {assignments}, version = version + 1"  # noqa: S608
            f" WHERE id = %s{condition}",
            (*changes.values(), product_id, *versions),
        )
        row = read_product(cursor, product_id)
        if updated and ("name" in changes or "description" in changes):
            index_words(cursor, product_id, texts(row))
        return updated, row

    updated, row = in_transaction(update)
    if not updated:
        raise product_not_found() if row is None else precondition_failed()
    audit("product_updated", g.user["username"], product_id=product_id, fields=sorted(changes))
    return product_response(row, {"message": "Product updated", "product": product_json(row)})


@bp.delete("/products/<id:product_id>")
@token_required("editor", scope=WRITE)
@limit_writes
def delete_product(product_id):
    condition, versions = write_condition()
    deleted = execute(
        f"DELETE FROM products WHERE id = %s{condition}",  # noqa: S608
        (product_id, *versions),
    )
    if not deleted:
        raise product_not_found() if fetch_product(product_id) is None else precondition_failed()
    audit("product_deleted", g.user["username"], product_id=product_id)
    return {"message": "Product deleted"}


def precondition_failed():
    return PreconditionFailed(
        "The product's current ETag is not in If-Match (or is in If-None-Match): it has"
        " changed since it was read, or the tag lost its quotes (send it as it came, e.g."
        ' "3"). Fetch it again, then retry.',
    )


def replayed(answer):
    """The first answer to an Idempotency-Key, sent again."""
    response = current_app.response_class(
        answer.body, answer.status, answer.headers, mimetype="application/json"
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response


def product_response(row, body, status=200):
    response = current_app.json.response(body)
    response.status_code = status
    response.headers["ETag"] = etag(row["version"])
    return response

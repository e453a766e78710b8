"""Search, filters and sorting of GET /products: the query-string rules, the SQL of one page
and the signed cursor of its next link.

Every sort reads an index of migrations/008 in order from where the previous page stopped
(keyset paging on the sort key and id), so a page costs the same however deep it is, and a
walk returns each unchanged row exactly once whatever else is written meanwhile. `q` is
answered by product_words (words.py): one row per product and beginning of a word of its
name or description, written with the product. A word of `q` is one lookup there, and with
the default sort a page reads its 100 entries in id order, however many products match.
"""

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import MySQLdb
from flask import current_app, request

from secureapi.core.keys import derived_key
from secureapi.core.refusals import ValidationError
from secureapi.core.validation import MAX_PRICE, validate_cursor, validate_limit
from secureapi.data.database import query
from secureapi.data.words import words_in

PARAMETERS = ("limit", "after", "cursor", "q", "min_price", "max_price", "in_stock")
PARAMETERS += ("updated_since", "sort")
FILTERS = ("q", "min_price", "max_price", "in_stock", "updated_since")
SORT_COLUMNS = ("id", "name", "price", "updated_at")
# Folding can turn one character into several words (U+2100 is "a/c", U+FDFA four words).
MAX_Q_WORDS = 32
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,2000}\.[A-Za-z0-9_-]{43}")
CURSOR_PURPOSE = b"SecureAPI GET /products cursor v1"
# The database time one page may take. A rare filter under a sort by another column, a
# common word of `q` under such a sort, or words that many products have but never together
# are refused with a 400 instead of holding the database for every client.
MAX_STATEMENT_SECONDS = 2
STATEMENT_TIMEOUT = 1969  # MariaDB's ER_STATEMENT_TIMEOUT


@dataclass
class Search:
    """One validated request of GET /products."""

    filters: dict = field(default_factory=dict)  # name -> cleaned value
    sort: str = "id"
    descending: bool = False
    limit: int = 100
    start: tuple | None = None  # (sort key, id) of the last row already seen

    @property
    def column(self):
        return self.sort.removeprefix("-")

    def fingerprint(self):
        """What a cursor is bound to: the filters and the sort, as values (not spellings)."""
        canonical = {name: str(value) for name, value in self.filters.items()}
        text = json.dumps([canonical, self.sort], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def product_search():
    """The Search that this request's query string asks for, or a ValidationError."""
    refuse_unknown_parameters()
    args = request.args
    search = Search(limit=validate_limit(args.get("limit")))
    if "sort" in args:
        search.sort = validate_sort(args["sort"])
        search.descending = search.sort.startswith("-")
    validators = {
        "q": validate_q,
        "min_price": validate_price,
        "max_price": validate_price,
        "in_stock": validate_in_stock,
        "updated_since": validate_updated_since,
    }
    for name in FILTERS:
        if name in args:
            search.filters[name] = validators[name](args[name], name)
    if "cursor" in args and "after" in args:
        raise ValidationError("Give 'cursor' or 'after', not both.")
    if "cursor" in args:
        search.start = read_cursor(args["cursor"], search)
    elif "after" in args:
        # v1's parameter, kept for the clients that build it: the id order only.
        if search.sort != "id":
            raise ValidationError("'after' pages sort=id only; follow the Link's cursor instead.")
        search.start = (None, validate_cursor(args["after"]))
    return search


def refuse_unknown_parameters():
    unknown = sorted(set(request.args) - set(PARAMETERS))
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise ValidationError(
            f"Unknown query parameter(s): {names}{', ...' if len(unknown) > 5 else ''}."
            f" Known: {', '.join(PARAMETERS)}."
        )
    repeated = [name for name in PARAMETERS if len(request.args.getlist(name)) > 1]
    if repeated:
        raise ValidationError(f"'{repeated[0]}' is given more than once.")


def validate_sort(value):
    if value.removeprefix("-") not in SORT_COLUMNS:
        raise ValidationError(
            "'sort' must be one of id, name, price, updated_at, each optionally with a leading"
            " '-' for descending order."
        )
    return value


def validate_q(value, name):
    if not 1 <= len(value) <= 100:
        raise ValidationError("'q' must be 1 to 100 characters.")
    found = words_in(value)
    if not found:
        raise ValidationError("'q' needs at least one word: letters, digits or _.")
    # A word that begins another word of q adds nothing: `lap laptop` is `laptop`.
    needed = sorted(w for w in found if not any(o != w and o.startswith(w) for o in found))
    if len(needed) > MAX_Q_WORDS:  # each is a table of the page's join (MariaDB allows 61)
        raise ValidationError(f"'q' may hold at most {MAX_Q_WORDS} different words.")
    return tuple(needed)


def validate_price(value, name):
    # What a form or a JSON number prints: 12, 12.5, 1e-05; no NaN, no Infinity.
    if not re.fullmatch(r"-?[0-9]{1,20}(\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3})?", value):
        raise ValidationError(f"'{name}' must be a number from 0 to 99999999.99.")
    try:
        price = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        raise ValidationError(f"'{name}' must be a number from 0 to 99999999.99.") from None
    if not 0 <= price <= MAX_PRICE:
        raise ValidationError(f"'{name}' must be a number from 0 to 99999999.99.")
    return abs(price).normalize()  # -0 is 0; 12.50 and 12.5 are one filter


def validate_in_stock(value, name):
    if value not in ("true", "false"):
        raise ValidationError("'in_stock' must be true or false.")
    return value == "true"


def validate_updated_since(value, name):
    message = "'updated_since' must be an ISO 8601 timestamp, such as 2026-12-01T16:42:10Z."
    if not value.isascii() or len(value) > 40:
        raise ValidationError(message)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(message) from None
    if moment.tzinfo is not None:  # without an offset it is UTC, like every time here
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            if moment.year > 1:  # 9999-12-31T23:59:59-01:00: past every DATETIME
                raise ValidationError(
                    "'updated_since' is past the last time the API can store (9999-12-31)."
                ) from None
            moment = datetime.min  # 0001-01-01T00:00:00+01:00: before every product
    # DATETIME starts at year 1000: anything earlier asks for every product.
    return max(moment, datetime(1000, 1, 1))


# --- The cursor: the last row's sort key and id, bound to its search and signed ------------


def cursor_key(secret_key):
    return derived_key(secret_key, CURSOR_PURPOSE)


def make_cursor(search, row, key=None):
    """The next link's cursor after `row` (a row of this search's page); `key` is
    cursor_key(SECRET_KEY), the app's own by default."""
    value = row[search.column]
    if search.column == "id":
        value = None
    elif search.column == "price":
        value = str(value)
    elif search.column == "updated_at":
        value = value.isoformat(sep=" ")
    payload = json.dumps([search.fingerprint(), value, row["id"]], ensure_ascii=False).encode()
    signature = hmac.new(
        key or cursor_key(current_app.config["SECRET_KEY"]), payload, hashlib.sha256
    ).digest()
    return f"{encode(payload)}.{encode(signature)}"


def read_cursor(value, search):
    """(sort key, id) of a cursor made for this very search, or a ValidationError."""
    invalid = ValidationError("'cursor' is not valid: use the Link of a previous page unchanged.")
    if not CURSOR.fullmatch(value):
        raise invalid
    try:
        payload, signature = (decode(part) for part in value.split("."))
    except ValueError:  # binascii.Error: a length base64 never produces
        raise invalid from None
    expected = hmac.new(
        cursor_key(current_app.config["SECRET_KEY"]), payload, hashlib.sha256
    ).digest()
    if not hmac.compare_digest(signature, expected):
        raise invalid
    fingerprint, key, last_id = json.loads(payload)  # ours: it carries our signature
    if fingerprint != search.fingerprint():
        raise ValidationError(
            "'cursor' belongs to another search: use it with the same filters and sort as the"
            " page whose Link gave it, or start again without it."
        )
    if search.column == "price":
        key = Decimal(key)
    elif search.column == "updated_at":
        key = datetime.fromisoformat(key)
    return key, last_id


def encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def next_parameters(search):
    """The next link's query (after `limit`): this request's filters and sort as given,
    and the cursor after a row."""
    given = {name: request.args[name] for name in (*FILTERS, "sort") if name in request.args}
    return lambda row: given | {"cursor": make_cursor(search, row)}


# --- The SQL of one page ---------------------------------------------------------------------


def find_page(columns, search):
    """The rows of the page (limit + 1 of them), within MAX_STATEMENT_SECONDS."""
    sql, args = page_query(columns, search)
    if not search.filters and search.column == "id":
        # A plain page is a primary-key range: never too broad. Time spent there is the
        # database's (e.g. a Galera cluster's ~6 s freeze, when wsrep_sync_wait makes the
        # read wait): bounded by MYSQL_READ_TIMEOUT, and a 503 if past it, not a 400.
        return query(sql, args)
    bounded = f"SET STATEMENT max_statement_time = {MAX_STATEMENT_SECONDS} FOR {sql}"
    try:
        return query(bounded, args)
    except (MySQLdb.OperationalError, MySQLdb.InternalError) as error:
        if error.args[0] != STATEMENT_TIMEOUT:
            raise
        raise ValidationError(
            "This search takes too long to page through: narrow it with more words in 'q' or"
            " other filters, or sort by id."
        ) from None


def page_query(columns, search):
    """(sql, args) of the page: LIMIT limit + 1 rows, so that pagination.page knows whether
    another page follows. Only fixed SQL text is formatted in; every value is a %s."""
    conditions, args = [], []
    filters = search.filters
    column, direction = search.column, "DESC" if search.descending else "ASC"
    source, id_column, others = "products", "id", filters.get("q", ())
    if others and column == "id":
        # Read one word's index range in id order (the longest word: likely the rarest) and
        # stop at the page's end, however many products have the word.
        driver, *others = sorted(others, key=len, reverse=True)
        source = "product_words AS w STRAIGHT_JOIN products ON products.id = w.product_id"
        id_column = "w.product_id"
        conditions.append("w.word = %s")
        args.append(driver)
    for word in others:
        # One primary-key lookup per candidate product.
        conditions.append(
            "EXISTS (SELECT 1 FROM product_words AS o WHERE o.product_id = products.id"
            " AND o.word = %s)"
        )
        args.append(word)
    if "min_price" in filters:
        conditions.append("price >= %s")
        args.append(filters["min_price"])
    if "max_price" in filters:
        conditions.append("price <= %s")
        args.append(filters["max_price"])
    if "in_stock" in filters:
        conditions.append("quantity > 0" if filters["in_stock"] else "quantity = 0")
    if "updated_since" in filters:
        conditions.append("updated_at >= %s")
        args.append(filters["updated_since"])
    if search.start is not None:
        key, last_id = search.start
        beyond = "<" if search.descending else ">"
        if column == "id":
            conditions.append(f"{id_column} {beyond} %s")
            args.append(last_id)
        else:
            # Not the row comparison (column, id) > (%s, %s): MariaDB does not read an
            # index range for that, but it does for this.
            conditions.append(f"({column} {beyond} %s OR ({column} = %s AND id {beyond} %s))")
            args += [key, key, last_id]
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    order = f"{column} {direction}, " if column != "id" else ""
    sql = f"SELECT {columns} FROM {source} {where}ORDER BY {order}{id_column} {direction} LIMIT %s"  # noqa: S608
    return sql, (*args, search.limit + 1)

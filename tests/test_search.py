"""GET /products: search, filters, sorting and the signed keyset cursor (search.py)."""

import json
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from secureapi.data import search, words
from secureapi.routes.products import PRODUCT_COLUMNS
from tests.support import connect, next_link, sql

SINCE = datetime(2026, 1, 1)


def insert(db, *products):
    """Products straight into the table, with their words as the app writes them: (name,
    description, price, quantity, hours after SINCE of updated_at). Returns their ids in
    the order given."""
    ids = []
    for name, description, price, quantity, hours in products:
        sql(
            db,
            "INSERT INTO products (name, description, price, quantity, updated_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (name, description, price, quantity, SINCE + timedelta(hours=hours)),
        )
        ids.append(sql(db, "SELECT LAST_INSERT_ID() AS id")[0]["id"])
        for word in words.prefixes(name, description):
            sql(db, "INSERT INTO product_words VALUES (%s, %s)", (ids[-1], word))
    return ids


def words_of(db, product_id):
    rows = sql(db, "SELECT word FROM product_words WHERE product_id = %s", (product_id,))
    return {row["word"] for row in rows}


def walk(client, headers, url):
    """Every product of every page, following the next links."""
    products = []
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.json
        products += response.json
        url = next_link(response)
    return products


def names(client, headers, query):
    return [product["name"] for product in walk(client, headers, f"/products?{query}")]


CATALOGUE = [
    ("Gaming Laptop", "RGB keyboard", 1500, 3, 5),
    ("Laptop bag", "Fits a 15-inch notebook", 49.99, 0, 1),
    ("Office desk lamp", None, 25, 10, 3),
    ("Desktop PC", "Tower, the fast one", 900, 0, 4),
    ("The Laptop", "a refurbished one", 650, 2, 2),
    ("AB widget", "Müsli-proof", 25, 7, 0),
    ("Straße sign", "Café", 12, 1, 0),
]


@pytest.fixture
def catalogue(db):
    return dict(zip([row[0] for row in CATALOGUE], insert(db, *CATALOGUE), strict=True))


# --- q --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("lap", {"Gaming Laptop", "Laptop bag", "The Laptop"}),
        ("gaming lap", {"Gaming Laptop"}),
        ("LAPTOP", {"Gaming Laptop", "Laptop bag", "The Laptop"}),
        ("desk", {"Office desk lamp", "Desktop PC"}),  # a word, or a word's beginning
        ("top", set()),  # not the middle of a word
        ("notebook", {"Laptop bag"}),  # the description counts
        ("keyboard gaming", {"Gaming Laptop"}),  # words in any order, across both fields
        ("laptop desk", set()),  # every word must match
        ("musli", {"AB widget"}),  # case and accents folded
        ("MÜSLI PROOF", {"AB widget"}),
        ("strasse", {"Straße sign"}),  # case-folded: ß is ss
        ("cafe", {"Straße sign"}),
        ("café", {"Straße sign"}),
        ("caf\u0065\u0301", {"Straße sign"}),  # the same é, decomposed
        # Short and very common words are words like any other.
        ("desktop pc", {"Desktop PC"}),
        ("ab widget", {"AB widget"}),
        ("the laptop", {"The Laptop"}),
        ("a refurb", {"The Laptop"}),
        ("l", {"Gaming Laptop", "Laptop bag", "Office desk lamp", "The Laptop"}),
        ("la", {"Gaming Laptop", "Laptop bag", "Office desk lamp", "The Laptop"}),
        ("15", {"Laptop bag"}),
        ("lap zz", set()),
        ("lap laptop", {"Gaming Laptop", "Laptop bag", "The Laptop"}),  # one word may do both
        ("laptops", set()),
        # Punctuation and operators only separate words: no query syntax from the client.
        ('+lap* "bag"', {"Laptop bag"}),
        ("-gaming lap", {"Gaming Laptop"}),  # "-" excludes nothing
        ('bag~ (lap*) <"fits"> @notebook', {"Laptop bag"}),
        ("lap%", {"Gaming Laptop", "Laptop bag", "The Laptop"}),  # no LIKE wildcards either
        ("_", set()),
    ],
)
def test_q_finds_every_word_as_a_word_or_prefix(client, headers, catalogue, q, expected):
    assert set(names(client, headers, urlencode({"q": q}))) == expected


@pytest.mark.parametrize("q", ['+-"~*()<>@', " ", "", "x" * 101, "\u0301"], ids=repr)
def test_q_without_a_word_is_a_clear_400(client, headers, catalogue, q):
    response = client.get(f"/products?{urlencode({'q': q})}", headers=headers)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert "'q'" in response.json["message"]


def test_q_finds_long_words_by_every_beginning(client, headers, db):
    """Every beginning of a word up to 100 characters is a lookup of its own."""
    word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 2  # 90 letters
    insert(db, (f"{word} filter", None, 1, 1, 0), ("other", word[:-1], 1, 1, 0))
    for length in (1, 20, 45, 89):
        assert len(names(client, headers, urlencode({"q": word[:length]}))) == 2
    assert names(client, headers, urlencode({"q": word})) == [f"{word} filter"]
    assert names(client, headers, urlencode({"q": word + "s"})) == []


# --- The words follow every write -----------------------------------------------------------


def test_writes_through_the_api_keep_the_words_in_step(client, headers, db):
    def found(q):
        return names(client, headers, urlencode({"q": q}))

    created = client.post(
        "/products",
        json={"name": "Walnut shelf", "description": "Oiled oak", "price": 80, "quantity": 2},
        headers=headers,
    )
    product_id = created.json["id"]
    assert found("walnut oil") == ["Walnut shelf"]
    assert words_of(db, product_id) == words.prefixes("Walnut shelf", "Oiled oak")

    before = words_of(db, product_id)
    client.patch(f"/products/{product_id}", json={"price": 90}, headers=headers)
    assert words_of(db, product_id) == before  # no text changed, nothing rewritten

    client.patch(f"/products/{product_id}", json={"name": "Cherry shelf"}, headers=headers)
    assert found("walnut") == [] and found("cherry oiled") == ["Cherry shelf"]

    put = {"name": "Cherry shelf", "description": None, "price": 90, "quantity": 1}
    client.put(f"/products/{product_id}", json=put, headers=headers)
    assert found("oiled") == [] and found("cherry") == ["Cherry shelf"]
    assert words_of(db, product_id) == words.prefixes("Cherry shelf")

    client.delete(f"/products/{product_id}", headers=headers)
    assert found("cherry") == [] and words_of(db, product_id) == set()


def test_a_refused_write_leaves_the_words_alone(client, headers, db):
    created = client.post(
        "/products", json={"name": "Teak bench", "price": 80, "quantity": 2}, headers=headers
    )
    product_id = created.json["id"]
    stale = {"If-Match": '"7"'} | headers
    response = client.patch(f"/products/{product_id}", json={"name": "Pine"}, headers=stale)
    assert response.status_code == 412
    assert words_of(db, product_id) == words.prefixes("Teak bench")


@pytest.mark.parametrize(
    ("name", "q", "other"),
    [
        # Arabic presentation forms whose decomposition holds a space (U+FE70, U+FDFA).
        ("\u0643\u062a\u0627\u0628\u0627\ufe70", "\u0643\u062a\u0627\u0628\u0627", None),
        ("\ufdfa", "\u0635\u0644\u0649", None),
        ("Mu\u0308sli bar", "müsli", None),  # decomposed: the mark is not a word's end
        ("Mu\u0308sli bar", "musli", None),
        ("हिन्दी किताब", "हिन्दी", "हम नया दिन"),  # vowel signs stay inside the word
        ("ﬁne ①", "fine 1", None),  # compatibility forms
    ],
)
def test_q_reads_words_across_scripts(client, headers, db, name, q, other):
    created = client.post(
        "/products", json={"name": name, "price": 1, "quantity": 1}, headers=headers
    )
    assert created.status_code == 201, created.json
    if other:
        insert(db, (other, None, 1, 1, 0))
    assert names(client, headers, urlencode({"q": q})) == [name]
    renamed = client.patch(
        f"/products/{created.json['id']}", json={"name": name + " 2"}, headers=headers
    )
    assert renamed.status_code == 200


def test_crafted_text_writes_at_most_max_rows_and_can_still_be_changed(client, headers, db):
    """Words that fold to many characters (U+FDF2 is 4) would need 127,000 rows: the budget
    stops them, and changing the text later deletes them in chunks (not one huge DELETE)."""
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    crafted = " ".join(a + b + "\ufdf2" * 25 for a in letters for b in letters)
    created = client.post(
        "/products",
        json={"name": "Crafted", "description": crafted, "price": 1, "quantity": 1},
        headers=headers,
    )
    assert created.status_code == 201
    product_id = created.json["id"]
    assert len(words_of(db, product_id)) == words.MAX_ROWS
    assert names(client, headers, "q=crafted") == ["Crafted"]  # the name comes first
    changed = client.patch(
        f"/products/{product_id}", json={"description": "plain now"}, headers=headers
    )
    assert changed.status_code == 200
    assert words_of(db, product_id) == words.prefixes("Crafted", "plain now")


def test_writes_mend_rows_that_are_out_of_step(client, headers, db):
    """Rows written by an older version (another folding) or by hand neither linger nor
    make a write fail."""
    (product_id,) = insert(db, ("Oak table", None, 1, 1, 0))
    sql(db, "INSERT INTO product_words VALUES (%s, 'pine'), (%s, 'stale')", (product_id,) * 2)
    renamed = client.patch(f"/products/{product_id}", json={"name": "Pine table"}, headers=headers)
    assert renamed.status_code == 200
    assert words_of(db, product_id) == words.prefixes("Pine table")


def test_reindex_words_brings_every_product_in_step(runner, db):
    first, second = insert(db, ("Oak table", None, 1, 1, 0), ("Elm desk", "solid", 1, 1, 0))
    sql(db, "DELETE FROM product_words WHERE product_id = %s", (first,))
    sql(db, "INSERT INTO product_words VALUES (%s, 'stale')", (second,))
    result = runner.invoke(args=["reindex-words"])
    assert result.exit_code == 0, result.output
    assert words_of(db, first) == words.prefixes("Oak table")
    assert words_of(db, second) == words.prefixes("Elm desk", "solid")


def test_reindex_waits_for_a_write_in_progress_instead_of_undoing_it(database, db):
    """A rename that has not committed yet: the reindex waits for it, then reads the new
    name (it never writes the words of a name that is being replaced)."""
    (product_id,) = insert(db, ("Oak table", None, 1, 1, 0))
    writer = connect(database)
    writer.autocommit(False)
    cursor = writer.cursor()
    cursor.execute("UPDATE products SET name = 'Pine chair' WHERE id = %s", (product_id,))
    words.index_words(cursor, product_id, ("Pine chair", None))
    reindexer = connect(database)
    thread = threading.Thread(target=words.reindex, args=(reindexer,))
    thread.start()
    try:
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the writer's row lock
        writer.commit()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        writer.close()
    reindexer.close()
    assert words_of(db, product_id) == words.prefixes("Pine chair")


def test_a_description_of_many_words_is_indexed_whole(client, headers, db):
    description = " ".join(f"w{n}x" for n in range(10_000))  # 10,000 words, 68,889 characters
    description = description[:65_535]
    created = client.post(
        "/products",
        json={"name": "Long", "description": description, "price": 1, "quantity": 1},
        headers=headers,
    )
    assert created.status_code == 201
    last = description.split()[-1]
    assert names(client, headers, urlencode({"q": last})) == ["Long"]


@pytest.mark.parametrize(
    "q",
    [
        " ".join("abcdefghijklmnopqrstuvwxyz0123456789"[:33]),
        # 99 characters that fold to 51 words: one table each would pass MariaDB's 61.
        " ".join("abcdefghijklmnopqrstuvwxyz0123456789") + " ﷺ ℀ ㏘ " + " ".join("αβγδεζηθικλ"),
    ],
)
def test_q_of_too_many_words_is_a_clear_400(client, headers, catalogue, q):
    response = client.get(f"/products?{urlencode({'q': q})}", headers=headers)
    assert response.status_code == 400
    assert "at most 32 different words" in response.json["message"]
    many = " ".join("abcdefghijklmnopqrstuvwxyz0123456789"[:32])  # 32 is still a search
    assert client.get(f"/products?{urlencode({'q': many})}", headers=headers).json == []


def test_q_of_100_characters_is_accepted(client, headers, catalogue):
    q = "laptop " + "b" * 93
    assert client.get(f"/products?{urlencode({'q': q})}", headers=headers).json == []


# --- Filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("min_price=49.99", {"Gaming Laptop", "Laptop bag", "Desktop PC", "The Laptop"}),
        ("max_price=49.99", {"Laptop bag", "Office desk lamp", "AB widget", "Straße sign"}),
        ("min_price=25&max_price=25", {"Office desk lamp", "AB widget"}),  # inclusive
        ("min_price=25.001&max_price=49.989", set()),
        ("min_price=900&max_price=25", set()),  # an empty range, not an error
        ("min_price=1e3", {"Gaming Laptop"}),
        (
            "in_stock=true",
            {"Gaming Laptop", "Office desk lamp", "The Laptop", "AB widget", "Straße sign"},
        ),
        ("in_stock=false", {"Laptop bag", "Desktop PC"}),
        ("updated_since=2026-01-01T03:00:00Z", {"Gaming Laptop", "Office desk lamp", "Desktop PC"}),
        (
            "updated_since=2026-01-01T04:00:00%2B01:00",
            {"Gaming Laptop", "Office desk lamp", "Desktop PC"},
        ),
        ("updated_since=2026-01-01T03:00:01", {"Gaming Laptop", "Desktop PC"}),  # UTC
        ("updated_since=2026-01-01", set(CATALOGUE_NAMES := [row[0] for row in CATALOGUE])),
        ("updated_since=0001-01-01T00:00:00%2B05:00", set(CATALOGUE_NAMES)),
        ("q=laptop&in_stock=true&max_price=1000", {"The Laptop"}),
        ("q=lap&min_price=40&in_stock=false&updated_since=2026-01-01T01:00:00Z", {"Laptop bag"}),
    ],
)
def test_filters_and_their_combinations(client, headers, catalogue, query, expected):
    assert set(names(client, headers, query)) == expected


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("min_price=-1", "min_price"),
        ("min_price=abc", "min_price"),
        ("max_price=100000000", "max_price"),
        ("max_price=NaN", "max_price"),
        ("max_price=Infinity", "max_price"),
        ("max_price=", "max_price"),
        ("in_stock=yes", "in_stock"),
        ("in_stock=1", "in_stock"),
        ("updated_since=yesterday", "updated_since"),
        ("updated_since=2026-13-01T00:00:00Z", "updated_since"),
        ("updated_since=２０２６-01-01", "updated_since"),
        ("sort=colour", "sort"),
        ("sort=--id", "sort"),
        ("sort=", "sort"),
        ("cursor=abc", "cursor"),
        (f"cursor=a.{'b' * 43}", "cursor"),
        (f"cursor={'a' * 2001}.{'b' * 43}", "cursor"),
        ("after=5&sort=name", "after"),
        ("after=5&sort=-id", "after"),
        ("after=5&cursor=abc", "cursor"),
        ("colour=red", "colour"),
        ("q=laptop&page=2&offset=5", "offset"),
        ("sort=id&sort=name", "sort"),
    ],
)
def test_invalid_parameters_are_400_naming_them(client, headers, query, named):
    response = client.get(f"/products?{query}", headers=headers)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert f"'{named}'" in response.json["message"]


def test_unknown_parameters_are_listed_briefly(client, headers):
    query = urlencode({"x" * 10_000: 1} | {f"extra{n}": n for n in range(10)})
    response = client.get(f"/products?{query}", headers=headers)
    assert response.status_code == 400
    assert "Unknown query parameter" in response.json["message"]
    assert len(response.json["message"]) < 400


# --- Sorting ---------------------------------------------------------------------------------


def sorted_rows(db, column, descending):
    rows = sql(db, "SELECT id, name, price, updated_at FROM products")
    # MariaDB's unicode_ci: case does not count; ties broken by id, in the same direction.
    key = {
        "id": lambda row: (0,),
        "name": lambda row: (row["name"].lower(),),
        "price": lambda row: (row["price"],),
        "updated_at": lambda row: (row["updated_at"],),
    }[column]
    return [
        row["id"]
        for row in sorted(rows, key=lambda row: (*key(row), row["id"]), reverse=descending)
    ]


@pytest.mark.parametrize("sort", ["id", "name", "price", "updated_at"])
@pytest.mark.parametrize("descending", [False, True])
def test_every_sort_in_both_directions_walks_in_order(client, headers, db, sort, descending):
    # Ties in every key: equal prices, names equal but for case, equal timestamps.
    insert(
        db,
        *[
            (
                ["pear", "Apple", "apple", "fig", "APPLE"][n % 5],
                None,
                [5, 1, 5, 2.5][n % 4],
                n % 3,
                n % 4,
            )
            for n in range(23)
        ],
    )
    prefix = "-" if descending else ""
    seen = walk(client, headers, f"/products?limit=2&sort={prefix}{sort}")
    assert [product["id"] for product in seen] == sorted_rows(db, sort, descending)


def test_the_next_link_keeps_filters_and_sort_and_carries_a_cursor(client, headers, catalogue):
    query = "q=lap&min_price=10&in_stock=true&updated_since=2026-01-01T00:00:00Z&sort=-price"
    response = client.get(f"/products?limit=1&{query}", headers=headers)
    link = parse_qs(urlsplit(next_link(response)).query)
    assert link.pop("cursor")
    assert link == {
        "limit": ["1"],
        "q": ["lap"],
        "min_price": ["10"],
        "in_stock": ["true"],
        "updated_since": ["2026-01-01T00:00:00Z"],
        "sort": ["-price"],
    }
    assert names(client, headers, f"limit=1&{query}") == ["Gaming Laptop", "The Laptop"]


def test_after_still_pages_by_id_with_filters(client, headers, catalogue):
    """v1 clients build ?after=<id>: it stays an alias of the id order's cursor."""
    after = catalogue["Laptop bag"]
    response = client.get(f"/products?after={after}&in_stock=false", headers=headers)
    assert [product["name"] for product in response.json] == ["Desktop PC"]
    first = client.get("/products?limit=2", headers=headers)
    by_after = client.get(f"/products?limit=2&after={first.json[-1]['id']}", headers=headers)
    by_cursor = client.get(next_link(first), headers=headers)
    assert by_after.json == by_cursor.json


# --- The cursor ------------------------------------------------------------------------------


def cursor_of(response):
    return parse_qs(urlsplit(next_link(response)).query)["cursor"][0]


@pytest.mark.parametrize(
    "other",
    ["sort=name", "sort=-price", "min_price=1", "q=laptop", "in_stock=true", "q=lap&sort=id"],
)
def test_a_cursor_with_other_filters_or_sort_is_400(client, headers, catalogue, other):
    first = client.get("/products?limit=1&q=lap&sort=-price", headers=headers)
    cursor = cursor_of(first)
    response = client.get(f"/products?{other}&cursor={cursor}", headers=headers)
    assert response.status_code == 400
    assert "another search" in response.json["message"]
    # The same filters spelled another way are the same search.
    same = client.get(f"/products?sort=-price&q=LAP&limit=3&cursor={cursor}", headers=headers)
    assert same.status_code == 200


def flip(text, index):
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def test_a_tampered_cursor_is_400(client, headers, catalogue):
    cursor = cursor_of(client.get("/products?limit=1&sort=price", headers=headers))
    payload, signature = cursor.split(".")
    fingerprint, _, last_id = json.loads(search.decode(payload))
    forged = search.encode(json.dumps([fingerprint, "0.00", last_id]).encode())  # jump back
    for bad in (
        flip(cursor, 3),
        flip(cursor, len(cursor) - 2),
        f"{forged}.{signature}",
        cursor[:-1],
        cursor + "x",
    ):
        response = client.get(f"/products?sort=price&cursor={bad}", headers=headers)
        assert response.status_code == 400, bad
        assert "'cursor' is not valid" in response.json["message"]


def test_a_cursor_of_another_deployment_is_400(client, headers, catalogue, make_app):
    other = make_app(SECRET_KEY="another-secret-key-that-is-long-enough-too")
    with other.test_request_context("/products?sort=name"):
        found = search.product_search()
        cursor = search.make_cursor(found, {"id": 1, "name": "Apple"})
    response = client.get(f"/products?sort=name&cursor={cursor}", headers=headers)
    assert response.status_code == 400


# --- Exactly once while others write ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "q"),
    [("id", ""), ("-name", ""), ("price", ""), ("-updated_at", ""), ("id", "st"), ("-price", "st")],
)
def test_a_walk_returns_each_unchanged_row_once_during_concurrent_writes(
    app, client, headers, db, sort, q
):
    stable = insert(db, *[(f"stable {n:03}", None, n % 7, n % 2, n % 5) for n in range(90)])
    volatile = insert(db, *[(f"volatile {n:03}", None, n % 7, 1, n % 5) for n in range(60)])
    done = threading.Event()
    writes = []

    def write():
        writer = app.test_client()
        n = 0
        while not done.is_set() or n < 30:
            target = volatile[n % len(volatile)]
            if n % 3 == 0:
                body = {"name": f"new stock {n}", "price": n % 9, "quantity": n % 2}
                writes.append(writer.post("/products", json=body, headers=headers).status_code)
            elif n % 3 == 1:
                body = {"name": f"{'a' if n % 2 else 'z'} moved st{n}", "price": (n * 13) % 9}
                writes.append(
                    writer.patch(f"/products/{target}", json=body, headers=headers).status_code
                )
            else:
                writes.append(
                    writer.delete(f"/products/{target + 30}", headers=headers).status_code
                )
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        seen = []
        # With q: the writes add and remove products with words that begin with "st" too.
        url = f"/products?limit=4&sort={sort}&in_stock=true&max_price=8" + (q and f"&q={q}")
        while url:
            response = client.get(url, headers=headers)
            assert response.status_code == 200
            seen += [product["id"] for product in response.json]
            url = next_link(response)
    finally:
        done.set()
        writer.join()
    assert set(writes) <= {200, 201, 404} and len(writes) >= 30
    in_stock = [product_id for n, product_id in enumerate(stable) if n % 2]
    assert sorted(product_id for product_id in seen if product_id in stable) == in_stock
    assert not set(seen) & set(stable[::2])  # out of stock: filtered out


# --- Indexes ------------------------------------------------------------------------------------


SHAPES = [
    f"sort={prefix}{column}{extra}"
    for column in search.SORT_COLUMNS
    for prefix in ("", "-")
    for extra in ("", "&cursor=")
] + [
    "q=product",
    "q=product&sort=-price",
    "q=product+ab&cursor=",
    "min_price=10&max_price=20&sort=price",
    "in_stock=false",
    "updated_since=2026-01-01T05:00:00Z&sort=updated_at",
]


def test_every_query_shape_reads_an_index(app, db):
    """EXPLAIN on the test database: no page reads the whole table. (With a few rows a
    table scan is cheaper, and MariaDB rightly takes it: so 20,000 rows of some size.)"""
    sql(
        db,
        "INSERT INTO products (name, description, price, quantity, updated_at)"
        " SELECT CONCAT('Product ', seq),"
        " IF(seq %% 100 = 0, 'ab', REPEAT('A longer description. ', 10)), seq %% 1000 / 10,"
        " seq %% 3, '2026-01-01' + INTERVAL seq MINUTE FROM seq_1_to_20000",
    )
    sql(
        db,  # the words the app would write: "product" (every row) and "ab" (1 %)
        "INSERT INTO product_words SELECT id, LEFT(word, seq) FROM products"
        " JOIN (SELECT 'product' AS word UNION ALL SELECT 'ab') AS words"
        " ON word = 'product' OR description = 'ab' JOIN seq_1_to_7 ON seq <= LENGTH(word)",
    )
    sql(db, "ANALYZE TABLE products, product_words")
    plans = {}
    for shape in SHAPES:
        with app.test_request_context(f"/products?{shape.replace('&cursor=', '')}"):
            found = search.product_search()
            if shape.endswith("&cursor="):
                found.start = start_in_the_middle(db, found)
            statement, args = search.page_query(PRODUCT_COLUMNS, found)
            plans[shape] = sql(db, f"EXPLAIN {statement}", args)
    scans = {
        (shape, step["table"]): (step["rows"], step["Extra"])
        for shape, plan in plans.items()
        for step in plan
        if step["type"] == "ALL" or not step["key"]
    }
    assert scans == {}
    # A word of q with the default sort: its own index range, read in order (no filesort).
    for shape in ("q=product", "q=product+ab&cursor="):
        first = plans[shape][0]  # the rarer word first, as MariaDB may choose
        assert (first["table"], first["key"]) in {
            ("w", "product_words_word"),
            ("o", "product_words_word"),
        }, plans[shape]
        assert not any("filesort" in step["Extra"] for step in plans[shape]), plans[shape]


def start_in_the_middle(db, found):
    column = found.column
    row = sql(
        db, f"SELECT id, {column} AS k FROM products ORDER BY {column}, id LIMIT 1 OFFSET 10000"
    )[0]  # noqa: S608
    return (None if column == "id" else row["k"], row["id"])


def test_a_cursor_holds_decimal_and_timestamp_keys_exactly(client, headers, db):
    insert(db, *[(f"p{n}", None, Decimal("0.10") * (n % 3), 1, n % 2) for n in range(9)])
    for sort in ("price", "-price", "updated_at", "-updated_at"):
        seen = walk(client, headers, f"/products?limit=1&sort={sort}")
        assert [product["id"] for product in seen] == sorted_rows(
            db, sort.lstrip("-"), sort.startswith("-")
        )


def test_a_page_that_takes_too_long_is_a_clear_400_and_the_next_one_works(
    client, headers, db, monkeypatch
):
    """A q matching most of a large inventory must not hold the database: refused."""
    sql(
        db,
        "INSERT INTO products (name, price, quantity)"
        " SELECT CONCAT('Product ', seq), 1, 1 FROM seq_1_to_20000",
    )
    # Half the products have one word, half the other: no product has both, so the page
    # reads 10,000 index entries and checks each (milliseconds), and finds nothing.
    sql(db, "INSERT INTO product_words SELECT id, IF(id %% 2, 'alpha', 'beta') FROM products")
    monkeypatch.setattr(search, "MAX_STATEMENT_SECONDS", 0.0001)
    response = client.get("/products?q=alpha+beta", headers=headers)
    assert response.status_code == 400
    assert "takes too long" in response.json["message"]
    monkeypatch.setattr(search, "MAX_STATEMENT_SECONDS", 60)
    assert client.get("/products?q=alpha+beta", headers=headers).json == []
    response = client.get("/products?q=alpha&sort=-price&limit=3", headers=headers)
    assert response.status_code == 200 and len(response.json) == 3

"""The words that `q` of GET /products finds (search.py): how text becomes words, and the
product_words rows (migrations/010) that hold every beginning of every word of each product's
name and description, written in the transaction that writes the product.
"""

import re
import unicodedata

import click
import MySQLdb
from flask.cli import with_appcontext

from secureapi.data.database import mysql

# In folded text, a word is a run of letters, digits and _; anything else separates words.
WORD = re.compile(r"\w+")
# The longest word beginning kept: as long as `q` may be, so each word of `q` is one lookup.
MAX_PREFIX = 100
# The rows one product may have. A description of English prose at its 65,535-character
# limit needs about 4,500 (Debian's licence texts: 4,441); crafted text (many long distinct
# words, or characters that fold to many, such as U+FDF2) would need hundreds of thousands.
# Words past the budget, in text order, name first, are not found.
MAX_ROWS = 20_000
CHUNK = 1000  # rows per DELETE, well inside max_allowed_packet


def fold(text):
    """Text as words are compared: compatibility-decomposed (`ﬁ` is `fi`), case-folded, and
    without marks: accents (`Café` is `cafe`, `Straße` is `strasse`) and the vowel signs of
    scripts such as Devanagari, which would otherwise split a word in two."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))


def words_in(text):
    """The folded words of a text, in order of first appearance, each cut at MAX_PREFIX."""
    return list(dict.fromkeys(word[:MAX_PREFIX] for word in WORD.findall(fold(text or ""))))


def prefixes(*texts):
    """The product_words rows of a product with these texts (its name and description):
    every beginning of every word, at most MAX_ROWS of them."""
    found = set()
    for text in texts:
        for word in words_in(text):
            for end in range(1, len(word) + 1):
                found.add(word[:end])
                if len(found) == MAX_ROWS:
                    return found
    return found


def index_words(cursor, product_id, texts, created=False):
    """Bring the product's rows in step with its texts (name, description), in the caller's
    transaction, which holds the product row's lock: its writers take turns."""
    have = set()
    if not created:
        cursor.execute(
            "SELECT word FROM product_words WHERE product_id = %s FOR UPDATE", (product_id,)
        )
        have = {row["word"] for row in cursor.fetchall()}
    write(cursor, product_id, have, prefixes(*texts))


def write(cursor, product_id, have, wanted):
    """Only the rows that change, each by its primary key: no gap locks on other products'."""
    gone = sorted(have - wanted)
    for start in range(0, len(gone), CHUNK):
        cursor.execute(
            "DELETE FROM product_words WHERE product_id = %s AND word IN %s",
            (product_id, gone[start : start + CHUNK]),
        )
    if wanted - have:  # the client sends them as multi-row INSERTs of up to 64 KiB each
        cursor.executemany(
            "INSERT IGNORE INTO product_words (product_id, word) VALUES (%s, %s)",
            [(product_id, word) for word in sorted(wanted - have)],
        )


def reindex(connection, batch=1000):
    """Bring every product's rows in step with its texts, `batch` products per transaction.
    Each batch holds its products' rows in share mode, so a write of one of them waits for
    the batch instead of being undone by it."""
    cursor = connection.cursor(MySQLdb.cursors.DictCursor)
    last = 0
    while True:
        connection.begin()
        cursor.execute(
            "SELECT id, name, description FROM products WHERE id > %s ORDER BY id LIMIT %s"
            " LOCK IN SHARE MODE",
            (last, batch),
        )
        products = cursor.fetchall()
        if not products:
            connection.commit()
            return
        cursor.execute(
            "SELECT product_id, word FROM product_words WHERE product_id BETWEEN %s AND %s"
            " FOR UPDATE",
            (products[0]["id"], products[-1]["id"]),
        )
        have = {product["id"]: set() for product in products}
        for row in cursor.fetchall():
            have.setdefault(row["product_id"], set()).add(row["word"])
        for product in products:
            wanted = prefixes(product["name"], product["description"])
            write(cursor, product["id"], have[product["id"]], wanted)
        connection.commit()
        last = products[-1]["id"]


@click.command("reindex-words")
@with_appcontext
def reindex_words_command():
    """Rewrite what `q` finds from every product's name and description: after writes that
    bypassed the app, or an upgrade that changed how words are read."""
    reindex(mysql.connection)
    click.echo("Every product's words are in step with its name and description.")

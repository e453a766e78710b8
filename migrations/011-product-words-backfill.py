"""The product_words rows of the products written before migration 010, 1,000 products per
transaction. Safe to run again should it stop halfway (INSERT IGNORE)."""

from search import prefixes

BATCH = 1000


def migrate(cursor):
    last = 0
    while True:
        cursor.execute(
            "SELECT id, name, description FROM products WHERE id > %s ORDER BY id LIMIT %s",
            (last, BATCH),
        )
        products = cursor.fetchall()
        if not products:
            return
        rows = [(pid, word) for pid, name, text in products for word in prefixes(name, text)]
        cursor.executemany(
            "INSERT IGNORE INTO product_words (product_id, word) VALUES (%s, %s)", rows
        )
        cursor.connection.commit()
        last = products[-1][0]

"""The product_words rows of the products written before migration 010 (words.reindex: 1,000
products per transaction; safe to run again should it stop halfway)."""

from secureapi.data.words import reindex


def migrate(cursor):
    reindex(cursor.connection)

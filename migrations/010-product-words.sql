-- `q` of GET /products (search.py, words.py): one row per product and beginning of a folded word
-- of its name or description ("laptop" gives l, la, lap, ..., laptop), written in the transaction
-- that writes the product. A word of `q` is one lookup of (word, product_id), read in id order, so
-- a page stops after its 100 entries however many products have the word; the FULLTEXT index
-- it replaces handed over every match before the page could be sorted. 011 fills it in.
-- Instances of the previous version answer `q` with an error once this has run: restart them
-- with this version right after init-db (docs/operations.md: Upgrading).
CREATE TABLE IF NOT EXISTS product_words (
    product_id INT UNSIGNED NOT NULL,
    -- No pad: 'a' and 'a ' are two words (never written, but never equal either).
    word VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    PRIMARY KEY (product_id, word),
    KEY product_words_word (word, product_id),
    CONSTRAINT product_words_product FOREIGN KEY (product_id) REFERENCES products (id)
        ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
ALTER TABLE products DROP INDEX IF EXISTS products_search;

-- Search, filters and sorting of GET /products (search.py). Each sort reads its index in
-- order from the page's start, ties broken by id, so a page costs the same however deep
-- it is; the FULLTEXT index finds the products whose name or description has every word
-- of `q`. Idempotent: safe to run again should it stop halfway.
CREATE INDEX IF NOT EXISTS products_name ON products (name, id);
CREATE INDEX IF NOT EXISTS products_price ON products (price, id);
CREATE INDEX IF NOT EXISTS products_updated_at ON products (updated_at, id);
-- in_stock=false (quantity = 0) reads this index in id order.
CREATE INDEX IF NOT EXISTS products_quantity ON products (quantity, id);
ALTER TABLE products ADD FULLTEXT INDEX IF NOT EXISTS products_search (name, description);

-- Conditional requests (RFC 9110 section 13): every product change raises its version, and
-- the ETag of a product is its version. Existing products start at 1.
ALTER TABLE products ADD COLUMN IF NOT EXISTS version BIGINT UNSIGNED NOT NULL DEFAULT 1;

-- Idempotency-Key (IETF httpapi draft): the first outcome of a create, per user and key, so
-- that a retried POST is answered again instead of creating a second product. A row whose
-- status is still NULL belongs to a request that has not committed yet.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id INT UNSIGNED NOT NULL,
    idempotency_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- SHA-256 of the request it answers: the same key with another body is refused.
    fingerprint CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    status SMALLINT UNSIGNED NULL,
    response_body MEDIUMBLOB NULL,
    response_headers TEXT CHARACTER SET ascii COLLATE ascii_bin NULL,
    expires_at DATETIME NOT NULL,
    PRIMARY KEY (user_id, idempotency_key),
    KEY idempotency_keys_expiry (expires_at),
    CONSTRAINT idempotency_keys_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

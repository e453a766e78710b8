-- Personal access tokens, for scripts and CI (issue 25): scoped to the product routes,
-- expiring, revocable, and never wider than their owner (the owner's role and state are read
-- with the token on every request). A token is `sapi_pat_` + its id + 256 random bits; only
-- its keyed digest is stored. Times are UTC DATETIMEs from the app clock.
CREATE TABLE IF NOT EXISTS personal_access_tokens (
    id CHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    user_id INT UNSIGNED NOT NULL,
    name VARCHAR(100) NOT NULL,
    -- Space-separated: products:read, products:write.
    scopes VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    digest CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at DATETIME NOT NULL,
    expires_at DATETIME NOT NULL,
    last_used_at DATETIME NULL,
    UNIQUE KEY personal_access_tokens_name (user_id, name),
    KEY personal_access_tokens_expiry (expires_at),
    CONSTRAINT personal_access_tokens_user FOREIGN KEY (user_id) REFERENCES users (id)
        ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

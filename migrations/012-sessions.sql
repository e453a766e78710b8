-- Sessions (ASVS 5.0 V7): one row per login, so that a user can be logged in on several
-- devices at once, list them and end each. An access token names its session (`sid`), and
-- the token check reads the session and its user in one statement: an ended session (its
-- row deleted) refuses its access tokens at once on every instance. Times are UTC DATETIMEs
-- written from the app clock (docs/architecture.md: Time).
CREATE TABLE IF NOT EXISTS sessions (
    id CHAR(22) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    user_id INT UNSIGNED NOT NULL,
    created_at DATETIME NOT NULL,
    last_used_at DATETIME NOT NULL,
    client VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    user_agent VARCHAR(255) NULL,
    KEY sessions_user (user_id, last_used_at),
    CONSTRAINT sessions_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Every refresh token a session was given, as a keyed digest (never the token): the one not
-- yet spent is the session's current refresh token; a spent one presented again is reuse
-- (RFC 9700 section 4.14.2) and ends its session, its family.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    digest CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    session_id CHAR(22) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at DATETIME NOT NULL,
    spent_at DATETIME NULL,
    KEY refresh_tokens_session (session_id),
    CONSTRAINT refresh_tokens_session FOREIGN KEY (session_id) REFERENCES sessions (id)
        ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Tokens issued before sessions carry no `sid`: they stop working at the upgrade (every user
-- logs in again once). The column is no longer read.
UPDATE users SET last_token = NULL;

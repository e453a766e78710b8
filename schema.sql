-- SecureAPI schema, as of v1: the tables a new database starts with. Idempotent and never
-- destroys data. Later changes are files in migrations/, never edits here: `flask --app app
-- init-db` applies this file, then each migration that the database has not had yet.

CREATE TABLE IF NOT EXISTS users (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- A case-insensitive collation makes the UNIQUE key refuse "Alice" after "alice".
    username VARCHAR(64) COLLATE utf8mb4_unicode_ci NOT NULL,
    password CHAR(60) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    twofa_secret VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- SHA-256 hex digest of the only token that is currently valid; never the token.
    last_token CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    -- Last accepted TOTP time step (RFC 6238 section 5.2: never accept it twice).
    last_otp_step BIGINT NULL,
    twofa_confirmed_at DATETIME NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY users_username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS products (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description MEDIUMTEXT NULL,
    price DECIMAL(10, 2) NOT NULL,
    quantity INT UNSIGNED NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Consecutive failed logins per account, so that lockout holds across every worker and
-- instance (migrations/004 reshapes it into the account tier of the lockout).
CREATE TABLE IF NOT EXISTS login_failures (
    username VARCHAR(64) COLLATE utf8mb4_unicode_ci NOT NULL PRIMARY KEY,
    failures INT UNSIGNED NOT NULL,
    locked_until DOUBLE NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Single-use recovery codes, stored only as SHA-256 digests.
CREATE TABLE IF NOT EXISTS recovery_codes (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id INT UNSIGNED NOT NULL,
    code_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    used_at DATETIME NULL,
    KEY recovery_codes_lookup (user_id, code_hash),
    CONSTRAINT recovery_codes_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The versioned changes of migrations/ that this database has had, each applied once by
-- `flask --app app init-db`, in name order, after the tables above.
CREATE TABLE IF NOT EXISTS schema_migrations (
    name VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

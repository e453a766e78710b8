-- Lockout in two tiers. Per account and client address (IPv6: its /64): failures and the
-- doubling lockout, so a stranger's guesses lock out the stranger, not the owner. Per
-- account (login_failures): consecutive failures from all clients; at
-- LOGIN_HARD_LOCK_FAILURES the account stays locked until an admin unlocks it. Accounts
-- that no user has are stored under a keyed hash, never the name typed.
CREATE TABLE IF NOT EXISTS client_failures (
    account VARCHAR(64) COLLATE utf8mb4_unicode_ci NOT NULL,
    client VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    failures INT UNSIGNED NOT NULL,
    locked_until DOUBLE NULL,
    PRIMARY KEY (account, client)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
ALTER TABLE login_failures
    ADD COLUMN IF NOT EXISTS locked BOOLEAN NOT NULL DEFAULT FALSE,
    DROP COLUMN IF EXISTS locked_until;
-- Failure rows kept under the typed name of an unknown user would keep that name.
DELETE FROM login_failures WHERE username NOT IN (SELECT username FROM users);

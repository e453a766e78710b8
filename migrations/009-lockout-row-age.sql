-- The age of each lockout row, so that `flask --app app purge` (and every 100th attempt)
-- can delete the rows that no attempt has touched for LOGIN_FAILURES_TTL_SECONDS: without
-- it, every made-up username tried at /login would leave a row forever. updated_at is Unix
-- time on the app's clock, like locked_until; rows that exist at the upgrade start their
-- age then.
ALTER TABLE login_failures ADD COLUMN IF NOT EXISTS updated_at DOUBLE NOT NULL DEFAULT (UNIX_TIMESTAMP());
ALTER TABLE client_failures ADD COLUMN IF NOT EXISTS updated_at DOUBLE NOT NULL DEFAULT (UNIX_TIMESTAMP());
-- The purge finds stale rows through these, however large a flood made the tables.
CREATE INDEX IF NOT EXISTS login_failures_updated ON login_failures (updated_at);
CREATE INDEX IF NOT EXISTS client_failures_updated ON client_failures (updated_at);

-- Recovery codes are stored as HMAC-SHA256 under RECOVERY_CODE_KEY (kept outside the
-- database) of a random per-code salt and the code: a dump alone cannot test guesses.
-- Rows without a salt are v1's SHA-256 of "user_id:code", accepted until used or replaced.
ALTER TABLE recovery_codes ADD COLUMN IF NOT EXISTS salt CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL;

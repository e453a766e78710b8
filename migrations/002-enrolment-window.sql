-- The QR code (and so the TOTP secret) is served only until this Unix time: a window after
-- registration or a 2FA reset, closed by any successful login. NULL: closed.
ALTER TABLE users ADD COLUMN IF NOT EXISTS enrolment_until DOUBLE NULL;
-- Users still enrolling when the upgrade runs get the default window (15 minutes) from now.
UPDATE users SET enrolment_until = UNIX_TIMESTAMP() + 900
    WHERE twofa_confirmed_at IS NULL AND enrolment_until IS NULL;

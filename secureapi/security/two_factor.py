"""The second factor: TOTP secrets encrypted at rest (with key rotation), one-time codes
checked against the clock, and single-use recovery codes stored as digests. It writes only
through the cursor or the statements it is given; routes decide when."""

import hashlib
import hmac
import logging
import re
import secrets

import click
import pyotp
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from flask.cli import with_appcontext

from config import load_instance_secret, now
from secureapi.data.database import execute, query

log = logging.getLogger(__name__)

TOTP_STEP_SECONDS = 30
PLAIN_TOTP_SECRET = re.compile(r"[A-Z2-7]{16,64}")  # v1 stored base32 unencrypted
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 symbols, no 0/o or 1/l


def totp_fernet(app):
    """TOTP secrets are encrypted at rest with their own key(s), never the JWT key.
    TOTP_ENCRYPTION_KEY lists Fernet keys, newest first: the first encrypts, all decrypt."""
    keys = app.config["TOTP_ENCRYPTION_KEY"] or load_instance_secret(
        app.instance_path, "totp_encryption_key", lambda: Fernet.generate_key().decode()
    )
    keys = [key.strip() for key in keys.split(",") if key.strip()]
    if app.config["SECRET_KEY"] in keys:
        raise RuntimeError("TOTP_ENCRYPTION_KEY must not be the SECRET_KEY")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise RuntimeError(
            "TOTP_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64-encoded bytes),"
            " separated by commas"
        ) from None


def encrypt_secret(secret):
    return current_app.extensions["totp_fernet"].encrypt(secret.encode()).decode("ascii")


def decrypt_secret(stored):
    """The base32 secret, or None when no configured key opens it."""
    # Secrets written in plain base32 by v1 still work; login encrypts them.
    if PLAIN_TOTP_SECRET.fullmatch(stored):
        return stored
    try:
        return current_app.extensions["totp_fernet"].decrypt(stored.encode()).decode("ascii")
    except InvalidToken:
        log.error("A TOTP secret cannot be decrypted: is a key missing from TOTP_ENCRYPTION_KEY?")
        return None


def matching_otp_step(secret, code):
    """The time step (the current one, or TOTP_VALID_WINDOW either side for clock drift)
    whose TOTP equals code, else None."""
    if secret is None or not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now()) // TOTP_STEP_SECONDS
    window = current_app.config["TOTP_VALID_WINDOW"]
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def enrolment_deadline():
    """Until when a new or reset secret may be fetched as a QR code (Unix time)."""
    return now() + current_app.config["ENROLMENT_WINDOW_SECONDS"]


def reset_secret(cursor, user_id):
    """Replace the user's TOTP secret: the QR code opens for the enrolment window, and no
    earlier time step counts against the new secret (the caller ends the sessions).
    Returns the new secret."""
    secret = pyotp.random_base32()  # 160 bits from the secrets module
    cursor.execute(
        "UPDATE users SET twofa_secret = %s, twofa_confirmed_at = NULL, enrolment_until = %s,"
        " last_otp_step = NULL WHERE id = %s",
        (encrypt_secret(secret), enrolment_deadline(), user_id),
    )
    return secret


def otpauth_uri(username, secret):
    """What an authenticator app scans (the key URI format of Google Authenticator)."""
    return pyotp.TOTP(secret).provisioning_uri(
        name=username, issuer_name=current_app.config["TOTP_ISSUER"]
    )


def use_otp(cursor, user_id, code):
    """Consume a one-time code of the user's secret: at most once per time step (RFC 6238
    section 5.2), in one atomic statement even under racing requests."""
    cursor.execute("SELECT twofa_secret FROM users WHERE id = %s", (user_id,))
    row = cursor.fetchone()
    step = matching_otp_step(decrypt_secret(row["twofa_secret"]), code) if row else None
    return step is not None and cursor.execute(
        "UPDATE users SET last_otp_step = %s"
        " WHERE id = %s AND (last_otp_step IS NULL OR last_otp_step < %s)",
        (step, user_id, step),
    )


def use_recovery_code(cursor, user_id, code):
    """Consume one of the user's recovery codes. The unused ones are locked while they are
    compared, so a code works once even under racing requests."""
    cursor.execute(
        "SELECT id, salt, code_hash FROM recovery_codes"
        " WHERE user_id = %s AND used_at IS NULL FOR UPDATE",
        (user_id,),
    )
    for row in cursor.fetchall():
        if hmac.compare_digest(row["code_hash"], recovery_code_digest(user_id, code, row["salt"])):
            return cursor.execute(
                "UPDATE recovery_codes SET used_at = UTC_TIMESTAMP() WHERE id = %s", (row["id"],)
            )
    return 0


def remaining_recovery_codes(cursor, user_id):
    cursor.execute(
        "SELECT COUNT(*) AS remaining FROM recovery_codes WHERE user_id = %s AND used_at IS NULL",
        (user_id,),
    )
    return cursor.fetchone()["remaining"]


def new_recovery_codes(cursor, user_id):
    """Replace the user's recovery codes with fresh ones (in the caller's transaction)."""
    codes = [
        "-".join("".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(4)) for _ in range(3))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    cursor.execute("DELETE FROM recovery_codes WHERE user_id = %s", (user_id,))
    rows = []
    for code in codes:
        salt = secrets.token_hex(16)
        rows.append((user_id, salt, recovery_code_digest(user_id, code, salt)))
    cursor.executemany(
        "INSERT INTO recovery_codes (user_id, salt, code_hash) VALUES (%s, %s, %s)", rows
    )
    return codes


def recovery_code_digest(user_id, code, salt):
    """HMAC-SHA256 under RECOVERY_CODE_KEY of a random per-code salt and the code (ASVS
    6.5.2): without the key, which never lives in the database, a dump tests no guess.
    salt None: a v1 code, SHA-256 of "user_id:code"."""
    normalized = re.sub(r"[\s-]", "", code).lower()
    if salt is None:
        return hashlib.sha256(f"{user_id}:{normalized}".encode()).hexdigest()
    key = current_app.extensions["recovery_code_key"]
    return hmac.new(key, f"{salt}:{normalized}".encode(), hashlib.sha256).hexdigest()


def recovery_code_key(app):
    """RECOVERY_CODE_KEY, or one generated into the instance folder; never the JWT key."""
    key = app.config["RECOVERY_CODE_KEY"] or load_instance_secret(
        app.instance_path, "recovery_code_key"
    )
    if key == app.config["SECRET_KEY"]:
        raise RuntimeError("RECOVERY_CODE_KEY must not be the SECRET_KEY")
    if len(key.encode()) < 32:
        raise RuntimeError("RECOVERY_CODE_KEY must be at least 32 bytes long")
    return key.encode()


@click.command("rotate-totp-keys")
@with_appcontext
def rotate_totp_keys_command():
    """Re-encrypt every TOTP secret under the first TOTP_ENCRYPTION_KEY."""
    fernet = current_app.extensions["totp_fernet"]
    rotated = unreadable = 0
    for user in query("SELECT id, twofa_secret FROM users"):
        stored = user["twofa_secret"]
        try:
            if PLAIN_TOTP_SECRET.fullmatch(stored):
                new = fernet.encrypt(stored.encode()).decode("ascii")
            else:
                new = fernet.rotate(stored.encode()).decode("ascii")
        except InvalidToken:
            unreadable += 1
            continue
        # Only if unchanged meanwhile (a login or a 2FA reset may have written it).
        rotated += execute(
            "UPDATE users SET twofa_secret = %s WHERE id = %s AND twofa_secret = %s",
            (new, user["id"], stored),
        )
    click.echo(f"Re-encrypted {rotated} TOTP secrets; {unreadable} could not be decrypted.")
    if unreadable:
        raise click.ClickException("Some secrets need a key that TOTP_ENCRYPTION_KEY lacks.")

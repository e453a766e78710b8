"""Passwords: the rules a new one must meet, bcrypt hashing, and checks that cost one
bcrypt whatever the input. No database access and no HTTP here."""

import secrets

import bcrypt
from flask import current_app
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from errors import ValidationError
from validation import has_control_characters

# 30,000 most common passwords (zxcvbn's list), compared without regard to case.
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])


def validate_new_password(password, field="password"):
    if len(password) < 8:
        raise ValidationError(f"'{field}' must be at least 8 characters long.")
    if len(password.encode("utf-8")) > 72:
        raise ValidationError(f"'{field}' must be at most 72 bytes in UTF-8 (the limit of bcrypt).")
    # bcrypt stops at NUL: "\0\0\0\0\0\0\0\0" would be the empty password.
    if has_control_characters(password):
        raise ValidationError(f"'{field}' must not contain control characters.")
    if password.lower() in COMMON_PASSWORDS:
        raise ValidationError(f"'{field}' is too common; choose a less guessable one.")
    return password


def hash_password(password):
    rounds = current_app.config["BCRYPT_ROUNDS"]
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def dummy_password_hash(rounds):
    """A hash of nothing anyone knows: unknown users are checked against it, so that
    timing does not tell them apart from known ones."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password, password_hash):
    """bcrypt check that always costs one bcrypt, whatever the input."""
    candidate = password.encode("utf-8")
    # Past 72 bytes or a NUL, bcrypt would compare a truncated password.
    usable = len(candidate) <= 72 and b"\0" not in candidate
    matches = bcrypt.checkpw(candidate if usable else b"", password_hash.encode("ascii"))
    return usable and matches


def password_matches(user, password):
    """One bcrypt whether the user exists or not, so timing does not tell them apart."""
    password_hash = user["password"] if user else current_app.config["DUMMY_PASSWORD_HASH"]
    return check_password(password, password_hash) and user is not None

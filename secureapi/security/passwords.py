"""Passwords: the rules a new one must meet, hashing (bcrypt of a SHA-256 pre-hash, so any
length works and nothing is truncated), and checks whose cost does not depend on whether
the user exists. No database access and no HTTP here."""

import base64
import functools
import hashlib
import secrets

import bcrypt
import zxcvbn
from flask import current_app

from secureapi.core.refusals import ValidationError
from secureapi.core.validation import has_control_characters

MAX_PASSWORD_CHARACTERS = 256
PRODUCT_NAME = "SecureAPI"
# bcrypt sees at most 72 bytes: hash the password first (base64 of SHA-256 is 44 bytes, no
# NUL), and mark such hashes, so v1's plain bcrypt hashes are still told apart.
PREHASHED = "sha256$"


def validate_new_password(password, field="password", username=None):
    if len(password) < 8:
        raise ValidationError(f"'{field}' must be at least 8 characters long.")
    if len(password) > MAX_PASSWORD_CHARACTERS:
        raise ValidationError(f"'{field}' must be at most {MAX_PASSWORD_CHARACTERS} characters.")
    if has_control_characters(password):
        raise ValidationError(f"'{field}' must not contain control characters.")
    if not password.strip():
        raise ValidationError(f"'{field}' must not be only whitespace.")
    if username and username.lower() in password.lower():
        raise ValidationError(f"'{field}' must not contain the username.")
    # zxcvbn's estimator (not only its word list), on what it can read: the first 72.
    # The product's own name counts as a guess too: "SecureAPI123" is the first one tried.
    guesses = [PRODUCT_NAME, *([username] if username else [])]
    estimate = zxcvbn.zxcvbn(password[:72], user_inputs=guesses)
    if estimate["score"] < 3:
        feedback = estimate["feedback"]
        hints = " ".join(filter(None, [feedback["warning"], *feedback["suggestions"]]))
        raise ValidationError(f"'{field}' is too easy to guess. {hints}".strip())
    return password


def prehash(password):
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password, rounds=None):
    rounds = rounds or current_app.config["BCRYPT_ROUNDS"]
    return PREHASHED + bcrypt.hashpw(prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def hash_cost(password_hash):
    return int(password_hash.removeprefix(PREHASHED).split("$")[2])


@functools.cache
def dummy_hash(rounds):
    """A hash of nothing anyone knows, at this cost: unknown users are checked against it,
    so that timing does not tell them apart from known ones."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds))


def dummy_password_hash(rounds):
    return PREHASHED + dummy_hash(rounds).decode("ascii")


def check_password(password, password_hash):
    """Whether password matches; always costs what one bcrypt at BCRYPT_ROUNDS costs. A
    hash of a lower cost (written before BCRYPT_ROUNDS was raised) is padded with checks
    against a dummy of its cost, so such a user takes as long as an unknown one."""
    if password_hash.startswith(PREHASHED):
        stored, candidate = password_hash.removeprefix(PREHASHED).encode("ascii"), prehash(password)
        usable = True
    else:  # v1: bcrypt of the password itself, which refused NULs and more than 72 bytes
        stored, candidate = password_hash.encode("ascii"), password.encode("utf-8")
        usable = len(candidate) <= 72 and b"\0" not in candidate
    matches = bcrypt.checkpw(candidate if usable else b"", stored)
    cost = hash_cost(password_hash)
    for _ in range(2 ** max(current_app.config["BCRYPT_ROUNDS"] - cost, 0) - 1):
        bcrypt.checkpw(b"", dummy_hash(cost))
    return usable and matches


def needs_rehash(password_hash):
    """A v1 hash, or one of another cost than BCRYPT_ROUNDS: replace it at the next login."""
    return (
        not password_hash.startswith(PREHASHED)
        or hash_cost(password_hash) != current_app.config["BCRYPT_ROUNDS"]
    )


def password_matches(user, password):
    """One bcrypt whether the user exists or not, so timing does not tell them apart."""
    password_hash = user["password"] if user else current_app.config["DUMMY_PASSWORD_HASH"]
    return check_password(password, password_hash) and user is not None

"""The rules that need no database, tested on their own: conditional headers, words and
folding, search parameters, cursor signing, password rules, TOTP time steps and the
settings the factory refuses. The same rules are tested through the API in the db lane."""

from datetime import datetime
from decimal import Decimal

import pyotp
import pytest

from app import create_app
from secureapi.core.refusals import ValidationError
from secureapi.data import search, words
from secureapi.security.passwords import check_password, hash_password, validate_new_password
from secureapi.security.two_factor import TOTP_STEP_SECONDS, matching_otp_step
from secureapi.web import conditional
from tests.support import PASSWORD, ROOT, Clock, app_config

pytestmark = pytest.mark.unit


@pytest.fixture
def app(clock):
    # Nothing here opens a connection: the database name is never used.
    return create_app(app_config("unused", CLOCK=clock))


@pytest.fixture
def clock():
    return Clock()


# --- Conditional requests (RFC 9110 section 13) ----------------------------------------------


@pytest.mark.parametrize(
    ("if_match", "version", "fails"),
    [
        ('"3"', 3, False),
        ('"2", "3"', 3, False),
        ("*", 3, False),
        ('"2"', 3, True),
        ('W/"3"', 3, True),  # If-Match compares strongly
        ("3", 3, True),  # unquoted: matches nothing, fails safe
        ('"03"', 3, True),  # octets, not numbers
    ],
)
def test_if_match_on_a_read(app, if_match, version, fails):
    with app.test_request_context(headers={"If-Match": if_match}):
        assert conditional.precondition_fails(version) is fails


@pytest.mark.parametrize(
    ("if_none_match", "modified"),
    [('"3"', False), ('W/"3"', False), ("*", False), ('"2"', True), ('"2", W/"3"', False)],
)
def test_if_none_match_on_a_read(app, if_none_match, modified):
    with app.test_request_context(headers={"If-None-Match": if_none_match}):
        assert conditional.not_modified(3) is not modified


@pytest.mark.parametrize(
    ("headers", "sql", "args"),
    [
        ({}, "", ()),
        ({"If-Match": '"4"'}, " AND version IN (%s)", (4,)),
        ({"If-Match": '"4", "5"'}, " AND version IN (%s, %s)", (4, 5)),
        ({"If-Match": 'W/"4"'}, " AND FALSE", ()),
        ({"If-Match": "*"}, "", ()),
        ({"If-None-Match": "*"}, " AND FALSE", ()),
        ({"If-None-Match": 'W/"4"'}, " AND version NOT IN (%s)", (4,)),
    ],
)
def test_write_conditions_are_one_statement(app, headers, sql, args):
    with app.test_request_context(headers=headers):
        assert conditional.write_condition() == (sql, args)


# --- Words and folding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Gaming Laptop", ["gaming", "laptop"]),
        ("Café Straße", ["cafe", "strasse"]),
        ("ﬁle", ["file"]),
        ("laptop LAPTOP laptop", ["laptop"]),
        ("--- !!!", []),
        (None, []),
    ],
)
def test_words_are_folded(text, found):
    assert words.words_in(text) == found


def test_every_beginning_of_every_word_is_indexed():
    assert words.prefixes("Desk", "red") == {"d", "de", "des", "desk", "r", "re", "red"}


def test_a_products_rows_are_bounded(monkeypatch):
    monkeypatch.setattr(words, "MAX_ROWS", 10)
    assert len(words.prefixes("abcdefghijklmnopqrstuvwxyz")) == 10


# --- Search parameters and the signed cursor ------------------------------------------------


def search_of(app, query):
    with app.test_request_context(f"/products?{query}"):
        return search.product_search()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("color=red", "Unknown query parameter"),
        ("q=a&q=b", "more than once"),
        ("sort=colour", "'sort' must be one of"),
        ("q=---", "needs at least one word"),
        ("min_price=NaN", "'min_price' must be a number"),
        ("max_price=100000000", "'max_price' must be a number"),
        ("in_stock=yes", "'in_stock' must be true or false"),
        ("updated_since=yesterday", "ISO 8601"),
        # December's review: this overflowed into "since the beginning", every product.
        ("updated_since=9999-12-31T23:59:59-01:00", "past the last time"),
        ("limit=0", "'limit' must be an integer from 1 to 1000"),
        ("after=5&sort=name", "'after' pages sort=id only"),
        ("cursor=abc", "'cursor' is not valid"),
    ],
)
def test_bad_search_parameters_are_refused_with_a_reason(app, query, message):
    with pytest.raises(ValidationError, match=message):
        search_of(app, query)


def test_search_parameters_are_cleaned(app):
    found = search_of(app, "q=Lap+laptop+CAFÉ&min_price=12.50&in_stock=true&sort=-price")
    assert found.filters == {
        "q": ("cafe", "laptop"),
        "min_price": Decimal("12.5"),
        "in_stock": True,
    }
    assert (found.column, found.descending) == ("price", True)


def test_a_cursor_works_only_for_its_own_search_and_key(app):
    query = "q=desk&sort=price"
    row = {"id": 7, "price": Decimal("10.00")}
    with app.test_request_context(f"/products?{query}"):
        cursor = search.make_cursor(search.product_search(), row)
    assert search_of(app, f"{query}&cursor={cursor}").start == (Decimal("10.00"), 7)
    with pytest.raises(ValidationError, match="belongs to another search"):
        search_of(app, f"q=chair&sort=price&cursor={cursor}")
    payload, signature = cursor.split(".")
    forged = f"{payload}.{'A' * len(signature)}"
    with pytest.raises(ValidationError, match="not valid"):
        search_of(app, f"{query}&cursor={forged}")
    other = create_app(app_config("unused", SECRET_KEY="another-secret-key-long-enough-for-hs256"))
    with pytest.raises(ValidationError, match="not valid"):
        search_of(other, f"{query}&cursor={cursor}")


def test_a_cursor_keeps_a_timestamp_exactly(app):
    row = {"id": 3, "updated_at": datetime(2026, 12, 7, 10, 0, 1)}
    with app.test_request_context("/products?sort=updated_at"):
        cursor = search.make_cursor(search.product_search(), row)
    assert search_of(app, f"sort=updated_at&cursor={cursor}").start == (row["updated_at"], 3)


# --- Passwords -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 8 characters"),
        ("x" * 257, "at most 256 characters"),
        ("tab\there-is-fine-not", "control characters"),
        ("        ", "only whitespace"),
        ("alice-in-wonderland-1", "must not contain the username"),
        ("password1", "too easy to guess"),
        ("SecureAPI123", "too easy to guess"),  # the product's own name (December's review)
        ("secureapi2026!", "too easy to guess"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password, message):
    with pytest.raises(ValidationError, match=message):
        validate_new_password(password, username="alice")


def test_a_long_password_is_hashed_whole(app):
    # bcrypt alone reads 72 bytes: the pre-hash makes the 73rd byte count.
    long = "correct horse battery staple " * 3
    with app.app_context():
        stored = hash_password(long)
        assert check_password(long, stored)
        assert not check_password(long[:-1] + "X", stored)
        assert validate_new_password(PASSWORD) == PASSWORD


# --- One-time codes ---------------------------------------------------------------------------


def test_a_code_matches_its_step_and_the_window_either_side(app, clock):
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    with app.app_context():
        step = int(clock()) // TOTP_STEP_SECONDS
        assert matching_otp_step(secret, totp.at(clock())) == step
        assert matching_otp_step(secret, totp.at(clock() - 30)) == step - 1
        assert matching_otp_step(secret, totp.at(clock() + 30)) == step + 1
        assert matching_otp_step(secret, totp.at(clock() + 90)) is None
        assert matching_otp_step(secret, "12345") is None
        assert matching_otp_step(None, totp.at(clock())) is None
        clock.advance(120)  # the app's clock, not the wall's
        assert matching_otp_step(secret, totp.at(clock())) == step + 4


def test_a_window_of_zero_takes_only_the_current_step(clock):
    app = create_app(app_config("unused", CLOCK=clock, TOTP_VALID_WINDOW=0))
    secret = pyotp.random_base32()
    with app.app_context():
        assert matching_otp_step(secret, pyotp.TOTP(secret).at(clock() - 30)) is None


# --- Settings the factory refuses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"SECRET_KEY": "too-short"}, "SECRET_KEY must be at least 32 bytes"),
        ({"REGISTRATION": "maybe"}, "REGISTRATION must be open or closed"),
        ({"REGISTRATION_ROLE": "root"}, "REGISTRATION_ROLE must be"),
        ({"TOTP_VALID_WINDOW": 2}, "TOTP_VALID_WINDOW must be 0 or 1"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN must be at least 32"),
        ({"LOGIN_FAILURES_TTL_SECONDS": 0}, "LOGIN_FAILURES_TTL_SECONDS must be at least 1"),
        ({"TOTP_ENCRYPTION_KEY": "not-a-fernet-key"}, "TOTP_ENCRYPTION_KEY must be Fernet"),
        ({"RECOVERY_CODE_KEY": "short"}, "RECOVERY_CODE_KEY must be at least 32"),
        ({"MYSQL_INIT_COMMAND": "DELETE FROM users"}, "MYSQL_INIT_COMMAND must be one SET"),
    ],
)
def test_unsafe_settings_stop_the_app_from_starting(setting, message):
    with pytest.raises(RuntimeError, match=message):
        create_app(app_config("unused", **setting))


def test_gunicorn_runs_without_a_shared_control_socket():
    # December's review: every master of one user shared ~/.gunicorn/gunicorn.ctl, and each
    # start or stop unlinked the others'.
    settings = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), settings)  # noqa: S102 (our own config)
    assert settings["control_socket_disable"] is True

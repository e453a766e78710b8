"""The shared checks of client input: a JSON object body, text fields, unknown fields and
id path segments. Each raises ValidationError (a 400); what a
resource's fields must hold lives beside its routes."""

import json
import re
import unicodedata
from decimal import Decimal

from flask import request
from werkzeug.routing import IntegerConverter

from secureapi.core.refusals import UnsupportedMediaType, ValidationError

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{3,64}")
# The largest price products.price (DECIMAL(10,2)) holds: for a product and a price filter.
MAX_PRICE = Decimal("99999999.99")


class IdConverter(IntegerConverter):
    """ASCII digits only: Werkzeug's int converter also takes other scripts' digits."""

    regex = r"[0-9]+"


def json_object():
    """The request body as a dict, or a clear 415/400. Strict where json.loads is lenient:
    UTF-8 only (it would guess UTF-16/32), no duplicate keys (which would hide a value),
    and numbers with a fraction as exact Decimals, so the decimal rules apply to the
    literal that was sent."""
    if not request.is_json:
        raise UnsupportedMediaType(
            "The request body must be JSON (Content-Type: application/json)."
        )
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ValidationError("The request body must be UTF-8 (charset=utf-8).")
    try:
        text = request.get_data().decode("utf-8-sig")  # a BOM is fine
    except UnicodeDecodeError:
        raise ValidationError("The request body must be UTF-8.") from None
    try:
        data = json.loads(text, object_pairs_hook=without_duplicates, parse_float=Decimal)
    except ValidationError:
        raise
    except (ValueError, RecursionError):  # not JSON, or absurdly deep nesting
        data = None
    if not isinstance(data, dict):
        raise ValidationError("The request body must be a JSON object.")
    return data


def without_duplicates(pairs):
    data = dict(pairs)
    if len(data) != len(pairs):
        seen = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValidationError(f"The key {duplicate[:40]!r} appears twice in one object.")
    return data


def require_text(data, field):
    value = data.get(field)
    if value is None:
        raise ValidationError(f"'{field}' is required.")
    return text(value, field)


def text(value, field):
    if not isinstance(value, str):
        raise ValidationError(f"'{field}' must be a string.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"'{field}' must be valid Unicode text.") from None
    return value


def has_control_characters(value, allowed=""):
    return any(
        unicodedata.category(character) == "Cc" and character not in allowed for character in value
    )


def has_format_characters(value):
    """Bidi overrides, zero-width and other invisible formatting (category Cf)."""
    return any(unicodedata.category(character) == "Cf" for character in value)


def validate_limit(value):
    """The `limit` of a list page: rows per page."""
    if value is None:
        return 100
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= 1000:
        raise ValidationError("'limit' must be an integer from 1 to 1000.")
    return int(value)


def validate_cursor(value):
    """The `after` of a list page: the last id already seen."""
    if value is None:
        return 0
    if not re.fullmatch(r"[0-9]{1,10}", value):
        raise ValidationError("'after' must be an id from a previous page's Link.")
    return int(value)


def refuse_unknown_fields(data, allowed):
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        # Echo a few short names only: a key can be a megabyte long.
        names = ", ".join(name[:40] for name in unknown[:5])
        raise ValidationError(f"Unknown field(s): {names}{', ...' if len(unknown) > 5 else ''}.")

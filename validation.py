"""The shared checks of client input: a JSON object body, text fields, unknown fields,
pagination parameters and id path segments. Each raises ValidationError (a 400); what a
resource's fields must hold lives beside its routes."""

import re
import unicodedata

from flask import abort, request
from werkzeug.routing import IntegerConverter

from errors import ValidationError

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{3,64}")


class IdConverter(IntegerConverter):
    """ASCII digits only: Werkzeug's int converter also takes other scripts' digits."""

    regex = r"[0-9]+"


def json_object():
    """The request body as a dict, or a clear 415/400."""
    if not request.is_json:
        abort(415)
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting
        data = None
    if not isinstance(data, dict):
        raise ValidationError("The request body must be a JSON object.")
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


def has_control_characters(value):
    return any(unicodedata.category(character) == "Cc" for character in value)


def refuse_unknown_fields(data, allowed):
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        # Echo a few short names only: a key can be a megabyte long.
        names = ", ".join(name[:40] for name in unknown[:5])
        raise ValidationError(f"Unknown field(s): {names}{', ...' if len(unknown) > 5 else ''}.")


def validate_limit(value):
    if value is None:
        return 100
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= 1000:
        raise ValidationError("'limit' must be an integer from 1 to 1000.")
    return int(value)


def validate_cursor(value):
    if value is None:
        return 0
    if not re.fullmatch(r"[0-9]{1,10}", value):
        raise ValidationError("'after' must be an id from a previous page's Link.")
    return int(value)

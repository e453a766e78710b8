"""Conditional requests (RFC 9110 section 13) on resources with a version column: the ETag
of a version, If-Match for writes that must not overwrite someone else's change, and
If-None-Match for reads that need no body when nothing changed."""

import re

from flask import request

from errors import ValidationError

ANY = "*"
# RFC 9110 section 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
VERSION = re.compile(r"[0-9]{1,19}")


def etag(version):
    """A strong validator: the version changes with every write of the row."""
    return f'"{version}"'


def entity_tags(field):
    """The (weak, opaque-tag) pairs of an If-Match/If-None-Match field, ANY for "*", or
    None when the request has no such field. A malformed field is a 400, not ignored: an
    If-Match that were ignored would turn a careful write into a blind overwrite."""
    value = request.headers.get(field)
    if value is None:
        return None
    if value.strip() == ANY:
        return ANY
    tags = []
    for element in value.split(","):
        match = ENTITY_TAG.fullmatch(element.strip())
        if not match:
            raise ValidationError(
                f'{field} must be * or a comma-separated list of entity tags such as "3".'
            )
        tags.append((bool(match.group(1)), match.group(2)))
    return tags


def versions_to_match():
    """For a write: None (no If-Match: write unconditionally), ANY, or the versions that
    If-Match names. Strong comparison: a weak tag never matches (section 13.1.1)."""
    tags = entity_tags("If-Match")
    if tags is None or tags == ANY:
        return tags
    return [int(tag) for weak, tag in tags if not weak and VERSION.fullmatch(tag)]


def not_modified(version):
    """Whether a read's If-None-Match names `version` (weak comparison, section 13.1.2)."""
    tags = entity_tags("If-None-Match")
    if tags is None:
        return False
    return tags == ANY or any(tag == str(version) for _, tag in tags)

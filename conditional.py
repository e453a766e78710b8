"""Conditional requests (RFC 9110 section 13) on resources with a version column: the ETag
of a version, If-Match for writes that must not overwrite someone else's change, and
If-None-Match for reads that need no body when nothing changed."""

import re

from flask import request

ANY = "*"
# RFC 9110 section 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e]*)"')
VERSION = re.compile(r"[0-9]{1,19}")


def etag(version):
    """A strong validator: the version changes with every write of the row."""
    return f'"{version}"'


def entity_tags(field):
    """The (weak, opaque-tag) pairs of an If-Match/If-None-Match field, ANY for "*", or
    None when the request has no such field. A malformed element (an unquoted 3, say)
    matches nothing: an If-Match made only of those fails safe with a 412, never becomes
    a blind overwrite."""
    value = request.headers.get(field)
    if value is None:
        return None
    if value.strip(" \t") == ANY:
        return ANY
    return [(bool(weak), tag) for weak, tag in ENTITY_TAG.findall(value)]


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

"""Conditional requests (RFC 9110 section 13) on resources with a version column: the ETag
of a version, If-Match for writes that must not overwrite someone else's change, and
If-None-Match for reads that need no body when nothing changed."""

import re

from flask import request

ANY = "*"
# RFC 9110 section 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e]*)"')
# Our tags are versions as written by etag(): "01" is not "1" (section 8.8.3.2 compares
# octets).
OUR_TAG = re.compile(r"[1-9][0-9]{0,18}")


def etag(version):
    """A strong validator: the version changes with every write of the row."""
    return f'"{version}"'


def entity_tags(field):
    """ANY for "*", the (weak, opaque-tag) pairs of the field, or None when the request has
    no such field. A malformed element (an unquoted 3, a lowercase w/) matches nothing: an
    If-Match made only of those fails safe with a 412, never becomes a blind overwrite."""
    value = request.headers.get(field)
    if value is None:
        return None
    if value.strip(" \t") == ANY:
        return ANY
    matches = (ENTITY_TAG.fullmatch(element.strip(" \t")) for element in value.split(","))
    return [(bool(match.group(1)), match.group(2)) for match in matches if match]


def names_version(tags, version, weak_comparison):
    """Whether the field's tags name `version` of an existing resource (section 13.1)."""
    return tags == ANY or any(
        tag == str(version) and (weak_comparison or not weak) for weak, tag in tags
    )


def precondition_fails(version):
    """For a read: whether If-Match is present and names another version (section 13.1.1,
    strong comparison)."""
    tags = entity_tags("If-Match")
    return tags is not None and not names_version(tags, version, weak_comparison=False)


def not_modified(version):
    """For a read: whether If-None-Match names `version` (section 13.1.2, weak comparison)."""
    tags = entity_tags("If-None-Match")
    return tags is not None and names_version(tags, version, weak_comparison=True)


def write_condition():
    """The SQL condition on `version` (and its arguments) that If-Match and If-None-Match
    put on a write, so that checking them and writing is one statement."""
    sql, args = "", []
    if_match = entity_tags("If-Match")
    if if_match not in (None, ANY):  # strong comparison: weak tags never match
        versions = [int(tag) for weak, tag in if_match if not weak and OUR_TAG.fullmatch(tag)]
        sql += (
            f" AND version IN ({', '.join(['%s'] * len(versions))})" if versions else " AND FALSE"
        )
        args += versions
    if_none_match = entity_tags("If-None-Match")
    if if_none_match == ANY:  # "*": only if the resource does not exist (a write here: never)
        sql += " AND FALSE"
    elif if_none_match:  # weak comparison: W/"3" names version 3 too
        versions = [int(tag) for _, tag in if_none_match if OUR_TAG.fullmatch(tag)]
        if versions:
            sql += f" AND version NOT IN ({', '.join(['%s'] * len(versions))})"
            args += versions
    return sql, tuple(args)

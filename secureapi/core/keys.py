"""Keys derived from SECRET_KEY, one per purpose: no value the API hands out or stores under
one (a page cursor, a refresh-token or access-token digest) can pass for another's, or for a
JWT signature, which SECRET_KEY itself makes."""

import functools
import hashlib
import hmac


@functools.lru_cache(maxsize=16)
def derived_key(secret_key, purpose):
    return hmac.new(secret_key.encode(), purpose, hashlib.sha256).digest()


def keyed_digest(secret_key, purpose, text):
    """HMAC-SHA256 (hex) of `text` under the purpose's key: without SECRET_KEY, which never
    lives in the database, a copy of the database tests no guess."""
    return hmac.new(derived_key(secret_key, purpose), text.encode(), hashlib.sha256).hexdigest()

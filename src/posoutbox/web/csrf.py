"""CSRF tokens of the console's forms.

A browser sends cached HTTP Basic credentials with every request to the server,
also with a form that another site submits, so each POST must carry a token
that only a page of the console could have put there. The token is the time it
was issued and an HMAC of the user name and that time, keyed by a hash of the
user's stored password hash. It is therefore tied to the user, needs no server
state, works across server processes and restarts, and stops working when the
password changes or after TOKEN_LIFETIME.
"""

from __future__ import annotations

import hashlib
import hmac
import time

#: How long a page may stay open before its forms need reloading.
TOKEN_LIFETIME_SECONDS = 12 * 3600

FIELD_NAME = "csrf_token"

_KEY_LABEL = b"posoutbox console csrf v1\x00"


def _key(password_hash: str) -> bytes:
    return hashlib.sha256(_KEY_LABEL + password_hash.encode()).digest()


def _signature(password_hash: str, user: str, issued: int) -> str:
    message = f"{user}\x00{issued}".encode()
    return hmac.new(_key(password_hash), message, hashlib.sha256).hexdigest()


def issue(user: str, password_hash: str, *, now: float | None = None) -> str:
    """Return a token for the forms of a page shown to ``user``."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_signature(password_hash, user, issued)}"


def is_valid(
    token: str, user: str, password_hash: str, *, now: float | None = None
) -> bool:
    """Tell whether ``token`` was issued to ``user`` and has not expired."""
    issued_text, _, signature = token.partition(".")
    if not issued_text.isascii() or not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    if not -60 <= age <= TOKEN_LIFETIME_SECONDS:
        return False
    expected = _signature(password_hash, user, issued)
    return hmac.compare_digest(expected.encode(), signature.encode())

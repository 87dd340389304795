"""HTTP Basic authentication of API users, a short-lived credential cache, and
the rules of what each role may call.

Verifying an Argon2 hash costs tens of milliseconds of CPU, which a POS polling
every few seconds should not pay on every call. A verified Authorization header
is therefore cached for at most ``CACHE_SECONDS``, keyed by an HMAC-SHA-256 of
the header under a random key made at process start. The cache therefore
contains no password and no password digest that could be checked offline.

A cache hit still reads the user's row, and counts only while the row has the
password hash and ``changed_at`` seen when the password was verified. A password
change, a role change or a deletion, made by the CLI or by another worker
process, therefore takes effect at the next request. An in-process invalidation
could not see those changes; the price is one primary-key read per request.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from posoutbox import users
from posoutbox.api.errors import Forbidden, Unauthenticated
from posoutbox.api.transactions import Transaction
from posoutbox.db.storage import Database
from posoutbox.fields import Value

#: How long a verified Authorization header is trusted without a new check.
CACHE_SECONDS = 60.0
#: Entries kept at most; the cache is emptied when it is full.
CACHE_SIZE = 10_000

# Real headers are short; a longer one is rejected before it is decoded.
_MAX_HEADER_LENGTH = 4096


@dataclass(frozen=True)
class _Entry:
    name: str
    password_hash: str
    changed_at: datetime.datetime
    expires: float


class CredentialCache:
    """Verified Authorization headers, keyed by a keyed digest of the header."""

    def __init__(
        self,
        ttl: float = CACHE_SECONDS,
        max_entries: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}
        self._lock = threading.Lock()

    def _digest(self, header: str) -> bytes:
        # Starlette decodes header bytes as Latin-1, so this restores the bytes.
        data = header.encode("latin-1", errors="replace")
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def get(self, header: str) -> _Entry | None:
        key = self._digest(header)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires <= self._clock():
                del self._entries[key]
                return None
            return entry

    def put(self, header: str, stored: users.StoredUser) -> None:
        entry = _Entry(
            stored.user.name,
            stored.password_hash,
            stored.user.changed_at,
            self._clock() + self._ttl,
        )
        key = self._digest(header)
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = entry

    def discard(self, header: str) -> None:
        key = self._digest(header)
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def parse_basic(header: str) -> tuple[str, str]:
    """Return the user name and password of a Basic Authorization header.

    Raises Unauthenticated for another scheme or a malformed value.
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise Unauthenticated(
            "invalid Authorization header: expected HTTP Basic authentication"
        )
    if len(header) > _MAX_HEADER_LENGTH:
        raise Unauthenticated("invalid Authorization header: too long")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthenticated(
            "invalid Authorization header: the credentials are not valid base64"
        ) from None
    try:
        credentials = decoded.decode("utf-8")
    except UnicodeDecodeError:
        # Some clients send Latin-1, which RFC 7617 allows as a legacy charset.
        credentials = decoded.decode("latin-1")
    name, colon, password = credentials.partition(":")
    if not colon:
        raise Unauthenticated(
            "invalid Authorization header: expected user name:password"
        )
    return name, password


class Authenticator:
    """Checks the credentials of a request against the users table."""

    def __init__(self, db: Database, cache: CredentialCache | None = None) -> None:
        self.db = db
        self.cache = cache or CredentialCache()

    def authenticate(self, header: str | None) -> users.User:
        """Return the user that a Basic Authorization header names, or raise
        Unauthenticated."""
        if not header:
            raise Unauthenticated(
                "missing credentials: send a user name and password with HTTP "
                "Basic authentication"
            )
        name, password = parse_basic(header)

        entry = self.cache.get(header)
        if entry is not None:
            stored = users.find_stored_user(self.db, entry.name)
            if (
                stored is not None
                and stored.password_hash == entry.password_hash
                and stored.user.changed_at == entry.changed_at
            ):
                return stored.user
            self.cache.discard(header)

        verified = users.authenticate(self.db, name, password)
        if verified is None:
            raise Unauthenticated("invalid user name or password")
        self.cache.put(header, verified)
        return verified.user


SUBSCRIBER_TRANSACTIONS = "OPS600MI LstCus and CnfCus"


def authorize_transaction(user: users.User, transaction: Transaction) -> None:
    """Raise Forbidden unless the user may call the transaction at all."""
    if user.is_admin or transaction.for_subscribers:
        return
    raise Forbidden(
        f"user {user.name} of subscriber {user.sbs1} may not call "
        f"{transaction.program} {transaction.name}: a subscriber's user may only "
        f"call {SUBSCRIBER_TRANSACTIONS}"
    )


def authorize_values(
    user: users.User, transaction: Transaction, values: Mapping[str, Value]
) -> None:
    """Raise Forbidden when a subscriber's user names another subscriber."""
    if user.is_admin:
        return
    sbs1 = values.get("SBS1")
    if sbs1 != user.sbs1:
        raise Forbidden(
            f"user {user.name} may call {transaction.program} {transaction.name} "
            f"only for subscriber {user.sbs1}, not for {sbs1}",
            field="SBS1",
        )

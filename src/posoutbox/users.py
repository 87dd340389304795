"""API users: who may call the M3 API, their role and their password hash.

A user is either an administrator, who may call every transaction, or the user
of one subscriber (SBS1), whose POS may only list and confirm that subscriber's
records. Passwords are stored as Argon2id hashes and never in clear. Every
change sets ``changed_at``, which the API compares to drop cached credentials.
"""

from __future__ import annotations

import datetime
import functools
import logging
import unicodedata
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from posoutbox import fields
from posoutbox.db import schema
from posoutbox.db.storage import Database, utcnow
from posoutbox.errors import AlreadyExists, InvalidValue, NotFound, RuleViolation
from posoutbox.shops import require_subscriber

logger = logging.getLogger(__name__)

NAME_LENGTH = 64
MIN_PASSWORD_LENGTH = 8
#: Longer passwords are rejected so that hashing stays cheap for the server.
MAX_PASSWORD_LENGTH = 1024

ADMIN_ROLE = "admin"
SUBSCRIBER_ROLE = "subscriber"

#: The hasher of new passwords, with argon2-cffi's default Argon2id parameters.
#: A hash stores its own parameters, so changing them affects only new hashes.
PASSWORD_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the user does not exist, so that an unknown name takes
    # as long to reject as a wrong password and does not reveal which names exist.
    return PASSWORD_HASHER.hash("posoutbox: no such user")


@dataclass(frozen=True)
class User:
    """An API user as stored, without its password hash."""

    name: str
    sbs1: str
    is_admin: bool
    changed_at: datetime.datetime
    changed_by: str

    @property
    def role(self) -> str:
        return ADMIN_ROLE if self.is_admin else SUBSCRIBER_ROLE

    def as_fields(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "SBS1": self.sbs1,
            "changed_at": self.changed_at.isoformat(timespec="seconds"),
            "changed_by": self.changed_by,
        }


@dataclass(frozen=True)
class StoredUser:
    """A user together with its password hash, for authentication only."""

    user: User
    password_hash: str


def validate_name(name: str) -> str:
    """Return a valid user name or raise InvalidValue naming the rule it breaks.

    HTTP Basic authentication separates the name from the password with the first
    colon, so a name cannot contain one.
    """
    expected = (
        f"1 to {NAME_LENGTH} characters without colons, control characters or "
        "leading and trailing blanks"
    )
    if not isinstance(name, str) or not name or len(name) > NAME_LENGTH:
        raise InvalidValue("name", name, expected)
    if name != name.strip() or ":" in name:
        raise InvalidValue("name", name, expected)
    if any(unicodedata.category(character) in ("Cc", "Cs") for character in name):
        raise InvalidValue("name", name, expected)
    return unicodedata.normalize("NFC", name)


def validate_password(password: str) -> str:
    """Return the password unchanged, or raise InvalidValue without showing it."""
    length = len(password)
    if not MIN_PASSWORD_LENGTH <= length <= MAX_PASSWORD_LENGTH:
        raise InvalidValue(
            "password",
            f"<{length} characters>",
            f"from {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
        )
    if any(unicodedata.category(character) in ("Cc", "Cs") for character in password):
        raise InvalidValue(
            "password", "<hidden>", "a password without control characters"
        )
    return password


def _to_user(row: sa.Row[tuple[object, ...]]) -> User:
    return User(
        name=str(row.name),
        sbs1=str(row.sbs1),
        is_admin=bool(row.is_admin),
        changed_at=row.changed_at,
        changed_by=str(row.changed_by),
    )


def add_user(
    db: Database,
    name: str,
    password: str,
    *,
    sbs1: str | None = None,
    admin: bool = False,
    user: str = "",
) -> User:
    """Add an administrator (``admin``) or the user of subscriber ``sbs1``.

    Exactly one of the two must be given. The subscriber must exist.
    """
    name = validate_name(name)
    if admin == (sbs1 is not None):
        raise RuleViolation(
            "a user is either an administrator or the user of one subscriber: "
            "give exactly one of admin and SBS1",
            field="SBS1",
        )
    subscriber = "" if sbs1 is None else str(fields.validate_key("SBS1", sbs1))
    password_hash = PASSWORD_HASHER.hash(validate_password(password))
    now = utcnow()

    with db.transaction() as conn:
        if subscriber:
            require_subscriber(conn, subscriber)
        exists = conn.execute(
            sa.select(schema.users.c.name).where(schema.users.c.name == name)
        ).first()
        if exists:
            raise AlreadyExists("user", "name", name)
        conn.execute(
            sa.insert(schema.users).values(
                name=name,
                password_hash=password_hash,
                sbs1=subscriber,
                is_admin=admin,
                changed_at=now,
                changed_by=user,
            )
        )

    logger.info(
        "user added",
        extra={"action": "user_add", "user_name": name, "sbs1": subscriber},
    )
    return User(name, subscriber, admin, now, user)


def set_password(db: Database, name: str, password: str, *, user: str = "") -> User:
    """Replace a user's password; cached credentials of the user stop working."""
    name = validate_name(name)
    password_hash = PASSWORD_HASHER.hash(validate_password(password))
    now = utcnow()
    table = schema.users

    with db.transaction() as conn:
        updated = conn.execute(
            sa.update(table)
            .where(table.c.name == name)
            .values(password_hash=password_hash, changed_at=now, changed_by=user)
        ).rowcount
        if not updated:
            raise NotFound("user", "name", name)
        row = conn.execute(sa.select(table).where(table.c.name == name)).one()

    logger.info(
        "password changed", extra={"action": "user_password", "user_name": name}
    )
    return _to_user(row)


def delete_user(db: Database, name: str) -> None:
    name = validate_name(name)
    table = schema.users
    with db.transaction() as conn:
        deleted = conn.execute(sa.delete(table).where(table.c.name == name)).rowcount
        if not deleted:
            raise NotFound("user", "name", name)
    logger.info("user deleted", extra={"action": "user_delete", "user_name": name})


def get_user(db: Database, name: str) -> User:
    name = validate_name(name)
    stored = find_stored_user(db, name)
    if stored is None:
        raise NotFound("user", "name", name)
    return stored.user


def list_users(db: Database) -> list[User]:
    with db.reading() as conn:
        rows = conn.execute(sa.select(schema.users).order_by(schema.users.c.name))
        return [_to_user(row) for row in rows]


def find_stored_user(db: Database, name: str) -> StoredUser | None:
    """Return the user called ``name`` with its password hash, or None."""
    table = schema.users
    with db.reading() as conn:
        row = conn.execute(sa.select(table).where(table.c.name == name)).one_or_none()
    if row is None:
        return None
    return StoredUser(_to_user(row), str(row.password_hash))


def authenticate(db: Database, name: str, password: str) -> StoredUser | None:
    """Return the user if ``password`` is its password, otherwise None.

    The check takes about as long for an unknown name as for a wrong password.
    """
    try:
        stored = find_stored_user(db, validate_name(name))
    except InvalidValue:
        stored = None
    try:
        secret = password.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if len(password) > MAX_PASSWORD_LENGTH:
        return None

    password_hash = stored.password_hash if stored else _dummy_hash()
    try:
        PASSWORD_HASHER.verify(password_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return stored

"""The errors posoutbox raises, one small hierarchy for every layer.

Storage and driver errors are translated into these at the storage boundary, so
the CLI, the HTTP API and the web console map one set of classes to exit codes,
M3 error responses and form messages.
"""

from __future__ import annotations


class PosOutboxError(Exception):
    """Base class of every error posoutbox raises on purpose."""

    #: The M3 field the error is about, or "" when it concerns no single field.
    field: str = ""
    #: A short M3-style error code, sent as ``@code`` by the API.
    code: str = "NOK"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        if field:
            self.field = field

    def __str__(self) -> str:
        return self.message


class InvalidValue(PosOutboxError):
    """A value that does not fit its field: wrong type, too long, not allowed."""

    code = "WVALUE"

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.value = value
        self.expected = expected
        super().__init__(
            f"{field}: invalid value {value!r}, expected {expected}", field=field
        )


class MissingValue(PosOutboxError):
    """A mandatory field that was not given."""

    code = "WMISSING"

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: missing value, the field is mandatory", field=field)


class UnknownField(PosOutboxError):
    """A field name that the object or transaction does not have."""

    code = "WFIELD"

    def __init__(self, field: str, allowed: tuple[str, ...] | list[str]) -> None:
        self.allowed = tuple(allowed)
        super().__init__(
            f"{field}: unknown field, expected one of {', '.join(self.allowed)}",
            field=field,
        )


class NotFound(PosOutboxError):
    """A customer, shop, subscriber or other object that does not exist."""

    code = "WNOTFOUND"

    def __init__(self, what: str, field: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key} not found", field=field)


class AlreadyExists(PosOutboxError):
    """An object that cannot be added because its key is already taken."""

    code = "WEXISTS"

    def __init__(self, what: str, field: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key} already exists", field=field)


class RuleViolation(PosOutboxError):
    """A request that is well formed but breaks a rule of the domain."""

    code = "WRULE"


class SchemaNotCurrent(PosOutboxError):
    """The database schema is missing or older than this version of posoutbox."""

    code = "WSCHEMA"


class Busy(PosOutboxError):
    """Another process holds a lock that this work needs, such as a running net
    transfer of the same subscriber."""

    code = "WBUSY"


class StorageError(PosOutboxError):
    """A database failure that is not the caller's fault (connection lost,
    disk full); the cause is kept in ``__cause__``."""

    code = "WSTORAGE"

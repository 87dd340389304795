"""Errors that only the API raises, and the HTTP status of every error.

M3's REST gateway returns validation and business errors with HTTP 200 and an
error body, so only authentication, authorisation, routing and server faults
get another status.
"""

from __future__ import annotations

from posoutbox.errors import PosOutboxError, SchemaNotCurrent, StorageError


class Unauthenticated(PosOutboxError):
    """Missing or wrong credentials."""

    code = "WAUTH"


class Forbidden(PosOutboxError):
    """A call that the authenticated user may not make."""

    code = "WDENIED"


class UnknownProgram(PosOutboxError):
    """A program the API does not serve."""

    code = "WPROGRAM"

    def __init__(self, program: str, known: list[str]) -> None:
        self.program = program
        super().__init__(
            f"program {program!r} not found, expected one of {', '.join(known)}"
        )


class UnknownTransaction(PosOutboxError):
    """A transaction that the program does not have."""

    code = "WTRANSACTION"

    def __init__(self, program: str, transaction: str, known: list[str]) -> None:
        self.transaction = transaction
        super().__init__(
            f"transaction {transaction!r} of program {program} not found, "
            f"expected one of {', '.join(known)}"
        )


class RouteNotFound(PosOutboxError):
    """A path outside the API's routes."""

    code = "WNOTFOUND"


class MethodNotAllowed(PosOutboxError):
    """An HTTP method other than GET on an API path."""

    code = "WMETHOD"


class InternalError(PosOutboxError):
    """An unexpected fault; the server logged it with the same incident id."""

    code = "WINTERNAL"


def http_status(error: PosOutboxError) -> int:
    """Return the HTTP status that goes with an error's M3 error body."""
    if isinstance(error, Unauthenticated):
        return 401
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, UnknownProgram | UnknownTransaction | RouteNotFound):
        return 404
    if isinstance(error, MethodNotAllowed):
        return 405
    if isinstance(error, StorageError | SchemaNotCurrent):
        return 503
    if isinstance(error, InternalError):
        return 500
    return 200

"""The FastAPI application: M3 REST routes, health, error handling and access log.

Every request gets an M3 response. A PosOutboxError becomes an error body with
the status that ``errors.http_status`` gives it. Any other exception is logged
with an incident id, and the response is a generic error without a stack trace.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posoutbox import metrics, web
from posoutbox.api import auth, render
from posoutbox.api.errors import (
    InternalError,
    MethodNotAllowed,
    RouteNotFound,
    UnknownProgram,
    UnknownTransaction,
    http_status,
)
from posoutbox.api.request import (
    Format,
    parse_query,
    response_format,
    split_matrix,
    split_parameters,
)
from posoutbox.api.settings import DEFAULT_COMPANY, DEFAULT_MAX_RECORDS, Settings
from posoutbox.api.transactions import PROGRAMS, Call, Program, Transaction
from posoutbox.db.storage import Database, open_database, redact_url
from posoutbox.errors import InvalidValue, PosOutboxError, SchemaNotCurrent
from posoutbox.users import User

logger = logging.getLogger(__name__)

PREFIX = "/m3api-rest"


def create_app(
    database_url: str,
    *,
    max_records: int = DEFAULT_MAX_RECORDS,
    company: int = DEFAULT_COMPANY,
    cache: auth.CredentialCache | None = None,
) -> FastAPI:
    """Create the API application for one database.

    ``max_records`` bounds the records of any list call, whatever maxrecs the
    client asks for, and ``company`` is the only CONO accepted.
    """
    settings = Settings(database_url, max_records, company)
    db = open_database(database_url)
    authenticator = auth.Authenticator(db, cache)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info(
            "API started",
            extra={
                "action": "api_start",
                "database": redact_url(database_url),
                "max_records": max_records,
                "company": company,
            },
        )
        try:
            yield
        finally:
            db.close()
            logger.info("API stopped", extra={"action": "api_stop"})

    app = FastAPI(
        title="posoutbox M3 API",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.authenticator = authenticator
    _add_routes(app, db, settings, authenticator)
    app.include_router(web.router)
    _add_error_handlers(app)
    app.add_middleware(AccessLogMiddleware)
    return app


def create_app_from_environment() -> FastAPI:
    """Create the application from the variables ``posoutbox serve`` sets.

    Uvicorn imports this factory by name in each worker process, because
    worker processes cannot receive an application object.
    """
    settings = Settings.from_environment()
    app = create_app(
        settings.database_url,
        max_records=settings.max_records,
        company=settings.company,
    )
    freeze_startup_objects()
    return app


def freeze_startup_objects() -> None:
    """Exclude the objects that exist now from later full garbage collections.

    A full collection walks every tracked object, and about 100,000 exist after
    start-up. Walking them stalled the worker process, requests included, for
    about 50 ms on the 2-core benchmark machine (Python 3.11), measured once per
    300 to 600 exports. Objects made after start-up are still collected.
    """
    gc.collect()
    gc.freeze()
    logger.debug(
        "froze %d start-up objects",
        gc.get_freeze_count(),
        extra={"action": "api_gc_freeze"},
    )


def _add_routes(
    app: FastAPI, db: Database, settings: Settings, authenticator: auth.Authenticator
) -> None:
    def execute(request: Request, program: str, transaction: str) -> Response:
        output = response_format(request.headers.get("accept"))
        return _guarded(
            request,
            output,
            lambda: _execute(
                request, db, settings, authenticator, program, transaction
            ),
        )

    def metadata(request: Request) -> Response:
        output = response_format(request.headers.get("accept"))

        def run() -> Response:
            _authenticate(request, authenticator)
            return render.render_program_list(PROGRAMS.values(), output)

        return _guarded(request, output, run)

    def program_metadata(request: Request, program: str) -> Response:
        output = response_format(request.headers.get("accept"))

        def run() -> Response:
            _authenticate(request, authenticator)
            name, _ = split_matrix(program)
            request.state.program = name
            return render.render_program(find_program(name), output)

        return _guarded(request, output, run)

    def health() -> Response:
        return _health(db)

    app.add_api_route(f"{PREFIX}/execute/{{program}}/{{transaction}}", execute)
    app.add_api_route(f"{PREFIX}/v2/execute/{{program}}/{{transaction}}", execute)
    app.add_api_route(f"{PREFIX}/metadata", metadata)
    app.add_api_route(f"{PREFIX}/metadata/{{program}}", program_metadata)
    app.add_api_route("/health", health)


def _guarded(request: Request, output: Format, run: Callable[[], Response]) -> Response:
    """Run an endpoint body, turning every exception into an M3 error response.

    The error code goes into the request state, so that the access log line
    shows it also for errors returned with HTTP 200.
    """
    try:
        return run()
    except PosOutboxError as error:
        request.state.error = error.code
        return render.render_error(error, output, http_status(error))
    except Exception:
        request.state.error = InternalError.code
        return _internal_error(output)


def _internal_error(output: Format) -> Response:
    incident = uuid.uuid4().hex[:12]
    logger.exception(
        "request failed, incident %s",
        incident,
        extra={"action": "api_error", "incident": incident},
    )
    error = InternalError(
        f"internal error, logged as incident {incident}; the call may be repeated"
    )
    return render.render_error(error, output, http_status(error))


def _authenticate(request: Request, authenticator: auth.Authenticator) -> User:
    user = authenticator.authenticate(request.headers.get("authorization"))
    request.state.user = user.name
    return user


def find_program(name: str) -> Program:
    """Return the program called ``name`` in any case, or raise UnknownProgram."""
    for program in PROGRAMS.values():
        if program.name.lower() == name.lower():
            return program
    raise UnknownProgram(name, sorted(PROGRAMS))


def find_transaction(program_name: str, name: str) -> Transaction:
    """Return a program's transaction, matching names in any case, or raise
    UnknownProgram or UnknownTransaction."""
    program = find_program(program_name)
    for transaction in program.transactions.values():
        if transaction.name.lower() == name.lower():
            return transaction
    raise UnknownTransaction(program.name, name, list(program.transactions))


def _execute(
    request: Request,
    db: Database,
    settings: Settings,
    authenticator: auth.Authenticator,
    program: str,
    transaction: str,
) -> Response:
    output = response_format(request.headers.get("accept"))
    user = _authenticate(request, authenticator)

    program_name, program_matrix = split_matrix(program)
    transaction_name, transaction_matrix = split_matrix(transaction)
    request.state.program = program_name
    request.state.transaction = transaction_name
    found = find_transaction(program_name, transaction_name)
    request.state.program, request.state.transaction = found.program, found.name
    auth.authorize_transaction(user, found)

    query = parse_query(request.scope.get("query_string", b""))
    parameters = split_parameters([*program_matrix, *transaction_matrix, *query])
    options = parameters.options
    values = found.parse_inputs(parameters.inputs, company=settings.company)
    auth.authorize_values(user, found, values)
    columns = _columns(found, options.returncols)

    call = Call(db, values, user.name, options.record_limit(settings.max_records))
    rows = found.handler(call)
    return render.render_result(
        found,
        columns,
        rows,
        output,
        metadata=options.metadata,
        exclude_empty=options.excludeempty,
    )


def _columns(transaction: Transaction, returncols: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(returncols)
    if not wanted:
        return transaction.outputs
    unknown = [name for name in wanted if name not in transaction.outputs]
    if unknown:
        allowed = ", ".join(transaction.outputs) or "none"
        raise InvalidValue(
            "returncols",
            ",".join(wanted),
            f"output fields of {transaction.program} {transaction.name}: {allowed}",
        )
    return wanted


def _health(db: Database) -> Response:
    try:
        db.check_schema()
    except SchemaNotCurrent as error:
        return JSONResponse({"status": "unavailable", "reason": error.message}, 503)
    except Exception as error:
        reason = f"database {redact_url(db.url)} is unreachable: {error}"
        logger.warning(
            "health check failed: %s", reason, extra={"action": "api_health"}
        )
        return JSONResponse({"status": "unavailable", "reason": reason}, 503)
    return JSONResponse({"status": "ok"})


def _add_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        output = response_format(request.headers.get("accept"))
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        error: PosOutboxError
        if status == 405:
            error = MethodNotAllowed(
                f"method {request.method} not allowed on {request.url.path}: "
                "the API accepts GET only"
            )
        elif status == 404:
            error = RouteNotFound(
                f"path {request.url.path} not found: expected {PREFIX}/execute/"
                f"PROGRAM/TRANSACTION, {PREFIX}/metadata or /health"
            )
        else:
            error = PosOutboxError(f"HTTP error {status}")
        return render.render_error(error, output, status)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        return _internal_error(response_format(request.headers.get("accept")))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


class AccessLogMiddleware:
    """Logs one line per HTTP request: method, path, program, transaction, user,
    status and duration. Never the query string or any header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            _log_request(scope, state, status, time.perf_counter() - started)


def _log_request(
    scope: Scope, state: dict[str, Any], status: int, seconds: float
) -> None:
    # Percent-encoding keeps a path with line breaks or quotes on one log line.
    entry = {
        "method": scope.get("method", ""),
        "path": quote(scope.get("path", ""), safe="/;=,:@!$()*+-._~"),
        "program": quote(str(state.get("program", "")), safe=""),
        "transaction": quote(str(state.get("transaction", "")), safe=""),
        "user": quote(str(state.get("user", "")), safe=""),
        "status": status,
        "error": str(state.get("error", "")),
        "duration_ms": round(seconds * 1000, 1),
    }
    logger.info(
        " ".join(f"{key}={value or '-'}" for key, value in entry.items()),
        extra={"action": "api_request", **entry},
    )
    metrics.count_api_request(scope.get("path", ""), state, status)

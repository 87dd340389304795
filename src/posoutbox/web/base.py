"""The parts every console page shares: sign-in, CSRF checks, templates, flash
messages and the error pages.

The console signs users in with the API's own Authenticator (HTTP Basic, the
same users and credential cache), and admits administrators only.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode

import jinja2
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from posoutbox import users
from posoutbox.api.auth import Authenticator
from posoutbox.api.errors import Forbidden, Unauthenticated
from posoutbox.db.storage import Database
from posoutbox.errors import (
    NotFound,
    PosOutboxError,
    SchemaNotCurrent,
    StorageError,
)
from posoutbox.web import csrf
from posoutbox.web.jobs import TransferJobs
from posoutbox.web.settings import ConsoleSettings

logger = logging.getLogger(__name__)

#: The realm of the API's own challenge, so a browser signed in to one part
#: of the server is not asked again for the other.
REALM = "m3api-rest"

FLASH_COOKIE = "posoutbox_flash"

#: Headers of every console page: only the console's own scripts, styles and
#: forms, no framing, and no caching of pages that carry data and a CSRF token.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["age"] = format_age
    environment.filters["timestamp"] = format_timestamp
    environment.filters["subscriber_options"] = subscriber_options
    environment.globals["urlencode"] = urlencode
    return environment


def format_age(seconds: int | float | None) -> str:
    """Return an age such as "3 min" or "2 d 4 h", or "-" for none."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"


def subscriber_options(subscribers: Sequence[Any]) -> list[tuple[str, str]]:
    """Return (SBS1, label) pairs of subscribers for a select control."""
    return [(item.sbs1, f"{item.sbs1} {item.name}".strip()) for item in subscribers]


def format_timestamp(moment: Any) -> str:
    if moment is None:
        return "-"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


@dataclass
class Console:
    """The console's state in one server process, kept in ``app.state.console``."""

    db: Database
    authenticator: Authenticator
    settings: ConsoleSettings
    jobs: TransferJobs
    templates: jinja2.Environment = field(default_factory=_environment)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


@dataclass(frozen=True)
class Session:
    """The signed-in administrator of one request."""

    request: Request
    console: Console
    user: str
    password_hash: str

    @property
    def db(self) -> Database:
        return self.console.db

    def csrf_token(self) -> str:
        return csrf.issue(self.user, self.password_hash)


class NotAdmin(Forbidden):
    """A user who may call the API but not use the console."""


class CsrfRejected(Forbidden):
    """A POST without a valid token of the console's own pages."""


def sign_in(request: Request) -> Session:
    """Authenticate the request's Basic credentials as an administrator."""
    console = console_of(request)
    user = console.authenticator.authenticate(request.headers.get("authorization"))
    if not user.is_admin:
        raise NotAdmin(
            f"user {user.name} is the user of subscriber {user.sbs1}: the console "
            "is for administrators only"
        )
    stored = users.find_stored_user(console.db, user.name)
    if stored is None:
        raise Unauthenticated("invalid user name or password")
    request.state.user = user.name
    return Session(request, console, user.name, stored.password_hash)


async def read_form(request: Request) -> FormData:
    return await request.form()


@dataclass(frozen=True)
class Posted:
    """A POST whose CSRF token was checked: the session and the form."""

    session: Session
    form: FormData

    def text(self, name: str) -> str:
        value = self.form.get(name, "")
        return value if isinstance(value, str) else ""

    def texts(self, name: str) -> list[str]:
        return [value for value in self.form.getlist(name) if isinstance(value, str)]

    def flag(self, name: str) -> bool:
        return self.text(name) in ("1", "on", "yes", "true")


SignedIn = Annotated[Session, Depends(sign_in)]


def post(session: SignedIn, form: Annotated[FormData, Depends(read_form)]) -> Posted:
    token = form.get(csrf.FIELD_NAME, "")
    if not isinstance(token, str) or not csrf.is_valid(
        token, session.user, session.password_hash
    ):
        raise CsrfRejected(
            "the form has expired or was not sent by a console page: reload the "
            "page and submit the form again"
        )
    return Posted(session, form)


PostedForm = Annotated[Posted, Depends(post)]


# Rendering


def render(
    session: Session,
    template: str,
    *,
    status: int = 200,
    active: str = "",
    fragment: bool = False,
    **context: Any,
) -> HTMLResponse:
    """Render a page for the signed-in user, with its flash message if any.

    A ``fragment`` (part of a page that a script fetches) leaves the flash
    message for the page it belongs to.
    """
    request = session.request
    flash = None if fragment else _read_flash(request)
    html = session.console.templates.get_template(template).render(
        user=session.user,
        csrf_token=session.csrf_token(),
        csrf_field=csrf.FIELD_NAME,
        active=active,
        flash=flash,
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect(url: str, message: str = "", *, kind: str = "success") -> Response:
    """Redirect after a successful POST, with a message for the next page."""
    response = RedirectResponse(url, status_code=303)
    if message:
        value = quote(json.dumps({"text": message, "kind": kind}))
        response.set_cookie(
            FLASH_COOKIE, value, path="/", httponly=True, samesite="strict"
        )
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    kind = value.get("kind") if value.get("kind") in ("success", "warning") else ""
    return {"text": str(value.get("text", "")), "kind": kind or "success"}


def url(path: str, **params: object) -> str:
    """Return ``path`` with the non-empty parameters as its query string."""
    query = {
        name: str(value) for name, value in params.items() if value not in ("", None)
    }
    return f"{path}?{urlencode(query)}" if query else path


def field_errors(errors: Sequence[PosOutboxError]) -> dict[str, str]:
    """Key error messages by the field they concern ("" for none), first one kept."""
    found: dict[str, str] = {}
    for error in errors:
        found.setdefault(error.field, error.message)
    return found


# Error pages


def _error_page(
    request: Request, status: int, title: str, message: str
) -> HTMLResponse:
    console: Console | None = getattr(request.app.state, "console", None)
    environment = console.templates if console else _environment()
    html = environment.get_template("error.html").render(
        title=title, message=message, status=status
    )
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
    return response


def error_response(request: Request, error: Exception) -> Response:
    """Return the HTML error page for an exception that a page did not handle."""
    if isinstance(error, Unauthenticated):
        return _error_page(request, 401, "Sign-in required", error.message)
    if isinstance(error, Forbidden):
        return _error_page(request, 403, "Not allowed", error.message)
    if isinstance(error, NotFound):
        return _error_page(request, 404, "Not found", error.message)
    if isinstance(error, StorageError | SchemaNotCurrent):
        return _error_page(request, 503, "Database unavailable", error.message)
    if isinstance(error, PosOutboxError):
        return _error_page(request, 400, "Request rejected", error.message)
    if isinstance(error, RequestValidationError):
        return _error_page(
            request, 400, "Request rejected", "invalid or missing request parameters"
        )
    incident = uuid.uuid4().hex[:12]
    logger.exception(
        "console request failed, incident %s",
        incident,
        exc_info=error,
        extra={"action": "console_error", "incident": incident},
    )
    return _error_page(
        request,
        500,
        "Internal error",
        f"internal error, logged as incident {incident}; the action may be repeated",
    )


class ConsoleRoute(APIRoute):
    """A route whose errors become HTML pages, not the API's M3 error bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:
                return error_response(request, error)

        return handle


def form_values(form: FormData, names: Sequence[str]) -> dict[str, str]:
    """Return the form's text values of ``names``; absent names are left out."""
    values: dict[str, str] = {}
    for name in names:
        value = form.get(name)
        if isinstance(value, str):
            values[name] = value
    return values


def changed_values(
    submitted: Mapping[str, str], shown: Mapping[str, object]
) -> dict[str, str]:
    """Return the submitted values that differ from those the form showed.

    Only those are sent to the service, so that a field someone else changed
    since the page was loaded is not overwritten with the old value.
    """
    return {
        name: value
        for name, value in submitted.items()
        if value.rstrip(" ") != str(shown.get(name, "")).rstrip(" ")
    }

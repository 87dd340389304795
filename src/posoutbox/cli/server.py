"""The ``serve`` command, which runs the M3 REST API, and the ``user`` commands,
which manage who may call it."""

from __future__ import annotations

import os
import socket
import sys
from typing import Annotated, Any

import typer
import uvicorn
from uvicorn.supervisors import Multiprocess

from posoutbox import users
from posoutbox.api.settings import DEFAULT_COMPANY, DEFAULT_MAX_RECORDS, Settings
from posoutbox.cli import common
from posoutbox.db.storage import redact_url
from posoutbox.errors import InvalidValue
from posoutbox.web import options as console

app = typer.Typer()
user_app = typer.Typer(
    name="user",
    help="Add, list and delete API users and set their passwords.",
)

# The import string of the application factory that every worker process calls.
APP_FACTORY = "posoutbox.api.app:create_app_from_environment"

#: The exit status of a server that could not start, as uvicorn's own.
STARTUP_FAILURE = 3

#: Seconds a worker process may take to respond to its supervisor's health check
#: before it is killed and replaced. uvicorn's default of 5 s killed workers
#: that were still importing on a 2-core machine with a load average of 8.
WORKER_HEALTH_CHECK_SECONDS = 30


@app.command("serve")
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port to listen on.")
    ] = 8080,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Number of worker processes.")
    ] = 1,
    max_records: Annotated[
        int,
        typer.Option(
            "--max-records",
            min=1,
            metavar="N",
            help="Ceiling on the records one list call returns, also for maxrecs=0 "
            "and larger maxrecs values.",
        ),
    ] = DEFAULT_MAX_RECORDS,
    company: Annotated[
        int,
        typer.Option(
            "--company",
            min=1,
            max=999,
            help="Company (CONO) served; calls naming another one are rejected.",
        ),
    ] = DEFAULT_COMPANY,
    metrics_public: console.MetricsPublicOption = False,
    sample_seconds: console.SampleSecondsOption = console.DEFAULT_SAMPLE_SECONDS,
) -> None:
    """Run the M3-compatible REST API (OPS600MI, CRS610MI, CRS612MI, OIS002MI).

    Clients authenticate with HTTP Basic as users made with 'posoutbox user add'.
    GET /health reports whether the database is reachable and its schema current.
    """
    settings = Settings(common.options().database_url, max_records, company)
    with common.open_db():
        pass

    # Worker processes build the application from these variables, because
    # uvicorn can hand them only an import string, not an application object.
    os.environ.update(settings.to_environment())
    common.note(
        f"serving {redact_url(settings.database_url)} on http://{host}:{port} "
        f"with {workers} worker(s)"
    )
    config = TcpConfig(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_worker_healthcheck=WORKER_HEALTH_CHECK_SECONDS,
        access_log=False,
        log_config=log_config(common.options().verbose),
    )
    server = uvicorn.Server(config)
    if workers > 1:
        Multiprocess(config, target=server.run, sockets=[config.bind_socket()]).run()
        return
    server.run()
    if not server.started:
        raise typer.Exit(STARTUP_FAILURE)


class TcpConfig(uvicorn.Config):
    """uvicorn's settings, with a listening socket whose protocol is TCP.

    With several workers, uvicorn binds the shared socket itself and creates it
    with protocol 0. asyncio then leaves TCP_NODELAY off on every connection it
    accepts, because it sets the option only on sockets whose protocol is TCP,
    and each response body waits for the client's delayed acknowledgement of
    the headers: about 40 ms per call on Linux. One worker binds through
    asyncio, which creates its sockets with protocol TCP.
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return sock
        tcp = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, sock.detach())
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tcp.set_inheritable(True)
        return tcp


def log_config(verbose: bool) -> dict[str, Any]:
    """Return the logging set-up that uvicorn applies in every worker process:
    one line per request from posoutbox, uvicorn's start and stop messages."""
    level = "DEBUG" if verbose else "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "line": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "posoutbox": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "sqlalchemy": {"level": "WARNING"},
        },
    }


NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="User name.")]
PasswordEnvOption = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        metavar="VAR",
        help="Read the password from environment variable VAR instead of asking "
        "for it.",
    ),
]


def read_password(variable: str | None) -> str:
    """Return the password from environment variable ``variable``, or ask for it
    twice on the terminal without showing it."""
    if variable is not None:
        value = os.environ.get(variable, "")
        if not value:
            raise InvalidValue(
                "--password-env", variable, "an environment variable that is set"
            )
        return value
    if not sys.stdin.isatty():
        raise InvalidValue(
            "password",
            "<standard input>",
            "a terminal to ask on; without one, use --password-env VAR",
        )
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@user_app.command("add")
def add_user(
    name: NameArgument,
    subscriber: Annotated[
        str | None,
        typer.Option(
            "--subscriber",
            metavar="SBS1",
            help="Make the user of this subscriber: it may only list and confirm "
            "the subscriber's records.",
        ),
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="Make an administrator: it may call all.")
    ] = False,
    password_env: PasswordEnvOption = None,
) -> None:
    """Add an API user, either --admin or --subscriber SBS1."""
    if admin == (subscriber is not None):
        raise typer.BadParameter("give exactly one of --subscriber SBS1 and --admin")
    users.validate_name(name)
    password = read_password(password_env)
    with common.open_db() as db:
        user = users.add_user(
            db,
            name,
            password,
            sbs1=subscriber,
            admin=admin,
            user=common.cli_user(),
        )
    role = "administrator" if user.is_admin else f"user of subscriber {user.sbs1}"
    common.echo(f"user {user.name} added as {role}")


@user_app.command("password")
def set_password(name: NameArgument, password_env: PasswordEnvOption = None) -> None:
    """Set a user's password; the old one stops working at once."""
    users.validate_name(name)
    password = read_password(password_env)
    with common.open_db() as db:
        users.set_password(db, name, password, user=common.cli_user())
    common.echo(f"password of user {name} changed")


@user_app.command("delete")
def delete_user(name: NameArgument) -> None:
    """Delete a user; its credentials stop working at once."""
    with common.open_db() as db:
        users.delete_user(db, name)
    common.echo(f"user {name} deleted")


@user_app.command("list")
def list_users(as_json: common.JsonOption = False) -> None:
    """List the users with their role and subscriber."""
    with common.open_db() as db:
        found = users.list_users(db)
    if as_json:
        common.print_json([user.as_fields() for user in found])
        return
    table = common.new_table("Name", "Role", "SBS1", "Changed at", "Changed by")
    for user in found:
        values = user.as_fields()
        common.add_row(
            table,
            values["name"],
            values["role"],
            values["SBS1"],
            values["changed_at"],
            values["changed_by"],
        )
    common.print_table(table)

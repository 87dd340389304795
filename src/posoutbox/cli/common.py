"""Helpers shared by the command modules: global options, database access, output
and the mapping of errors to one line on stderr and an exit code.

A command module defines a ``typer.Typer`` named ``app`` and is registered with one
line in ``posoutbox.cli.app``. Its commands open the database with `open_db`, take
``--json`` through `JsonOption`, print data to stdout with `print_json`,
`print_table` or `echo`, and messages to stderr with `note` and `warn`. They raise
PosOutboxError for every failure and leave reporting it to `run_command`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import click
import sqlalchemy as sa
import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from posoutbox import fields
from posoutbox.db.storage import (
    DEFAULT_URL,
    Database,
    SQLiteDatabase,
    open_database,
    redact_url,
)
from posoutbox.errors import Busy, InvalidValue, PosOutboxError, SchemaNotCurrent
from posoutbox.fields import Value

DATABASE_URL_VARIABLE = "POSOUTBOX_DATABASE_URL"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
#: EX_TEMPFAIL of sysexits.h: another process holds the lock, try again later.
EXIT_BUSY = 75
EXIT_INTERRUPTED = 130

#: Width of tables written to a pipe or file, where Rich would otherwise fold
#: every table at 80 columns.
PIPE_WIDTH = 200

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON to stdout: values are strings as the M3 API returns "
        "them, except lists.",
    ),
]


@dataclass
class GlobalOptions:
    """The options given before the command name."""

    database_url: str = DEFAULT_URL
    verbose: bool = False


_options = GlobalOptions()
_log_handlers: list[logging.Handler] = []


def configure(database_url: str, verbose: bool) -> None:
    """Store the global options and set up logging to stderr.

    Without ``verbose`` only warnings and errors are logged. With it, posoutbox
    logs at DEBUG and other libraries at INFO, except SQLAlchemy, which would
    log every SQL statement.
    """
    _options.database_url = database_url
    _options.verbose = verbose

    root = logging.getLogger()
    # Replace only the handler of an earlier call, for callers that run several
    # commands in one process.
    for handler in _log_handlers:
        root.removeHandler(handler)
    _log_handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ExtraFormatter())
    _log_handlers.append(handler)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("posoutbox").setLevel(
        logging.DEBUG if verbose else logging.WARNING
    )
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)


def options() -> GlobalOptions:
    """Return the global options of this process."""
    return _options


class _ExtraFormatter(logging.Formatter):
    """Formats a log line with the ``extra`` values (action, ids) appended."""

    _standard = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
        "message",
        "asctime",
        "taskName",
    }

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extra = {
            key: value
            for key, value in record.__dict__.items()
            if key not in self._standard
        }
        if not extra:
            return line
        pairs = " ".join(f"{key}={value}" for key, value in extra.items())
        return f"{line} [{pairs}]"


def cli_user() -> str:
    """Return the name recorded as ``changed_by`` for changes made here."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        # No login name and no passwd entry, as in some containers.
        name = str(os.getuid())
    return f"cli:{name}"[:64]


# Database


@contextlib.contextmanager
def open_db(*, check_schema: bool = True) -> Iterator[Database]:
    """Open the database of ``--database-url`` for one command and close it after.

    With ``check_schema`` (every command except the ones that create the schema)
    raises SchemaNotCurrent, telling to run ``posoutbox db upgrade``, unless the
    schema is at the newest migration.
    """
    db = open_database(_options.database_url)
    try:
        if check_schema:
            ensure_schema(db)
        yield db
    finally:
        db.close()


def ensure_schema(db: Database) -> None:
    """Raise SchemaNotCurrent unless the schema is current, without creating a
    missing SQLite file as a side effect."""
    if isinstance(db, SQLiteDatabase) and missing_sqlite_file(db):
        raise SchemaNotCurrent(
            f"database file {db.path} does not exist: "
            "run 'posoutbox db upgrade' to create it"
        )
    db.check_schema()


def missing_sqlite_file(db: Database) -> bool:
    """Tell whether ``db`` is an SQLite file that does not exist yet."""
    return (
        isinstance(db, SQLiteDatabase) and db.path is not None and not db.path.exists()
    )


# Input


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """Parse ``FIELD=VALUE`` arguments into values keyed by upper-case field name.

    The value is everything after the first ``=``, so it may contain ``=`` itself
    and may be empty (blank text, or 0 for a number). Raises InvalidValue for an
    argument without ``=`` or without a field name, and for a field given twice.
    Unknown field names are left to the service, which checks them against the
    fields it accepts.
    """
    values: dict[str, str] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        name = name.strip().upper()
        if not separator or not name:
            raise InvalidValue(
                "argument",
                pair,
                "FIELD=VALUE with an M3 field name, such as CUNM=Alfreds",
            )
        if name in values:
            raise InvalidValue(name, pair, f"each field once, {name} is given twice")
        values[name] = value
    return values


# Output


def api_values(values: Mapping[str, Value]) -> dict[str, str]:
    """Return stored values as the M3 API sends them: every value a string."""
    return {name: fields.to_api(name, value) for name, value in values.items()}


def print_json(value: object) -> None:
    """Print a JSON document to stdout, UTF-8 text kept as it is."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def print_json_array(items: Iterable[object]) -> None:
    """Print a JSON array to stdout while ``items`` is still being read, so that a
    long listing never has to fit in memory."""
    write = sys.stdout.write
    write("[")
    separator = "\n"
    for item in items:
        text = json.dumps(item, ensure_ascii=False, indent=2)
        write(separator + "  " + text.replace("\n", "\n  "))
        separator = ",\n"
    write("\n]\n" if separator != "\n" else "]\n")
    sys.stdout.flush()


def echo(text: str) -> None:
    """Print a line of data or a command's result to stdout."""
    print(text, flush=True)


def note(text: str) -> None:
    """Print a message for the operator to stderr."""
    print(text, file=sys.stderr, flush=True)


def warn(text: str) -> None:
    """Print a warning to stderr."""
    note(f"warning: {text}")


_consoles: dict[str, Console] = {}


def stdout_console() -> Console:
    """Return the Rich console for tables on stdout."""
    if "stdout" not in _consoles:
        width = None
        if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
            width = PIPE_WIDTH
        _consoles["stdout"] = Console(width=width, highlight=False, soft_wrap=False)
    return _consoles["stdout"]


def stderr_console() -> Console:
    """Return the Rich console for progress bars on stderr."""
    if "stderr" not in _consoles:
        _consoles["stderr"] = Console(stderr=True, highlight=False)
    return _consoles["stderr"]


def new_table(*columns: str, title: str | None = None) -> Table:
    """Return an empty table with the given column headers."""
    table = Table(title=title, box=box.SIMPLE_HEAD, highlight=False)
    for column in columns:
        table.add_column(column)
    return table


def add_row(table: Table, *cells: object) -> None:
    """Add a row, showing every cell as plain text so that brackets in customer
    data are never read as Rich markup."""
    table.add_row(*(Text(cell_text(cell)) for cell in cells))


def cell_text(cell: object) -> str:
    """Return the text of a table cell: lists joined by commas, None blank, and
    characters that a terminal would act on (such as line breaks and escape
    sequences in a rejected import value) written as Python escapes."""
    if cell is None:
        return ""
    if isinstance(cell, list | tuple | set | frozenset):
        text = ", ".join(str(item) for item in cell)
    else:
        text = str(cell)
    if text.isprintable():
        return text
    return "".join(
        character if character.isprintable() else repr(character)[1:-1]
        for character in text
    )


def print_table(table: Table) -> None:
    """Print a table to stdout."""
    stdout_console().print(table)


def key_value_table(values: Mapping[str, object], *, title: str | None = None) -> Table:
    """Return a table of field names with their descriptions and values."""
    table = new_table("Field", "Description", "Value", title=title)
    for name, value in values.items():
        field = fields.FIELDS.get(name)
        add_row(table, name, field.description if field else "", value)
    return table


def progress_bar() -> Progress:
    """Return a progress bar on stderr, drawn only when stderr is a terminal."""
    console = stderr_console()
    if not console.is_terminal:
        # Rich writes a line break when even a disabled bar stops, which would
        # precede the one error line in logs and pipes.
        return Progress(console=Console(quiet=True), disable=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


# Errors


def one_line(text: str) -> str:
    """Join a multi-line message, such as a driver error, into one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def report_error(text: str, error: BaseException | None = None) -> None:
    """Print ``error: TEXT`` on stderr, after the traceback when ``--verbose``."""
    if error is not None and _options.verbose:
        traceback.print_exception(error, file=sys.stderr)
    note(f"error: {one_line(text)}")


def run_command(command: click.Command, args: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code, reporting every failure as one line.

    PosOutboxError exits 1 (Busy exits 75, so a scheduler can tell "try again
    later"), a usage error 2, an interrupt 130. Tracebacks are printed only with
    ``--verbose``.
    """
    try:
        result: Any = command.main(
            args=args, prog_name="posoutbox", standalone_mode=False
        )
    except click.exceptions.NoArgsIsHelpError as error:
        # Typer's Rich help prints itself to stdout and returns no text.
        help_text = error.ctx.get_help() if error.ctx else error.format_message()
        if help_text:
            echo(help_text)
        return EXIT_USAGE
    except click.UsageError as error:
        hint = ""
        if error.ctx is not None:
            hint = f" (see '{error.ctx.command_path} --help')"
        report_error(error.format_message() + hint)
        return EXIT_USAGE
    except click.ClickException as error:
        report_error(error.format_message(), error)
        return error.exit_code
    except click.Abort as error:
        report_error("interrupted", error)
        return EXIT_INTERRUPTED
    except Busy as error:
        report_error(error.message, error)
        return EXIT_BUSY
    except PosOutboxError as error:
        report_error(error.message, error)
        return EXIT_ERROR
    except sa.exc.SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        report_error(
            f"database {redact_url(_options.database_url)} failed: {cause}", error
        )
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader of stdout went away (``posoutbox ... | head``): stop quietly,
        # with stdout pointing nowhere so that the final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as error:
        report_error(str(error), error)
        return EXIT_ERROR
    except Exception as error:
        report_error(
            f"unexpected {type(error).__name__}: {error}"
            + ("" if _options.verbose else " (run with --verbose for the traceback)"),
            error,
        )
        return EXIT_ERROR
    return result if isinstance(result, int) else EXIT_OK

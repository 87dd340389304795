"""The ``pos-agent`` commands: run the reference POS side against an OPS600MI
server, and show what its local store holds."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.status import Status
from rich.text import Text

from posoutbox import fields
from posoutbox.agent.client import FORMATS, JSON, M3Client, RetryPolicy
from posoutbox.agent.runner import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_RECORDS,
    Agent,
    BatchResult,
    FaultInjection,
    Totals,
)
from posoutbox.agent.store import Store, StoredCustomer, open_store
from posoutbox.cli import common
from posoutbox.errors import InvalidValue, MissingValue, NotFound

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="pos-agent",
    help="The reference POS side: poll a subscriber's records with OPS600MI LstCus, "
    "apply them to a local store and confirm them with CnfCus.",
    no_args_is_help=True,
)

#: Columns of ``pos-agent show`` for a whole shop.
LIST_COLUMNS = ("CUNO", "CUNM", "TOWN", "CSCD", "CUCL", "STAT", "LMDT")

StoreOption = Annotated[
    Path,
    typer.Option(
        "--store",
        help="The agent's SQLite store file, created on first use.",
        dir_okay=False,
    ),
]


@app.command("run")
def run(
    url: Annotated[
        str,
        typer.Option(
            "--url",
            help="Base URL of the M3 API server, such as http://127.0.0.1:8080.",
        ),
    ],
    subscriber: Annotated[
        str, typer.Option("--subscriber", help="Subscriber (SBS1) to poll.")
    ],
    user: Annotated[str, typer.Option("--user", help="API user name.")],
    password_env: Annotated[
        str,
        typer.Option(
            "--password-env",
            metavar="VARIABLE",
            help="Name of the environment variable that contains the password.",
        ),
    ],
    store: StoreOption,
    maxrecs: Annotated[
        int,
        typer.Option(
            "--max",
            min=0,
            help="Records per LstCus call (maxrecs); 0 lets the server apply its "
            "own limit.",
        ),
    ] = DEFAULT_MAX_RECORDS,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            min=0.0,
            help="Seconds to wait between polls once nothing is left to confirm.",
        ),
    ] = DEFAULT_INTERVAL,
    once: Annotated[
        bool,
        typer.Option("--once", help="Exit once nothing is left to confirm."),
    ] = False,
    response_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="Response format to request: json or xml.",
            case_sensitive=False,
        ),
    ] = JSON,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds to wait for each response."),
    ] = 60.0,
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts",
            min=0,
            help="Attempts per call on network errors and HTTP 5xx before giving "
            "up; 0 retries without limit.",
        ),
    ] = 0,
    retry_delay: Annotated[
        float,
        typer.Option(
            "--retry-delay",
            min=0.0,
            help="Seconds before the first retry; each further retry waits twice "
            "as long, at most 60 s, with random jitter.",
        ),
    ] = 1.0,
) -> None:
    """Poll LstCus, apply each batch to the store, commit, then confirm with CnfCus.

    Repeats until nothing is left to confirm, then waits --interval seconds and
    polls again, until SIGTERM or Ctrl-C (or, with --once, until drained).
    """
    sbs1 = str(fields.validate_key("SBS1", subscriber))
    response_format = response_format.lower()
    if response_format not in FORMATS:
        raise InvalidValue("--format", response_format, "json or xml")
    password = _read_password(password_env, user)
    fault = FaultInjection.from_environment()
    _log_agent_events()

    stop = threading.Event()
    console = common.stderr_console()
    retry = RetryPolicy(initial_delay=retry_delay, max_attempts=max_attempts)
    with (
        _stop_on_signals(stop),
        open_store(store) as local_store,
        local_store.exclusive(),
        M3Client(
            url,
            user,
            password,
            response_format=response_format,
            timeout=timeout,
            retry=retry,
            stop=stop,
        ) as client,
        _progress_line(console, sbs1) as show_progress,
    ):
        agent = Agent(
            client,
            local_store,
            sbs1,
            maxrecs=maxrecs,
            stop=stop,
            on_batch=show_progress,
            fault=fault,
        )
        logger.info(
            "pos-agent started for subscriber %s at %s, store %s",
            sbs1,
            client.shown_url,
            store,
            extra={
                "action": "agent_start",
                "sbs1": sbs1,
                "url": client.shown_url,
                "user": user,
                "store": str(store),
            },
        )
        totals = agent.run(interval=interval, once=once)
    logger.info(
        "pos-agent stopped after %d batches, %d records applied",
        totals.batches,
        totals.applied,
        extra={
            "action": "agent_stop",
            "sbs1": sbs1,
            "batches": totals.batches,
            "applied": totals.applied,
        },
    )


def _read_password(variable: str, user: str) -> str:
    name = variable.strip()
    if not name:
        raise MissingValue("--password-env")
    password = os.environ.get(name, "")
    if not password:
        raise InvalidValue(
            "--password-env",
            name,
            f"the name of a set, non-empty environment variable that contains the "
            f"password of user {user}",
        )
    return password


def _log_agent_events() -> None:
    # The agent is a service: its batch, retry and mode lines are wanted without
    # --verbose, which would add DEBUG lines of every module.
    agent_logger = logging.getLogger("posoutbox")
    if agent_logger.getEffectiveLevel() > logging.INFO:
        agent_logger.setLevel(logging.INFO)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on the first SIGTERM or SIGINT, so the agent finishes its batch;
    a second SIGINT interrupts it at once."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logger.info(
            "stopping after the current batch (%s)",
            signal.Signals(signum).name,
            extra={"action": "agent_stopping", "signal": signal.Signals(signum).name},
        )
        stop.set()

    previous = {
        signum: signal.signal(signum, request_stop)
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _ConsoleLogHandler(logging.Handler):
    """Writes log lines through a Rich console, so they scroll above its status
    line instead of overwriting it."""

    def __init__(self, console: Console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text(self.format(record)), soft_wrap=True)
        except Exception:
            self.handleError(record)


ProgressCallback = Callable[[BatchResult, Totals], None]


@contextlib.contextmanager
def _progress_line(console: Console, sbs1: str) -> Iterator[ProgressCallback | None]:
    """Show a status line with the totals on stderr when it is a terminal, and
    yield the callback that updates it (None otherwise)."""
    if not console.is_terminal:
        yield None
        return

    root = logging.getLogger()
    previous_handlers = root.handlers[:]
    formatter = previous_handlers[0].formatter if previous_handlers else None
    root.handlers[:] = [_ConsoleLogHandler(console, formatter)]
    status: Status = console.status(f"subscriber {sbs1}: polling")

    def show_progress(batch: BatchResult, totals: Totals) -> None:
        last = f", last TRNR {batch.last_trnr}" if batch.last_trnr is not None else ""
        status.update(
            f"subscriber {sbs1}: batches {totals.batches}, records applied "
            f"{totals.applied}{last}"
        )

    try:
        with status:
            yield show_progress
    finally:
        root.handlers[:] = previous_handlers


@app.command("show")
def show(
    shop: Annotated[
        str,
        typer.Argument(
            metavar="SHOP",
            help="Shop (WHLO); * for the copy kept when the server sends no SHOP.",
        ),
    ],
    cuno: Annotated[
        str | None,
        typer.Argument(metavar="[CUNO]", help="Show only this customer, in detail."),
    ] = None,
    *,
    store: Annotated[
        Path,
        typer.Option("--store", help="The agent's SQLite store file.", dir_okay=False),
    ],
    as_json: common.JsonOption = False,
) -> None:
    """Show the customers a shop holds in the agent's store.

    --json prints an array of customers keyed by M3 field names, each with its
    ADDRESSES, CARDS and MESSAGES as arrays.
    """
    with open_store(store, create=False) as local_store:
        customers = local_store.iter_customers(shop, cuno)
        if as_json:
            common.print_json_array(stored.as_fields() for stored in customers)
            return
        if cuno is not None:
            _show_customer(local_store, shop, cuno, next(customers, None))
            return
        table = common.new_table(
            *LIST_COLUMNS, "Addresses", "Cards", "Messages", title=f"Shop {shop}"
        )
        count = 0
        for stored in customers:
            values = common.api_values(stored.customer)
            common.add_row(
                table,
                *(values[name] for name in LIST_COLUMNS),
                len(stored.addresses),
                len(stored.cards),
                len(stored.messages),
            )
            count += 1
        if count:
            common.print_table(table)
        else:
            common.note(_empty_shop_message(local_store, shop))


def _show_customer(
    local_store: Store, shop: str, cuno: str, stored: StoredCustomer | None
) -> None:
    if stored is None:
        raise NotFound(
            "customer", "CUNO", f"{cuno} at shop {shop} in {local_store.path}"
        )
    common.print_table(
        common.key_value_table(
            common.api_values(stored.customer), title=f"Customer {cuno} at shop {shop}"
        )
    )
    for title, rows in (
        ("Addresses", stored.addresses),
        ("Cards", stored.cards),
        ("Messages", stored.messages),
    ):
        if not rows:
            common.echo(f"{title}: none")
            continue
        names = [name for name in rows[0] if name != "CUNO"]
        table = common.new_table(*names, title=title)
        for row in rows:
            values = common.api_values(row)
            common.add_row(table, *(values[name] for name in names))
        common.print_table(table)


def _empty_shop_message(local_store: Store, shop: str) -> str:
    held = [summary.whlo for summary in local_store.shops() if summary.customers]
    if held:
        return (
            f"shop {shop} holds no customers in {local_store.path}; shops with "
            f"customers: {', '.join(held)}"
        )
    return f"shop {shop} holds no customers; store {local_store.path} is empty"

"""The ``export`` and ``net-transfer`` commands: turning changes into outbox records,
once or repeatedly as a scheduled job."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import typer

from posoutbox import transfer
from posoutbox.cli import common
from posoutbox.errors import PosOutboxError

app = typer.Typer()


def summary_fields(result: transfer.TransferResult) -> dict[str, object]:
    """Return what a run created as JSON fields, every count a string."""
    return {
        "FUNCTION": result.function,
        "RUNS": [str(run_id) for run_id in result.run_ids],
        "CUSTOMERS": str(result.customers),
        "TOTAL": str(result.records),
        "COUNTS": [
            {"SBS1": sbs1, "TRTP": trtp, "ACCT": acct, "RECORDS": str(count)}
            for (sbs1, trtp, acct), count in sorted(result.counts.items())
        ],
        "LOADS": [
            {"WHLO": whlo, "CUSTOMERS": str(count)}
            for whlo, count in sorted(result.loaded.items())
        ],
    }


def print_summary(result: transfer.TransferResult) -> None:
    """Print records per subscriber, type and action, and initial loads per shop."""
    if result.counts:
        table = common.new_table("SBS1", "TRTP", "ACCT", "Records")
        for (sbs1, trtp, acct), count in sorted(result.counts.items()):
            common.add_row(table, sbs1, trtp, acct, count)
        common.print_table(table)
    if result.loaded:
        table = common.new_table("WHLO", "Customers loaded")
        for whlo, count in sorted(result.loaded.items()):
            common.add_row(table, whlo, count)
        common.print_table(table)
    runs = ", ".join(str(run_id) for run_id in result.run_ids)
    common.echo(
        f"{result.function}"
        + (f" (run {runs})" if runs else "")
        + f": {result.customers} customers processed, {result.records} records "
        "created"
    )


@app.command("export")
def export(
    cuno: Annotated[str, typer.Argument(metavar="CUNO", help="Customer number.")],
    as_json: common.JsonOption = False,
) -> None:
    """Send a customer's current state to every shop now, as CRS610's 'Export
    customer to POS' does."""
    with common.open_db() as db:
        result = transfer.export_customer(db, cuno, user=common.cli_user())
    if as_json:
        common.print_json(summary_fields(result))
    else:
        print_summary(result)


@app.command("net-transfer")
def net_transfer(
    subscriber: Annotated[
        str | None,
        typer.Option(
            "--subscriber", metavar="SBS1", help="Only this subscriber (default: all)."
        ),
    ] = None,
    function: Annotated[
        str,
        typer.Option(
            "--function",
            metavar="update|delete",
            help="update: every recorded change; delete: only the *DEL records.",
        ),
    ] = transfer.UPDATE_FUNCTION,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With --function delete: send an OCUSMA *DEL for every customer in "
            "the range to every active shop, held or not.",
        ),
    ] = False,
    from_cuno: Annotated[
        str | None,
        typer.Option("--from", metavar="CUNO", help="First customer of the range."),
    ] = None,
    to_cuno: Annotated[
        str | None,
        typer.Option("--to", metavar="CUNO", help="Last customer of the range."),
    ] = None,
    every: Annotated[
        int | None,
        typer.Option(
            "--every",
            metavar="SECONDS",
            min=1,
            help="Run again SECONDS after each run ends, until Ctrl-C or SIGTERM, "
            "which stop after the current run. An error of a later run is "
            "reported, and the next run goes ahead.",
        ),
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Fail (exit 75) instead of waiting when a run of the same "
            "subscriber is already going.",
        ),
    ] = False,
    as_json: common.JsonOption = False,
) -> None:
    """Create the records of every change recorded since the last run (OPS630).

    Prints the records created per subscriber, type and action, and the initial
    loads per shop. With --json and --every, each run prints one line of JSON.
    """
    with common.open_db() as db:

        def run_once() -> None:
            with common.progress_bar() as progress:
                task = progress.add_task("net transfer", total=None)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                result = transfer.net_transfer(
                    db,
                    sbs1=subscriber,
                    function=function,
                    force=force,
                    from_cuno=from_cuno,
                    to_cuno=to_cuno,
                    user=common.cli_user(),
                    wait=not no_wait,
                    progress=advance,
                )
            if as_json and every is not None:
                common.echo(_compact_json(summary_fields(result)))
            elif as_json:
                common.print_json(summary_fields(result))
            else:
                print_summary(result)

        if every is None:
            run_once()
        else:
            repeat(run_once, every)


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def repeat(run_once: Callable[[], None], seconds: int) -> None:
    """Call ``run_once``, then again ``seconds`` after each call ends, until
    SIGINT or SIGTERM.

    A signal during a run lets that run finish; a second one interrupts it. An
    error in the first run ends the command, since it usually means a wrong
    option or database. Errors of later runs are reported and retried, as a
    scheduler would.
    """
    with _stop_requested() as stop:
        first = True
        while not stop.is_set():
            try:
                run_once()
            except PosOutboxError as error:
                if first:
                    raise
                common.report_error(error.message, error)
            first = False
            stop.wait(seconds)


@contextmanager
def _stop_requested() -> Iterator[threading.Event]:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        common.note(
            "stopping after the current run (press Ctrl-C again to interrupt it)"
        )

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, request_stop) for signum in handled}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

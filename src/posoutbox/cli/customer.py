"""The ``customer`` commands: the customer master, one customer at a time or from a
file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from posoutbox import customers
from posoutbox.cli import common
from posoutbox.db.storage import Database
from posoutbox.fields import Value

app = typer.Typer(name="customer", help="Add, change, show, list and import customers.")

#: Customers read per transaction by ``customer list`` without ``--name``.
PAGE_SIZE = 1000

#: Columns of ``customer list`` without ``--json``.
LIST_COLUMNS = ("CUNO", "CUNM", "TOWN", "CSCD", "CUCL", "STAT", "LMDT")

CunoArgument = Annotated[str, typer.Argument(metavar="CUNO", help="Customer number.")]
PairsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="FIELD=VALUE...",
        help='Customer fields by M3 name, such as CUNM="Alfreds Futterkiste" CSCD=DE.',
        show_default=False,
    ),
]


@app.command("add")
def add(cuno: CunoArgument, pairs: PairsArgument = None) -> None:
    """Add a customer; unset fields are blank or 0, and STAT defaults to 20."""
    values = common.parse_pairs(pairs or [])
    with common.open_db() as db:
        customers.add_customer(db, cuno, values, user=common.cli_user())
    common.echo(f"customer {cuno} added")


@app.command("change")
def change(
    cuno: CunoArgument,
    pairs: Annotated[
        list[str],
        typer.Argument(
            metavar="FIELD=VALUE...",
            help="Fields to change by M3 name, such as STAT=90.",
        ),
    ],
) -> None:
    """Change fields of a customer; prints 'unchanged' when every value was the same."""
    values = common.parse_pairs(pairs)
    with common.open_db() as db:
        _, changed = customers.change_customer(db, cuno, values, user=common.cli_user())
    common.echo(f"customer {cuno} {'changed' if changed else 'unchanged'}")


@app.command("show")
def show(cuno: CunoArgument, as_json: common.JsonOption = False) -> None:
    """Show a customer with its addresses, cards and messages."""
    with common.open_db() as db:
        customer = customers.get_customer(db, cuno)
        addresses = customers.list_addresses(db, cuno)
        cards = customers.list_cards(db, cuno)
        messages = customers.list_messages(db, cuno)

    if as_json:
        common.print_json(
            {
                **common.api_values(customer),
                "ADDRESSES": [common.api_values(row) for row in addresses],
                "CARDS": [common.api_values(row) for row in cards],
                "MESSAGES": [common.api_values(row) for row in messages],
            }
        )
        return

    common.print_table(
        common.key_value_table(common.api_values(customer), title=f"Customer {cuno}")
    )
    for title, rows in (
        ("Addresses", addresses),
        ("Cards", cards),
        ("Messages", messages),
    ):
        if rows:
            common.print_table(rows_table(rows, title=title))
        else:
            common.echo(f"{title}: none")


def rows_table(
    rows: Iterable[dict[str, Value]],
    *,
    columns: Iterable[str] | None = None,
    title: str | None = None,
) -> Table:
    """Return a table of records keyed by M3 field names, one column per field.

    Without ``columns``, the columns are the fields of the first row except CUNO,
    for the records of one customer, whom the title names.
    """
    rows = list(rows)
    if columns is None:
        columns = [name for name in rows[0] if name != "CUNO"] if rows else []
    names = list(columns)
    table = common.new_table(*names, title=title)
    for row in rows:
        values = common.api_values(row)
        common.add_row(table, *(values[name] for name in names))
    return table


@app.command("list")
def list_(
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="Only customers whose name contains this text, ordered by name. "
            "Case is ignored, on SQLite for ASCII letters only.",
        ),
    ] = "",
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Print at most this many customers."),
    ] = None,
    as_json: common.JsonOption = False,
) -> None:
    """List customers by number (or by name with --name), all of them by default."""
    with common.open_db() as db:
        found = _customers(db, name, limit)
        if as_json:
            common.print_json_array(common.api_values(row) for row in found)
            return
        table = rows_table(found, columns=LIST_COLUMNS)
    if table.row_count:
        common.print_table(table)
    else:
        common.note("no customer found")


def _customers(
    db: Database, name: str, limit: int | None
) -> Iterator[dict[str, Value]]:
    if name:
        yield from customers.list_customers(db, name=name, limit=limit)
        return
    # Page by customer number, so that a long list never has to fit in memory.
    after = ""
    remaining = limit
    while remaining is None or remaining > 0:
        size = PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
        page = customers.list_customers(db, after=after, limit=size)
        yield from page
        if len(page) < size:
            return
        after = str(page[-1]["CUNO"])
        if remaining is not None:
            remaining -= len(page)


@app.command("delete")
def delete(cuno: CunoArgument) -> None:
    """Delete a customer with its addresses, cards and messages; shops that hold
    it get an OCUSMA *DEL from the next net transfer."""
    with common.open_db() as db:
        customers.delete_customer(db, cuno, user=common.cli_user())
    common.echo(f"customer {cuno} deleted")


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="CSV file, UTF-8, with a header line.", dir_okay=False
        ),
    ],
    mapping: Annotated[
        str,
        typer.Option(
            "--mapping",
            help="Header layout of the file: m3 (M3 field names such as CUNO, "
            "CUNM) or northwind (the Northwind sample's customer columns).",
        ),
    ] = "m3",
    as_json: common.JsonOption = False,
) -> None:
    """Add or update customers from a CSV file, reporting every rejected row.

    Exits 0 when the file was read, rejected rows included, and 1 when the file
    cannot be read or its header does not fit the mapping.
    """
    # Imported here so that the other commands never load the importer.
    from posoutbox import importer

    with common.open_db() as db:
        # Reads the whole file first: an unreadable file or a header that does
        # not fit the mapping raises FileProblem before anything is imported.
        rows = importer.read_customer_file(file, mapping)
        total = importer.count_rows(file)
        with common.progress_bar() as progress:
            task = progress.add_task(f"importing {file.name}", total=total)

            result = customers.import_customers(
                db, _advancing(rows, progress, task), user=common.cli_user()
            )

    if as_json:
        common.print_json(
            {
                "ADDED": str(result.added),
                "CHANGED": str(result.changed),
                "UNCHANGED": str(result.unchanged),
                "REJECTED": str(result.rejected_rows),
                "REJECTIONS": [
                    {
                        "LINE": str(rejection.line),
                        "FIELD": rejection.field,
                        "VALUE": _text(rejection.value),
                        "REASON": rejection.reason,
                    }
                    for rejection in result.rejections
                ],
            }
        )
        return

    if result.rejections:
        table = common.new_table(
            "Line", "Field", "Value", "Reason", title="Rejected rows"
        )
        for rejection in result.rejections:
            common.add_row(
                table,
                rejection.line,
                rejection.field,
                _text(rejection.value),
                rejection.reason,
            )
        common.print_table(table)
    common.echo(
        f"added {result.added}, changed {result.changed}, "
        f"unchanged {result.unchanged}, rejected {result.rejected_rows}"
    )


def _advancing(
    rows: Iterable[tuple[int, dict[str, str]]], progress: Progress, task: TaskID
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield the rows, advancing the progress bar by one for each row read."""
    for row in rows:
        yield row
        progress.advance(task)


def _text(value: object) -> str:
    return "" if value is None else str(value)

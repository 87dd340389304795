"""The ``outbox`` and ``cleanup`` commands: what POS systems list and confirm, the
backlog, and removal of confirmed records."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated

import typer

from posoutbox import fields, outbox
from posoutbox.cli import common
from posoutbox.db.storage import Database

app = typer.Typer(
    name="outbox",
    help="List and confirm records as a POS does (LstCus, CnfCus), and inspect "
    "the backlog.",
)
cleanup_app = typer.Typer()

#: Records read per transaction by ``outbox show``.
PAGE_SIZE = 1000

#: Characters of RDDA that ``outbox list`` shows in its table.
RDDA_COLUMN_WIDTH = 60

Sbs1Argument = Annotated[str, typer.Argument(metavar="SBS1", help="Subscriber.")]


@app.command("list")
def list_records(
    sbs1: Sbs1Argument,
    maxrecs: Annotated[
        int,
        typer.Option(
            "--max", metavar="N", min=0, help="Return at most N records; 0 = no limit."
        ),
    ] = outbox.DEFAULT_MAX_RECORDS,
    as_json: common.JsonOption = False,
) -> None:
    """List the subscriber's oldest unconfirmed records and mark the new ones listed.

    This is LstCus: listed records come again first until 'outbox confirm'
    confirms them, so paging is list, confirm, list again.
    """
    with common.open_db() as db:
        records = outbox.list_records(db, sbs1, maxrecs, user=common.cli_user())

    if as_json:
        common.print_json([record.as_fields() for record in records])
    elif records:
        table = common.new_table("TRNR", "TRTP", "ACCT", "CUNO", "SHOP", "RDDA")
        # One line per record: the data is cut at the column's width, since
        # --json prints it whole.
        for column in table.columns:
            column.no_wrap = True
        table.columns[-1].overflow = "ellipsis"
        table.columns[-1].max_width = RDDA_COLUMN_WIDTH
        for record in records:
            common.add_row(
                table,
                record.trnr,
                record.trtp,
                record.acct,
                record.cuno,
                record.shops,
                record.rdda.rstrip(" "),
            )
        common.print_table(table)

    if records:
        common.note(
            f"{len(records)} records listed; after applying them, confirm with "
            f"'posoutbox outbox confirm {sbs1} --up-to {records[-1].trnr}'"
        )
    else:
        common.note(f"no unconfirmed record for subscriber {sbs1}")


@app.command("confirm")
def confirm(
    sbs1: Sbs1Argument,
    up_to: Annotated[
        str | None,
        typer.Option(
            "--up-to",
            metavar="TRNR",
            help="Confirm only the listed records up to this transaction number.",
        ),
    ] = None,
) -> None:
    """Confirm the subscriber's listed records (CnfCus), but not new ones."""
    up_to_trnr = None if up_to is None else int(fields.validate_key("TRNR", up_to))
    with common.open_db() as db:
        confirmed = outbox.confirm_records(db, sbs1, up_to_trnr, user=common.cli_user())
    common.echo(f"confirmed {confirmed} records")


def format_age(seconds: int | None) -> str:
    """Return an age for people, such as '45 s', '3 min', '2 h 5 min' or '3 d 4 h'."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@app.command("status")
def status(
    subscriber: Annotated[
        str | None,
        typer.Option("--subscriber", metavar="SBS1", help="Only this subscriber."),
    ] = None,
    as_json: common.JsonOption = False,
) -> None:
    """Show per subscriber and shop how many records are new, listed and
    confirmed, and the age of the oldest unconfirmed one."""
    with common.open_db() as db:
        entries = outbox.backlog(db, subscriber)

    if as_json:
        common.print_json(
            [
                {
                    "SBS1": entry.sbs1,
                    "WHLO": entry.whlo,
                    "NEW": str(entry.new),
                    "LISTED": str(entry.listed),
                    "CONFIRMED": str(entry.confirmed),
                    "AGE_SECONDS": _text(entry.age_seconds()),
                }
                for entry in entries
            ]
        )
        return
    if not entries:
        common.note("no shop and no record yet")
        return
    table = common.new_table(
        "SBS1", "WHLO", "New", "Listed", "Confirmed", "Oldest unconfirmed"
    )
    for entry in entries:
        common.add_row(
            table,
            entry.sbs1,
            entry.whlo,
            entry.new,
            entry.listed,
            entry.confirmed,
            format_age(entry.age_seconds()),
        )
    common.print_table(table)


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


@app.command("show")
def show(
    sbs1: Sbs1Argument,
    cuno: Annotated[
        str | None,
        typer.Option("--cuno", metavar="CUNO", help="Only this customer's records."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Show at most this many records."),
    ] = None,
    include_confirmed: Annotated[
        bool,
        typer.Option(
            "--all", help="Include confirmed records that cleanup has not removed."
        ),
    ] = False,
    as_json: common.JsonOption = False,
) -> None:
    """Show the subscriber's unconfirmed records (all with --all) with their data
    decoded, without marking them listed."""
    states = outbox.STATES if include_confirmed else (outbox.NEW, outbox.LISTED)
    with common.open_db() as db:
        found = _browse(db, sbs1, states, cuno, limit)
        if as_json:
            common.print_json_array(_record_fields(record) for record in found)
            return
        table = common.new_table(
            "TRNR", "State", "TRTP", "ACCT", "CUNO", "SHOP", "Data"
        )
        for record in found:
            data = ", ".join(
                f"{name}={value}"
                for name, value in common.api_values(record.decoded()).items()
                if name != "CUNO" and value not in ("", "0")
            )
            common.add_row(
                table,
                record.trnr,
                record.state,
                record.trtp,
                record.acct,
                record.cuno,
                record.shops,
                data,
            )
    if table.row_count:
        common.print_table(table)
    else:
        common.note(f"no record to show for subscriber {sbs1}")


def _record_fields(record: outbox.OutboxRecord) -> dict[str, object]:
    """Return a record as ``outbox list`` prints it, with STATE and the decoded
    data fields added under their M3 names."""
    values: dict[str, object] = {**record.as_fields(), "STATE": record.state}
    for name, value in record.decoded().items():
        values.setdefault(name, fields.to_api(name, value))
    return values


def _browse(
    db: Database,
    sbs1: str,
    states: Sequence[str],
    cuno: str | None,
    limit: int | None,
) -> Iterator[outbox.OutboxRecord]:
    # Page by TRNR, so that a long backlog never has to fit in memory.
    after = 0
    remaining = limit
    while remaining is None or remaining > 0:
        size = PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
        page = outbox.browse_records(
            db, sbs1, states=states, after_trnr=after, limit=size, cuno=cuno
        )
        yield from page
        if len(page) < size:
            return
        after = page[-1].trnr
        if remaining is not None:
            remaining -= len(page)


@cleanup_app.command("cleanup")
def cleanup(
    subscriber: Annotated[
        str | None,
        typer.Option("--subscriber", metavar="SBS1", help="Only this subscriber."),
    ] = None,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="YYYYMMDD",
            help="Only records confirmed before this date (UTC).",
        ),
    ] = None,
    preview: Annotated[
        bool,
        typer.Option("--preview", help="Count what would be removed, remove nothing."),
    ] = False,
    as_json: common.JsonOption = False,
) -> None:
    """Remove confirmed records (OPS690), never unconfirmed ones."""
    before_date = None if before is None else fields.parse_date("--before", before)
    with common.open_db() as db:
        result = outbox.cleanup(
            db, sbs1=subscriber, before=before_date, preview=preview
        )

    if as_json:
        common.print_json(
            {
                "PREVIEW": "1" if result.preview else "0",
                "TOTAL": str(result.total),
                "COUNTS": [
                    {"SBS1": sbs1, "RECORDS": str(count)}
                    for sbs1, count in sorted(result.removed.items())
                ],
            }
        )
        return
    if result.removed:
        table = common.new_table(
            "SBS1", "Records to remove" if preview else "Records removed"
        )
        for sbs1, count in sorted(result.removed.items()):
            common.add_row(table, sbs1, count)
        common.print_table(table)
    verb = "would remove" if preview else "removed"
    common.echo(f"cleanup {verb} {result.total} confirmed records")

"""The ``address``, ``card`` and ``message`` commands: the records a customer owns,
which travel to POS with it."""

from __future__ import annotations

from typing import Annotated

import typer

from posoutbox import customers
from posoutbox.cli import common
from posoutbox.cli.customer import CunoArgument, PairsArgument, rows_table
from posoutbox.fields import Value

address_app = typer.Typer(
    name="address",
    help="Set, delete and list a customer's addresses (type 1, delivery, goes to POS).",
)
card_app = typer.Typer(name="card", help="Set, delete and list a customer's cards.")
message_app = typer.Typer(
    name="message", help="Set, delete and list a customer's cash-desk messages."
)

AdidArgument = Annotated[str, typer.Argument(metavar="ADID", help="Address id.")]
CcnrArgument = Annotated[str, typer.Argument(metavar="CCNR", help="Card number.")]
MsidArgument = Annotated[str, typer.Argument(metavar="MSID", help="Message id.")]


def _print_rows(
    rows: list[dict[str, Value]], as_json: bool, *, title: str, empty: str
) -> None:
    if as_json:
        common.print_json([common.api_values(row) for row in rows])
    elif rows:
        common.print_table(rows_table(rows, title=title))
    else:
        common.note(empty)


def _saved(what: str, changed: bool) -> None:
    common.echo(f"{what} {'saved' if changed else 'unchanged'}")


# Addresses


@address_app.command("set")
def set_address(
    cuno: CunoArgument, adid: AdidArgument, pairs: PairsArgument = None
) -> None:
    """Add or change an address; ADRT defaults to 1 (delivery) for a new one."""
    values = common.parse_pairs(pairs or [])
    with common.open_db() as db:
        _, changed = customers.set_address(
            db, cuno, adid, values, user=common.cli_user()
        )
    _saved(f"address {adid} of customer {cuno}", changed)


@address_app.command("delete")
def delete_address(cuno: CunoArgument, adid: AdidArgument) -> None:
    """Delete an address."""
    with common.open_db() as db:
        customers.delete_address(db, cuno, adid, user=common.cli_user())
    common.echo(f"address {adid} of customer {cuno} deleted")


@address_app.command("list")
def list_addresses(cuno: CunoArgument, as_json: common.JsonOption = False) -> None:
    """List a customer's addresses."""
    with common.open_db() as db:
        rows = customers.list_addresses(db, cuno)
    _print_rows(
        rows,
        as_json,
        title=f"Addresses of customer {cuno}",
        empty=f"customer {cuno} has no address",
    )


# Cards


@card_app.command("set")
def set_card(
    cuno: CunoArgument, ccnr: CcnrArgument, pairs: PairsArgument = None
) -> None:
    """Add or change a card; a card number belongs to one customer only."""
    values = common.parse_pairs(pairs or [])
    with common.open_db() as db:
        _, changed = customers.set_card(db, cuno, ccnr, values, user=common.cli_user())
    _saved(f"card {ccnr} of customer {cuno}", changed)


@card_app.command("delete")
def delete_card(cuno: CunoArgument, ccnr: CcnrArgument) -> None:
    """Delete a card."""
    with common.open_db() as db:
        customers.delete_card(db, cuno, ccnr, user=common.cli_user())
    common.echo(f"card {ccnr} of customer {cuno} deleted")


@card_app.command("list")
def list_cards(cuno: CunoArgument, as_json: common.JsonOption = False) -> None:
    """List a customer's cards."""
    with common.open_db() as db:
        rows = customers.list_cards(db, cuno)
    _print_rows(
        rows,
        as_json,
        title=f"Cards of customer {cuno}",
        empty=f"customer {cuno} has no card",
    )


# Messages


@message_app.command("set")
def set_message(
    cuno: CunoArgument,
    msid: MsidArgument,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="Message text (MSTX).")],
    priority: Annotated[
        str | None,
        typer.Option(
            "--priority",
            metavar="N",
            help="Priority (PRIO) from 1 to 9, 9 highest; 5 for a new message "
            "without it.",
        ),
    ] = None,
) -> None:
    """Add or change a message shown at the cash desk."""
    with common.open_db() as db:
        _, changed = customers.set_message(
            db, cuno, msid, text, priority=priority, user=common.cli_user()
        )
    _saved(f"message {msid} of customer {cuno}", changed)


@message_app.command("delete")
def delete_message(cuno: CunoArgument, msid: MsidArgument) -> None:
    """Delete a message."""
    with common.open_db() as db:
        customers.delete_message(db, cuno, msid, user=common.cli_user())
    common.echo(f"message {msid} of customer {cuno} deleted")


@message_app.command("list")
def list_messages(cuno: CunoArgument, as_json: common.JsonOption = False) -> None:
    """List a customer's messages."""
    with common.open_db() as db:
        rows = customers.list_messages(db, cuno)
    _print_rows(
        rows,
        as_json,
        title=f"Messages of customer {cuno}",
        empty=f"customer {cuno} has no message",
    )

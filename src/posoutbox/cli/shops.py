"""The ``subscriber``, ``shop`` and ``segment`` commands: which shops exist, whom
they belong to and which customers each one receives."""

from __future__ import annotations

from typing import Annotated

import click
import typer

from posoutbox import shops
from posoutbox.cli import common

subscriber_app = typer.Typer(
    name="subscriber",
    help="Add, list and delete subscribers (one POS back office each).",
)
shop_app = typer.Typer(
    name="shop", help="Add, change, show, list and delete shops and their segments."
)
segment_app = typer.Typer(
    name="segment",
    help="Add, change, show, list and delete customer segments (FIELD=V1,V2 "
    "conditions).",
)

Sbs1Argument = Annotated[str, typer.Argument(metavar="SBS1", help="Subscriber.")]
WhloArgument = Annotated[str, typer.Argument(metavar="WHLO", help="Shop.")]
SeidArgument = Annotated[str, typer.Argument(metavar="SEG", help="Segment id.")]
NameOption = Annotated[
    str | None, typer.Option("--name", help="Name, at most 40 characters.")
]
ConditionsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="FIELD=V1,V2...",
        help="Conditions, all of which must hold, such as CSCD=DE,AT CUCL=RET; "
        "FIELD= means blank (or 0 for a number).",
        show_default=False,
    ),
]
DescriptionOption = Annotated[
    str | None,
    typer.Option("--description", help="Description, at most 60 characters."),
]


# Subscribers


@subscriber_app.command("add")
def add_subscriber(sbs1: Sbs1Argument, name: NameOption = None) -> None:
    """Add a subscriber."""
    with common.open_db() as db:
        shops.add_subscriber(db, sbs1, name=name or "", user=common.cli_user())
    common.echo(f"subscriber {sbs1} added")


@subscriber_app.command("list")
def list_subscribers(as_json: common.JsonOption = False) -> None:
    """List subscribers with their shops."""
    with common.open_db() as db:
        subscribers = shops.list_subscribers(db)
    if as_json:
        common.print_json([subscriber.as_fields() for subscriber in subscribers])
        return
    if not subscribers:
        common.note("no subscriber yet: add one with 'posoutbox subscriber add SBS1'")
        return
    table = common.new_table("SBS1", "Name", "Shops")
    for subscriber in subscribers:
        common.add_row(table, subscriber.sbs1, subscriber.name, subscriber.shops)
    common.print_table(table)


@subscriber_app.command("delete")
def delete_subscriber(sbs1: Sbs1Argument) -> None:
    """Delete a subscriber that has no shops and no unconfirmed record."""
    with common.open_db() as db:
        shops.delete_subscriber(db, sbs1, user=common.cli_user())
    common.echo(f"subscriber {sbs1} deleted")


# Shops


def _warn_about(shop: shops.Shop) -> None:
    for problem in shop.warnings():
        common.warn(f"shop {shop.whlo}: {problem}")


def _flags(shop: shops.Shop) -> str:
    return ", ".join(
        [
            "active" if shop.active else "inactive",
            f"POS interface {'on' if shop.pos_interface else 'off'}",
            f"customer interface {'on' if shop.customer_interface else 'off'}",
        ]
    )


@shop_app.command("add")
def add_shop(
    whlo: WhloArgument,
    subscriber: Annotated[
        str, typer.Option("--subscriber", metavar="SBS1", help="Subscriber.")
    ],
    name: NameOption = None,
    pos_interface: Annotated[
        bool,
        typer.Option("--pos-interface/--no-pos-interface", help="POS interface on."),
    ] = True,
    customer_interface: Annotated[
        bool,
        typer.Option(
            "--customer-interface/--no-customer-interface",
            help="Customer interface on.",
        ),
    ] = True,
    active: Annotated[
        bool, typer.Option("--active/--inactive", help="Shop active.")
    ] = True,
    segments: Annotated[
        list[str] | None,
        typer.Option(
            "--segment",
            metavar="SEG",
            help="A segment whose customers the shop receives; repeat for more.",
        ),
    ] = None,
) -> None:
    """Add a shop to a subscriber; the next net transfer gives it its initial load."""
    with common.open_db() as db:
        shop = shops.add_shop(
            db,
            whlo,
            subscriber,
            name=name or "",
            active=active,
            pos_interface=pos_interface,
            customer_interface=customer_interface,
            segments=segments or [],
            user=common.cli_user(),
        )
    common.echo(f"shop {shop.whlo} added to subscriber {shop.sbs1}")
    _warn_about(shop)


@shop_app.command("change")
def change_shop(
    whlo: WhloArgument,
    subscriber: Annotated[
        str | None,
        typer.Option(
            "--subscriber",
            metavar="SBS1",
            help="Move the shop to this subscriber, where it gets an initial load.",
        ),
    ] = None,
    name: NameOption = None,
    pos_interface: Annotated[
        bool | None,
        typer.Option(
            "--pos-interface/--no-pos-interface",
            help="Switch the POS interface on or off.",
            show_default=False,
        ),
    ] = None,
    customer_interface: Annotated[
        bool | None,
        typer.Option(
            "--customer-interface/--no-customer-interface",
            help="Switch the customer interface on or off.",
            show_default=False,
        ),
    ] = None,
    active: Annotated[
        bool | None,
        typer.Option(
            "--active/--inactive",
            help="Make the shop active or inactive.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Change a shop's name or flags, or move it; options not given stay as they are."""
    with common.open_db() as db:
        shop = shops.change_shop(
            db,
            whlo,
            sbs1=subscriber,
            name=name,
            active=active,
            pos_interface=pos_interface,
            customer_interface=customer_interface,
            user=common.cli_user(),
        )
    common.echo(f"shop {shop.whlo} of subscriber {shop.sbs1}: {_flags(shop)}")
    _warn_about(shop)


@shop_app.command("list")
def list_shops(
    subscriber: Annotated[
        str | None,
        typer.Option("--subscriber", metavar="SBS1", help="Only this subscriber's."),
    ] = None,
    as_json: common.JsonOption = False,
) -> None:
    """List shops with their segments, and why a shop receives nothing."""
    with common.open_db() as db:
        found = shops.list_shops(db, subscriber)
    if as_json:
        common.print_json([shop.as_fields() for shop in found])
        return
    if not found:
        common.note("no shop found")
        return
    table = common.new_table("WHLO", "SBS1", "Name", "Segments", "Warnings")
    for shop in found:
        common.add_row(
            table, shop.whlo, shop.sbs1, shop.name, shop.segments, shop.warnings()
        )
    common.print_table(table)


@shop_app.command("show")
def show_shop(whlo: WhloArgument, as_json: common.JsonOption = False) -> None:
    """Show a shop."""
    with common.open_db() as db:
        shop = shops.get_shop(db, whlo)
    if as_json:
        common.print_json(shop.as_fields())
        return
    table = common.new_table("Field", "Value", title=f"Shop {shop.whlo}")
    for label, value in (
        ("WHLO", shop.whlo),
        ("SBS1", shop.sbs1),
        ("Name", shop.name),
        ("Active", "yes" if shop.active else "no"),
        ("POS interface", "on" if shop.pos_interface else "off"),
        ("Customer interface", "on" if shop.customer_interface else "off"),
        ("Segments", shop.segments),
        ("Warnings", shop.warnings()),
    ):
        common.add_row(table, label, value)
    common.print_table(table)


@shop_app.command("delete")
def delete_shop(whlo: WhloArgument) -> None:
    """Delete a shop; it leaves the mailing lists of future records."""
    with common.open_db() as db:
        shops.delete_shop(db, whlo, user=common.cli_user())
    common.echo(f"shop {whlo} deleted")


@shop_app.command("segments")
def set_shop_segments(
    whlo: WhloArgument,
    seids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SEG...",
            help="The shop's segments; none clears them, so it receives no customers.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Set the segments of a shop, replacing the ones it had."""
    with common.open_db() as db:
        shop = shops.set_shop_segments(db, whlo, seids or [], user=common.cli_user())
    common.echo(f"shop {shop.whlo} segments: {', '.join(shop.segments) or '(none)'}")
    _warn_about(shop)


# Segments


def _print_segment_rows(found: list[shops.Segment]) -> None:
    table = common.new_table("SEG", "Description", "Conditions", "Shops")
    for segment in found:
        conditions = [str(condition) for condition in segment.conditions]
        common.add_row(
            table,
            segment.seid,
            segment.description,
            conditions or "(none: matches every customer)",
            segment.shops,
        )
    common.print_table(table)


@segment_app.command("add")
def add_segment(
    seid: SeidArgument,
    conditions: ConditionsArgument = None,
    description: DescriptionOption = None,
) -> None:
    """Add a segment; without conditions it matches every customer."""
    with common.open_db() as db:
        segment = shops.add_segment(
            db,
            seid,
            description=description or "",
            conditions=conditions or [],
            user=common.cli_user(),
        )
    common.echo(f"segment {segment.seid} added")


@segment_app.command("change")
def change_segment(
    seid: SeidArgument,
    conditions: ConditionsArgument = None,
    description: DescriptionOption = None,
    clear: Annotated[
        bool,
        typer.Option(
            "--clear", help="Remove every condition, so it matches every customer."
        ),
    ] = False,
) -> None:
    """Change a segment: given conditions replace all of its conditions."""
    if clear and conditions:
        raise click.UsageError("give conditions or --clear, not both")
    new_conditions = [] if clear else (conditions or None)
    with common.open_db() as db:
        segment = shops.change_segment(
            db,
            seid,
            description=description,
            conditions=new_conditions,
            user=common.cli_user(),
        )
    shown = ", ".join(str(condition) for condition in segment.conditions)
    common.echo(f"segment {segment.seid}: {shown or 'matches every customer'}")


@segment_app.command("list")
def list_segments(as_json: common.JsonOption = False) -> None:
    """List segments with their conditions and the shops that use them."""
    with common.open_db() as db:
        found = shops.list_segments(db)
    if as_json:
        common.print_json([segment.as_fields() for segment in found])
    elif found:
        _print_segment_rows(found)
    else:
        common.note("no segment yet: add one with 'posoutbox segment add SEG'")


@segment_app.command("show")
def show_segment(seid: SeidArgument, as_json: common.JsonOption = False) -> None:
    """Show a segment."""
    with common.open_db() as db:
        segment = shops.get_segment(db, seid)
    if as_json:
        common.print_json(segment.as_fields())
    else:
        _print_segment_rows([segment])


@segment_app.command("delete")
def delete_segment(seid: SeidArgument) -> None:
    """Delete a segment that no shop uses."""
    with common.open_db() as db:
        shops.delete_segment(db, seid, user=common.cli_user())
    common.echo(f"segment {seid} deleted")

"""The demo: the whole customer download run on the bundled Northwind customers.

`run_demo` works in a new SQLite file of its own and calls only the service
modules (customers, shops, transfer, outbox), the functions behind the CLI and
the API. It prints an account of each step for a reader who knows retail IT but
not posoutbox. At the end it replays every record at a simulated POS per shop
and checks each shop's copy against a target that it computes from the master
with plain Python, independently of the qualification code.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from posoutbox import customers, layouts, outbox, shops, transfer
from posoutbox.db import migrate
from posoutbox.db.storage import Database, open_database
from posoutbox.errors import InvalidValue
from posoutbox.fields import Value
from posoutbox.importer import read_customer_file
from posoutbox.outbox import OutboxRecord
from posoutbox.planning import DELIVERY_ADDRESS_TYPE
from posoutbox.transfer import TransferResult

NORTHWIND_FILE = "data/northwind-customers.csv"

#: User name recorded with every change the demo makes.
DEMO_USER = "demo"

#: Customer group (CUCL) by country. Every other country is in group EUR.
GROUP_COUNTRIES = {
    "NAM": ("CA", "MX", "US"),
    "SAM": ("AR", "BR", "VE"),
}
DEFAULT_GROUP = "EUR"

SUBSCRIBERS = {
    "NORTH": "Northern Europe and North America",
    "SOUTH": "Southern Europe and South America",
}

#: Segment id -> (description, conditions).
SEGMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "DACH": ("Germany, Austria, Switzerland", ("CSCD=AT,CH,DE",)),
    "NORDIC": ("Nordic countries", ("CSCD=DK,FI,NO,SE",)),
    "BRITISH": ("United Kingdom and Ireland", ("CSCD=GB,IE",)),
    "IBERIA": ("Spain and Portugal", ("CSCD=ES,PT",)),
    "WEST": ("France, Belgium, Italy", ("CSCD=BE,FR,IT",)),
    "SAMERICA": ("Customer group SAM", ("CUCL=SAM",)),
    "NAMWEST": (
        "Group NAM on the west coast",
        ("CUCL=NAM", "ECAR=AK,BC,CA,ID,OR,WA"),
    ),
}


@dataclass(frozen=True)
class ShopSetup:
    whlo: str
    sbs1: str
    name: str
    segments: tuple[str, ...]


SHOPS = (
    ShopSetup("N01", "NORTH", "Berlin", ("DACH",)),
    ShopSetup("N02", "NORTH", "Stockholm", ("NORDIC",)),
    ShopSetup("N03", "NORTH", "London", ("BRITISH",)),
    ShopSetup("S01", "SOUTH", "Madrid", ("IBERIA",)),
    ShopSetup("S02", "SOUTH", "Paris", ("WEST",)),
    ShopSetup("S03", "SOUTH", "São Paulo", ("SAMERICA",)),
)
#: The shop opened between the two net transfers.
NEW_SHOP = ShopSetup("N04", "NORTH", "Seattle", ("NAMWEST",))

#: Customer changes made between the two net transfers: CUNO, their effect at
#: the shops, and the new values.
CUSTOMER_CHANGES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("ALFKI", "update at N01", {"PHNO": "030-0074999"}),
    ("ROMEY", "update at S01", {"MAIL": "compras@romero.example"}),
    ("QUEEN", "update at S03", {"YREF": "Ana Costa"}),
    ("AROUT", "blocked: delete at N03", {"STAT": "90"}),
    ("BLAUS", "DACH to NORDIC: N01 to N02", {"CSCD": "DK"}),
    ("BONAP", "WEST to IBERIA: S02 to S01", {"CSCD": "ES"}),
    ("TORTU", "joins SAMERICA: load at S03", {"CUCL": "SAM"}),
)

CARD_CUNO = "ALFKI"
CARD_NUMBER = 4000123412341234
CARD: dict[str, object] = {
    "CTP1": 1,
    "MCRD": "1",
    "VTMM": 12,
    "VTYY": 2028,
    "REFE": "Loyalty card",
}
ADDRESS_CUNO = "FRANK"
ADDRESS_ID = "WH1"
ADDRESS: dict[str, object] = {
    "CUNM": "Frankenversand Lager",
    "CUA1": "Lagerstraße 3",
    "PONO": "80805",
    "TOWN": "München",
    "CSCD": "DE",
}
MESSAGE_CUNO = "QUEEN"
MESSAGE_ID = "INVOICE"
MESSAGE_TEXT = "Pay by invoice only"
MESSAGE_PRIORITY = 7

#: The subscriber whose POS lists and confirms after the first net transfer,
#: and the page size it lists with.
POLLING_SUBSCRIBER = "NORTH"
PAGE_SIZE = 12

EXIT_OK = 0
EXIT_DIFFERENCES = 1
EXIT_USAGE = 2


def run_demo(database_path: Path | None) -> int:
    """Run the demo and return the exit code: 0 when every shop holds exactly
    its target, 1 when the final check finds differences, 2 when
    ``database_path`` already exists.

    Without ``database_path`` the demo works in a new temporary directory that
    it removes at the end. A given path is kept, so that it can be inspected.
    """
    console = Console(highlight=False)
    if database_path is not None and database_path.exists():
        error = InvalidValue(
            "database", str(database_path), "a path where no file exists yet"
        )
        Console(stderr=True, highlight=False).print(f"error: {escape(str(error))}")
        return EXIT_USAGE

    with contextlib.ExitStack() as stack:
        if database_path is None:
            directory = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="posoutbox-demo-")
            )
            path = Path(directory) / "posoutbox.db"
        else:
            path = database_path
        db = open_database(f"sqlite:///{path}")
        stack.callback(db.close)
        migrate.upgrade(db)
        console.print(
            "[bold]posoutbox demo[/]: the customer download to POS, run on the "
            "91 customers of the Northwind sample database"
        )
        kept = "kept" if database_path is not None else "removed at the end"
        console.print(f"Database: {escape(str(path))} (SQLite, {kept})")
        same = _Demo(db, console).run()
    return EXIT_OK if same else EXIT_DIFFERENCES


@dataclass
class CustomerCopy:
    """A customer's copy at a simulated POS.

    ``children`` maps a record type (OCUSAD, OPCARD, OOEMSG) to its records by
    key, the key being the record's key fields after CUNO joined by "/".
    """

    customer: dict[str, Value]
    children: dict[str, dict[str, dict[str, Value]]] = field(default_factory=dict)


#: The customers a shop holds at its simulated POS, by CUNO.
ShopCopy = dict[str, CustomerCopy]


class _Demo:
    """The demo's steps, sharing the database and the console."""

    def __init__(self, db: Database, console: Console) -> None:
        self.db = db
        self.console = console
        self.step = 0
        #: Records that reached a shop before their customer, found by the replay.
        self.problems: list[str] = []

    def run(self) -> bool:
        self.import_customers()
        self.assign_groups()
        self.set_up_shops()
        first = self.run_transfer("First net transfer: the initial load of every shop")
        self.show_initial_loads(first)
        self.poll(POLLING_SUBSCRIBER)
        last_trnr = max((record.trnr for record in self.all_records()), default=0)
        self.change_master()
        second = self.run_transfer("Second net transfer: only what changed")
        self.show_second_run(second, last_trnr)
        copies = self.replay_at_pos()
        self.clean_up()
        return self.check(copies)

    # Output helpers

    def section(self, title: str) -> None:
        self.step += 1
        self.console.print()
        self.console.rule(f"[bold]{self.step}. {escape(title)}[/]", align="left")

    def say(self, text: str) -> None:
        self.console.print(text)

    def table(self, *columns: str) -> Table:
        table = Table(box=box.SIMPLE_HEAD)
        for column in columns:
            table.add_column(column, overflow="fold")
        return table

    def name(self, cuno: str) -> str:
        return escape(str(customers.get_customer(self.db, cuno)["CUNM"]))

    # Steps

    def import_customers(self) -> None:
        self.section("Import the Northwind customers")
        cuno_by_line: dict[int, str] = {}

        def remembering(
            rows: Iterator[tuple[int, dict[str, str]]],
        ) -> Iterator[tuple[int, dict[str, str]]]:
            for line, values in rows:
                cuno_by_line[line] = values.get("CUNO", "")
                yield line, values

        source = importlib.resources.files("posoutbox").joinpath(NORTHWIND_FILE)
        with importlib.resources.as_file(source) as path:
            rows = remembering(read_customer_file(path, "northwind"))
            result = customers.import_customers(self.db, rows, user=DEMO_USER)
        self.say(
            f"File {NORTHWIND_FILE}, mapping northwind: {len(cuno_by_line)} rows, "
            f"{result.added} customers added, {result.rejected_rows} row rejected. "
            "A value that does not fit its M3 field rejects its row, and is never "
            "cut:"
        )
        table = self.table("Line", "CUNO", "Reason")
        for rejection in result.rejections:
            table.add_row(
                str(rejection.line),
                cuno_by_line.get(rejection.line, ""),
                escape(rejection.reason),
            )
        self.console.print(table)

    def assign_groups(self) -> None:
        self.section("Give every customer a customer group (CUCL)")
        rule = "; ".join(
            f"{group} for {', '.join(countries)}"
            for group, countries in GROUP_COUNTRIES.items()
        )
        self.say(
            f"Rule: the group follows the country: {rule}; {DEFAULT_GROUP} for "
            "every other country."
        )
        group_by_country = {
            country: group
            for group, countries in GROUP_COUNTRIES.items()
            for country in countries
        }
        members: dict[str, Counter[str]] = {}
        for customer in customers.list_customers(self.db):
            country = str(customer["CSCD"])
            group = group_by_country.get(country, DEFAULT_GROUP)
            customers.change_customer(
                self.db, str(customer["CUNO"]), {"CUCL": group}, user=DEMO_USER
            )
            members.setdefault(group, Counter())[country] += 1

        table = self.table("CUCL", "Customers", "By country")
        for group in sorted(members):
            countries = members[group]
            table.add_row(
                group,
                str(sum(countries.values())),
                " ".join(
                    f"{code} {count}" for code, count in sorted(countries.items())
                ),
            )
        self.console.print(table)

    def set_up_shops(self) -> None:
        self.section("Set up subscribers, segments and shops")
        self.say(
            "A subscriber is one POS back office. A shop receives the definite "
            "customers (STAT 20) that match one of its segments."
        )
        for sbs1, name in SUBSCRIBERS.items():
            shops.add_subscriber(self.db, sbs1, name=name, user=DEMO_USER)
        for seid, (description, conditions) in SEGMENTS.items():
            shops.add_segment(
                self.db,
                seid,
                description=description,
                conditions=conditions,
                user=DEMO_USER,
            )
        for setup in SHOPS:
            self.add_shop(setup)

        table = self.table("Segment", "Conditions", "Description")
        for seid, (description, conditions) in SEGMENTS.items():
            table.add_row(seid, " and ".join(conditions), description)
        self.console.print(table)
        table = self.table("SBS1", "WHLO", "Shop", "Segments")
        for setup in SHOPS:
            table.add_row(setup.sbs1, setup.whlo, setup.name, " ".join(setup.segments))
        self.console.print(table)
        self.say(
            f"Segment {' '.join(NEW_SHOP.segments)} is for shop {NEW_SHOP.whlo}, "
            "which opens later."
        )

    def add_shop(self, setup: ShopSetup) -> None:
        shops.add_shop(
            self.db,
            setup.whlo,
            setup.sbs1,
            name=setup.name,
            segments=setup.segments,
            user=DEMO_USER,
        )

    def run_transfer(self, title: str) -> TransferResult:
        self.section(title)
        result = transfer.net_transfer(self.db, user=DEMO_USER)
        self.say(
            f"Net transfer of every subscriber: {result.records} records created, "
            f"{result.customers} customers processed (counted once per subscriber)."
        )
        table = self.table("SBS1", "TRTP", "ACCT", "Records")
        for row in result.summary_rows():
            table.add_row(
                str(row["SBS1"]),
                str(row["TRTP"]),
                str(row["ACCT"]),
                str(row["records"]),
            )
        self.console.print(table)
        return result

    def show_initial_loads(self, result: TransferResult) -> None:
        self.say(
            "A record is written once per subscriber, with the shops that must "
            "get it as its mailing list. Initial load per shop:"
        )
        table = self.table("WHLO", "Shop", "Customers loaded")
        for setup in SHOPS:
            table.add_row(setup.whlo, setup.name, str(result.loaded[setup.whlo]))
        self.console.print(table)

    def poll(self, sbs1: str) -> None:
        self.section(f"The POS of {sbs1} lists and confirms (LstCus, CnfCus)")
        self.say(
            f"It lists at most {PAGE_SIZE} records per call (maxrecs) and confirms "
            "what it applied. Records listed but not confirmed are listed again."
        )
        table = self.table("Call", "Records", "TRNR", "Confirmed")
        listing = outbox.list_records(self.db, sbs1, maxrecs=PAGE_SIZE)
        table.add_row(f"LstCus maxrecs={PAGE_SIZE}", *_listing(listing), "")
        sample = listing[0] if listing else None
        listing = outbox.list_records(self.db, sbs1, maxrecs=PAGE_SIZE)
        table.add_row("LstCus again, no CnfCus", *_listing(listing), "")
        while listing:
            confirmed = outbox.confirm_records(self.db, sbs1)
            table.add_row("CnfCus", "", "", str(confirmed))
            listing = outbox.list_records(self.db, sbs1, maxrecs=PAGE_SIZE)
            table.add_row(f"LstCus maxrecs={PAGE_SIZE}", *_listing(listing), "")
        self.console.print(table)
        if sample is not None:
            self.show_sample(sample)

    def show_sample(self, record: OutboxRecord) -> None:
        data = layouts.join_data(record.rdda, record.rdd2)
        values = layouts.decode(record.trtp, data)
        self.say(
            f"The first record: TRNR {record.trnr}, TRTP {record.trtp}, ACCT "
            f"{record.acct}, CUNO {record.cuno}, SHOP {','.join(record.shops)}. "
            f"Its RDDA holds {len(record.rdda)} characters (right-trimmed) in the "
            f"fixed-width {record.trtp} layout, starting:"
        )
        self.say(f"  {escape(record.rdda[:70])}")
        shown = ("CUNO", "CUNM", "TOWN", "CSCD", "CUCL", "STAT", "LMDT")
        parsed = ", ".join(f"{name} {values[name]}" for name in shown)
        self.say(f"Parsed back: {escape(parsed)}")

    def change_master(self) -> None:
        self.section("Change the master, and open a shop")
        table = self.table("CUNO", "Customer", "Change", "Effect")
        for cuno, effect, values in CUSTOMER_CHANGES:
            before = customers.get_customer(self.db, cuno)
            customers.change_customer(self.db, cuno, values, user=DEMO_USER)
            change = ", ".join(
                f"{name} {before[name] or '(blank)'} -> {value}"
                for name, value in values.items()
            )
            table.add_row(cuno, self.name(cuno), escape(change), effect)
        self.console.print(table)

        customers.set_card(self.db, CARD_CUNO, CARD_NUMBER, CARD, user=DEMO_USER)
        customers.set_address(
            self.db, ADDRESS_CUNO, ADDRESS_ID, ADDRESS, user=DEMO_USER
        )
        customers.set_message(
            self.db,
            MESSAGE_CUNO,
            MESSAGE_ID,
            MESSAGE_TEXT,
            priority=MESSAGE_PRIORITY,
            user=DEMO_USER,
        )
        self.add_shop(NEW_SHOP)
        self.say(
            f"Added: card {CARD_NUMBER} for {CARD_CUNO} ({self.name(CARD_CUNO)}), "
            f"delivery address {ADDRESS_ID} for {ADDRESS_CUNO} "
            f"({self.name(ADDRESS_CUNO)}), message {MESSAGE_ID} for {MESSAGE_CUNO} "
            f"({self.name(MESSAGE_CUNO)}), and shop {NEW_SHOP.whlo} "
            f"{escape(NEW_SHOP.name)} at {NEW_SHOP.sbs1} with segment "
            f"{' '.join(NEW_SHOP.segments)}."
        )

    def show_second_run(self, result: TransferResult, after_trnr: int) -> None:
        created = [record for record in self.all_records() if record.trnr > after_trnr]
        self.say(
            "The *DEL records: a blocked customer, and customers that left a "
            "shop's segments, are deleted at the shops that hold them."
        )
        table = self.table("TRNR", "SBS1", "TRTP", "ACCT", "CUNO", "SHOP")
        for record in created:
            if record.acct == "*DEL":
                table.add_row(
                    str(record.trnr),
                    record.sbs1,
                    record.trtp,
                    record.acct,
                    record.cuno,
                    ",".join(record.shops),
                )
        self.console.print(table)

        loaded = sorted(
            record.cuno
            for record in created
            if record.trtp == "OCUSMA"
            and record.acct == "*UPD"
            and NEW_SHOP.whlo in record.shops
        )
        self.say(
            f"The new shop {NEW_SHOP.whlo} got its initial load of "
            f"{result.loaded[NEW_SHOP.whlo]} customers: {', '.join(loaded)}."
        )
        changed = [cuno for cuno, _effect, _values in CUSTOMER_CHANGES]
        coalesced = [
            cuno
            for cuno in changed
            if not any(
                record.cuno == cuno and record.trtp == "OCUSMA" for record in created
            )
        ]
        if coalesced:
            self.say(
                f"No new OCUSMA record for {', '.join(coalesced)}: the subscriber "
                "had not listed the customer's first *UPD record yet, so the "
                "change replaced that record's data in place (coalescing)."
            )

    def all_records(self) -> list[OutboxRecord]:
        """Read every record of every subscriber, confirmed ones included."""
        found: list[OutboxRecord] = []
        for sbs1 in SUBSCRIBERS:
            after = 0
            while True:
                page = outbox.browse_records(
                    self.db, sbs1, states=outbox.STATES, after_trnr=after, limit=500
                )
                if not page:
                    break
                found.extend(page)
                after = page[-1].trnr
        return sorted(found, key=lambda record: record.trnr)

    def replay_at_pos(self) -> dict[str, ShopCopy]:
        self.section("Every POS applies its records, then confirms")
        self.say(
            "A simulated POS per shop starts empty and applies, in TRNR order, "
            "every record whose mailing list names the shop, confirmed ones "
            "included. It parses RDDA and RDD2 with the published layouts."
        )
        copies: dict[str, ShopCopy] = {setup.whlo: {} for setup in (*SHOPS, NEW_SHOP)}
        applied: Counter[str] = Counter()
        for record in self.all_records():
            data = layouts.join_data(record.rdda, record.rdd2)
            values = layouts.decode(record.trtp, data)
            for whlo in record.shops:
                problem = _apply(copies.setdefault(whlo, {}), record, values)
                if problem:
                    self.problems.append(f"{whlo}: {problem}")
                applied[whlo] += 1
        self.say(
            "Records applied: "
            + ", ".join(f"{whlo} {count}" for whlo, count in sorted(applied.items()))
            + "."
        )

        table = self.table("SBS1", "LstCus maxrecs=0", "CnfCus confirmed")
        for sbs1 in SUBSCRIBERS:
            listed = outbox.list_records(self.db, sbs1, maxrecs=0)
            confirmed = outbox.confirm_records(self.db, sbs1)
            table.add_row(sbs1, str(len(listed)), str(confirmed))
        self.console.print(table)
        return copies

    def clean_up(self) -> None:
        self.section("Clean up confirmed records")
        result = outbox.cleanup(self.db)
        removed = ", ".join(
            f"{sbs1} {count}" for sbs1, count in sorted(result.removed.items())
        )
        left = sum(entry.unconfirmed for entry in outbox.backlog(self.db))
        self.say(
            f"Removed {result.total} confirmed records ({removed}) and "
            f"{result.shop_sets_removed} mailing lists that nothing uses any more. "
            f"Unconfirmed records left: {left}."
        )

    def check(self, copies: Mapping[str, ShopCopy]) -> bool:
        self.section("What every shop holds, checked against the master")
        self.say(
            "The target of a shop is computed here from the customer and shop "
            "lists: the shop is active with both interfaces on, and the customer "
            "has STAT 20 and matches one of the shop's segments. Customer fields, "
            "delivery address, cards and messages must equal the master."
        )
        targets = _targets(self.db)
        table = self.table("WHLO", "Shop", "Holds", "Target", "For example")
        for shop in shops.list_shops(self.db):
            held = copies.get(shop.whlo, {})
            names = sorted(str(copy.customer["CUNM"]) for copy in held.values())
            table.add_row(
                shop.whlo,
                escape(shop.name),
                str(len(held)),
                str(len(targets.get(shop.whlo, {}))),
                escape(", ".join(names[:3])),
            )
        self.console.print(table)

        differences = list(self.problems)
        for whlo in sorted(set(copies) | set(targets)):
            differences.extend(
                _compare(whlo, copies.get(whlo, {}), targets.get(whlo, {}))
            )
        if not differences:
            self.say("checked: every shop holds exactly its target")
            return True
        self.say(f"[bold red]{len(differences)} differences found:[/]")
        for difference in differences:
            self.say(f"  {escape(difference)}")
        return False


def _listing(records: Sequence[OutboxRecord]) -> tuple[str, str]:
    if not records:
        return "0", ""
    return str(len(records)), f"{records[0].trnr}-{records[-1].trnr}"


def _child_key(trtp: str, values: Mapping[str, Value]) -> str:
    return "/".join(str(values[name]) for name in layouts.KEY_FIELDS[trtp][1:])


def _apply(copy: ShopCopy, record: OutboxRecord, values: dict[str, Value]) -> str:
    """Apply one record to a shop's copy; return a problem, or "" if none."""
    cuno = record.cuno
    if record.trtp == "OCUSMA":
        if record.acct == "*DEL":
            # A customer's *DEL removes its children at the POS as well.
            copy.pop(cuno, None)
        elif cuno in copy:
            copy[cuno].customer = values
        else:
            copy[cuno] = CustomerCopy(values)
        return ""

    held = copy.get(cuno)
    if held is None:
        return (
            f"{record.trtp} {record.acct} TRNR {record.trnr} for {cuno} arrived "
            "before its customer"
        )
    children = held.children.setdefault(record.trtp, {})
    key = _child_key(record.trtp, values)
    if record.acct == "*DEL":
        children.pop(key, None)
    else:
        children[key] = values
    return ""


def _targets(db: Database) -> dict[str, ShopCopy]:
    """Compute what every shop should hold, from the master and the settings."""
    conditions = {
        segment.seid: [
            (condition.field, condition.values) for condition in segment.conditions
        ]
        for segment in shops.list_segments(db)
    }
    master = customers.list_customers(db)
    states: dict[str, CustomerCopy] = {}
    targets: dict[str, ShopCopy] = {}
    for shop in shops.list_shops(db):
        target: ShopCopy = {}
        targets[shop.whlo] = target
        if not (shop.active and shop.pos_interface and shop.customer_interface):
            continue
        for customer in master:
            if customer["STAT"] != "20":
                continue
            if not any(
                all(customer[name] in values for name, values in conditions[seid])
                for seid in shop.segments
            ):
                continue
            cuno = str(customer["CUNO"])
            if cuno not in states:
                states[cuno] = _full_state(db, customer)
            target[cuno] = states[cuno]
    return targets


def _full_state(db: Database, customer: dict[str, Value]) -> CustomerCopy:
    cuno = str(customer["CUNO"])
    children: dict[str, list[dict[str, Value]]] = {
        "OCUSAD": [
            address
            for address in customers.list_addresses(db, cuno)
            if address["ADRT"] == DELIVERY_ADDRESS_TYPE
        ],
        "OPCARD": customers.list_cards(db, cuno),
        "OOEMSG": customers.list_messages(db, cuno),
    }
    return CustomerCopy(
        customer,
        {
            trtp: {_child_key(trtp, values): values for values in found}
            for trtp, found in children.items()
            if found
        },
    )


def _compare(whlo: str, held: ShopCopy, target: ShopCopy) -> list[str]:
    """List how a shop's copy differs from its target, in words."""
    differences = []
    for cuno in sorted(set(target) - set(held)):
        differences.append(f"{whlo}: {cuno} is missing")
    for cuno in sorted(set(held) - set(target)):
        differences.append(f"{whlo}: {cuno} is held but not in the target")
    for cuno in sorted(set(held) & set(target)):
        copy, expected = held[cuno], target[cuno]
        for name, value in expected.customer.items():
            if copy.customer.get(name) != value:
                differences.append(
                    f"{whlo}: {cuno} {name} is {copy.customer.get(name)!r}, "
                    f"expected {value!r}"
                )
        copy_children = {trtp: found for trtp, found in copy.children.items() if found}
        if copy_children != expected.children:
            differences.append(
                f"{whlo}: {cuno} children are {copy_children!r}, "
                f"expected {expected.children!r}"
            )
    return differences

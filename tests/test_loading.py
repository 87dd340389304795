"""Initial loads written by the database equal those planned in Python.

Two subscribers get the same shops. The sweep of the first leaves customers
that only need an initial load to ``posoutbox.db.loading``. The second runs with
that path turned off, so planning builds every record. Their outboxes and
holdings must match record for record: same data, same order per customer,
same shops.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest
import sqlalchemy as sa

from posoutbox import customers, shops, transfer
from posoutbox.db import loading, schema
from posoutbox.db.storage import Database

# Keys whose code point order differs from their order in most collations and,
# for card numbers, from the order of their text.
ADIDS = ("a1", "B1", "Z", "é1", "10", "9", "É")
CARD_NUMBERS = (9, 10, 11, 99, 100, 123456789)
MSIDS = ("m", "M", "Ä", "z1", "Z1")
NAMES = (
    "Åsa Lindqvist",
    "Café Königlich",
    "Jens Hansen",
    "Cafe\u0301 Zoe\u0308",  # decomposed: stored in NFC
    "Ł" * 36,  # the full width of CUNM, in two-byte characters
    "",
)
TOWNS = ("Malmö", "Lund", "København", "Oslo", "Łódź", "")
SHOP_SEGMENTS = (["ALL"], ["SE"], ["GOLD", "NORDIC"])


def fill(db: Database, seed: int, count: int) -> None:
    rng = random.Random(seed)
    free_cards = list(CARD_NUMBERS) + list(range(1000, 1000 + 2 * count))
    rng.shuffle(free_cards)
    for number in range(count):
        cuno = f"C{number:03d}"
        customers.add_customer(
            db,
            cuno,
            {
                "CUNM": rng.choice(NAMES),
                "TOWN": rng.choice(TOWNS),
                "CSCD": rng.choice(("SE", "DK", "NO", "")),
                "CUCL": rng.choice(("GLD", "STD", "")),
                "CUTP": rng.choice((0, 0, 9)),
                "STAT": rng.choice(("20", "20", "20", "10", "90")),
                "PHNO": rng.choice(("+46 40 123 45", "")),
                "LNCD": rng.choice(("SV", "DA", "")),
            },
        )
        for adid in rng.sample(ADIDS, rng.randint(0, 4)):
            customers.set_address(
                db,
                cuno,
                adid,
                {
                    "ADRT": rng.choice((1, 1, 2)),
                    "CUNM": rng.choice(NAMES),
                    "TOWN": rng.choice(TOWNS),
                },
            )
        for _ in range(rng.randint(0, 2)):
            customers.set_card(
                db,
                cuno,
                free_cards.pop(),
                {"BLCD": rng.choice((0, 1)), "VTYY": rng.choice((0, 2030))},
            )
        for msid in rng.sample(MSIDS, rng.randint(0, 3)):
            customers.set_message(
                db,
                cuno,
                msid,
                rng.choice(("Birthday", "Prefers e-mail", "Ödmjuk")),
                priority=rng.choice((None, 1, 9)),
            )


def set_up_subscribers(db: Database) -> None:
    shops.add_segment(db, "ALL")
    shops.add_segment(db, "SE", conditions=["CSCD=SE"])
    shops.add_segment(db, "GOLD", conditions=["CUCL=GLD"])
    shops.add_segment(db, "NORDIC", conditions=["CSCD=DK,NO", "CUTP="])
    for sbs1 in ("S1", "S2"):
        shops.add_subscriber(db, sbs1)
        prefix = sbs1[1]
        for number, segments in enumerate(SHOP_SEGMENTS, start=1):
            shops.add_shop(db, f"{prefix}0{number}", sbs1, segments=segments)
        # A switched-off shop gets nothing from a sweep.
        shops.add_shop(db, f"{prefix}09", sbs1, segments=["ALL"], pos_interface=False)


def outbox_of(db: Database, sbs1: str) -> dict[str, list[tuple[Any, ...]]]:
    """Return each customer's records in TRNR order, shops by their number."""
    records = schema.records
    with db.reading() as conn:
        shop_numbers = _shop_numbers(conn, sbs1)
        rows = conn.execute(
            sa.select(records).where(records.c.sbs1 == sbs1).order_by(records.c.trnr)
        ).all()
    by_customer: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        by_customer[row.cuno].append(
            (
                row.trtp,
                row.acct,
                row.record_key,
                row.data,
                row.origin,
                shop_numbers[row.set_id],
            )
        )
    return dict(by_customer)


def holdings_of(db: Database, sbs1: str) -> dict[str, tuple[str, ...]]:
    holdings = schema.holdings
    with db.reading() as conn:
        shop_numbers = _shop_numbers(conn, sbs1)
        rows = conn.execute(
            sa.select(holdings.c.cuno, holdings.c.set_id).where(holdings.c.sbs1 == sbs1)
        ).all()
    return {row.cuno: shop_numbers[row.set_id] for row in rows}


def _shop_numbers(conn: sa.Connection, sbs1: str) -> dict[int, tuple[str, ...]]:
    members = schema.shop_set_members
    rows = conn.execute(
        sa.select(members.c.set_id, schema.shops.c.whlo)
        .join(schema.shops, schema.shops.c.shop_id == members.c.shop_id)
        .join(schema.shop_sets, schema.shop_sets.c.set_id == members.c.set_id)
        .where(schema.shop_sets.c.sbs1 == sbs1)
    ).all()
    numbers: dict[int, list[str]] = defaultdict(list)
    for set_id, whlo in rows:
        numbers[set_id].append(whlo[1:])
    return {set_id: tuple(sorted(whlos)) for set_id, whlos in numbers.items()}


def transfer_both(
    db: Database, monkeypatch: pytest.MonkeyPatch, batch_size: int
) -> tuple[transfer.TransferResult, transfer.TransferResult, list[int]]:
    """Run S1 with database loads and S2 without; return both results and the
    number of customers each database load wrote."""
    written: list[int] = []
    insert = loading.insert_initial_loads

    def counted(*args: Any, **kwargs: Any) -> Any:
        written.append(len(args[2]))
        return insert(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(loading, "insert_initial_loads", counted)
        with_database = transfer.net_transfer(db, sbs1="S1", batch_size=batch_size)
    with monkeypatch.context() as patch:
        patch.setattr(loading, "supported", lambda conn: False)
        patch.setattr(loading, "insert_initial_loads", counted)
        in_python = transfer.net_transfer(db, sbs1="S2", batch_size=batch_size)
    return with_database, in_python, written


def assert_same_outcome(
    db: Database,
    with_database: transfer.TransferResult,
    in_python: transfer.TransferResult,
) -> None:
    assert outbox_of(db, "S1") == outbox_of(db, "S2")
    assert holdings_of(db, "S1") == holdings_of(db, "S2")
    assert {key[1:]: count for key, count in with_database.counts.items()} == {
        key[1:]: count for key, count in in_python.counts.items()
    }
    assert {whlo[1:]: count for whlo, count in with_database.loaded.items()} == {
        whlo[1:]: count for whlo, count in in_python.loaded.items()
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_initial_load_in_database_equals_planning(
    db: Database, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    set_up_subscribers(db)
    fill(db, seed, 40)
    # Adding the customers recorded change rows, and a customer with change
    # rows is planned in Python. Without them, every customer only needs its
    # initial load.
    with db.transaction() as conn:
        conn.execute(sa.delete(schema.changes).where(schema.changes.c.kind != "SHOP"))

    with_database, in_python, written = transfer_both(db, monkeypatch, batch_size=7)

    assert sum(written) > 10, "the sweep did not load customers in the database"
    assert with_database.records > 60
    assert_same_outcome(db, with_database, in_python)


def test_sweep_mixes_loads_with_planned_customers(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_up_subscribers(db)
    for whlo in ("101", "201"):
        shops.set_shop_segments(db, whlo, ["SE"])
    fill(db, 3, 30)
    # A transfer before the new shops. Customers of SE, GOLD and NORDIC are then
    # held and have new records, so they are planned in Python afterwards. The
    # others only need the initial load of the shop that takes everybody.
    transfer.net_transfer(db)
    for sbs1 in ("S1", "S2"):
        prefix = sbs1[1]
        shops.add_shop(db, f"{prefix}04", sbs1, segments=["NORDIC"])
        shops.add_shop(db, f"{prefix}05", sbs1, segments=["ALL", "GOLD"])
    customers.change_customer(db, "C003", {"CSCD": "DK", "STAT": "20"})
    customers.set_address(db, "C004", "9", {"ADRT": 1, "TOWN": "Oslo"})
    customers.delete_customer(db, "C005")
    customers.add_customer(db, "C900", {"CUNM": "Ny kund", "STAT": "20"})

    with_database, in_python, written = transfer_both(db, monkeypatch, batch_size=4)

    assert sum(written) > 0
    assert_same_outcome(db, with_database, in_python)

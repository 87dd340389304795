"""The settings version, which lets exports keep shops and segments between calls.

Every change of subscribers, shops or segments raises the version, and a
process that read the settings before reads them again once another process
changed them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from posoutbox import customers, shops, transfer
from posoutbox.db import migrate
from posoutbox.db.storage import Database, open_database
from posoutbox.errors import AlreadyExists


def version(db: Database) -> int:
    with db.reading() as conn:
        return shops.settings_version(conn)


CHANGES: list[tuple[str, Callable[[Database], object]]] = [
    ("add subscriber", lambda db: shops.add_subscriber(db, "S3")),
    ("delete subscriber", lambda db: shops.delete_subscriber(db, "S2")),
    ("add shop", lambda db: shops.add_shop(db, "W03", "S1", segments=["ALL"])),
    ("switch shop off", lambda db: shops.change_shop(db, "W01", active=False)),
    ("move shop", lambda db: shops.change_shop(db, "W01", sbs1="S2")),
    ("delete shop", lambda db: shops.delete_shop(db, "W01")),
    ("set shop segments", lambda db: shops.set_shop_segments(db, "W01", ["SE"])),
    ("add segment", lambda db: shops.add_segment(db, "GOLD", conditions=["CUCL=GLD"])),
    (
        "change segment conditions",
        lambda db: shops.change_segment(db, "SE", conditions=["CSCD=SE,NO"]),
    ),
    ("delete segment", lambda db: shops.delete_segment(db, "SE")),
]


def set_up(db: Database) -> None:
    shops.add_segment(db, "ALL")
    shops.add_segment(db, "SE", conditions=["CSCD=SE"])
    shops.add_subscriber(db, "S1")
    shops.add_subscriber(db, "S2")
    shops.add_shop(db, "W01", "S1", segments=["ALL"])
    shops.add_shop(db, "W02", "S1", segments=["SE"])


@pytest.mark.parametrize("name, change", CHANGES, ids=[name for name, _ in CHANGES])
def test_settings_change_raises_version(
    db: Database, name: str, change: Callable[[Database], object]
) -> None:
    set_up(db)
    if name == "delete segment":
        shops.set_shop_segments(db, "W02", ["ALL"])
    before = version(db)

    change(db)

    assert version(db) > before


def test_rejected_change_keeps_version(db: Database) -> None:
    set_up(db)
    before = version(db)

    with pytest.raises(AlreadyExists, match="W01"):
        shops.add_shop(db, "W01", "S2", segments=["ALL"])

    assert version(db) == before


def test_export_sees_settings_of_another_process(database_url: str) -> None:
    first = open_database(database_url)
    second = open_database(database_url)
    try:
        migrate.upgrade(first)
        set_up(first)
        customers.add_customer(first, "C1", {"CUNM": "Åsa", "CSCD": "DK"})
        transfer.net_transfer(first)
        # The export reads and keeps the settings: only W01 takes C1.
        exported = transfer.export_customer(first, "C1")

        shops.change_segment(second, "SE", conditions=["CSCD=SE,DK"])
        again = transfer.export_customer(first, "C1")
    finally:
        first.close()
        second.close()

    assert exported.loaded == {}
    assert again.loaded == {"W02": 1}

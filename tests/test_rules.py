"""The transfer rules, one case per test: who gets which record and when.

Every test drives the service layer (master, settings, transfer and outbox) on
a real database and reads the outbox as a POS would. Where the outcome is a
shop's copy, a simulated POS applies the records and the copy is compared
with the target computed from the master.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from pos_model import (
    SimulatedPos,
    compute_targets,
    differences,
    held_customers,
    switch_flag,
)
from posoutbox import customers, outbox, shops, transfer
from posoutbox.db import schema
from posoutbox.db.storage import Database
from posoutbox.errors import RuleViolation
from posoutbox.outbox import OutboxRecord

SBS1 = "S1"
OTHER_SBS1 = "S2"

#: (TRTP, ACCT, CUNO, SHOP) of a record, enough to tell what reaches whom.
Brief = tuple[str, str, str, tuple[str, ...]]


# Set-up helpers


def build_world(db: Database) -> None:
    """Create subscriber S1 with shops A01 and A02 (segment ALL, no conditions)
    and B01 (segment SE, customers in Sweden)."""
    shops.add_subscriber(db, SBS1)
    shops.add_segment(db, "ALL")
    shops.add_segment(db, "SE", conditions=["CSCD=SE"])
    shops.add_shop(db, "A01", SBS1, segments=["ALL"])
    shops.add_shop(db, "A02", SBS1, segments=["ALL"])
    shops.add_shop(db, "B01", SBS1, segments=["SE"])


def add_customer(db: Database, cuno: str, **values: object) -> None:
    customers.add_customer(db, cuno, {"CUNM": f"Customer {cuno}", **values})


def add_full_customer(db: Database, cuno: str, ccnr: int, **values: object) -> None:
    """Add a customer with a delivery address D1, a postal address P1 (type 2),
    a card and a message M1."""
    add_customer(db, cuno, **values)
    customers.set_address(db, cuno, "D1", {"CUNM": "Delivery", "TOWN": "Malmö"})
    customers.set_address(db, cuno, "P1", {"ADRT": 2, "TOWN": "Lund"})
    customers.set_card(db, cuno, ccnr, {"CTP1": 1, "VTMM": 12, "VTYY": 2030})
    customers.set_message(db, cuno, "M1", "Ask for the loyalty card")


def run(db: Database, **options: Any) -> transfer.TransferResult:
    return transfer.net_transfer(db, **options)


def all_records(
    db: Database, sbs1: str = SBS1, *, after: int = 0
) -> list[OutboxRecord]:
    return outbox.browse_records(
        db, sbs1, states=outbox.STATES, after_trnr=after, limit=100_000
    )


def unconfirmed(db: Database, sbs1: str = SBS1) -> list[OutboxRecord]:
    return outbox.browse_records(db, sbs1, limit=100_000)


def brief(records: list[OutboxRecord]) -> list[Brief]:
    return [(record.trtp, record.acct, record.cuno, record.shops) for record in records]


def last_trnr(db: Database, sbs1: str = SBS1) -> int:
    records = all_records(db, sbs1)
    return records[-1].trnr if records else 0


def records_since(db: Database, mark: int, sbs1: str = SBS1) -> list[Brief]:
    return brief(all_records(db, sbs1, after=mark))


def settled(db: Database, sbs1: str = SBS1) -> tuple[SimulatedPos, int]:
    """Run a full net transfer, drain a new POS and return it with the last TRNR."""
    run(db)
    pos = SimulatedPos(db, sbs1)
    pos.drain()
    return pos, last_trnr(db, sbs1)


def off_target(db: Database, pos: SimulatedPos) -> dict[str, list[str]]:
    """Return how each enabled shop's copy differs from its target."""
    targets = compute_targets(db, pos.sbs1)
    found = {
        whlo: differences(pos.copy_of(whlo), target) for whlo, target in targets.items()
    }
    return {whlo: lines for whlo, lines in found.items() if lines}


def full_state(cuno: str, shop_list: tuple[str, ...]) -> list[Brief]:
    """The records of a full load of a customer built by add_full_customer."""
    return [
        ("OCUSMA", "*UPD", cuno, shop_list),
        ("OCUSAD", "*UPD", cuno, shop_list),
        ("OPCARD", "*UPD", cuno, shop_list),
        ("OOEMSG", "*UPD", cuno, shop_list),
    ]


def count_rows(db: Database, table: sa.Table) -> int:
    with db.reading() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        )


# Status and qualification


def test_preliminary_customer_not_sent(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001, STAT="10")

    run(db)

    assert unconfirmed(db) == []


def test_definite_customer_gets_full_state(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001, STAT="10")
    run(db)

    customers.change_customer(db, "C1", {"STAT": "20"})
    run(db)

    assert brief(unconfirmed(db)) == full_state("C1", ("A01", "A02"))


def test_blocked_customer_deleted_at_holders(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001, CSCD="SE")
    _, mark = settled(db)

    customers.change_customer(db, "C1", {"STAT": "90"})
    run(db)

    assert records_since(db, mark) == [("OCUSMA", "*DEL", "C1", ("A01", "A02", "B01"))]


def test_unblocked_customer_gets_full_state_after_delete(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, _ = settled(db)
    customers.change_customer(db, "C1", {"STAT": "90"})
    pos.drain()
    run(db)
    mark = last_trnr(db)

    customers.change_customer(db, "C1", {"STAT": "20"})
    run(db)
    pos.drain()

    assert records_since(db, mark) == full_state("C1", ("A01", "A02"))
    assert off_target(db, pos) == {}


def test_status_cycle_ends_on_target(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001, STAT="10")
    pos = SimulatedPos(db, SBS1)
    kinds = []
    for status in ("20", "90", "20"):
        mark = last_trnr(db)
        customers.change_customer(db, "C1", {"STAT": status})
        run(db)
        pos.drain()
        kinds.append([(trtp, acct) for trtp, acct, _, _ in records_since(db, mark)])

    assert kinds[0][0] == ("OCUSMA", "*UPD")
    assert kinds[1] == [("OCUSMA", "*DEL")]
    assert kinds[2] == kinds[0]
    assert off_target(db, pos) == {}


def test_preliminary_again_deleted_at_holders(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    _, mark = settled(db)

    customers.change_customer(db, "C1", {"STAT": "10"})
    run(db)

    assert records_since(db, mark) == [("OCUSMA", "*DEL", "C1", ("A01", "A02"))]


def test_customer_deleted_from_master_deleted_at_holders(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    _, mark = settled(db)

    customers.delete_customer(db, "C1")
    run(db)

    assert records_since(db, mark) == [("OCUSMA", "*DEL", "C1", ("A01", "A02"))]


def test_customer_added_again_loses_old_children(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, _ = settled(db)

    customers.delete_customer(db, "C1")
    add_customer(db, "C1")
    run(db)
    pos.drain()

    assert off_target(db, pos) == {}


def test_delete_carries_key_fields_only(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    settled(db)

    customers.delete_card(db, "C1", 1001)
    customers.change_customer(db, "C1", {"STAT": "90"})
    customers.change_customer(db, "C1", {"STAT": "20"})
    run(db)
    deletes = [record for record in unconfirmed(db) if record.acct == "*DEL"]

    assert [record.decoded() for record in deletes] == [
        {
            "CUNO": "C1",
            "CCNR": 1001,
            "CTP1": 0,
            "BLCD": 0,
            "MCRD": "",
            "VTMM": 0,
            "VTYY": 0,
            "REFE": "",
        }
    ]


# Segments


def test_customer_leaving_segment_deleted_where_held(db: Database) -> None:
    build_world(db)
    shops.add_shop(db, "B02", SBS1, segments=["SE"])
    add_full_customer(db, "C1", 1001, CSCD="SE")
    _, mark = settled(db)

    customers.change_customer(db, "C1", {"CSCD": "DK"})
    run(db)
    found = records_since(db, mark)

    assert ("OCUSMA", "*DEL", "C1", ("B01", "B02")) in found
    assert ("OCUSMA", "*UPD", "C1", ("A01", "A02")) in found
    assert len(found) == 2


def test_customer_leaving_segment_not_deleted_where_never_held(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1", CSCD="SE")
    shops.change_shop(db, "B01", active=False)
    _, mark = settled(db)
    shops.add_shop(db, "B02", SBS1, segments=["SE"], active=False)

    customers.change_customer(db, "C1", {"CSCD": "DK"})
    run(db)

    assert records_since(db, mark) == [("OCUSMA", "*UPD", "C1", ("A01", "A02"))]


def test_customer_entering_segment_gets_full_state(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001, CSCD="DK")
    pos, mark = settled(db)

    customers.change_customer(db, "C1", {"CSCD": "SE"})
    run(db)
    pos.drain()
    found = records_since(db, mark)

    # One OCUSMA record: the change for A01 and A02 and the load of B01 carry
    # the same data.
    assert found == [
        ("OCUSMA", "*UPD", "C1", ("A01", "A02", "B01")),
        *full_state("C1", ("B01",))[1:],
    ]
    assert off_target(db, pos) == {}


def test_segment_conditions_edited(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001, CSCD="SE")
    add_full_customer(db, "C2", 1002, CSCD="DK")
    pos, mark = settled(db)

    shops.change_segment(db, "SE", conditions=["CSCD=DK"])
    run(db)
    pos.drain()

    assert records_since(db, mark) == [
        ("OCUSMA", "*DEL", "C1", ("B01",)),
        *full_state("C2", ("B01",)),
    ]
    assert off_target(db, pos) == {}


def test_segment_without_conditions_matches_everyone(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1", CSCD="SE", CUCL="GLD", CUTP=9)
    add_customer(db, "C2")

    pos, _ = settled(db)

    assert sorted(pos.copy_of("A01")) == ["C1", "C2"]


def test_shop_without_segments_gets_nobody(db: Database) -> None:
    build_world(db)
    shop = shops.add_shop(db, "E01", SBS1)
    add_customer(db, "C1")

    pos, _ = settled(db)

    assert pos.copy_of("E01") == {}
    assert any("segment" in warning for warning in shop.warnings())


def test_segment_needs_every_condition(db: Database) -> None:
    build_world(db)
    shops.add_segment(db, "GOLDSE", conditions=["CSCD=SE", "CUCL=GLD,PLT"])
    shops.add_shop(db, "G01", SBS1, segments=["GOLDSE"])
    add_customer(db, "C1", CSCD="SE", CUCL="GLD")
    add_customer(db, "C2", CSCD="SE", CUCL="STD")
    add_customer(db, "C3", CSCD="DK", CUCL="PLT")
    add_customer(db, "C4", CSCD="SE", CUCL="PLT")

    pos, _ = settled(db)

    assert sorted(pos.copy_of("G01")) == ["C1", "C4"]


def test_blank_condition_matches_blank_and_zero(db: Database) -> None:
    build_world(db)
    shops.add_segment(db, "PLAIN", conditions=["CUCL=", "CUTP="])
    shops.add_shop(db, "P01", SBS1, segments=["PLAIN"])
    add_customer(db, "C1")
    add_customer(db, "C2", CUCL="GLD")
    add_customer(db, "C3", CUTP=9)

    pos, _ = settled(db)

    assert sorted(pos.copy_of("P01")) == ["C1"]


def test_shop_matching_several_segments_gets_union(db: Database) -> None:
    build_world(db)
    shops.add_segment(db, "DK", conditions=["CSCD=DK"])
    shops.add_shop(db, "N01", SBS1, segments=["SE", "DK"])
    add_customer(db, "C1", CSCD="SE")
    add_customer(db, "C2", CSCD="DK")
    add_customer(db, "C3", CSCD="NO")

    pos, _ = settled(db)

    assert sorted(pos.copy_of("N01")) == ["C1", "C2"]


def test_shop_segments_replaced(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1", CSCD="SE")
    add_customer(db, "C2", CSCD="DK")
    shops.add_segment(db, "DK", conditions=["CSCD=DK"])
    pos, mark = settled(db)

    shops.set_shop_segments(db, "B01", ["DK"])
    run(db)
    pos.drain()

    assert records_since(db, mark) == [
        ("OCUSMA", "*DEL", "C1", ("B01",)),
        ("OCUSMA", "*UPD", "C2", ("B01",)),
    ]
    assert off_target(db, pos) == {}


# Shops switched off and on, added, moved and deleted


def test_deactivated_shop_gets_no_record(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    _, mark = settled(db)

    shops.change_shop(db, "A02", active=False)
    customers.change_customer(db, "C1", {"CUNM": "Renamed"})
    run(db)

    assert records_since(db, mark) == [("OCUSMA", "*UPD", "C1", ("A01",))]


def test_deactivated_shop_keeps_records_created_for_it(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    run(db)

    shops.change_shop(db, "A02", active=False)
    run(db)

    assert brief(unconfirmed(db)) == [("OCUSMA", "*UPD", "C1", ("A01", "A02"))]


def reactivation_case(db: Database, flag: str) -> SimulatedPos:
    """Switch one flag of A02 off, change the master, switch it back on.

    Meanwhile a card of C1 is removed and another added blocked, C1 gets a
    message, C2 is blocked and C3 is added.
    """
    build_world(db)
    add_full_customer(db, "C1", 1001)
    add_full_customer(db, "C2", 1002)
    pos, _ = settled(db)

    switch_flag(db, "A02", flag, False)
    customers.delete_card(db, "C1", 1001)
    customers.set_card(db, "C1", 1003, {"BLCD": 1})
    customers.set_message(db, "C1", "M2", "New message")
    customers.change_customer(db, "C2", {"STAT": "90"})
    add_full_customer(db, "C3", 1004)
    run(db)
    pos.drain()
    switch_flag(db, "A02", flag, True)
    run(db)
    pos.drain()
    return pos


def test_reactivated_shop_catches_up(db: Database) -> None:
    pos = reactivation_case(db, "active")

    assert off_target(db, pos) == {}


def test_reactivated_shop_gets_removed_card_delete(db: Database) -> None:
    pos = reactivation_case(db, "active")

    assert 1001 not in pos.copy_of("A02")["C1"].cards


def test_pos_interface_off_then_on(db: Database) -> None:
    pos = reactivation_case(db, "pos_interface")

    assert off_target(db, pos) == {}


def test_customer_interface_off_then_on(db: Database) -> None:
    pos = reactivation_case(db, "customer_interface")

    assert off_target(db, pos) == {}


def test_switched_off_shop_copy_unchanged(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, _ = settled(db)
    before = pos.copy_of("A02")["C1"]

    shops.change_shop(db, "A02", customer_interface=False)
    customers.delete_card(db, "C1", 1001)
    customers.change_customer(db, "C1", {"STAT": "90"})
    run(db)
    pos.drain()

    assert pos.copy_of("A02")["C1"] == before


def test_reactivated_after_delete_function_gets_card_delete(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, _ = settled(db)

    shops.change_shop(db, "A02", active=False)
    customers.delete_card(db, "C1", 1001)
    run(db, function="delete")
    shops.change_shop(db, "A02", active=True)
    run(db)
    pos.drain()

    assert off_target(db, pos) == {}


def test_new_shop_gets_initial_load(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    add_full_customer(db, "C2", 1002, STAT="90")
    pos, mark = settled(db)

    shops.add_shop(db, "A03", SBS1, segments=["ALL"])
    run(db)
    pos.drain()

    assert records_since(db, mark) == full_state("C1", ("A03",))
    assert off_target(db, pos) == {}


def test_initial_load_created_once(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    _, _ = settled(db)
    shops.add_shop(db, "A03", SBS1, segments=["ALL"])
    run(db)
    mark = last_trnr(db)

    result = run(db)

    assert result.records == 0
    assert records_since(db, mark) == []


def test_initial_load_sends_current_state_only(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    for name in ("First", "Second", "Third"):
        customers.change_customer(db, "C1", {"CUNM": name})
    _, mark = settled(db)

    shops.add_shop(db, "A03", SBS1, segments=["ALL"])
    run(db)
    found = all_records(db, after=mark)

    assert brief(found) == [("OCUSMA", "*UPD", "C1", ("A03",))]
    assert found[0].decoded()["CUNM"] == "Third"


def test_new_subscriber_first_run_loads_everything(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    add_customer(db, "C2", STAT="90")
    settled(db)

    shops.add_subscriber(db, OTHER_SBS1)
    shops.add_shop(db, "Z01", OTHER_SBS1, segments=["ALL"])
    other, _ = settled(db, OTHER_SBS1)

    assert records_since(db, 0, OTHER_SBS1) == full_state("C1", ("Z01",))
    assert off_target(db, other) == {}


def test_moved_shop_is_new_shop_at_new_subscriber(db: Database) -> None:
    build_world(db)
    shops.add_subscriber(db, OTHER_SBS1)
    add_full_customer(db, "C1", 1001)
    settled(db)

    shops.change_shop(db, "A02", sbs1=OTHER_SBS1)
    run(db)
    other = SimulatedPos(db, OTHER_SBS1)
    other.drain()

    assert brief(unconfirmed(db, OTHER_SBS1)) == []
    assert records_since(db, 0, OTHER_SBS1) == full_state("C1", ("A02",))
    assert off_target(db, other) == {}


def test_moved_shop_leaves_old_subscriber_lists(db: Database) -> None:
    build_world(db)
    shops.add_subscriber(db, OTHER_SBS1)
    add_customer(db, "C1")
    _, mark = settled(db)

    shops.change_shop(db, "A02", sbs1=OTHER_SBS1)
    customers.change_customer(db, "C1", {"CUNM": "Renamed"})
    run(db)

    assert records_since(db, mark) == [("OCUSMA", "*UPD", "C1", ("A01",))]
    assert records_since(db, 0, OTHER_SBS1) == [("OCUSMA", "*UPD", "C1", ("A02",))]


def test_deleted_shop_leaves_future_mailing_lists(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    _, mark = settled(db)

    shops.delete_shop(db, "A02")
    customers.change_customer(db, "C1", {"CUNM": "Renamed"})
    run(db)

    assert records_since(db, mark) == [("OCUSMA", "*UPD", "C1", ("A01",))]


def test_deleted_shop_keeps_created_records(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    run(db)

    shops.delete_shop(db, "A02")

    assert brief(unconfirmed(db)) == [("OCUSMA", "*UPD", "C1", ("A01", "A02"))]


# Cards, addresses and messages


def test_card_of_other_customer_rejected(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    add_customer(db, "C2")
    customers.set_card(db, "C1", 1001, {"CTP1": 1})

    with pytest.raises(RuleViolation) as raised:
        customers.set_card(db, "C2", 1001, {"CTP1": 1})

    assert raised.value.field == "CCNR"
    assert customers.get_card(db, "C1", 1001)["CUNO"] == "C1"
    assert customers.list_cards(db, "C2") == []


def test_removed_card_sends_card_delete(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, mark = settled(db)

    customers.delete_card(db, "C1", 1001)
    run(db)
    pos.drain()

    assert records_since(db, mark) == [("OPCARD", "*DEL", "C1", ("A01", "A02"))]
    assert off_target(db, pos) == {}


def test_blocked_card_is_update(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    _, mark = settled(db)

    customers.set_card(db, "C1", 1001, {"BLCD": 1})
    run(db)
    found = all_records(db, after=mark)

    assert brief(found) == [("OPCARD", "*UPD", "C1", ("A01", "A02"))]
    assert found[0].decoded()["BLCD"] == 1


def test_expired_card_is_update(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    _, mark = settled(db)

    customers.set_card(db, "C1", 1001, {"VTMM": 1, "VTYY": 2001})
    run(db)

    assert records_since(db, mark) == [("OPCARD", "*UPD", "C1", ("A01", "A02"))]


def test_two_changed_cards_are_two_records(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    customers.set_card(db, "C1", 1002, {"CTP1": 2})
    _, mark = settled(db)

    customers.set_card(db, "C1", 1001, {"REFE": "first"})
    customers.set_card(db, "C1", 1002, {"REFE": "second"})
    run(db)
    found = all_records(db, after=mark)

    assert [record.decoded()["CCNR"] for record in found] == [1001, 1002]


def test_address_leaving_delivery_type_sends_delete(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, mark = settled(db)

    customers.set_address(db, "C1", "D1", {"ADRT": 3})
    run(db)
    pos.drain()

    assert records_since(db, mark) == [("OCUSAD", "*DEL", "C1", ("A01", "A02"))]
    assert pos.copy_of("A01")["C1"].addresses == {}


def test_address_becoming_delivery_type_sends_update(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, mark = settled(db)

    customers.set_address(db, "C1", "P1", {"ADRT": 1})
    run(db)
    pos.drain()

    assert records_since(db, mark) == [("OCUSAD", "*UPD", "C1", ("A01", "A02"))]
    assert off_target(db, pos) == {}


def test_other_address_types_never_sent(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    _, mark = settled(db)

    customers.set_address(db, "C1", "P1", {"TOWN": "Ystad"})
    customers.set_address(db, "C1", "P2", {"ADRT": 2, "TOWN": "Ystad"})
    customers.delete_address(db, "C1", "P1")
    run(db)

    assert records_since(db, mark) == []


def test_removed_message_sends_message_delete(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    _, mark = settled(db)

    customers.delete_message(db, "C1", "M1")
    run(db)

    assert records_since(db, mark) == [("OOEMSG", "*DEL", "C1", ("A01", "A02"))]


def test_full_state_sends_parent_first(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    customers.set_card(db, "C1", 1000, {"CTP1": 1})

    run(db)
    types = [record.trtp for record in unconfirmed(db)]

    assert types[0] == "OCUSMA"
    assert sorted(types[1:]) == ["OCUSAD", "OOEMSG", "OPCARD", "OPCARD"]


# Coalescing of new records


def test_newer_update_replaces_new_record_in_place(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    _, mark = settled(db)
    customers.change_customer(db, "C1", {"CUNM": "First"})
    run(db)
    first = all_records(db, after=mark)

    customers.change_customer(db, "C1", {"CUNM": "Second"})
    run(db)
    second = all_records(db, after=mark)

    assert [record.trnr for record in second] == [record.trnr for record in first]
    assert second[0].shops == first[0].shops
    assert second[0].decoded()["CUNM"] == "Second"


def test_coalescing_appends_shops_not_on_list(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    _, mark = settled(db)
    customers.change_customer(db, "C1", {"CUNM": "First"})
    run(db)
    first = all_records(db, after=mark)[0]

    customers.change_customer(db, "C1", {"CUNM": "Second"})
    shops.add_shop(db, "A03", SBS1, segments=["ALL"])
    run(db)
    found = all_records(db, after=mark)

    assert [(record.trnr, record.shops) for record in found] == [
        (first.trnr, ("A01", "A02")),
        (found[1].trnr, ("A03",)),
    ]
    assert found[1].trnr > first.trnr
    assert [record.decoded()["CUNM"] for record in found] == ["Second", "Second"]


def test_listed_record_never_coalesced(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    _, mark = settled(db)
    customers.change_customer(db, "C1", {"CUNM": "First"})
    run(db)
    listed = outbox.list_records(db, SBS1)

    customers.change_customer(db, "C1", {"CUNM": "Second"})
    run(db)
    found = all_records(db, after=mark)

    assert [record.decoded()["CUNM"] for record in found] == ["First", "Second"]
    assert found[0].trnr == listed[0].trnr


def test_delete_never_dropped_by_later_update(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, mark = settled(db)

    customers.change_customer(db, "C1", {"STAT": "90"})
    run(db)
    customers.change_customer(db, "C1", {"STAT": "20"})
    run(db)
    pos.drain()

    assert records_since(db, mark) == [
        ("OCUSMA", "*DEL", "C1", ("A01", "A02")),
        *full_state("C1", ("A01", "A02")),
    ]
    assert off_target(db, pos) == {}


def test_customer_delete_takes_shops_off_new_updates(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001, CSCD="SE")
    _, mark = settled(db)
    customers.change_customer(db, "C1", {"CUNM": "Renamed"})
    customers.set_card(db, "C1", 1001, {"REFE": "changed"})
    run(db)

    customers.change_customer(db, "C1", {"CSCD": "DK"})
    run(db)

    assert records_since(db, mark) == [
        ("OCUSMA", "*UPD", "C1", ("A01", "A02")),
        ("OPCARD", "*UPD", "C1", ("A01", "A02")),
        ("OCUSMA", "*DEL", "C1", ("B01",)),
    ]


def test_customer_delete_drops_updates_left_without_shops(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    _, mark = settled(db)
    customers.change_customer(db, "C1", {"CUNM": "Renamed"})
    customers.set_card(db, "C1", 1001, {"REFE": "changed"})
    run(db)

    customers.change_customer(db, "C1", {"STAT": "90"})
    run(db)

    assert records_since(db, mark) == [("OCUSMA", "*DEL", "C1", ("A01", "A02"))]


def test_customer_delete_takes_shops_off_new_child_deletes(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001, CSCD="DK")
    pos, mark = settled(db)
    customers.change_customer(db, "C1", {"CSCD": "SE"})
    run(db)
    customers.delete_card(db, "C1", 1001)
    run(db)

    customers.change_customer(db, "C1", {"CSCD": "DK"})
    run(db)
    pos.drain()

    # B01 never got the customer, so neither the card *DEL nor anything else
    # of C1 may reach it.
    assert records_since(db, mark) == [
        ("OCUSMA", "*UPD", "C1", ("A01", "A02")),
        ("OPCARD", "*DEL", "C1", ("A01", "A02")),
        ("OCUSMA", "*DEL", "C1", ("B01",)),
    ]
    assert off_target(db, pos) == {}


def test_child_delete_drops_new_child_update(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, mark = settled(db)
    customers.set_card(db, "C1", 1001, {"REFE": "changed"})
    run(db)

    customers.delete_card(db, "C1", 1001)
    run(db)
    pos.drain()

    assert records_since(db, mark) == [("OPCARD", "*DEL", "C1", ("A01", "A02"))]
    assert off_target(db, pos) == {}


def test_update_after_child_delete_appended(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, mark = settled(db)
    customers.delete_card(db, "C1", 1001)
    run(db)

    customers.set_card(db, "C1", 1001, {"REFE": "again"})
    run(db)
    pos.drain()

    assert records_since(db, mark) == [
        ("OPCARD", "*DEL", "C1", ("A01", "A02")),
        ("OPCARD", "*UPD", "C1", ("A01", "A02")),
    ]
    assert off_target(db, pos) == {}


# Listing and confirming


def test_record_created_after_listing_stays_unconfirmed(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    run(db)
    listed = outbox.list_records(db, SBS1)

    add_customer(db, "C2")
    run(db)
    confirmed = outbox.confirm_records(db, SBS1)

    assert confirmed == len(listed)
    assert [record.cuno for record in unconfirmed(db)] == ["C2"]
    assert unconfirmed(db)[0].state == outbox.NEW


def test_confirming_twice_is_harmless(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    run(db)
    outbox.list_records(db, SBS1)
    outbox.confirm_records(db, SBS1)

    again = outbox.confirm_records(db, SBS1)

    assert again == 0
    assert unconfirmed(db) == []


def test_confirm_up_to_trnr(db: Database) -> None:
    build_world(db)
    for cuno in ("C1", "C2", "C3"):
        add_customer(db, cuno)
    run(db)
    listed = outbox.list_records(db, SBS1)

    confirmed = outbox.confirm_records(db, SBS1, up_to=listed[1].trnr)

    assert confirmed == 2
    assert [record.trnr for record in unconfirmed(db)] == [listed[2].trnr]
    assert unconfirmed(db)[0].state == outbox.LISTED


def test_listing_returns_listed_records_first(db: Database) -> None:
    build_world(db)
    for cuno in ("C1", "C2", "C3"):
        add_customer(db, cuno)
    run(db)
    first = outbox.list_records(db, SBS1, 2)

    second = outbox.list_records(db, SBS1, 3)

    assert [record.trnr for record in second[:2]] == [record.trnr for record in first]
    assert len(second) == 3


def test_paging_with_maxrecs(db: Database) -> None:
    build_world(db)
    for number in range(7):
        add_customer(db, f"C{number}")
    run(db)
    pages = []

    for _ in range(5):
        page = outbox.list_records(db, SBS1, 3)
        if not page:
            break
        pages.append([record.cuno for record in page])
        outbox.confirm_records(db, SBS1)

    assert pages == [["C0", "C1", "C2"], ["C3", "C4", "C5"], ["C6"]]


def test_listing_without_maximum_returns_100(db: Database) -> None:
    build_world(db)
    shops.add_segment(db, "NONE", conditions=["CUCL=ZZZ"])
    shops.set_shop_segments(db, "A02", ["NONE"])
    for number in range(105):
        add_customer(db, f"C{number:03d}")
    run(db)

    assert len(outbox.list_records(db, SBS1)) == 100
    assert len(outbox.list_records(db, SBS1, 0)) == 105


def test_listing_in_trnr_order(db: Database) -> None:
    build_world(db)
    for cuno in ("C3", "C1", "C2"):
        add_customer(db, cuno)
    run(db)

    trnrs = [record.trnr for record in outbox.list_records(db, SBS1, 0)]

    assert trnrs == sorted(trnrs)


# Ranged net transfers


def test_ranged_run_leaves_other_customers(db: Database) -> None:
    build_world(db)
    for cuno in ("C1", "C2", "C5"):
        add_customer(db, cuno)
    _, mark = settled(db)
    for cuno in ("C1", "C2", "C5"):
        customers.change_customer(db, cuno, {"CUNM": "Renamed"})

    run(db, from_cuno="C1", to_cuno="C2")
    ranged = [cuno for _, _, cuno, _ in records_since(db, mark)]
    run(db)
    full = [cuno for _, _, cuno, _ in records_since(db, mark)]

    assert ranged == ["C1", "C2"]
    assert full == ["C1", "C2", "C5"]


def test_range_compares_strings_inclusively(db: Database) -> None:
    build_world(db)
    for cuno in ("C1", "C10", "C3", "C30", "C4"):
        add_customer(db, cuno)

    run(db, from_cuno="C10", to_cuno="C3")

    assert sorted({record.cuno for record in unconfirmed(db)}) == ["C10", "C3"]


def test_ranged_run_leaves_settings_changes(db: Database) -> None:
    build_world(db)
    for cuno in ("C1", "C5"):
        add_customer(db, cuno)
    pos, _ = settled(db)

    shops.add_shop(db, "A03", SBS1, segments=["ALL"])
    run(db, from_cuno="C1", to_cuno="C3")
    pos.drain()
    after_ranged = sorted(pos.copy_of("A03"))
    run(db)
    pos.drain()

    assert "C5" not in after_ranged
    assert sorted(pos.copy_of("A03")) == ["C1", "C5"]
    assert off_target(db, pos) == {}


# The delete function


def test_delete_function_sends_deletes_only(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    add_full_customer(db, "C2", 1002)
    add_full_customer(db, "C3", 1003)
    _, mark = settled(db)
    customers.change_customer(db, "C1", {"STAT": "90"})
    customers.change_customer(db, "C2", {"CUNM": "Renamed"})
    customers.delete_card(db, "C3", 1003)

    run(db, function="delete")

    assert records_since(db, mark) == [
        ("OCUSMA", "*DEL", "C1", ("A01", "A02")),
        ("OPCARD", "*DEL", "C3", ("A01", "A02")),
    ]


def test_delete_function_leaves_updates_for_update_run(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    pos, _ = settled(db)
    customers.change_customer(db, "C1", {"CUNM": "Renamed"})
    run(db, function="delete")
    mark = last_trnr(db)

    run(db)
    pos.drain()

    assert records_since(db, mark) == [("OCUSMA", "*UPD", "C1", ("A01", "A02"))]
    assert off_target(db, pos) == {}


def test_forced_delete_reaches_every_enabled_shop(db: Database) -> None:
    build_world(db)
    shops.add_shop(db, "X01", SBS1, segments=["ALL"], active=False)
    add_customer(db, "C1", CSCD="DK")
    _, mark = settled(db)

    run(db, function="delete", force=True)

    assert records_since(db, mark) == [("OCUSMA", "*DEL", "C1", ("A01", "A02", "B01"))]


def test_forced_delete_then_update_reloads(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001, CSCD="SE")
    add_full_customer(db, "C2", 1002, STAT="90")
    pos, _ = settled(db)
    run(db, function="delete", force=True)
    mark = last_trnr(db)

    run(db)
    pos.drain()

    assert records_since(db, mark) == full_state("C1", ("A01", "A02", "B01"))
    assert off_target(db, pos) == {}


def test_forced_delete_limited_to_range(db: Database) -> None:
    build_world(db)
    for cuno in ("C1", "C2", "C3"):
        add_customer(db, cuno)
    _, mark = settled(db)

    run(db, function="delete", force=True, from_cuno="C2", to_cuno="C2")

    assert records_since(db, mark) == [("OCUSMA", "*DEL", "C2", ("A01", "A02", "B01"))]


# Export of one customer


def test_export_sends_full_state_unchanged(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    _, mark = settled(db)

    transfer.export_customer(db, "C1")

    assert records_since(db, mark) == full_state("C1", ("A01", "A02"))


def test_export_deletes_where_no_longer_qualifying(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1", CSCD="SE")
    _, mark = settled(db)
    customers.change_customer(db, "C1", {"CSCD": "DK"})

    transfer.export_customer(db, "C1")

    assert records_since(db, mark) == [
        ("OCUSMA", "*DEL", "C1", ("B01",)),
        ("OCUSMA", "*UPD", "C1", ("A01", "A02")),
    ]


def test_export_consumes_customer_changes(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    pos, _ = settled(db)
    customers.change_customer(db, "C1", {"CUNM": "Renamed"})
    customers.delete_message(db, "C1", "M1")
    transfer.export_customer(db, "C1")
    mark = last_trnr(db)

    run(db)
    pos.drain()

    assert records_since(db, mark) == []
    assert off_target(db, pos) == {}


def test_export_reaches_every_subscriber(db: Database) -> None:
    build_world(db)
    shops.add_subscriber(db, OTHER_SBS1)
    shops.add_shop(db, "Z01", OTHER_SBS1, segments=["ALL"])
    add_customer(db, "C1")

    transfer.export_customer(db, "C1")

    assert brief(unconfirmed(db)) == [("OCUSMA", "*UPD", "C1", ("A01", "A02"))]
    assert brief(unconfirmed(db, OTHER_SBS1)) == [("OCUSMA", "*UPD", "C1", ("Z01",))]


# Changes that change nothing


def test_change_without_difference_records_nothing(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1", TOWN="Malmö")
    with db.transaction() as conn:
        conn.execute(sa.update(schema.customers).values(lmdt=20200101))
    settled(db)

    customer, changed = customers.change_customer(db, "C1", {"TOWN": "Malmö  "})

    assert changed is False
    assert customer["LMDT"] == 20200101
    assert count_rows(db, schema.changes) == 0


def test_real_change_sets_lmdt_to_today(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    with db.transaction() as conn:
        conn.execute(sa.update(schema.customers).values(lmdt=20200101))

    customer, changed = customers.change_customer(db, "C1", {"TOWN": "Lund"})
    today = int(datetime.datetime.now(datetime.UTC).strftime("%Y%m%d"))

    assert changed is True
    assert customer["LMDT"] == today
    assert customers.get_customer(db, "C1")["LMDT"] == today


def test_unchanged_card_records_nothing(db: Database) -> None:
    build_world(db)
    add_full_customer(db, "C1", 1001)
    settled(db)

    _, changed = customers.set_card(db, "C1", 1001, {"CTP1": 1})

    assert changed is False
    assert count_rows(db, schema.changes) == 0


def test_unchanged_settings_record_nothing(db: Database) -> None:
    build_world(db)
    settled(db)

    shops.change_shop(db, "A01", active=True, pos_interface=True)
    shops.set_shop_segments(db, "B01", ["SE"])
    shops.change_segment(db, "SE", conditions=["CSCD=SE"])

    assert count_rows(db, schema.changes) == 0


# Cleanup


def confirm_everything(db: Database, sbs1: str = SBS1) -> None:
    SimulatedPos(db, sbs1).drain()


def test_cleanup_never_removes_unconfirmed(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    add_customer(db, "C2")
    run(db)
    outbox.list_records(db, SBS1, 1)

    result = outbox.cleanup(db)

    assert result.total == 0
    assert len(unconfirmed(db)) == 2


def test_cleanup_removes_confirmed(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    run(db)
    confirm_everything(db)
    add_customer(db, "C2")
    run(db)

    result = outbox.cleanup(db)

    assert result.removed == {SBS1: 1}
    assert [record.cuno for record in all_records(db)] == ["C2"]


def test_cleanup_respects_before(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    run(db)
    confirm_everything(db)
    today = datetime.datetime.now(datetime.UTC).date()

    kept = outbox.cleanup(db, before=today)
    removed = outbox.cleanup(db, before=today + datetime.timedelta(days=1))

    assert kept.total == 0
    assert removed.total == 1


def test_cleanup_respects_subscriber(db: Database) -> None:
    build_world(db)
    shops.add_subscriber(db, OTHER_SBS1)
    shops.add_shop(db, "Z01", OTHER_SBS1, segments=["ALL"])
    add_customer(db, "C1")
    run(db)
    confirm_everything(db)
    confirm_everything(db, OTHER_SBS1)

    result = outbox.cleanup(db, sbs1=OTHER_SBS1)

    assert result.removed == {OTHER_SBS1: 1}
    assert len(all_records(db)) == 1


def test_cleanup_removes_unused_mailing_lists(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    settled(db)
    customers.change_customer(db, "C1", {"STAT": "90"})
    run(db)
    confirm_everything(db)

    result = outbox.cleanup(db)

    assert result.total == 2
    assert result.shop_sets_removed == 1
    assert count_rows(db, schema.shop_sets) == 0
    assert count_rows(db, schema.shop_set_members) == 0


def test_cleanup_preview_removes_nothing(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    run(db)
    confirm_everything(db)

    result = outbox.cleanup(db, preview=True)

    assert result.total == 1
    assert len(all_records(db)) == 1


# Deleting subscribers and segments


def test_subscriber_with_shops_not_deleted(db: Database) -> None:
    build_world(db)

    with pytest.raises(RuleViolation) as raised:
        shops.delete_subscriber(db, SBS1)

    assert raised.value.field == "SBS1"
    assert shops.subscriber_exists(db, SBS1)


def test_subscriber_with_unconfirmed_records_not_deleted(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    run(db)
    for whlo in ("A01", "A02", "B01"):
        shops.delete_shop(db, whlo)

    with pytest.raises(RuleViolation) as raised:
        shops.delete_subscriber(db, SBS1)

    assert raised.value.field == "SBS1"
    assert shops.subscriber_exists(db, SBS1)


def test_empty_subscriber_deleted(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1")
    run(db)
    confirm_everything(db)
    for whlo in ("A01", "A02", "B01"):
        shops.delete_shop(db, whlo)

    shops.delete_subscriber(db, SBS1)

    assert not shops.subscriber_exists(db, SBS1)


def test_segment_used_by_shop_not_deleted(db: Database) -> None:
    build_world(db)

    with pytest.raises(RuleViolation) as raised:
        shops.delete_segment(db, "SE")

    assert raised.value.field == "SEID"
    assert shops.get_segment(db, "SE").shops == ("B01",)


def test_unused_segment_deleted(db: Database) -> None:
    build_world(db)
    shops.set_shop_segments(db, "B01", ["ALL"])

    shops.delete_segment(db, "SE")

    assert [segment.seid for segment in shops.list_segments(db)] == ["ALL"]


# Record numbering and mailing lists


def test_shop_lists_exactly_the_whlos(db: Database) -> None:
    build_world(db)
    shops.add_shop(db, "C01", SBS1, segments=["ALL"], active=False)
    add_customer(db, "C1", CSCD="SE")
    add_customer(db, "C2", CSCD="DK")

    run(db)

    assert [
        (record.cuno, record.as_fields()["SHOP"]) for record in unconfirmed(db)
    ] == [
        ("C1", ["A01", "A02", "B01"]),
        ("C2", ["A01", "A02"]),
    ]


def test_each_trnr_higher_than_every_earlier(db: Database) -> None:
    build_world(db)
    seen: list[int] = []
    for number in range(4):
        add_full_customer(db, f"C{number}", 1000 + number)
        run(db)
        trnrs = [record.trnr for record in all_records(db)]
        confirm_everything(db)
        outbox.cleanup(db)
        seen.extend(trnr for trnr in trnrs if trnr not in seen)
        customers.change_customer(db, f"C{number}", {"STAT": "90"})
        run(db)

    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert all(record.trnr > seen[-1] for record in unconfirmed(db))


def test_holdings_match_pos_copies(db: Database) -> None:
    pos = reactivation_case(db, "active")

    held = held_customers(db, SBS1)

    assert held == {whlo: set(pos.copy_of(whlo)) for whlo in held}


def test_data_round_trips_through_rdda(db: Database) -> None:
    build_world(db)
    add_customer(db, "C1", CUNM="Café Königlich", TOWN="Essen", CSCD="DE")

    pos, _ = settled(db)

    assert pos.copy_of("A01")["C1"].customer == customers.get_customer(db, "C1")


# Storage at scale


def test_holdings_share_shop_sets(db: Database) -> None:
    shops.add_subscriber(db, SBS1)
    shops.add_segment(db, "ALL")
    shops.add_segment(db, "SE", conditions=["CSCD=SE"])
    for number in range(20):
        segment = "ALL" if number < 10 else "SE"
        shops.add_shop(db, f"W{number:02d}", SBS1, segments=[segment])
    customers.import_customers(
        db,
        (
            (line, {"CUNO": f"C{line:04d}", "CSCD": "SE" if line % 2 else "DK"})
            for line in range(200)
        ),
    )

    run(db)

    assert count_rows(db, schema.holdings) == 200
    assert count_rows(db, schema.shop_sets) <= 3
    assert count_rows(db, schema.shop_set_members) <= 30
    assert count_rows(db, schema.records) == 200

"""Unit tests of planning: which records a customer produces, and coalescing.

The properties at the end drive plan_customer and coalesce through random
histories of one customer. Per shop, the coalesced outbox and the plain
sequence of planned records must both bring the shop to its target, with no
child before its parent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from posoutbox import layouts
from posoutbox.fields import (
    ADDRESS_FIELDS,
    CARD_FIELDS,
    CUSTOMER_FIELDS,
    Value,
    default,
)
from posoutbox.planning import (
    ADDRESS,
    CARD,
    CUSTOMER,
    CUSTOMER_KEY,
    DELETE,
    MESSAGE,
    UPDATE,
    CustomerState,
    NewRecord,
    PlannedRecord,
    RecordKey,
    coalesce,
    plan_customer,
)

CUNO = "C1"
SHOPS = frozenset({1, 2, 3})


def customer(**values: Value) -> dict[str, Value]:
    row = {name: default(name) for name in CUSTOMER_FIELDS}
    row.update({"CUNO": CUNO, "CUNM": "Åsa Lindqvist", "STAT": "20", **values})
    return row


def address(adid: str, adrt: int = 1, town: str = "Malmö") -> dict[str, Value]:
    row = {name: default(name) for name in ADDRESS_FIELDS}
    row.update(CUNO=CUNO, ADID=adid, ADRT=adrt, TOWN=town)
    return row


def card(ccnr: int, blcd: int = 0) -> dict[str, Value]:
    row = {name: default(name) for name in CARD_FIELDS}
    row.update(CUNO=CUNO, CCNR=ccnr, BLCD=blcd)
    return row


def message(msid: str, text: str = "Birthday") -> dict[str, Value]:
    return {"CUNO": CUNO, "MSID": msid, "PRIO": 5, "MSTX": text}


def full_state() -> CustomerState:
    return CustomerState(
        CUNO,
        customer(),
        addresses=[address("D1"), address("P1", adrt=2)],
        cards=[card(12), card(11)],
        messages=[message("M1")],
    )


def summary(records: Iterable[PlannedRecord]) -> list[tuple[str, str, str, list[int]]]:
    return [
        (record.trtp, record.acct, record.record_key, sorted(record.shops))
        for record in records
    ]


def new_record(trnr: int, planned: PlannedRecord) -> NewRecord:
    return NewRecord(
        trnr,
        planned.trtp,
        planned.acct,
        planned.record_key,
        planned.data,
        planned.shops,
    )


# plan_customer


def test_new_shop_gets_full_state_parent_first() -> None:
    plan = plan_customer(
        full_state(), evaluated=SHOPS, holders=frozenset(), qualifying=frozenset({1})
    )

    assert summary(plan.records) == [
        (CUSTOMER, UPDATE, "", [1]),
        (ADDRESS, UPDATE, "D1", [1]),
        (CARD, UPDATE, "11", [1]),
        (CARD, UPDATE, "12", [1]),
        (MESSAGE, UPDATE, "M1", [1]),
    ]
    assert plan.loaded_at == {1}
    assert plan.holders_after == {1}


def test_full_state_skips_other_address_types() -> None:
    plan = plan_customer(
        full_state(), evaluated=SHOPS, holders=frozenset(), qualifying=frozenset({1})
    )

    assert ("OCUSAD", "P1") not in [record.key for record in plan.records]


def test_holder_no_longer_qualifying_gets_customer_delete() -> None:
    plan = plan_customer(
        full_state(),
        evaluated=SHOPS,
        holders=frozenset({1, 2}),
        qualifying=frozenset({1}),
    )

    assert summary(plan.records) == [(CUSTOMER, DELETE, "", [2])]
    assert plan.deleted_at == {2}
    assert plan.holders_after == {1}


def test_delete_data_carries_key_only() -> None:
    plan = plan_customer(
        full_state(), evaluated=SHOPS, holders=frozenset({1}), qualifying=frozenset()
    )

    assert layouts.decode(CUSTOMER, plan.records[0].data) == {
        name: CUNO if name == "CUNO" else default(name) for name in CUSTOMER_FIELDS
    }


def test_holder_gets_changed_keys_only() -> None:
    plan = plan_customer(
        full_state(),
        evaluated=SHOPS,
        holders=frozenset({1, 2}),
        qualifying=frozenset({1, 2}),
        changed_everywhere=frozenset({(CARD, "12")}),
    )

    assert summary(plan.records) == [(CARD, UPDATE, "12", [1, 2])]
    assert plan.holders_after == {1, 2}


def test_two_changed_cards_are_two_records() -> None:
    plan = plan_customer(
        full_state(),
        evaluated=SHOPS,
        holders=frozenset({1}),
        qualifying=frozenset({1}),
        changed_everywhere=frozenset({(CARD, "11"), (CARD, "12")}),
    )

    assert [record.key for record in plan.records] == [(CARD, "11"), (CARD, "12")]


def test_removed_child_gets_delete() -> None:
    plan = plan_customer(
        full_state(),
        evaluated=SHOPS,
        holders=frozenset({1}),
        qualifying=frozenset({1}),
        changed_everywhere=frozenset({(CARD, "99"), (ADDRESS, "P1")}),
    )

    assert summary(plan.records) == [
        (ADDRESS, DELETE, "P1", [1]),
        (CARD, DELETE, "99", [1]),
    ]


def test_deleted_customer_sends_customer_delete_only() -> None:
    plan = plan_customer(
        CustomerState(CUNO),
        evaluated=SHOPS,
        holders=frozenset({1, 3}),
        qualifying=frozenset(),
        changed_everywhere=frozenset({CUSTOMER_KEY, (CARD, "11")}),
    )

    assert summary(plan.records) == [(CUSTOMER, DELETE, "", [1, 3])]
    assert plan.holders_after == frozenset()


def test_shop_not_evaluated_gets_nothing() -> None:
    plan = plan_customer(
        full_state(),
        evaluated=frozenset({1}),
        holders=frozenset({2}),
        qualifying=frozenset({1}),
        changed_everywhere=frozenset({CUSTOMER_KEY}),
    )

    assert {shop for record in plan.records for shop in record.shops} == {1}
    assert plan.holders_after == {1, 2}


def test_change_for_one_shop_only() -> None:
    plan = plan_customer(
        full_state(),
        evaluated=frozenset({1}),
        holders=frozenset({1, 2}),
        qualifying=frozenset({1, 2}),
        changed_per_shop={1: frozenset({(MESSAGE, "M1")})},
    )

    assert summary(plan.records) == [(MESSAGE, UPDATE, "M1", [1])]


def test_loaded_and_changed_shops_share_one_record() -> None:
    plan = plan_customer(
        full_state(),
        evaluated=SHOPS,
        holders=frozenset({1}),
        qualifying=frozenset({1, 2}),
        changed_everywhere=frozenset({CUSTOMER_KEY}),
    )

    assert summary(plan.records)[0] == (CUSTOMER, UPDATE, "", [1, 2])
    assert len(plan.records) == 5


# coalesce


def planned(
    trtp: str, acct: str, key: str, shops: set[int], data: str = ""
) -> PlannedRecord:
    return PlannedRecord(
        trtp, acct, CUNO, key, data or f"{trtp}{key}", frozenset(shops)
    )


def test_newer_update_replaces_data_in_place() -> None:
    existing = [new_record(7, planned(CUSTOMER, UPDATE, "", {1, 2}, "old"))]

    outcome = coalesce(existing, [planned(CUSTOMER, UPDATE, "", {1, 2}, "new")])

    assert outcome.appended == []
    assert outcome.changed[7].data == "new"
    assert outcome.changed[7].shops == {1, 2}


def test_shops_not_on_list_get_appended_record() -> None:
    existing = [new_record(7, planned(CUSTOMER, UPDATE, "", {1}, "old"))]

    outcome = coalesce(existing, [planned(CUSTOMER, UPDATE, "", {1, 2}, "new")])

    assert outcome.changed[7].shops == {1}
    assert summary(outcome.appended) == [(CUSTOMER, UPDATE, "", [2])]
    assert outcome.appended[0].data == "new"


def test_update_leaves_record_of_skipped_shop() -> None:
    existing = [new_record(7, planned(CUSTOMER, UPDATE, "", {1, 2}, "old"))]

    outcome = coalesce(existing, [planned(CUSTOMER, UPDATE, "", {1}, "new")])

    assert outcome.changed == {}
    assert summary(outcome.appended) == [(CUSTOMER, UPDATE, "", [1])]
    assert outcome.appended[0].data == "new"


def test_customer_delete_takes_shops_off_every_update() -> None:
    existing = [
        new_record(7, planned(CUSTOMER, UPDATE, "", {1, 2})),
        new_record(8, planned(CARD, UPDATE, "11", {1})),
        new_record(9, planned(MESSAGE, UPDATE, "M1", {2})),
    ]

    outcome = coalesce(existing, [planned(CUSTOMER, DELETE, "", {1})])

    assert outcome.changed[7].shops == {2}
    assert outcome.dropped == {8}
    assert 9 not in outcome.changed
    assert summary(outcome.appended) == [(CUSTOMER, DELETE, "", [1])]


def test_child_delete_takes_shops_off_same_key_only() -> None:
    existing = [
        new_record(7, planned(CARD, UPDATE, "11", {1})),
        new_record(8, planned(CARD, UPDATE, "12", {1})),
    ]

    outcome = coalesce(existing, [planned(CARD, DELETE, "11", {1})])

    assert outcome.dropped == {7}
    assert 8 not in outcome.changed
    assert summary(outcome.appended) == [(CARD, DELETE, "11", [1])]


def test_update_after_delete_is_appended() -> None:
    existing = [new_record(7, planned(CARD, DELETE, "11", {1}))]

    outcome = coalesce(existing, [planned(CARD, UPDATE, "11", {1})])

    assert outcome.dropped == set()
    assert outcome.changed == {}
    assert summary(outcome.appended) == [(CARD, UPDATE, "11", [1])]


def test_customer_delete_not_dropped_by_update() -> None:
    existing = [new_record(7, planned(CUSTOMER, DELETE, "", {1}))]

    outcome = coalesce(existing, [planned(CUSTOMER, UPDATE, "", {1})])

    assert outcome.dropped == set()
    assert summary(outcome.appended) == [(CUSTOMER, UPDATE, "", [1])]


def test_customer_delete_takes_shops_off_child_deletes() -> None:
    # Shop 1 got the customer with record 7, then a card *DEL. Once the
    # customer *DEL takes shop 1 off record 7, the card *DEL must go too, or
    # it would reach a shop that never received the customer.
    existing = [
        new_record(7, planned(CUSTOMER, UPDATE, "", {1})),
        new_record(8, planned(CARD, DELETE, "11", {1, 2})),
    ]

    outcome = coalesce(existing, [planned(CUSTOMER, DELETE, "", {1})])

    assert outcome.dropped == {7}
    assert outcome.changed[8].shops == {2}
    assert summary(outcome.appended) == [(CUSTOMER, DELETE, "", [1])]


# Properties over random histories

ChildCopy = dict[RecordKey, dict[str, Value]]


@dataclasses.dataclass
class Outbox:
    """An in-memory outbox of one customer and subscriber."""

    coalescing: bool
    records: list[NewRecord] = dataclasses.field(default_factory=list)
    listed: set[int] = dataclasses.field(default_factory=set)

    def add(self, plan_records: list[PlannedRecord], next_trnr: int) -> int:
        if not self.coalescing:
            for record in plan_records:
                self.records.append(new_record(next_trnr, record))
                next_trnr += 1
            return next_trnr

        existing = [
            dataclasses.replace(record)
            for record in self.records
            if record.trnr not in self.listed
        ]
        outcome = coalesce(existing, plan_records)
        by_trnr = {record.trnr: record for record in self.records}
        for trnr, changed in outcome.changed.items():
            assert trnr not in self.listed
            by_trnr[trnr].data = changed.data
            by_trnr[trnr].shops = changed.shops
        assert not outcome.dropped & self.listed
        self.records = [
            record for record in self.records if record.trnr not in outcome.dropped
        ]
        for record in outcome.appended:
            self.records.append(new_record(next_trnr, record))
            next_trnr += 1
        return next_trnr

    def list_oldest(self, count: int) -> None:
        for record in self.records[:count]:
            self.listed.add(record.trnr)

    def copy_of(self, shop: int) -> dict[RecordKey, dict[str, Value]] | None:
        """Apply every record of a shop in TRNR order; None when the shop does
        not hold the customer."""
        copy: ChildCopy | None = None
        for record in sorted(self.records, key=lambda record: record.trnr):
            if shop not in record.shops:
                continue
            values = layouts.decode(record.trtp, record.data)
            if record.key == CUSTOMER_KEY:
                if record.acct == DELETE:
                    copy = None
                else:
                    copy = (copy or {}) | {CUSTOMER_KEY: values}
                continue
            assert copy is not None, (
                f"shop {shop}: {record.trtp} {record.acct} TRNR {record.trnr} "
                "before the customer"
            )
            if record.acct == DELETE:
                copy.pop(record.key, None)
            else:
                copy[record.key] = values
        return copy


def target_of(
    state: CustomerState, shop: int, qualifying: frozenset[int]
) -> ChildCopy | None:
    if state.customer is None or shop not in qualifying:
        return None
    return {key: dict(values) for key, values in state.current_records().items()}


events = st.one_of(
    st.tuples(st.just("name"), st.sampled_from(["Åsa", "Café Königlich", "Jens"])),
    st.tuples(st.just("qualify"), st.frozensets(st.sampled_from(sorted(SHOPS)))),
    st.tuples(
        st.just("card"), st.sampled_from([11, 12]), st.sampled_from([0, 1, None])
    ),
    st.tuples(
        st.just("address"), st.sampled_from(["D1", "D2"]), st.sampled_from([1, 2, None])
    ),
    st.tuples(st.just("message"), st.just("M1"), st.sampled_from(["Hi", "Bye", None])),
    st.tuples(st.just("delete customer")),
    st.tuples(st.just("run")),
    st.tuples(st.just("list"), st.integers(min_value=0, max_value=4)),
)


def change_state(
    state: CustomerState, event: tuple[object, ...], changed: set[RecordKey]
) -> None:
    kind = event[0]
    if kind == "delete customer":
        if state.customer is not None:
            changed.add(CUSTOMER_KEY)
            changed.update(
                key for key in state.current_records() if key != CUSTOMER_KEY
            )
        state.customer = None
        state.addresses, state.cards, state.messages = [], [], []
        return
    if state.customer is None:
        state.customer = customer()
        changed.add(CUSTOMER_KEY)
    if kind == "name":
        state.customer = customer(CUNM=str(event[1]))
        changed.add(CUSTOMER_KEY)
    elif kind == "card":
        ccnr, blcd = int(str(event[1])), event[2]
        state.cards = [row for row in state.cards if row["CCNR"] != ccnr]
        if blcd is not None:
            state.cards.append(card(ccnr, int(str(blcd))))
        changed.add((CARD, str(ccnr)))
    elif kind == "address":
        adid, adrt = str(event[1]), event[2]
        state.addresses = [row for row in state.addresses if row["ADID"] != adid]
        if adrt is not None:
            state.addresses.append(address(adid, int(str(adrt))))
        changed.add((ADDRESS, adid))
    elif kind == "message":
        msid, text = str(event[1]), event[2]
        state.messages = [row for row in state.messages if row["MSID"] != msid]
        if text is not None:
            state.messages.append(message(msid, str(text)))
        changed.add((MESSAGE, msid))


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.lists(events, min_size=1, max_size=40))
def test_coalesced_outbox_reaches_target(history: list[tuple[object, ...]]) -> None:
    state = full_state()
    qualifying = SHOPS
    holders: frozenset[int] = frozenset()
    changed: set[RecordKey] = set()
    plain, coalesced = Outbox(coalescing=False), Outbox(coalescing=True)
    next_trnr = 1

    for event in [*history, ("run",)]:
        if event[0] == "qualify":
            qualifying = cast(frozenset[int], event[1])
        elif event[0] == "list":
            coalesced.list_oldest(int(str(event[1])))
        elif event[0] == "run":
            plan = plan_customer(
                state,
                evaluated=SHOPS,
                holders=holders,
                qualifying=qualifying if state.customer is not None else frozenset(),
                changed_everywhere=frozenset(changed),
            )
            next_trnr = plain.add(plan.records, next_trnr)
            next_trnr = coalesced.add(plan.records, next_trnr)
            holders, changed = plan.holders_after, set()
            for shop in sorted(SHOPS):
                target = target_of(state, shop, qualifying)
                assert plain.copy_of(shop) == target
                assert coalesced.copy_of(shop) == target
        else:
            change_state(state, event, changed)

    assert len(coalesced.records) <= len(plain.records)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.lists(events, min_size=1, max_size=40))
def test_coalescing_keeps_records_in_trnr_order(
    history: list[tuple[object, ...]],
) -> None:
    state = full_state()
    qualifying = SHOPS
    holders: frozenset[int] = frozenset()
    changed: set[RecordKey] = set()
    outbox = Outbox(coalescing=True)
    next_trnr = 1

    for event in [*history, ("run",)]:
        if event[0] == "qualify":
            qualifying = cast(frozenset[int], event[1])
        elif event[0] == "list":
            outbox.list_oldest(int(str(event[1])))
        elif event[0] == "run":
            before = {record.trnr for record in outbox.records}
            plan = plan_customer(
                state,
                evaluated=SHOPS,
                holders=holders,
                qualifying=qualifying if state.customer is not None else frozenset(),
                changed_everywhere=frozenset(changed),
            )
            next_trnr = outbox.add(plan.records, next_trnr)
            holders, changed = plan.holders_after, set()
            added = [
                record.trnr for record in outbox.records if record.trnr not in before
            ]
            assert all(trnr > max(before, default=0) for trnr in added)
            assert all(record.shops for record in outbox.records)
        else:
            change_state(state, event, changed)

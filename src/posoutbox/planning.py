"""Which transfer records a customer's changes produce, and how they coalesce.

Pure functions: the transfer module feeds them the customer's current state,
which shops hold it and qualify for it, and the outbox's new records, and writes
back what they return.

Ordering rules enforced here:

- a customer's OCUSMA ``*UPD`` comes before the records of its addresses, cards
  and messages, so a POS never receives a child before its parent;
- a ``*DEL`` is always appended; coalescing takes its shops off the earlier new
  ``*UPD`` records it overrides (every record of the customer for an OCUSMA
  ``*DEL``, the same key for a child), so an ``*UPD`` never lands before a
  ``*DEL`` that follows it for the same shop;
- a newer ``*UPD`` replaces the data of new ``*UPD`` records of the same type and
  key in place, keeping their TRNR and mailing list, and the shops not on those
  lists get an appended record of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from posoutbox import layouts
from posoutbox.fields import Value

UPDATE = "*UPD"
DELETE = "*DEL"

CUSTOMER = "OCUSMA"
ADDRESS = "OCUSAD"
CARD = "OPCARD"
MESSAGE = "OOEMSG"

#: Address type sent to POS: the delivery address.
DELIVERY_ADDRESS_TYPE = 1

#: A record type with the key of one record within the customer: "" for the
#: customer itself, the ADID, CCNR or MSID for a child.
RecordKey = tuple[str, str]

CUSTOMER_KEY: RecordKey = (CUSTOMER, "")


@dataclass
class CustomerState:
    """The current master data of one customer; ``customer`` is None when the
    customer does not exist (deleted from the master)."""

    cuno: str
    customer: dict[str, Value] | None = None
    addresses: list[dict[str, Value]] = field(default_factory=list)
    cards: list[dict[str, Value]] = field(default_factory=list)
    messages: list[dict[str, Value]] = field(default_factory=list)

    def current_records(self) -> dict[RecordKey, Mapping[str, Value]]:
        """Return what the customer sends to POS, parent first, keyed by record."""
        if self.customer is None:
            return {}
        records: dict[RecordKey, Mapping[str, Value]] = {CUSTOMER_KEY: self.customer}
        for address in sorted(self.addresses, key=lambda row: str(row["ADID"])):
            if address["ADRT"] == DELIVERY_ADDRESS_TYPE:
                records[(ADDRESS, str(address["ADID"]))] = address
        for card in sorted(self.cards, key=lambda row: int(row["CCNR"])):
            records[(CARD, str(card["CCNR"]))] = card
        for message in sorted(self.messages, key=lambda row: str(row["MSID"])):
            records[(MESSAGE, str(message["MSID"]))] = message
        return records


def delete_data(cuno: str, key: RecordKey) -> str:
    """Return the data of a ``*DEL``: the key fields, blanks and zeros elsewhere."""
    trtp, record_key = key
    values: dict[str, Value] = {"CUNO": cuno}
    if trtp == ADDRESS:
        values.update(ADRT=DELIVERY_ADDRESS_TYPE, ADID=record_key)
    elif trtp == CARD:
        values["CCNR"] = int(record_key)
    elif trtp == MESSAGE:
        values["MSID"] = record_key
    return layouts.encode_delete(trtp, values)


@dataclass(frozen=True)
class PlannedRecord:
    """A record to create, with the shops of its mailing list."""

    trtp: str
    acct: str
    cuno: str
    record_key: str
    data: str
    shops: frozenset[int]

    @property
    def key(self) -> RecordKey:
        return (self.trtp, self.record_key)


@dataclass(frozen=True)
class Plan:
    """What one customer produces for one subscriber."""

    records: list[PlannedRecord]
    holders_after: frozenset[int]
    deleted_at: frozenset[int]
    loaded_at: frozenset[int]


def plan_customer(
    state: CustomerState,
    *,
    evaluated: frozenset[int],
    holders: frozenset[int],
    qualifying: frozenset[int],
    changed_everywhere: frozenset[RecordKey] = frozenset(),
    changed_per_shop: Mapping[int, frozenset[RecordKey]] | None = None,
) -> Plan:
    """Plan the records that bring the evaluated shops to their target.

    ``evaluated`` are the enabled shops to bring up to date, ``holders`` every
    shop of the subscriber that holds the customer now, ``qualifying`` the
    enabled shops the customer qualifies for. A shop that holds the customer
    and still qualifies gets the records whose key changed, everywhere or for
    that shop; a shop that newly qualifies gets the full state; a holder that no
    longer qualifies gets an OCUSMA ``*DEL``.
    """
    changed_per_shop = changed_per_shop or {}
    deleted_at = (holders & evaluated) - qualifying
    loaded_at = (qualifying & evaluated) - holders
    kept_at = holders & qualifying & evaluated

    changed_at: dict[RecordKey, set[int]] = {}
    for shop_id in kept_at:
        for key in changed_everywhere | changed_per_shop.get(shop_id, frozenset()):
            changed_at.setdefault(key, set()).add(shop_id)

    planned: list[PlannedRecord] = []
    if deleted_at:
        planned.append(_delete_record(state.cuno, CUSTOMER_KEY, deleted_at))

    current = state.current_records()
    for key, values in current.items():
        shops = loaded_at | changed_at.get(key, set())
        if shops:
            data = layouts.encode(key[0], values)
            planned.append(
                PlannedRecord(
                    key[0], UPDATE, state.cuno, key[1], data, frozenset(shops)
                )
            )

    # Children whose key changed and that are gone now: removed, moved away
    # from delivery type, or gone with the customer (then the OCUSMA *DEL covers
    # them and no shop is kept).
    for key in sorted(changed_at.keys() - current.keys()):
        if key != CUSTOMER_KEY:
            planned.append(_delete_record(state.cuno, key, frozenset(changed_at[key])))

    return Plan(
        records=planned,
        holders_after=(holders - deleted_at) | loaded_at,
        deleted_at=deleted_at,
        loaded_at=loaded_at,
    )


def _delete_record(cuno: str, key: RecordKey, shops: frozenset[int]) -> PlannedRecord:
    return PlannedRecord(key[0], DELETE, cuno, key[1], delete_data(cuno, key), shops)


@dataclass
class NewRecord:
    """A record of the outbox that no LstCus has returned yet."""

    trnr: int
    trtp: str
    acct: str
    record_key: str
    data: str
    shops: frozenset[int]

    @property
    def key(self) -> RecordKey:
        return (self.trtp, self.record_key)


@dataclass
class Coalesced:
    """The outcome of coalescing: new records changed in place or dropped, and
    the records to append in order."""

    changed: dict[int, NewRecord]
    dropped: set[int]
    appended: list[PlannedRecord]


def coalesce(existing: list[NewRecord], planned: list[PlannedRecord]) -> Coalesced:
    """Coalesce planned records with one customer's new records of the outbox.

    ``existing`` must be every new record of the customer for the subscriber;
    listed and confirmed records are never touched.
    """
    live = {record.trnr: record for record in existing if record.acct == UPDATE}
    changed: dict[int, NewRecord] = {}
    dropped: set[int] = set()
    appended: list[PlannedRecord] = []

    for record in planned:
        if record.acct == DELETE:
            for trnr, update in list(live.items()):
                overridden = record.key == CUSTOMER_KEY or update.key == record.key
                if not overridden or update.shops.isdisjoint(record.shops):
                    continue
                update.shops = update.shops - record.shops
                if update.shops:
                    changed[trnr] = update
                else:
                    del live[trnr]
                    changed.pop(trnr, None)
                    dropped.add(trnr)
            appended.append(record)
            continue

        covered: frozenset[int] = frozenset()
        for trnr, update in live.items():
            if update.key != record.key:
                continue
            if update.data != record.data:
                update.data = record.data
                changed[trnr] = update
            covered |= update.shops
        remainder = record.shops - covered
        if remainder == record.shops:
            appended.append(record)
        elif remainder:
            appended.append(
                PlannedRecord(
                    record.trtp,
                    record.acct,
                    record.cuno,
                    record.record_key,
                    record.data,
                    remainder,
                )
            )

    return Coalesced(changed=changed, dropped=dropped, appended=appended)

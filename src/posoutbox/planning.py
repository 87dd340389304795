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
- an OCUSMA ``*DEL`` also takes its shops off the customer's new child ``*DEL``
  records, which it makes redundant, so that none of them is left after the
  customer's ``*UPD`` was taken away;
- a newer ``*UPD`` replaces the data of new ``*UPD`` records of the same type and
  key in place, keeping their TRNR and mailing list, and the shops not on those
  lists get an appended record of their own. A new record whose mailing list
  has a shop that does not get the newer ``*UPD`` (switched off, deleted or
  moved away) is left as it is, so that shop's copy does not change.
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
    customer does not exist (deleted from the master).

    Values are as stored, validated when they were saved, so planning encodes
    them with ``layouts.encode_stored`` without validating them again.
    """

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
    """Records planned for one customer and subscriber, with the holders after them."""

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
        # Records of a customer's initial load share loaded_at itself, so that
        # its hash is computed once for them all.
        changed_shops = changed_at.get(key)
        shops = loaded_at | changed_shops if changed_shops else loaded_at
        if shops:
            data = layouts.encode_stored(key[0], values)
            planned.append(
                PlannedRecord(
                    key[0], UPDATE, state.cuno, key[1], data, frozenset(shops)
                )
            )

    # Children whose key changed and that are gone now: removed, moved away
    # from delivery type, or gone with the customer (then the OCUSMA *DEL covers
    # them and no shop is kept).
    gone = changed_at.keys() - current.keys() if changed_at else ()
    for key in sorted(gone):
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
    # A new child *DEL must also leave the shops of an OCUSMA *DEL: the OCUSMA
    # *DEL removes the child anyway, and the shop may lose the customer's *UPD
    # that came before the child *DEL, which would then reach a shop that does
    # not hold the customer.
    child_deletes = {
        record.trnr: record
        for record in existing
        if record.acct == DELETE and record.key != CUSTOMER_KEY
    }
    changed: dict[int, NewRecord] = {}
    dropped: set[int] = set()
    appended: list[PlannedRecord] = []

    for record in planned:
        if record.acct == DELETE:
            overridden = [
                (pending, trnr, update)
                for pending in (live, child_deletes)
                for trnr, update in pending.items()
                if record.key == CUSTOMER_KEY
                or (pending is live and update.key == record.key)
            ]
            for pending, trnr, update in overridden:
                if update.shops.isdisjoint(record.shops):
                    continue
                update.shops = update.shops - record.shops
                if update.shops:
                    changed[trnr] = update
                else:
                    del pending[trnr]
                    changed.pop(trnr, None)
                    dropped.add(trnr)
            appended.append(record)
            continue

        covered: frozenset[int] = frozenset()
        for trnr, update in live.items():
            if update.key != record.key:
                continue
            # Stored data is right-trimmed, as the API serves it.
            if update.data.rstrip(" ") != record.data.rstrip(" "):
                # A shop on the new record that does not get this update, one
                # switched off for instance, must keep its copy as it is, so
                # the record stays unchanged and the other shops get their own.
                if not update.shops <= record.shops:
                    continue
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

"""A simulated POS back office for one subscriber, and each shop's target.

The simulated POS uses only what a real POS receives: it lists records, parses
RDDA and RDD2 with the published layouts, applies them per shop and confirms.
The target is computed from the master and the shop settings without the
planning or qualification code, so the two can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import sqlalchemy as sa

from posoutbox import customers, fields, layouts, outbox, shops
from posoutbox.db import schema
from posoutbox.db.storage import Database
from posoutbox.fields import Value

K = TypeVar("K", str, int)

UPDATE = "*UPD"
DELETE = "*DEL"

#: Upper bound of list calls in one drain, so that a listing that never empties
#: fails the test instead of looping.
MAX_DRAIN_CALLS = 10_000


@dataclass
class CustomerCopy:
    """One customer as a shop holds it: the record data, field by field."""

    customer: dict[str, Value]
    addresses: dict[str, dict[str, Value]] = field(default_factory=dict)
    cards: dict[int, dict[str, Value]] = field(default_factory=dict)
    messages: dict[str, dict[str, Value]] = field(default_factory=dict)


#: What a shop holds: CUNO -> copy.
ShopCopy = dict[str, CustomerCopy]


class ChildBeforeParent(AssertionError):
    """A child record reached a shop that does not hold its customer."""


class ProtocolViolation(AssertionError):
    """A listing broke the list and confirm contract."""


@dataclass(frozen=True)
class ReceivedRecord:
    """A record as the POS parsed it."""

    trnr: int
    trtp: str
    acct: str
    cuno: str
    shops: tuple[str, ...]
    values: dict[str, Value]


class SimulatedPos:
    """The POS back office of one subscriber, holding a copy per shop.

    It remembers the highest TRNR it has applied and skips records at or below
    it, as a POS that resumes after a crash must, because listed records are
    returned again until they are confirmed.
    """

    def __init__(self, db: Database, sbs1: str) -> None:
        self.db = db
        self.sbs1 = sbs1
        self.shops: dict[str, ShopCopy] = {}
        self.last_applied = 0
        self.received: list[ReceivedRecord] = []
        self._seen: dict[int, dict[str, object]] = {}

    def copy_of(self, whlo: str) -> ShopCopy:
        return self.shops.get(whlo, {})

    def reset_shop(self, whlo: str) -> None:
        """Forget a shop's copy, as a POS does for a shop that starts anew."""
        self.shops.pop(whlo, None)

    def poll(
        self, maxrecs: int = 100, *, confirm: bool = True, up_to: int | None = None
    ) -> list[ReceivedRecord]:
        """List once, apply what is new and confirm up to ``up_to`` (default:
        the last TRNR applied); return the records applied by this call."""
        listed = [
            record.as_fields()
            for record in outbox.list_records(self.db, self.sbs1, maxrecs)
        ]
        trnrs = [int(str(record["TRNR"])) for record in listed]
        if trnrs != sorted(set(trnrs)):
            raise ProtocolViolation(f"{self.sbs1}: listing not in TRNR order: {trnrs}")
        if maxrecs and len(listed) > maxrecs:
            raise ProtocolViolation(
                f"{self.sbs1}: listing returned {len(listed)} records, maxrecs "
                f"{maxrecs}"
            )

        applied = []
        for record in listed:
            trnr = int(str(record["TRNR"]))
            if trnr <= self.last_applied:
                self._check_relisted(trnr, record)
                continue
            applied.append(self.apply(record))

        if confirm and listed:
            outbox.confirm_records(
                self.db, self.sbs1, up_to=self.last_applied if up_to is None else up_to
            )
        return applied

    def drain(self, maxrecs: int = 100) -> int:
        """Poll and confirm until the listing is empty; return records applied."""
        count = 0
        for _ in range(MAX_DRAIN_CALLS):
            if not outbox.list_records(self.db, self.sbs1, 1):
                return count
            count += len(self.poll(maxrecs))
        raise ProtocolViolation(f"{self.sbs1}: listing never ran empty")

    def apply(self, record: Mapping[str, object]) -> ReceivedRecord:
        """Apply one listed record (as ``OutboxRecord.as_fields`` gives it) to
        every shop of its mailing list."""
        trnr = int(str(record["TRNR"]))
        if trnr <= self.last_applied:
            raise ProtocolViolation(
                f"{self.sbs1}: TRNR {trnr} is not above {self.last_applied}, the "
                "last record applied, so a resuming POS would skip it"
            )
        trtp = str(record["TRTP"])
        acct = str(record["ACCT"])
        cuno = str(record["CUNO"])
        whlos = tuple(_as_list(record["SHOP"]))
        data = layouts.join_data(str(record["RDDA"]), str(record["RDD2"]))
        values = layouts.decode(trtp, data)
        received = ReceivedRecord(trnr, trtp, acct, cuno, whlos, values)

        if values["CUNO"] != cuno:
            raise ProtocolViolation(
                f"TRNR {trnr}: CUNO {cuno!r} but the data carries {values['CUNO']!r}"
            )
        if acct not in (UPDATE, DELETE):
            raise ProtocolViolation(f"TRNR {trnr}: unknown action code {acct!r}")
        if acct == DELETE:
            _check_delete_data(received)
        if not whlos:
            raise ProtocolViolation(f"TRNR {trnr}: empty mailing list")
        for whlo in whlos:
            self._apply_to_shop(self.shops.setdefault(whlo, {}), whlo, received)

        self.last_applied = trnr
        self.received.append(received)
        self._seen[trnr] = dict(record)
        return received

    def _apply_to_shop(self, copy: ShopCopy, whlo: str, record: ReceivedRecord) -> None:
        values = record.values
        if record.trtp == "OCUSMA":
            if record.acct == DELETE:
                copy.pop(record.cuno, None)
            elif record.cuno in copy:
                copy[record.cuno].customer = values
            else:
                copy[record.cuno] = CustomerCopy(values)
            return

        held = copy.get(record.cuno)
        if held is None:
            raise ChildBeforeParent(
                f"shop {whlo} of {self.sbs1}: {record.trtp} {record.acct} TRNR "
                f"{record.trnr} for customer {record.cuno}, which the shop does "
                "not hold"
            )
        if record.trtp == "OCUSAD":
            if values["ADRT"] != 1:
                raise ProtocolViolation(
                    f"TRNR {record.trnr}: address type {values['ADRT']} sent to POS"
                )
            _upsert_or_delete(held.addresses, str(values["ADID"]), record)
        elif record.trtp == "OPCARD":
            _upsert_or_delete(held.cards, int(values["CCNR"]), record)
        else:
            _upsert_or_delete(held.messages, str(values["MSID"]), record)

    def _check_relisted(self, trnr: int, record: Mapping[str, object]) -> None:
        seen = self._seen.get(trnr)
        if seen is None:
            raise ProtocolViolation(
                f"{self.sbs1}: TRNR {trnr} listed for the first time after TRNR "
                f"{self.last_applied}"
            )
        if seen != dict(record):
            raise ProtocolViolation(
                f"{self.sbs1}: listed record TRNR {trnr} changed from {seen} to "
                f"{dict(record)}"
            )


def _upsert_or_delete(
    children: dict[K, dict[str, Value]], key: K, record: ReceivedRecord
) -> None:
    if record.acct == DELETE:
        children.pop(key, None)
    else:
        children[key] = record.values


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return value.split(",") if value else []
    assert isinstance(value, list | tuple)
    return [str(item) for item in value]


def _check_delete_data(record: ReceivedRecord) -> None:
    keys = layouts.KEY_FIELDS[record.trtp]
    for name, value in record.values.items():
        if name not in keys and value != fields.default(name):
            raise ProtocolViolation(
                f"TRNR {record.trnr}: *DEL carries {name}={value!r}, expected "
                "blanks or zeros outside the key"
            )


# The target, computed from the master without the planning code


def segment_matches(conditions: Iterable[str], customer: Mapping[str, Value]) -> bool:
    """Tell whether every ``FIELD=V1,V2`` condition holds for the customer."""
    for condition in conditions:
        name, _, values = condition.partition("=")
        allowed = set(values.split(","))
        value = customer[name]
        if isinstance(value, int) and "" in allowed:
            allowed.add("0")
        if str(value) not in allowed:
            return False
    return True


def full_copy(db: Database, customer: Mapping[str, Value]) -> CustomerCopy:
    """Return what a shop holds of a customer that qualifies for it."""
    cuno = str(customer["CUNO"])
    return CustomerCopy(
        dict(customer),
        addresses={
            str(address["ADID"]): address
            for address in customers.list_addresses(db, cuno)
            if address["ADRT"] == 1
        },
        cards={int(card["CCNR"]): card for card in customers.list_cards(db, cuno)},
        messages={
            str(message["MSID"]): message
            for message in customers.list_messages(db, cuno)
        },
    )


def switch_flag(db: Database, whlo: str, flag: str, value: bool) -> shops.Shop:
    """Set one of a shop's flags: active, pos_interface or customer_interface."""
    if flag not in ("active", "pos_interface", "customer_interface"):
        raise ValueError(f"unknown shop flag {flag!r}")
    return shops.change_shop(
        db,
        whlo,
        active=value if flag == "active" else None,
        pos_interface=value if flag == "pos_interface" else None,
        customer_interface=value if flag == "customer_interface" else None,
    )


def enabled_shops(db: Database, sbs1: str) -> list[shops.Shop]:
    return [
        shop
        for shop in shops.list_shops(db, sbs1)
        if shop.active and shop.pos_interface and shop.customer_interface
    ]


def compute_targets(db: Database, sbs1: str) -> dict[str, ShopCopy]:
    """Return the target of every enabled shop of a subscriber, by WHLO.

    A shop's target is every customer with STAT 20 that matches all conditions
    of at least one of its segments, with its type-1 addresses, its cards and
    its messages. A shop without segments gets nobody.
    """
    conditions = {
        segment.seid: [str(condition) for condition in segment.conditions]
        for segment in shops.list_segments(db)
    }
    active = [
        customer
        for customer in customers.list_customers(db)
        if customer["STAT"] == "20"
    ]
    copies: dict[str, CustomerCopy] = {}
    targets: dict[str, ShopCopy] = {}
    for shop in enabled_shops(db, sbs1):
        target: ShopCopy = {}
        for customer in active:
            if any(
                segment_matches(conditions[seid], customer) for seid in shop.segments
            ):
                cuno = str(customer["CUNO"])
                if cuno not in copies:
                    copies[cuno] = full_copy(db, customer)
                target[cuno] = copies[cuno]
        targets[shop.whlo] = target
    return targets


def differences(actual: ShopCopy, target: ShopCopy) -> list[str]:
    """Describe how a shop's copy differs from its target, one line per item."""
    lines = []
    for cuno in sorted(actual.keys() - target.keys()):
        lines.append(f"customer {cuno} held but not in the target")
    for cuno in sorted(target.keys() - actual.keys()):
        lines.append(f"customer {cuno} in the target but not held")
    for cuno in sorted(actual.keys() & target.keys()):
        have, want = actual[cuno], target[cuno]
        if have.customer != want.customer:
            changed = sorted(
                name
                for name in want.customer
                if have.customer.get(name) != want.customer[name]
            )
            lines.append(f"customer {cuno}: fields {changed} differ")
        for kind in ("addresses", "cards", "messages"):
            held_children = getattr(have, kind)
            target_children = getattr(want, kind)
            if held_children != target_children:
                lines.append(
                    f"customer {cuno}: {kind} {held_children} != {target_children}"
                )
    return lines


def held_customers(db: Database, sbs1: str) -> dict[str, set[str]]:
    """Return the customers each current shop of a subscriber holds, by WHLO,
    as the holdings table records them."""
    members = schema.shop_set_members
    query = (
        sa.select(schema.shops.c.whlo, schema.holdings.c.cuno)
        .join(members, members.c.set_id == schema.holdings.c.set_id)
        .join(schema.shops, schema.shops.c.shop_id == members.c.shop_id)
        .where(
            schema.holdings.c.sbs1 == sbs1,
            schema.shops.c.deleted_at.is_(None),
            schema.shops.c.sbs1 == sbs1,
        )
    )
    held: dict[str, set[str]] = {
        shop.whlo: set() for shop in shops.list_shops(db, sbs1)
    }
    with db.reading() as conn:
        for whlo, cuno in conn.execute(query):
            held.setdefault(whlo, set()).add(cuno)
    return held

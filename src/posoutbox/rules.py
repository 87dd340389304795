"""Who qualifies for which shop: segment conditions and qualification.

Pure functions over plain values; they know nothing of storage or transport.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from posoutbox import fields
from posoutbox.errors import InvalidValue
from posoutbox.fields import Value

#: Customer fields a segment condition may test.
SEGMENT_FIELDS = (
    "CUCL",
    "CUTP",
    "CSCD",
    "SDST",
    "ECAR",
    "LNCD",
    "CUCD",
    "TOWN",
    "PONO",
)

#: Status of a definite (active) customer, the only one sent to POS.
ACTIVE_STATUS = "20"


@dataclass(frozen=True)
class Condition:
    """A segment condition: the customer field is one of these values."""

    field: str
    values: frozenset[Value]

    def __str__(self) -> str:
        return f"{self.field}={','.join(sorted(str(value) for value in self.values))}"

    def holds_for(self, customer: Mapping[str, Value]) -> bool:
        return customer.get(self.field, fields.default(self.field)) in self.values


def parse_condition(text: str) -> Condition:
    """Parse ``FIELD=V1,V2``; ``FIELD=`` means blank for text and 0 for numbers."""
    name, separator, raw_values = text.partition("=")
    name = name.strip().upper()
    if not separator:
        raise InvalidValue(
            "condition", text, "FIELD=V1,V2 with a field such as CUCL or CSCD"
        )
    if name not in SEGMENT_FIELDS:
        raise InvalidValue(
            "condition", text, f"a field among {', '.join(SEGMENT_FIELDS)}"
        )
    values = frozenset(fields.validate(name, value) for value in raw_values.split(","))
    return Condition(name, values)


def parse_conditions(texts: Iterable[str]) -> tuple[Condition, ...]:
    """Parse conditions, rejecting a field given twice."""
    conditions = [parse_condition(text) for text in texts]
    seen: set[str] = set()
    for condition in conditions:
        if condition.field in seen:
            raise InvalidValue(
                "condition",
                str(condition),
                f"one condition per field, {condition.field} is given twice",
            )
        seen.add(condition.field)
    return tuple(sorted(conditions, key=lambda condition: condition.field))


def matches(conditions: Sequence[Condition], customer: Mapping[str, Value]) -> bool:
    """Tell whether a customer meets every condition of a segment.

    A segment without conditions matches every customer.
    """
    return all(condition.holds_for(customer) for condition in conditions)


@dataclass(frozen=True)
class ShopSettings:
    """Settings of one shop that qualification reads."""

    shop_id: int
    whlo: str
    active: bool
    pos_interface: bool
    customer_interface: bool
    segments: frozenset[str]

    @property
    def enabled(self) -> bool:
        """Whether the shop receives records: active with both interfaces on."""
        return self.active and self.pos_interface and self.customer_interface


class Qualifier:
    """Decides the qualifying shops of customers for one subscriber's shops."""

    def __init__(
        self,
        shops: Mapping[int, ShopSettings],
        segments: Mapping[str, tuple[Condition, ...]],
    ) -> None:
        self.shops = shops
        self.segments = segments
        self.enabled = frozenset(
            shop_id for shop_id, shop in shops.items() if shop.enabled
        )

        # Only segments that an enabled shop uses matter, and customers that
        # match the same segments qualify for the same shops.
        shops_by_segment: dict[str, set[int]] = {}
        for shop_id in self.enabled:
            for seid in shops[shop_id].segments:
                shops_by_segment.setdefault(seid, set()).add(shop_id)
        self._shops_by_segment = {
            seid: frozenset(shop_ids)
            for seid, shop_ids in shops_by_segment.items()
            if seid in segments
        }
        self._by_matched: dict[frozenset[str], frozenset[int]] = {}

    def qualifying_shops(self, customer: Mapping[str, Value] | None) -> frozenset[int]:
        """Return the enabled shops the customer qualifies for.

        A customer qualifies when its status is 20 and it matches at least one
        of the shop's segments; a shop without segments receives nobody.
        """
        if customer is None or customer.get("STAT") != ACTIVE_STATUS:
            return frozenset()
        matched = frozenset(
            seid
            for seid in self._shops_by_segment
            if matches(self.segments[seid], customer)
        )
        qualifying = self._by_matched.get(matched)
        if qualifying is None:
            qualifying = frozenset().union(
                *(self._shops_by_segment[seid] for seid in matched)
            )
            self._by_matched[matched] = qualifying
        return qualifying

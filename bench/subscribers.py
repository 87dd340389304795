"""Subscribers, shops and segments of the benchmarks, made through posoutbox.shops.

Every shop has one market segment (a country) and some also the VIP segment or
the catch-all segment, so every definite customer qualifies for at least one
shop whatever the number of shops. An initial load therefore creates the same
records for 10 shops as for 500, with longer mailing lists.
"""

from __future__ import annotations

import string

from bench.generate import MARKETS
from posoutbox import shops
from posoutbox.db.storage import Database

ALL_SEGMENT = "ALL"
VIP_SEGMENT = "VIP"

_WHLO_CHARACTERS = string.digits + string.ascii_uppercase


def market_segment(country: str) -> str:
    return f"M-{country}"


def add_segments(db: Database) -> None:
    """Add the market, VIP and catch-all segments unless they exist."""
    existing = {segment.seid for segment in shops.list_segments(db)}
    segments: list[tuple[str, str, list[str]]] = [(ALL_SEGMENT, "Every customer", [])]
    segments.append((VIP_SEGMENT, "VIP customers", ["CUCL=VIP"]))
    for _, country, _, _ in MARKETS:
        segments.append(
            (market_segment(country), f"Customers in {country}", [f"CSCD={country}"])
        )
    for seid, description, conditions in segments:
        if seid not in existing:
            shops.add_segment(db, seid, description=description, conditions=conditions)


class ShopCodes:
    """Hands out WHLO codes, which are unique across all subscribers."""

    def __init__(self, db: Database) -> None:
        self.used = {shop.whlo for shop in shops.list_shops(db)}
        self.counter = 36 * 36  # start at "100", three characters

    def next(self) -> str:
        while True:
            code = _base36(self.counter)
            self.counter += 1
            if code not in self.used:
                self.used.add(code)
                return code


def _base36(number: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 36)
        digits.append(_WHLO_CHARACTERS[remainder])
    return "".join(reversed(digits)).rjust(3, "0")


def shop_segments(index: int) -> list[str]:
    """Return the segments of the subscriber's ``index``-th shop."""
    country = MARKETS[index % len(MARKETS)][1]
    segments = [market_segment(country)]
    if index % 50 == 0:
        segments.append(ALL_SEGMENT)
    if index % 7 == 3:
        segments.append(VIP_SEGMENT)
    return segments


def add_subscriber_with_shops(
    db: Database, sbs1: str, shop_count: int, codes: ShopCodes
) -> list[str]:
    """Add a subscriber and its shops, each recording a SHOP change row."""
    add_segments(db)
    shops.add_subscriber(db, sbs1, name=f"Benchmark {sbs1}")
    whlos = []
    for index in range(shop_count):
        whlo = codes.next()
        shops.add_shop(
            db,
            whlo,
            sbs1,
            name=f"Shop {index + 1} of {sbs1}",
            segments=shop_segments(index),
        )
        whlos.append(whlo)
    return whlos

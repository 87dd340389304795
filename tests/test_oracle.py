"""Random sequences of master, settings, transfer and POS steps against a model.

Each sequence starts from a seed, so a failure names the seed and the steps that
led to it, and ``POSOUTBOX_ORACLE_SEEDS`` (count) with
``POSOUTBOX_ORACLE_FIRST_SEED`` runs other seeds. At the end a full net
transfer runs, every subscriber's POS drains the outbox, and every enabled
shop's copy must equal its target field for field. On the way, no shop may
receive a child before its parent, and no record created while a shop was
switched off, deleted or moved away may name it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

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
from posoutbox.db import migrate, schema
from posoutbox.db.storage import Database, open_database
from posoutbox.errors import RuleViolation

SQLITE_SEEDS = int(os.environ.get("POSOUTBOX_ORACLE_SEEDS", "24"))
POSTGRESQL_SEEDS = max(1, SQLITE_SEEDS // 4)
FIRST_SEED = int(os.environ.get("POSOUTBOX_ORACLE_FIRST_SEED", "0"))
STEPS = 60

SUBSCRIBERS = ("S1", "S2")
CUNOS = ("C1", "C10", "C2", "C3", "C4", "C5", "C6", "C7")
CARD_NUMBERS = tuple(range(1, 11))
ADIDS = ("D1", "D2", "P1")
MSIDS = ("M1", "M2")
SEGMENTS = ("ALL", "SE", "GOLD", "NORDIC")
CONDITION_CHOICES = (
    (),
    ("CSCD=SE",),
    ("CSCD=DK,NO",),
    ("CUCL=GLD",),
    ("CUCL=GLD,STD", "CSCD=SE"),
    ("CUTP=",),
    ("CUCL=",),
)
NAMES = ("Åsa Lindqvist", "Café Königlich", "Nordic Outdoor AB", "Jens Hansen")
TOWNS = ("Malmö", "Lund", "København", "Oslo", "")


class Scenario:
    """One random sequence on one database, with a POS per subscriber."""

    def __init__(self, db: Database, seed: int) -> None:
        self.db = db
        self.seed = seed
        self.rng = random.Random(seed)
        self.log: list[str] = []
        self.pos = {sbs1: SimulatedPos(db, sbs1) for sbs1 in SUBSCRIBERS}
        self.shop_count = 0
        self.deleted: list[str] = []
        self.ever_in: dict[str, set[str]] = {sbs1: set() for sbs1 in SUBSCRIBERS}
        self.high_trnr = 0
        # Per (SBS1, WHLO): TRNR ranges (after, up to] in which the shop was
        # not receiving. None as the end means it still is not.
        self.silent: dict[tuple[str, str], list[list[int | None]]] = {}
        self.receiving: set[tuple[str, str]] = set()
        self.checked = dict.fromkeys(SUBSCRIBERS, 0)

    # Set-up and the step loop

    def set_up(self) -> None:
        for sbs1 in SUBSCRIBERS:
            shops.add_subscriber(self.db, sbs1)
        shops.add_segment(self.db, "ALL")
        shops.add_segment(self.db, "SE", conditions=["CSCD=SE"])
        shops.add_segment(self.db, "GOLD", conditions=["CUCL=GLD"])
        shops.add_segment(self.db, "NORDIC", conditions=["CSCD=DK,NO", "CUTP="])
        for sbs1, segments in (
            ("S1", ["ALL"]),
            ("S1", ["SE"]),
            ("S1", ["GOLD", "NORDIC"]),
            ("S2", ["ALL"]),
            ("S2", ["SE"]),
        ):
            self.add_shop(sbs1, segments, enabled=True)
        for cuno in CUNOS[:4]:
            values = self.customer_values(full=True)
            self.note(f"add customer {cuno} {values}")
            customers.add_customer(self.db, cuno, values)
        self.refresh_receiving()

    def steps(self) -> list[tuple[int, Callable[[], None]]]:
        return [
            (6, self.step_add_customer),
            (10, self.step_change_customer),
            (5, self.step_status),
            (2, self.step_delete_customer),
            (5, self.step_set_address),
            (3, self.step_delete_address),
            (5, self.step_set_card),
            (4, self.step_delete_card),
            (3, self.step_set_message),
            (2, self.step_delete_message),
            (2, self.step_segment_conditions),
            (4, self.step_shop_flag),
            (2, self.step_shop_segments),
            (1, self.step_new_shop),
            (1, self.step_delete_shop),
            (1, self.step_move_shop),
            (3, self.step_export),
            (5, self.step_net_transfer),
            (2, self.step_ranged_transfer),
            (4, self.step_delete_function),
            (10, self.step_poll),
            (1, self.step_list_without_applying),
            (1, self.step_cleanup),
            (1, self.step_settle),
        ]

    def run(self, count: int) -> None:
        self.set_up()
        steps = self.steps()
        # Each seed stresses its own mix of steps, some of them left out: a
        # sequence that rarely polls leaves many new records to coalesce, one
        # without update runs lets the delete function meet pending changes.
        weights = [weight * self.rng.choice((0, 0.3, 1, 3)) for weight, _ in steps]
        if not any(weights):
            weights = [weight for weight, _ in steps]
        for _ in range(count):
            ((_, step),) = self.rng.choices(steps, weights)
            step()
            self.refresh_receiving()
            self.check_silence()
        self.finish()

    def note(self, text: str) -> None:
        self.log.append(text)

    # Helpers

    def existing_customers(self) -> list[str]:
        return [str(customer["CUNO"]) for customer in customers.list_customers(self.db)]

    def pick_customer(self) -> str | None:
        existing = self.existing_customers()
        return self.rng.choice(existing) if existing else None

    def customer_values(self, *, full: bool = False) -> dict[str, object]:
        choices: dict[str, tuple[object, ...]] = {
            "CUNM": NAMES,
            "TOWN": TOWNS,
            "CSCD": ("SE", "SE", "DK", "NO", ""),
            "CUCL": ("", "GLD", "STD"),
            "CUTP": (0, 0, 9),
            "STAT": ("20", "20", "20", "10", "90"),
            "PHNO": ("", "+46 40 123 45"),
        }
        names = list(choices) if full else self.rng.sample(list(choices), 2)
        return {name: self.rng.choice(choices[name]) for name in names}

    def current_shops(self) -> list[shops.Shop]:
        return shops.list_shops(self.db)

    def update_high_trnr(self) -> None:
        with self.db.reading() as conn:
            highest = conn.execute(
                sa.select(sa.func.max(schema.records.c.trnr))
            ).scalar()
        self.high_trnr = max(self.high_trnr, int(highest or 0))

    def refresh_receiving(self) -> None:
        """Open or close the silent ranges of shops switched off or on, added,
        deleted or moved since the last step."""
        now = {(shop.sbs1, shop.whlo) for shop in self.current_shops() if shop.enabled}
        for key in self.receiving - now:
            self.silent.setdefault(key, []).append([self.high_trnr, None])
        for key in now - self.receiving:
            ranges = self.silent.get(key, [])
            if ranges and ranges[-1][1] is None:
                ranges[-1][1] = self.high_trnr
        self.receiving = now

    def check_silence(self) -> None:
        for sbs1, pos in self.pos.items():
            for record in pos.received[self.checked[sbs1] :]:
                for whlo in record.shops:
                    for after, up_to in self.silent.get((sbs1, whlo), []):
                        assert after is not None
                        if record.trnr > after and (
                            up_to is None or record.trnr <= up_to
                        ):
                            raise AssertionError(
                                f"TRNR {record.trnr} names shop {whlo} of {sbs1}, "
                                f"created while it received nothing ({after}, {up_to}]"
                            )
            self.checked[sbs1] = len(pos.received)

    def add_shop(self, sbs1: str, segments: list[str], *, enabled: bool) -> str:
        self.shop_count += 1
        whlo = f"W{self.shop_count:02d}"
        self.enter(sbs1, whlo)
        shops.add_shop(self.db, whlo, sbs1, segments=segments, active=enabled)
        return whlo

    def enter(self, sbs1: str, whlo: str) -> None:
        """Prepare a POS for a shop that starts anew at it.

        The wire names shops by WHLO only, so records still pending for an
        earlier incarnation of the same WHLO would land in the new copy. The
        POS therefore applies everything pending before the shop starts anew.
        """
        if whlo in self.ever_in[sbs1]:
            self.pos[sbs1].drain()
        self.pos[sbs1].reset_shop(whlo)
        self.ever_in[sbs1].add(whlo)

    # Master steps

    def step_add_customer(self) -> None:
        existing = self.existing_customers()
        free = [cuno for cuno in CUNOS if cuno not in existing]
        if not free:
            return
        cuno = self.rng.choice(free)
        values = self.customer_values(full=True)
        self.note(f"add customer {cuno} {values}")
        customers.add_customer(self.db, cuno, values)

    def step_change_customer(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        values = self.customer_values()
        self.note(f"change customer {cuno} {values}")
        customers.change_customer(self.db, cuno, values)

    def step_status(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        status = self.rng.choice(("10", "20", "90"))
        self.note(f"status of {cuno} to {status}")
        customers.change_customer(self.db, cuno, {"STAT": status})

    def step_delete_customer(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        self.note(f"delete customer {cuno}")
        customers.delete_customer(self.db, cuno)

    def step_set_address(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        adid = self.rng.choice(ADIDS)
        values = {
            "ADRT": self.rng.choice((1, 1, 2)),
            "TOWN": self.rng.choice(TOWNS),
            "CUNM": self.rng.choice(NAMES),
        }
        self.note(f"set address {cuno}/{adid} {values}")
        customers.set_address(self.db, cuno, adid, values)

    def step_delete_address(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        addresses = customers.list_addresses(self.db, cuno)
        if not addresses:
            return
        adid = str(self.rng.choice(addresses)["ADID"])
        self.note(f"delete address {cuno}/{adid}")
        customers.delete_address(self.db, cuno, adid)

    def step_set_card(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        ccnr = self.rng.choice(CARD_NUMBERS)
        values = {
            "BLCD": self.rng.choice((0, 0, 1)),
            "REFE": self.rng.choice(("", "gift", "staff")),
            "VTYY": self.rng.choice((0, 2001, 2030)),
        }
        self.note(f"set card {cuno}/{ccnr} {values}")
        try:
            customers.set_card(self.db, cuno, ccnr, values)
        except RuleViolation as error:
            assert error.field == "CCNR"
            self.note("  rejected: the card belongs to another customer")

    def step_delete_card(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        cards = customers.list_cards(self.db, cuno)
        if not cards:
            return
        ccnr = self.rng.choice(cards)["CCNR"]
        self.note(f"delete card {cuno}/{ccnr}")
        customers.delete_card(self.db, cuno, ccnr)

    def step_set_message(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        msid = self.rng.choice(MSIDS)
        text = self.rng.choice(("Birthday", "Owes 20 SEK", "Prefers e-mail"))
        priority = self.rng.choice((None, 1, 9))
        self.note(f"set message {cuno}/{msid} {text!r} {priority}")
        customers.set_message(self.db, cuno, msid, text, priority=priority)

    def step_delete_message(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        messages = customers.list_messages(self.db, cuno)
        if not messages:
            return
        msid = str(self.rng.choice(messages)["MSID"])
        self.note(f"delete message {cuno}/{msid}")
        customers.delete_message(self.db, cuno, msid)

    # Settings steps

    def step_segment_conditions(self) -> None:
        seid = self.rng.choice(SEGMENTS[1:])
        conditions = list(self.rng.choice(CONDITION_CHOICES))
        self.note(f"conditions of {seid} to {conditions}")
        shops.change_segment(self.db, seid, conditions=conditions)

    def step_shop_flag(self) -> None:
        current = self.current_shops()
        if not current:
            return
        switched_off = [shop for shop in current if not shop.enabled]
        if switched_off and self.rng.random() < 0.5:
            shop = self.rng.choice(switched_off)
            self.note(f"shop {shop.whlo} switched on")
            shops.change_shop(
                self.db,
                shop.whlo,
                active=True,
                pos_interface=True,
                customer_interface=True,
            )
            return
        shop = self.rng.choice(current)
        flag = self.rng.choice(("active", "pos_interface", "customer_interface"))
        value = not getattr(shop, flag)
        self.note(f"shop {shop.whlo} {flag} {value}")
        switch_flag(self.db, shop.whlo, flag, value)

    def step_shop_segments(self) -> None:
        current = self.current_shops()
        if not current:
            return
        shop = self.rng.choice(current)
        segments = self.rng.sample(SEGMENTS, self.rng.choice((0, 1, 1, 2)))
        self.note(f"segments of {shop.whlo} to {segments}")
        shops.set_shop_segments(self.db, shop.whlo, segments)

    def step_new_shop(self) -> None:
        sbs1 = self.rng.choice(SUBSCRIBERS)
        segments = self.rng.sample(SEGMENTS, self.rng.choice((1, 2)))
        enabled = self.rng.random() < 0.8
        if self.deleted and self.rng.random() < 0.5:
            whlo = self.deleted.pop(self.rng.randrange(len(self.deleted)))
            self.enter(sbs1, whlo)
            shops.add_shop(self.db, whlo, sbs1, segments=segments, active=enabled)
        else:
            whlo = self.add_shop(sbs1, segments, enabled=enabled)
        self.note(f"new shop {whlo} at {sbs1} {segments} enabled={enabled}")

    def step_delete_shop(self) -> None:
        current = self.current_shops()
        if len(current) <= 2:
            return
        shop = self.rng.choice(current)
        self.note(f"delete shop {shop.whlo} of {shop.sbs1}")
        shops.delete_shop(self.db, shop.whlo)
        self.deleted.append(shop.whlo)

    def step_move_shop(self) -> None:
        current = self.current_shops()
        if not current:
            return
        shop = self.rng.choice(current)
        target = "S2" if shop.sbs1 == "S1" else "S1"
        self.note(f"move shop {shop.whlo} from {shop.sbs1} to {target}")
        self.enter(target, shop.whlo)
        shops.change_shop(self.db, shop.whlo, sbs1=target)

    # Transfer steps

    def transferred(self, result: transfer.TransferResult) -> None:
        self.note(f"  {result.records} records")
        self.update_high_trnr()

    def customer_range(self) -> tuple[str | None, str | None]:
        low, high = sorted(self.rng.sample(CUNOS, 2))
        return (
            low if self.rng.random() < 0.8 else None,
            high if self.rng.random() < 0.8 else None,
        )

    def step_export(self) -> None:
        cuno = self.pick_customer()
        if cuno is None:
            return
        self.note(f"export {cuno}")
        self.transferred(transfer.export_customer(self.db, cuno))

    def batch_size(self) -> int:
        """Return a batch size, small ones included so that runs cross batches."""
        return self.rng.choice((1, 2, 3, transfer.DEFAULT_BATCH_SIZE))

    def step_net_transfer(self) -> None:
        sbs1 = self.rng.choice((None, None, *SUBSCRIBERS))
        size = self.batch_size()
        self.note(f"net transfer of {sbs1 or 'every subscriber'} in batches of {size}")
        self.transferred(transfer.net_transfer(self.db, sbs1=sbs1, batch_size=size))

    def step_ranged_transfer(self) -> None:
        low, high = self.customer_range()
        size = self.batch_size()
        self.note(f"net transfer from {low} to {high} in batches of {size}")
        self.transferred(
            transfer.net_transfer(self.db, from_cuno=low, to_cuno=high, batch_size=size)
        )

    def step_delete_function(self) -> None:
        force = self.rng.random() < 0.4
        low, high = self.customer_range() if self.rng.random() < 0.5 else (None, None)
        sbs1 = self.rng.choice((None, *SUBSCRIBERS))
        size = self.batch_size()
        self.note(
            f"delete function force={force} {low}..{high} of {sbs1} in batches "
            f"of {size}"
        )
        self.transferred(
            transfer.net_transfer(
                self.db,
                sbs1=sbs1,
                function="delete",
                force=force,
                from_cuno=low,
                to_cuno=high,
                batch_size=size,
            )
        )

    # POS steps

    def step_poll(self) -> None:
        sbs1 = self.rng.choice(SUBSCRIBERS)
        pos = self.pos[sbs1]
        maxrecs = self.rng.choice((1, 2, 3, 5, 0))
        mode = self.rng.choice(("confirm", "confirm", "partial", "none"))
        before = pos.last_applied
        if mode == "none":
            applied = pos.poll(maxrecs, confirm=False)
        elif mode == "partial":
            applied = pos.poll(maxrecs, confirm=False)
            trnrs = [record.trnr for record in applied] or [before]
            up_to = self.rng.choice(trnrs)
            if up_to:
                outbox.confirm_records(self.db, sbs1, up_to=up_to)
        else:
            applied = pos.poll(maxrecs)
        self.note(f"poll {sbs1} maxrecs={maxrecs} {mode}: {len(applied)} applied")

    def step_list_without_applying(self) -> None:
        sbs1 = self.rng.choice(SUBSCRIBERS)
        listed = outbox.list_records(self.db, sbs1, self.rng.choice((1, 3)))
        self.note(f"list {sbs1} without applying: {len(listed)}")

    def step_cleanup(self) -> None:
        sbs1 = self.rng.choice((None, *SUBSCRIBERS))
        result = outbox.cleanup(self.db, sbs1=sbs1)
        self.note(f"cleanup {sbs1}: {result.total}")

    def step_settle(self) -> None:
        size = self.batch_size()
        self.note(f"settle in batches of {size}")
        self.transferred(transfer.net_transfer(self.db, batch_size=size))
        self.check_targets()

    # The final check

    def drain_all(self) -> None:
        for pos in self.pos.values():
            pos.drain(self.rng.choice((1, 4, 100)))
        self.check_silence()

    def check_targets(self) -> None:
        self.drain_all()
        for sbs1, pos in self.pos.items():
            targets = compute_targets(self.db, sbs1)
            for whlo, target in targets.items():
                lines = differences(pos.copy_of(whlo), target)
                assert lines == [], f"shop {whlo} of {sbs1} off target: {lines}"
            held = held_customers(self.db, sbs1)
            for whlo, cunos in held.items():
                assert cunos == set(pos.copy_of(whlo)), (
                    f"shop {whlo} of {sbs1}: holdings {sorted(cunos)}, "
                    f"copy {sorted(pos.copy_of(whlo))}"
                )

    def finish(self) -> None:
        self.note("final net transfer")
        self.transferred(transfer.net_transfer(self.db))
        self.check_targets()


def play(db: Database, seed: int) -> None:
    scenario = Scenario(db, seed)
    try:
        scenario.run(STEPS)
    except Exception as error:
        steps = "\n".join(scenario.log)
        raise AssertionError(f"seed {seed} failed: {error}\nsteps:\n{steps}") from error


@pytest.fixture
def postgresql_db(postgresql_url: str) -> Iterator[Database]:
    database = open_database(postgresql_url)
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.close()


@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + SQLITE_SEEDS))
def test_random_sequence_sqlite(sqlite_db: Database, seed: int) -> None:
    play(sqlite_db, seed)


@pytest.mark.postgresql
@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + POSTGRESQL_SEEDS))
def test_random_sequence_postgresql(postgresql_db: Database, seed: int) -> None:
    play(postgresql_db, seed)

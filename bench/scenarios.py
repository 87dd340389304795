"""The benchmark scenarios that run through posoutbox's own functions.

Each scenario runs in a process of its own (see ``bench.runner``), so the peak
memory it reports is its own. Every function takes the database and the
run's parameters and returns a flat dictionary of measurements.
"""

from __future__ import annotations

import functools
import random
import threading
from typing import Any

import sqlalchemy as sa

from bench import fill
from bench.generate import Generator, analyze, customer_number, load_customers
from bench.measure import (
    OUTBOX_TABLES,
    Latencies,
    Stopwatch,
    max_rss_bytes,
    reset_peak_rss,
    table_bytes,
)
from bench.sizes import FEW_SHOPS, MAXRECS
from bench.subscribers import ShopCodes, add_subscriber_with_shops
from posoutbox import customers, outbox, transfer
from posoutbox.db import schema
from posoutbox.db.storage import Database

Params = dict[str, Any]
Result = dict[str, Any]


def load(db: Database, params: Params) -> Result:
    """Bulk-load customers ``start`` to ``stop - 1`` without change rows."""
    generator = Generator(params["seed"], params["pool_size"])
    with Stopwatch() as watch:
        rows = load_customers(db, generator, params["start"], params["stop"])
        analyze(db)
    customers_loaded = params["stop"] - params["start"]
    return {
        "customers": customers_loaded,
        "rows": rows,
        "seconds": round(watch.seconds, 3),
        "rows_per_second": round(rows / watch.seconds),
    }


def initial_load(db: Database, params: Params) -> Result:
    """Give a new subscriber's shops their initial load by a net transfer.

    The shops are added through ``shops.add_shop``, whose SHOP change rows make
    the run sweep every customer of the master.
    """
    sbs1 = params["sbs1"]
    add_subscriber_with_shops(db, sbs1, params["shops"], ShopCodes(db))
    tables = (*OUTBOX_TABLES, "holdings")
    before = table_bytes(db, tables)
    rss_before = reset_peak_rss()

    with Stopwatch() as watch:
        result = transfer.net_transfer(db, sbs1=sbs1)

    after = table_bytes(db, tables)
    grown = {name: after[name] - before[name] for name in tables}
    outbox_bytes = sum(grown[name] for name in OUTBOX_TABLES)
    peak = max_rss_bytes()
    return {
        "sbs1": sbs1,
        "shops": params["shops"],
        "customers": result.customers,
        "records": result.records,
        "seconds": round(watch.seconds, 3),
        "cpu_seconds": round(watch.cpu_seconds, 3),
        "customers_per_second": round(result.customers / watch.seconds),
        "records_bytes": grown["records"],
        "shop_set_bytes": grown["shop_sets"] + grown["shop_set_members"],
        "outbox_bytes": outbox_bytes,
        "holdings_bytes": grown["holdings"],
        "peak_rss_bytes": peak,
        "rss_growth_bytes": peak - rss_before,
    }


def vacuum(db: Database, params: Params) -> Result:
    """Vacuum and analyze, as autovacuum would do before long, so that the
    drains start from clean tables after the initial loads and the cleanup."""
    with Stopwatch() as watch:
        if db.dialect == "postgresql":
            with db.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as conn:
                conn.execute(sa.text("VACUUM (ANALYZE)"))
        else:
            analyze(db)
    return {"seconds": round(watch.seconds, 3)}


def latency(db: Database, params: Params) -> Result:
    """Time exports (CrtCstRepl) and customer changes (ChgBasicData) one by one.

    Customers are drawn at random from the whole master. Each change sets a
    new phone number, so every call writes its change rows.
    """
    rng = random.Random(params["seed"])
    count = params["customers"]
    calls = params["calls"]
    with db.reading() as conn:
        subscribers = conn.execute(
            sa.select(sa.func.count()).select_from(schema.subscribers)
        ).scalar_one()
        shop_count = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.shops)
            .where(schema.shops.c.deleted_at.is_(None))
        ).scalar_one()

    exports = Latencies()
    for _ in range(calls):
        cuno = customer_number(rng.randrange(count))
        exports.time(functools.partial(transfer.export_customer, db, cuno))

    changes = Latencies()
    for number in range(calls):
        cuno = customer_number(rng.randrange(count))
        phone = f"+46 8 {number:08d}"
        changes.time(
            functools.partial(customers.change_customer, db, cuno, {"PHNO": phone})
        )

    result: Result = {"subscribers": subscribers, "shops": shop_count}
    result.update({f"export_{key}": value for key, value in exports.summary().items()})
    result.update({f"change_{key}": value for key, value in changes.summary().items()})
    return result


def cleanup(db: Database, params: Params) -> Result:
    """Remove confirmed records while a poller lists another subscriber's.

    The confirmed records are written by one INSERT ... SELECT, then
    ``outbox.cleanup`` removes them while a thread calls LstCus for
    ``poll_sbs1`` (maxrecs 1000) in a loop and times each call.
    """
    sbs1 = "CLEANUP"
    add_subscriber_with_shops(db, sbs1, 1, ShopCodes(db))
    with Stopwatch() as fill_watch:
        filled = fill.confirmed_records(db, sbs1, params["records"])

    listings = Latencies()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            listings.time(lambda: outbox.list_records(db, params["poll_sbs1"], MAXRECS))

    poller = threading.Thread(target=poll, name="lstcus-poller")
    poller.start()
    try:
        with Stopwatch() as watch:
            removed = outbox.cleanup(db)
    finally:
        done.set()
        poller.join()

    result: Result = {
        "filled": filled,
        "fill_seconds": round(fill_watch.seconds, 3),
        "removed": removed.total,
        "seconds": round(watch.seconds, 3),
        "records_per_second": round(removed.total / watch.seconds),
    }
    result.update({f"lstcus_{key}": value for key, value in listings.summary().items()})
    return result


def drain_service(db: Database, params: Params) -> Result:
    """Drain a subscriber through outbox.list_records and confirm_records.

    This is LstCus and CnfCus without HTTP: list 1000, confirm up to the last
    TRNR, until ``records`` are confirmed or nothing is left.
    """
    sbs1 = params["sbs1"]
    record_limit = params["records"]
    drained = 0
    calls = Latencies()
    with Stopwatch() as watch:
        while drained < record_limit:
            listed: list[outbox.OutboxRecord] = []

            def list_and_confirm(listed: list[outbox.OutboxRecord] = listed) -> None:
                listed.extend(outbox.list_records(db, sbs1, MAXRECS))
                if listed:
                    outbox.confirm_records(db, sbs1, up_to=listed[-1].trnr)

            calls.time(list_and_confirm)
            if not listed:
                break
            drained += len(listed)
    result: Result = {
        "sbs1": sbs1,
        "records": drained,
        "seconds": round(watch.seconds, 3),
        "records_per_second": round(drained / watch.seconds),
    }
    result.update({f"page_{key}": value for key, value in calls.summary().items()})
    return result


def prepare_pollers(db: Database, params: Params) -> Result:
    """Add the subscribers that poll at once, each with one shop and a backlog.

    Their records are copies of ``source_sbs1``'s records, written by one
    INSERT ... SELECT each, so the data is what a net transfer produced.
    """
    codes = ShopCodes(db)
    filled = {}
    for sbs1 in params["subscribers"]:
        add_subscriber_with_shops(db, sbs1, 1, codes)
        filled[sbs1] = fill.copy_records(
            db, params["source_sbs1"], sbs1, params["records"]
        )
    analyze(db)
    return {"subscribers": len(filled), "records": sum(filled.values())}


SCENARIOS = {
    "load": load,
    "initial_load": initial_load,
    "vacuum": vacuum,
    "latency": latency,
    "cleanup": cleanup,
    "drain_service": drain_service,
    "prepare_pollers": prepare_pollers,
}

__all__ = ["FEW_SHOPS", "SCENARIOS"]

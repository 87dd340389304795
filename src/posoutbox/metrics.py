"""Operational metrics: the Prometheus exposition and the backlog sampler.

Two kinds of numbers are exposed. Gauges read from the database at scrape time
(backlog per subscriber and shop, age of the oldest unconfirmed record, records
by state) are the same whichever process is scraped. Counters (records created
and confirmed, API requests) count what this server process did since it
started, as Prometheus counters do. Work done by other processes, such as a
net transfer run from the CLI, shows in the gauges but not in these counters.

The sampler writes the backlog into the backlog_samples table every few
seconds, for the console's chart of the backlog over time.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from prometheus_client import (
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from posoutbox import outbox, positions
from posoutbox.db import schema
from posoutbox.db.storage import Database, insert_ignoring_conflicts, utcnow
from posoutbox.errors import Busy
from posoutbox.web.settings import DEFAULT_RETENTION_DAYS

logger = logging.getLogger(__name__)

#: Media type of the Prometheus text format 0.0.4, which every scraper reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# The *_created series that the client adds to every counter by default carry
# only the start time of this process, which the scraper already has.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The process-wide counters; gauges are added per scrape by `render`.
REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS_CREATED = Counter(
    "posoutbox_records_created",
    "Transfer records created by exports and net transfers run in this process.",
    ["sbs1", "trtp", "acct"],
    registry=REGISTRY,
)
RECORDS_CONFIRMED = Counter(
    "posoutbox_records_confirmed",
    "Transfer records confirmed by CnfCus calls served by this process.",
    ["sbs1"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "posoutbox_api_requests",
    "M3 API requests served by this process, by transaction and HTTP status.",
    ["transaction", "status"],
    registry=REGISTRY,
)


def count_records_created(counts: Mapping[tuple[str, str, str], int]) -> None:
    """Add a run's or an export's record counts, keyed by (SBS1, TRTP, ACCT)."""
    for (sbs1, trtp, acct), count in counts.items():
        if count:
            RECORDS_CREATED.labels(sbs1=sbs1, trtp=trtp, acct=acct).inc(count)


def count_records_confirmed(sbs1: str, count: int) -> None:
    if count:
        RECORDS_CONFIRMED.labels(sbs1=sbs1).inc(count)


#: Path prefix of the M3 API; other requests (console, health) are not counted.
API_PREFIX = "/m3api-rest/"


def count_api_request(path: str, state: Mapping[str, object], status: int) -> None:
    """Count one HTTP request if it was an API call.

    ``state`` is the request state, where the API puts the program and the
    transaction it found in the path. The transaction label is
    PROGRAM/TRANSACTION for a transaction the API serves, "metadata" for the
    metadata paths and "unknown" otherwise, so a client sending made-up names
    cannot grow the number of series.
    """
    if not path.startswith(API_PREFIX):
        return
    # Imported here because the API imports this module.
    from posoutbox.api.transactions import PROGRAMS

    program = str(state.get("program", ""))
    transaction = str(state.get("transaction", ""))
    label = "unknown"
    found = PROGRAMS.get(program)
    if found is not None and transaction in found.transactions:
        label = f"{program}/{transaction}"
    elif path.startswith(API_PREFIX + "metadata"):
        label = "metadata"
    API_REQUESTS.labels(transaction=label, status=str(status)).inc()


class _OutboxCollector:
    """The database gauges, read once per scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterable[Metric]:
        now = utcnow()
        backlog = GaugeMetricFamily(
            "posoutbox_backlog_records",
            "Unconfirmed transfer records per subscriber and shop, by state "
            "(new: not listed yet, listed: listed by LstCus, not confirmed).",
            labels=["sbs1", "whlo", "state"],
        )
        oldest = GaugeMetricFamily(
            "posoutbox_backlog_oldest_age_seconds",
            "Age of the oldest unconfirmed record of a shop, 0 when there is none.",
            labels=["sbs1", "whlo"],
        )
        for entry in outbox.backlog(self.db, confirmed=False):
            backlog.add_metric([entry.sbs1, entry.whlo, outbox.NEW], entry.new)
            backlog.add_metric([entry.sbs1, entry.whlo, outbox.LISTED], entry.listed)
            oldest.add_metric([entry.sbs1, entry.whlo], entry.age_seconds(now) or 0)
        yield backlog
        yield oldest

        by_state = GaugeMetricFamily(
            "posoutbox_outbox_records",
            "Transfer records in the outbox per subscriber and state; confirmed "
            "records stay until a cleanup removes them.",
            labels=["sbs1", "state"],
        )
        records = schema.records
        positions_table = schema.outbox_positions
        state = positions.state_of_record(records.c.trnr)
        query = (
            sa.select(records.c.sbs1, state, sa.func.count())
            .join_from(
                records, positions_table, positions_table.c.sbs1 == records.c.sbs1
            )
            .group_by(records.c.sbs1, state)
        )
        with self.db.reading() as conn:
            for sbs1, state, count in conn.execute(query):
                by_state.add_metric([str(sbs1), str(state)], int(count))
        yield by_state


class _Scrape:
    def __init__(self, db: Database) -> None:
        self.collectors = (REGISTRY, _OutboxCollector(db))

    def collect(self) -> Iterable[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def render(db: Database) -> bytes:
    """Return every metric in the Prometheus text format (media type CONTENT_TYPE)."""
    return generate_latest(_Scrape(db))


# Backlog sampling


def sample_backlog(
    db: Database,
    *,
    now: datetime.datetime | None = None,
    retention: datetime.timedelta = datetime.timedelta(days=DEFAULT_RETENTION_DAYS),
) -> int:
    """Store the current backlog of every shop and remove samples older than
    ``retention``; return the number of rows stored.

    Samples are taken to the second, and a second sample of the same second (a
    second server process sampling too) is ignored rather than an error.
    """
    now = (now or utcnow()).replace(microsecond=0)
    rows = [
        {
            "sampled_at": now,
            "sbs1": entry.sbs1,
            "whlo": entry.whlo,
            "unconfirmed": entry.unconfirmed,
            "oldest_age_seconds": entry.age_seconds(now) or 0,
        }
        for entry in outbox.backlog(db, confirmed=False)
    ]
    table = schema.backlog_samples
    with db.transaction() as conn:
        insert_ignoring_conflicts(conn, table, rows, ["sampled_at", "sbs1", "whlo"])
        conn.execute(sa.delete(table).where(table.c.sampled_at < now - retention))
    return len(rows)


def sample_unless_taken(
    db: Database,
    interval_seconds: float,
    *,
    retention: datetime.timedelta = datetime.timedelta(days=DEFAULT_RETENTION_DAYS),
) -> bool:
    """Sample the backlog unless another process is sampling it or sampled it
    less than half an interval ago; return whether this call sampled.

    Every worker process of a server runs a sampler, and one sample per
    interval is enough for the chart. A sample counts every unconfirmed
    record, which takes seconds when millions wait for their POS.
    """
    try:
        with db.run_lock("backlog sampling", wait=False):
            with db.reading() as conn:
                latest = conn.execute(
                    sa.select(sa.func.max(schema.backlog_samples.c.sampled_at))
                ).scalar_one()
            if latest is not None and (utcnow() - latest).total_seconds() < (
                interval_seconds / 2
            ):
                return False
            sample_backlog(db, retention=retention)
            return True
    except Busy:
        return False


async def run_sampler(
    db: Database,
    interval_seconds: float,
    *,
    retention: datetime.timedelta = datetime.timedelta(days=DEFAULT_RETENTION_DAYS),
) -> None:
    """Sample the backlog now and then every ``interval_seconds`` until cancelled.

    A failed sample is logged and the next one is tried at the next interval,
    so a database that is briefly away costs a gap in the chart, not the task.
    """
    logger.info(
        "backlog sampler started",
        extra={"action": "sampler_start", "interval_seconds": interval_seconds},
    )
    failures = 0
    try:
        while True:
            try:
                await asyncio.to_thread(
                    sample_unless_taken, db, interval_seconds, retention=retention
                )
            except Exception:
                failures += 1
                # Logged with the traceback the first time, then every 60th
                # failure, so a long outage does not flood the log.
                if failures == 1 or failures % 60 == 0:
                    logger.warning(
                        "backlog sample failed (%d in a row)",
                        failures,
                        exc_info=True,
                        extra={"action": "sampler_error", "failures": failures},
                    )
            else:
                if failures:
                    logger.info(
                        "backlog sampling recovered after %d failures",
                        failures,
                        extra={"action": "sampler_recovered", "failures": failures},
                    )
                failures = 0
            await asyncio.sleep(interval_seconds)
    finally:
        logger.info("backlog sampler stopped", extra={"action": "sampler_stop"})

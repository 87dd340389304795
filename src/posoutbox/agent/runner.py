"""The POS agent's loop: list a batch, apply it, commit locally, confirm, repeat.

The order of those steps is what makes the agent crash-safe. A batch is
confirmed only after the local commit, so a crash before the commit leaves the
records unconfirmed on the server, which lists them again. The commit stores the
batch's last TRNR with the data, so after a crash between the commit and CnfCus
the agent skips the records it already applied and confirms them. Without TRNR
(plain M3) it applies them again, which gives the same state because applying
is idempotent.

Skipping by TRNR relies on the server making a subscriber's records visible in
TRNR order, which posoutbox does by creating them under a per-subscriber lock.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from posoutbox.agent.client import (
    Listing,
    M3Client,
    ResponseError,
    Stopped,
    TransferRecord,
)
from posoutbox.agent.store import ALL_SHOPS, Store
from posoutbox.errors import InvalidValue

logger = logging.getLogger(__name__)

#: Records asked for per LstCus unless the caller sets another maximum.
DEFAULT_MAX_RECORDS = 1000

#: Seconds between polls once the outbox is drained.
DEFAULT_INTERVAL = 60.0

#: Environment variable that makes the agent kill itself at a given point, so
#: that tests can crash it where they need to. See `FaultInjection`.
KILL_AT_VARIABLE = "POSOUTBOX_AGENT_KILL_AT"


@dataclass(frozen=True)
class BatchResult:
    """One LstCus result and what the agent did with it."""

    records: int
    applied: int
    skipped: int
    first_trnr: int | None
    last_trnr: int | None
    seconds: float


@dataclass
class Totals:
    """Counts since the agent started."""

    batches: int = 0
    records: int = 0
    applied: int = 0

    def add(self, batch: BatchResult) -> None:
        self.batches += 1
        self.records += batch.records
        self.applied += batch.applied


@dataclass(frozen=True)
class FaultInjection:
    """A point at which the agent kills itself with SIGKILL, for crash tests.

    Read from POSOUTBOX_AGENT_KILL_AT. ``apply:N`` kills it once it has applied
    N records since it started, inside the local transaction before the commit.
    ``confirm:N`` kills it after the commit and before the CnfCus of the batch
    in which it reached N records.
    """

    point: str
    records: int

    @classmethod
    def from_environment(cls) -> FaultInjection | None:
        raw = os.environ.get(KILL_AT_VARIABLE, "").strip()
        if not raw:
            return None
        point, _, count = raw.partition(":")
        if point not in ("apply", "confirm") or not count.isdigit():
            raise InvalidValue(KILL_AT_VARIABLE, raw, "apply:N or confirm:N")
        return cls(point, int(count))

    def check(self, point: str, applied: int) -> None:
        if point == self.point and applied >= self.records:
            logger.warning(
                "killing the agent at %s after %d records, as %s asks",
                point,
                applied,
                KILL_AT_VARIABLE,
                extra={"action": "agent_fault", "point": point, "applied": applied},
            )
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)


class Agent:
    """Polls one subscriber's outbox into one store.

    ``on_batch`` is called after every confirmed batch with the batch and the
    totals so far, for a progress display. Setting ``stop`` ends `run` after the
    current batch, or at once while it waits.
    """

    def __init__(
        self,
        client: M3Client,
        store: Store,
        sbs1: str,
        *,
        maxrecs: int = DEFAULT_MAX_RECORDS,
        stop: threading.Event | None = None,
        on_batch: Callable[[BatchResult, Totals], None] | None = None,
        fault: FaultInjection | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.sbs1 = sbs1
        self.maxrecs = maxrecs
        self.stop = stop or threading.Event()
        self.on_batch = on_batch
        self.fault = fault
        self.totals = Totals()
        self._mode: tuple[bool, bool] | None = None

    def run(self, *, interval: float = DEFAULT_INTERVAL, once: bool = False) -> Totals:
        """Drain the outbox, then poll again every ``interval`` seconds.

        With ``once`` it returns after the first drain. Returns the totals.
        """
        self.store.bind_subscriber(self.sbs1)
        try:
            while not self.stop.is_set():
                self.drain()
                if once or self.stop.wait(interval):
                    break
        except Stopped:
            pass
        return self.totals

    def drain(self) -> None:
        """Process batches until LstCus returns no record or ``stop`` is set."""
        while not self.stop.is_set():
            if self.process_batch() is None:
                return

    def process_batch(self) -> BatchResult | None:
        """List, apply and confirm one batch; return None when nothing was listed."""
        started = time.monotonic()
        listing = self.client.list_customers(self.sbs1, self.maxrecs)
        records = listing.records
        if not records:
            return None
        self._log_mode(listing)

        if listing.has_trnr:
            applied, skipped = self._apply_numbered(records)
            first_trnr, last_trnr = records[0].trnr, records[-1].trnr
        else:
            self._apply(records, last_trnr=None)
            self._check_fault("confirm", self.totals.applied + len(records))
            self.client.confirm_customers(self.sbs1)
            applied, skipped = len(records), 0
            first_trnr = last_trnr = None
        batch = BatchResult(
            records=len(records),
            applied=applied,
            skipped=skipped,
            first_trnr=first_trnr,
            last_trnr=last_trnr,
            seconds=time.monotonic() - started,
        )
        self.totals.add(batch)
        logger.info(
            "batch of %d records applied and confirmed, TRNR %s to %s, in %.2f s",
            batch.records,
            batch.first_trnr if batch.first_trnr is not None else "-",
            batch.last_trnr if batch.last_trnr is not None else "-",
            batch.seconds,
            extra={
                "action": "agent_batch",
                "sbs1": self.sbs1,
                "records": batch.records,
                "applied": batch.applied,
                "skipped": batch.skipped,
                "first_trnr": batch.first_trnr,
                "last_trnr": batch.last_trnr,
                "duration_ms": round(batch.seconds * 1000),
            },
        )
        if self.on_batch is not None:
            self.on_batch(batch, self.totals)
        return batch

    def _apply_numbered(self, records: list[TransferRecord]) -> tuple[int, int]:
        """Apply the records above the store's last TRNR, confirm up to the last
        one listed, and return how many were applied and skipped."""
        trnrs = [int(record.trnr or 0) for record in records]

        for previous, current in itertools.pairwise(trnrs):
            if current <= previous:
                raise ResponseError(
                    f"LstCus returned TRNR {current} after {previous}, expected "
                    "ascending transaction numbers"
                )

        applied_up_to = self.store.last_trnr() or 0
        pending = [
            record for record in records if int(record.trnr or 0) > applied_up_to
        ]
        skipped = len(records) - len(pending)
        if skipped:
            # Only records that a previous run applied but did not confirm come
            # back like this, so they are confirmed without applying them again.
            logger.warning(
                "%d listed records were applied before but not confirmed "
                "(TRNR up to %d), confirming them",
                skipped,
                applied_up_to,
                extra={
                    "action": "agent_resume",
                    "sbs1": self.sbs1,
                    "skipped": skipped,
                    "last_trnr": applied_up_to,
                },
            )

        if pending:
            self._apply(pending, last_trnr=trnrs[-1])
        self._check_fault("confirm", self.totals.applied + len(pending))
        self.client.confirm_customers(self.sbs1, trnrs[-1])
        return len(pending), skipped

    def _apply(self, records: list[TransferRecord], *, last_trnr: int | None) -> None:
        applied_before = self.totals.applied
        after_record = None
        if self.fault is not None:

            def after_record(count: int) -> None:
                self._check_fault("apply", applied_before + count)

        self.store.apply(records, last_trnr=last_trnr, after_record=after_record)

    def _check_fault(self, point: str, applied: int) -> None:
        if self.fault is not None:
            self.fault.check(point, applied)

    def _log_mode(self, listing: Listing) -> None:
        mode = (listing.has_trnr, listing.has_shop)
        if mode == self._mode:
            return
        self._mode = mode
        if not listing.has_trnr:
            logger.warning(
                "the server sends no TRNR, as plain M3: confirming each batch with "
                "CnfCus without TRNR, and applying records again after a restart",
                extra={"action": "agent_mode", "sbs1": self.sbs1, "trnr": False},
            )
        if not listing.has_shop:
            logger.warning(
                "the server sends no SHOP, as plain M3: keeping one copy of the "
                "subscriber's customers as shop %s",
                ALL_SHOPS,
                extra={"action": "agent_mode", "sbs1": self.sbs1, "shop": False},
            )
        if listing.has_trnr and listing.has_shop:
            logger.info(
                "the server sends TRNR and SHOP: keeping one copy per shop and "
                "confirming up to the last TRNR applied",
                extra={"action": "agent_mode", "sbs1": self.sbs1},
            )

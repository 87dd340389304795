"""Measuring helpers: table sizes, latency percentiles and process memory."""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from posoutbox.db.storage import Database

#: Tables that hold the outbox: records and their mailing lists.
OUTBOX_TABLES = ("records", "shop_sets", "shop_set_members")


def table_bytes(db: Database, tables: Iterable[str]) -> dict[str, int]:
    """Return the bytes each table takes with its indexes and TOAST data.

    PostgreSQL reports pg_total_relation_size; SQLite sums the pages of the
    table and its indexes from the dbstat virtual table.
    """
    names = list(tables)
    sizes: dict[str, int] = {}
    with db.reading() as conn:
        for name in names:
            if db.dialect == "postgresql":
                query = sa.text("SELECT pg_total_relation_size(CAST(:t AS regclass))")
                sizes[name] = int(conn.execute(query, {"t": name}).scalar_one())
            else:
                query = sa.text(
                    "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN "
                    "(SELECT name FROM sqlite_master WHERE tbl_name = :t)"
                )
                sizes[name] = int(conn.execute(query, {"t": name}).scalar_one())
    return sizes


def _status_bytes(name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{name}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> int:
    """Reset this process's peak resident set size where Linux allows it, and
    return the resident set size now.

    Writing 5 to /proc/self/clear_refs resets VmHWM (Linux 4.0 and later), so
    the peak read afterwards is that of the work measured, not of the imports
    and set-up before it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass
    current = _status_bytes("VmRSS")
    return max_rss_bytes() if current is None else current


def max_rss_bytes() -> int:
    """Return the peak resident set size of this process since the last reset."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    # Linux reports ru_maxrss in kilobytes; it cannot be reset.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Return a percentile by the nearest-rank method (0.99 for p99)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Latencies:
    """Durations of repeated calls, in seconds."""

    samples: list[float] = field(default_factory=list)

    def time(self, call: Callable[[], object]) -> None:
        started = time.perf_counter()
        call()
        self.samples.append(time.perf_counter() - started)

    def summary(self) -> dict[str, float]:
        """Return count, p50, p99 and max in milliseconds."""
        return {
            "calls": len(self.samples),
            "p50_ms": round(percentile(self.samples, 0.50) * 1000, 2),
            "p99_ms": round(percentile(self.samples, 0.99) * 1000, 2),
            "max_ms": round(max(self.samples, default=math.nan) * 1000, 2),
        }


class Stopwatch:
    """Wall-clock and CPU time of a block."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = time.process_time() - self.cpu_started

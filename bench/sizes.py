"""The sizes a benchmark run can take, from a smoke test to retail scale."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Size:
    """How much data each scenario works on."""

    name: str
    #: Customers of the first and of the second initial load (scenario a).
    customers_first: int
    customers_second: int
    #: Shops of the subscriber with many shops (scenario b).
    many_shops: int
    #: Calls per operation in the latency scenario (d).
    latency_calls: int
    #: Confirmed records that cleanup removes (e).
    cleanup_records: int
    #: Records drained by one subscriber alone, and by each of ten at once (c).
    drain_one: int
    drain_each: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


SIZES: dict[str, Size] = {
    size.name: size
    for size in (
        Size(
            name="tiny",
            customers_first=200,
            customers_second=400,
            many_shops=50,
            latency_calls=10,
            cleanup_records=2_000,
            drain_one=300,
            drain_each=100,
        ),
        Size(
            name="small",
            customers_first=10_000,
            customers_second=50_000,
            many_shops=500,
            latency_calls=200,
            cleanup_records=200_000,
            drain_one=50_000,
            drain_each=10_000,
        ),
        Size(
            name="full",
            customers_first=100_000,
            customers_second=1_000_000,
            many_shops=500,
            latency_calls=300,
            cleanup_records=10_000_000,
            drain_one=200_000,
            drain_each=20_000,
        ),
    )
}

#: Shops of the subscribers in scenario a.
FEW_SHOPS = 10

#: Subscribers polling at once in scenario c.
POLLERS = 10

#: Records per LstCus in scenario c, and per listing in the database's own drain.
MAXRECS = 1_000

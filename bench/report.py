"""The targets each figure is held to, and the table printed after a run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

Results = dict[str, dict[str, Any]]


@dataclass
class Target:
    """A target with the measured value and whether it was met."""

    name: str
    expected: str
    value: float | None
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(results: Results, key: str, figure: str) -> float | None:
    value = results.get(key, {}).get(figure)
    return None if value is None else float(value)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def _at_least(name: str, value: float | None, limit: float, unit: str) -> Target:
    met = None if value is None else value >= limit
    return Target(name, f">= {limit:,.0f} {unit}", value, met)


def _at_most(name: str, value: float | None, limit: float, unit: str) -> Target:
    met = None if value is None else value <= limit
    return Target(name, f"<= {limit:g} {unit}", value, met)


def evaluate(dialect: str, results: Results) -> list[dict[str, Any]]:
    """Hold the PostgreSQL figures to their targets; SQLite has none."""
    if dialect != "postgresql":
        return []
    a_time = _get(results, "a_second", "seconds")
    rss_first = _get(results, "a_first", "rss_growth_bytes")
    rss_second = _get(results, "a_second", "rss_growth_bytes")
    targets = [
        _at_least(
            "a: initial load, customers per second",
            _get(results, "a_second", "customers_per_second"),
            50_000,
            "customers/s",
        ),
        _at_most(
            "a: initial load time / database alone (f)",
            _ratio(a_time, _get(results, "f_insert", "seconds")),
            2,
            "x",
        ),
        _at_most(
            "b: 500 shops time / 10 shops time",
            _ratio(_get(results, "b_second", "seconds"), a_time),
            1.3,
            "x",
        ),
        _at_most(
            "b: 500 shops outbox bytes / 10 shops outbox bytes",
            _ratio(
                _get(results, "b_second", "outbox_bytes"),
                _get(results, "a_second", "outbox_bytes"),
            ),
            1.3,
            "x",
        ),
        _at_least(
            "c: HTTP drain, one subscriber, records per second",
            _get(results, "c_http_one", "records_per_second"),
            20_000,
            "records/s",
        ),
        _at_most(
            "d: CrtCstRepl p99 (service)",
            _get(results, "d_service", "export_p99_ms"),
            20,
            "ms",
        ),
        _at_most(
            "d: ChgBasicData p99 (service)",
            _get(results, "d_service", "change_p99_ms"),
            20,
            "ms",
        ),
        _at_most(
            "d: CrtCstRepl p99 (HTTP)",
            _get(results, "d_http", "export_p99_ms"),
            20,
            "ms",
        ),
        _at_most(
            "d: ChgBasicData p99 (HTTP)",
            _get(results, "d_http", "change_p99_ms"),
            20,
            "ms",
        ),
        _at_most(
            "e: cleanup time",
            _get(results, "e_cleanup", "seconds"),
            60,
            "s",
        ),
        _at_most(
            "e: LstCus p99 during cleanup",
            _get(results, "e_cleanup", "lstcus_p99_ms"),
            100,
            "ms",
        ),
        _at_most(
            "memory: net transfer RSS growth, second load / first load",
            _ratio(rss_second, rss_first),
            1.2,
            "x",
        ),
    ]
    return [target.as_dict() for target in targets]


#: Rows of the table: result key, figure, label, and the database-alone figure
#: it is compared with, if any.
_ROWS: tuple[tuple[str, str, str, tuple[str, str] | None], ...] = (
    ("load_first", "rows_per_second", "bulk load, rows/s", None),
    ("a_first", "customers_per_second", "a: initial load, customers/s", None),
    ("a_first", "seconds", "a: initial load, s", None),
    ("a_first", "outbox_bytes", "a: outbox bytes", None),
    ("a_first", "rss_growth_bytes", "a: RSS growth, bytes", None),
    ("a_second", "customers_per_second", "a: initial load, customers/s", None),
    ("a_second", "seconds", "a: initial load, s", ("f_insert", "seconds")),
    (
        "a_second",
        "records_bytes",
        "a: records bytes",
        ("f_insert", "records_bytes"),
    ),
    ("a_second", "outbox_bytes", "a: outbox bytes", None),
    (
        "a_second",
        "holdings_bytes",
        "a: holdings bytes",
        ("f_insert", "holdings_bytes"),
    ),
    ("a_second", "rss_growth_bytes", "a: RSS growth, bytes", None),
    ("b_second", "seconds", "b: 500 shops, s", ("a_second", "seconds")),
    (
        "b_second",
        "outbox_bytes",
        "b: 500 shops, outbox bytes",
        ("a_second", "outbox_bytes"),
    ),
    (
        "c_service_one",
        "records_per_second",
        "c: drain without HTTP, records/s",
        ("f_drain", "records_per_second"),
    ),
    (
        "c_http_one",
        "records_per_second",
        "c: HTTP drain, 1 subscriber, records/s",
        ("f_drain", "records_per_second"),
    ),
    (
        "c_http_ten",
        "records_per_second",
        "c: HTTP drain, 10 subscribers, records/s",
        ("f_drain", "records_per_second"),
    ),
    ("d_service", "export_p50_ms", "d: CrtCstRepl p50 ms (service)", None),
    ("d_service", "export_p99_ms", "d: CrtCstRepl p99 ms (service)", None),
    ("d_service", "change_p50_ms", "d: ChgBasicData p50 ms (service)", None),
    ("d_service", "change_p99_ms", "d: ChgBasicData p99 ms (service)", None),
    ("d_http", "export_p50_ms", "d: CrtCstRepl p50 ms (HTTP)", None),
    ("d_http", "export_p99_ms", "d: CrtCstRepl p99 ms (HTTP)", None),
    ("d_http", "change_p50_ms", "d: ChgBasicData p50 ms (HTTP)", None),
    ("d_http", "change_p99_ms", "d: ChgBasicData p99 ms (HTTP)", None),
    ("e_cleanup", "removed", "e: confirmed records removed", None),
    ("e_cleanup", "seconds", "e: cleanup, s", None),
    ("e_cleanup", "lstcus_p99_ms", "e: LstCus p99 ms during cleanup", None),
)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(run: dict[str, Any]) -> str:
    """Return the results as a plain-text table, then the targets."""
    results: Results = run["results"]
    lines = [
        f"{'figure':<52} {'value':>16} {'compared with':>16} {'ratio':>7}",
        "-" * 94,
    ]
    for key, figure, label, compared in _ROWS:
        value = results.get(key, {}).get(figure)
        if value is None:
            continue
        other = None
        if compared is not None:
            other = results.get(compared[0], {}).get(compared[1])
        ratio = (
            f"{value / other:.2f}" if isinstance(other, int | float) and other else "-"
        )
        customers = results.get(key, {}).get("customers")
        if customers is not None and key.startswith(("a_", "b_")):
            label = f"{label} [{customers:,} customers]"
        lines.append(
            f"{label:<52} {_format(value):>16} {_format(other):>16} {ratio:>7}"
        )
    for key, reason in run.get("skipped", {}).items():
        lines.append(f"{key}: skipped, {reason}")
    for key in run.get("failed", {}):
        lines.append(f"{key}: failed, see stderr or the JSON results")
    if run.get("targets"):
        lines.extend(["", f"{'target':<58} {'expected':>16} {'value':>12}  met"])
        for target in run["targets"]:
            met = {True: "yes", False: "NO", None: "-"}[target["met"]]
            lines.append(
                f"{target['name']:<58} {target['expected']:>16} "
                f"{_format(target['value']):>12}  {met}"
            )
    return "\n".join(lines)

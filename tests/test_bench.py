"""The benchmarks keep working: every scenario once at tiny size, on both backends.

These tests run ``python -m bench run --size tiny`` as a subprocess and check
that each scenario produced its figures. They assert nothing about speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import postgresql_base_url
from posoutbox import layouts
from posoutbox.db.storage import normalise_url
from posoutbox.errors import InvalidValue
from posoutbox.fields import Value

ROOT = Path(__file__).resolve().parent.parent

#: Every scenario of a run, with a figure it must report.
EXPECTED_FIGURES = {
    "load_first": "rows_per_second",
    "a_first": "customers_per_second",
    "load_second": "rows_per_second",
    "a_second": "outbox_bytes",
    "b_second": "outbox_bytes",
    "f_insert": "records_bytes",
    "f_drain": "records_per_second",
    "d_service": "export_p99_ms",
    "d_http": "change_p99_ms",
    "e_cleanup": "lstcus_p99_ms",
    "c_service_one": "records_per_second",
    "c_prepare": "records",
    "c_http_one": "records_per_second",
    "c_http_ten": "records_per_second",
}


def run_bench(tmp_path: Path, *options: str) -> tuple[dict[str, Any], str]:
    output = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            "--size",
            "tiny",
            "--json",
            str(output),
            *options,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(output.read_text()), completed.stdout


def database_exists(server: str, name: str) -> bool:
    engine = sa.create_engine(normalise_url(server))
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT 1 FROM pg_database WHERE datname = :name")
            return conn.execute(query, {"name": name}).first() is not None
    finally:
        engine.dispose()


def check_results(results: dict[str, Any]) -> None:
    assert results["failed"] == {}
    for key, figure in EXPECTED_FIGURES.items():
        assert key in results["results"], f"{key} missing: {results['skipped']}"
        assert figure in results["results"][key], f"{key} lacks {figure}"


@pytest.mark.slow
def test_bench_tiny_sqlite(tmp_path: Path) -> None:
    results, table = run_bench(tmp_path, "--database", "sqlite")

    check_results(results)
    assert results["targets"] == []
    assert "a: initial load, customers/s" in table
    assert results["results"]["a_second"]["customers"] == 400
    assert results["versions"]["sqlite"]


@pytest.mark.slow
@pytest.mark.postgresql
def test_bench_tiny_postgresql(tmp_path: Path) -> None:
    server = postgresql_base_url()
    name = f"posoutbox_bench_{uuid.uuid4().hex[:10]}"

    results, table = run_bench(
        tmp_path,
        "--database",
        "postgresql",
        "--server-url",
        server,
        "--database-name",
        name,
    )

    check_results(results)
    assert {target["name"] for target in results["targets"]} >= {
        "a: initial load, customers per second",
        "c: HTTP drain, one subscriber, records per second",
    }
    assert "met" in table
    assert results["database"]["server_version"]
    # Cleanup also removes the records that the drain before it confirmed.
    cleanup = results["results"]["e_cleanup"]
    assert cleanup["removed"] >= cleanup["filled"] == 2_000
    assert not database_exists(server, name)


STORED_VALUES = (
    (
        "OCUSMA",
        {
            "CUNO": "C000000001",
            "CUNM": "Königlich Essen GmbH",
            "CUA1": "Hauptstraße 1",
            "CUA2": "",
            "CUA3": "",
            "CUA4": "",
            "PONO": "45127",
            "TOWN": "Essen",
            "ECAR": "NW",
            "CSCD": "DE",
            "PHNO": "+49 201 123456",
            "PHN2": "",
            "TFNO": "",
            "MAIL": "info@example.com",
            "YREF": "Frau Müller",
            "LNCD": "DE",
            "CUCD": "EUR",
            "CUTP": 0,
            "CUCL": "VIP",
            "SDST": "D01",
            "STAT": "20",
            "LMDT": 20261204,
        },
    ),
    (
        "OCUSAD",
        {
            "CUNO": "C000000001",
            "ADRT": 1,
            "ADID": "DLV1",
            "CUNM": "Åsa Öberg",
            "CUA1": "x" * 36,
            "CUA2": "",
            "CUA3": "",
            "CUA4": "",
            "PONO": "11122",
            "TOWN": "Stockholm",
            "ECAR": "",
            "CSCD": "SE",
            "PHNO": "",
        },
    ),
    (
        "OPCARD",
        {
            "CUNO": "C1",
            "CCNR": 7000000000000004,
            "CTP1": 2,
            "BLCD": 1,
            "MCRD": "1",
            "VTMM": 12,
            "VTYY": 2030,
            "REFE": "Loyalty",
        },
    ),
    ("OOEMSG", {"CUNO": "C1", "MSID": "CASH", "PRIO": 9, "MSTX": "Check ID"}),
)


@pytest.mark.parametrize(("trtp", "values"), STORED_VALUES)
def test_encode_stored_matches_encode(trtp: str, values: dict[str, Value]) -> None:
    assert layouts.encode_stored(trtp, values) == layouts.encode(trtp, values)


def test_encode_stored_rejects_long_text() -> None:
    values: dict[str, Value] = {"CUNO": "C1", "MSID": "M1", "PRIO": 5, "MSTX": "x" * 61}

    with pytest.raises(InvalidValue) as raised:
        layouts.encode_stored("OOEMSG", values)

    assert raised.value.field == "MSTX"


def test_encode_stored_rejects_text_in_number() -> None:
    values: dict[str, Value] = {"CUNO": "C1", "MSID": "M1", "PRIO": "high", "MSTX": ""}

    with pytest.raises(InvalidValue) as raised:
        layouts.encode_stored("OOEMSG", values)

    assert raised.value.field == "PRIO"


def test_encode_stored_rejects_missing_value() -> None:
    values: dict[str, Value | None] = {
        "CUNO": "C1",
        "MSID": "M1",
        "PRIO": 5,
        "MSTX": None,
    }

    with pytest.raises(InvalidValue) as raised:
        layouts.encode_stored("OOEMSG", values)  # type: ignore[arg-type]

    assert raised.value.field == "MSTX"


@pytest.mark.postgresql
def test_net_transfer_refreshes_statistics(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from posoutbox import customers, shops, transfer
    from posoutbox.db import migrate
    from posoutbox.db.storage import open_database

    monkeypatch.setattr(transfer, "ANALYZE_AFTER_RECORDS", 5)
    db = open_database(postgresql_url)
    try:
        migrate.upgrade(db)
        shops.add_segment(db, "ALL")
        shops.add_subscriber(db, "S1")
        shops.add_shop(db, "001", "S1", segments=["ALL"])
        for number in range(10):
            customers.add_customer(db, f"C{number:03d}", {"CUNM": "Customer"})

        result = transfer.net_transfer(db, sbs1="S1")

        with db.reading() as conn:
            analyzed = conn.execute(
                sa.text(
                    "SELECT last_analyze FROM pg_stat_user_tables "
                    "WHERE relname = 'records' AND schemaname = current_schema()"
                )
            ).scalar_one()
    finally:
        db.close()

    assert result.records == 10
    assert analyzed is not None

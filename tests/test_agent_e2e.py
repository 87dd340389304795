"""End-to-end test of the POS agent with the real server and the real agent as
separate processes. The agent is killed in the middle of its work, and every
enabled shop's copy is compared field for field with its target computed from
the master.

The master is changed by this test process through the library, on the same
database that the ``posoutbox serve`` process reads.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from posoutbox import customers, importer, outbox, shops, transfer
from posoutbox.db import migrate
from posoutbox.db.storage import Database, open_database
from posoutbox.fields import Value, to_api

pytestmark = pytest.mark.slow

NORTHWIND = (
    Path(__file__).resolve().parent.parent
    / "src"
    / "posoutbox"
    / "data"
    / "northwind-customers.csv"
)
PASSWORD_VARIABLE = "POS_AGENT_TEST_PASSWORD"
PASSWORDS = {"S1": "first subscriber's secret", "S2": "second-secret"}

#: Seconds to wait for a subprocess to get ready; a readiness limit, not a
#: measurement.
READY_TIMEOUT = 120


def posoutbox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "posoutbox", *args]


def clean_environment(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("POSOUTBOX_")
    }
    env.update(extra)
    return env


def wait_for_line(log: Path, pattern: str, process: subprocess.Popen[bytes]) -> str:
    """Return the first line of ``log`` that matches ``pattern``, once written."""
    deadline = time.monotonic() + READY_TIMEOUT
    compiled = re.compile(pattern)
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        for line in text.splitlines():
            if compiled.search(line):
                return line
        if process.poll() is not None:
            raise AssertionError(f"process ended with {process.returncode}:\n{text}")
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r} in {log}")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def server_database(database_url: str) -> Iterator[tuple[str, Database]]:
    db = open_database(database_url)
    migrate.upgrade(db)
    try:
        yield database_url, db
    finally:
        db.close()


def start_server(database_url: str, log: Path) -> Server:
    with open(log, "wb") as output:
        process = subprocess.Popen(
            posoutbox_command("--database-url", database_url, "serve", "--port", "0"),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=clean_environment(),
        )
    line = wait_for_line(log, r"running on http://127\.0\.0\.1:\d+", process)
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert match is not None
    return Server(f"http://127.0.0.1:{match.group(1)}", process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def agent_command(server: Server, sbs1: str, store: Path, *options: str) -> list[str]:
    return posoutbox_command(
        "pos-agent",
        "run",
        "--url",
        server.url,
        "--subscriber",
        sbs1,
        "--user",
        f"pos-{sbs1.lower()}",
        "--password-env",
        PASSWORD_VARIABLE,
        "--store",
        str(store),
        *options,
    )


def run_agent(
    server: Server, sbs1: str, store: Path, *options: str, kill_at: str = ""
) -> subprocess.CompletedProcess[str]:
    extra = {PASSWORD_VARIABLE: PASSWORDS[sbs1]}
    if kill_at:
        extra["POSOUTBOX_AGENT_KILL_AT"] = kill_at
    return subprocess.run(
        agent_command(server, sbs1, store, "--once", *options),
        env=clean_environment(**extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


def kill_after_first_batch(
    server: Server, sbs1: str, store: Path, log: Path, *options: str
) -> None:
    """Start the agent polling without --once and SIGKILL it once it has logged a
    batch, wherever it then is in the next one."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            agent_command(server, sbs1, store, "--interval", "0.2", *options),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=clean_environment(**{PASSWORD_VARIABLE: PASSWORDS[sbs1]}),
        )
    try:
        wait_for_line(log, r"agent_batch", process)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        stop(process)


def show(store: Path, whlo: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        posoutbox_command("pos-agent", "show", "--store", str(store), whlo, "--json"),
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_environment(),
    )
    assert result.returncode == 0, result.stderr
    shown: list[dict[str, Any]] = json.loads(result.stdout)
    return shown


# Targets, computed from the master without the transfer engine


def api_strings(values: dict[str, Value]) -> dict[str, str]:
    return {name: to_api(name, value) for name, value in values.items()}


def qualifies(db: Database, shop: shops.Shop, customer: dict[str, Value]) -> bool:
    if customer["STAT"] != "20":
        return False
    for seid in shop.segments:
        conditions = shops.get_segment(db, seid).conditions
        if all(
            customer[condition.field] in condition.values for condition in conditions
        ):
            return True
    return False


def target(db: Database, shop: shops.Shop) -> list[dict[str, Any]]:
    """Return what the shop must hold: every qualifying customer with its
    delivery addresses, cards and messages, in the order show prints them."""
    expected = []
    for customer in customers.list_customers(db):
        if not qualifies(db, shop, customer):
            continue
        cuno = str(customer["CUNO"])
        addresses = sorted(
            (row for row in customers.list_addresses(db, cuno) if row["ADRT"] == 1),
            key=lambda row: str(row["ADID"]),
        )
        cards = sorted(customers.list_cards(db, cuno), key=lambda row: int(row["CCNR"]))
        messages = sorted(
            customers.list_messages(db, cuno), key=lambda row: str(row["MSID"])
        )
        expected.append(
            {
                **api_strings(customer),
                "ADDRESSES": [api_strings(row) for row in addresses],
                "CARDS": [api_strings(row) for row in cards],
                "MESSAGES": [api_strings(row) for row in messages],
            }
        )
    return expected


def assert_shops_at_target(db: Database, sbs1: str, store: Path) -> int:
    """Compare every enabled shop of ``sbs1`` with its target; return how many
    customers they hold in all."""
    held = 0
    for shop in shops.list_shops(db, sbs1):
        if not shop.enabled:
            continue
        expected = target(db, shop)
        shown = show(store, shop.whlo)
        assert [row["CUNO"] for row in shown] == [row["CUNO"] for row in expected], (
            f"customers of shop {shop.whlo}"
        )
        for actual_row, expected_row in zip(shown, expected, strict=True):
            assert actual_row == expected_row, f"customer {expected_row['CUNO']}"
        held += len(shown)
    return held


def unconfirmed(db: Database, sbs1: str) -> int:
    return sum(entry.unconfirmed for entry in outbox.backlog(db, sbs1))


# Master set-up and changes


def set_up_master(db: Database) -> list[str]:
    result = customers.import_customers(
        db, importer.read_customer_file(NORTHWIND, "northwind"), user="test"
    )
    assert result.added >= 80
    cunos = [str(row["CUNO"]) for row in customers.list_customers(db)]

    shops.add_segment(db, "DE", conditions=["CSCD=DE,AT"])
    shops.add_segment(db, "WEST", conditions=["CSCD=FR,BE,CH"])
    shops.add_segment(db, "NORDIC", conditions=["CSCD=SE,DK,FI,NO"])
    shops.add_segment(db, "US", conditions=["CSCD=US,CA"])
    shops.add_segment(db, "LATAM", conditions=["CSCD=BR,MX,AR,VE"])
    shops.add_segment(db, "ALL")
    shops.add_subscriber(db, "S1")
    shops.add_subscriber(db, "S2")
    shops.add_shop(db, "A01", "S1", segments=["DE"])
    shops.add_shop(db, "A02", "S1", segments=["WEST", "NORDIC"])
    shops.add_shop(db, "B01", "S2", segments=["US", "LATAM"])
    shops.add_shop(db, "B02", "S2", segments=["ALL"])

    for index, cuno in enumerate(cunos[:40]):
        if index % 2 == 0:
            customers.set_address(db, cuno, "D1", {"TOWN": f"Town {index}", "ADRT": 1})
        if index % 3 == 0:
            customers.set_address(db, cuno, "INV", {"ADRT": 2, "CUA1": "Invoices"})
        customers.set_card(
            db, cuno, 1_000_000 + index, {"CTP1": 1, "VTMM": 12, "VTYY": 2030}
        )
        if index % 4 == 0:
            customers.set_card(db, cuno, 2_000_000 + index, {"CTP1": 2, "MCRD": "1"})
        if index % 3 == 1:
            customers.set_message(
                db, cuno, "WELCOME", f"Welcome back, customer {index}"
            )
    return cunos


def first_edits(db: Database, cunos: list[str]) -> None:
    """Edits, status changes, a segment move and an inactive shop."""
    by_country: dict[str, list[str]] = {}
    for row in customers.list_customers(db):
        by_country.setdefault(str(row["CSCD"]), []).append(str(row["CUNO"]))

    customers.change_customer(db, cunos[0], {"CUNM": "Alfreds Futterkiste GmbH"})
    customers.change_customer(db, cunos[1], {"TOWN": "Ciudad de México", "PHNO": "555"})
    customers.change_customer(db, by_country["DE"][1], {"STAT": "90"})
    customers.change_customer(db, by_country["US"][0], {"STAT": "10"})
    # A segment move: from A01 (DE) to A02 (WEST).
    customers.change_customer(db, by_country["DE"][2], {"CSCD": "FR"})
    customers.set_card(db, cunos[2], 1_000_002, {"BLCD": 1})
    customers.set_message(db, cunos[4], "WELCOME", "Changed text", priority=9)
    customers.set_address(db, cunos[6], "D1", {"CUA1": "Neue Straße 1"})
    shops.change_shop(db, "A02", active=False)
    shops.change_segment(db, "LATAM", conditions=["CSCD=BR,MX,AR"])


def second_edits(db: Database, cunos: list[str]) -> None:
    """Deletes, an unblock, a new shop, a shop switched back on, an export and the
    delete function with force."""
    by_country: dict[str, list[str]] = {}
    for row in customers.list_customers(db):
        by_country.setdefault(str(row["CSCD"]), []).append(str(row["CUNO"]))

    customers.change_customer(db, by_country["DE"][1], {"STAT": "20"})
    customers.delete_customer(db, cunos[8])
    customers.delete_card(db, cunos[10], 1_000_010)
    customers.delete_message(db, cunos[13], "WELCOME")
    customers.delete_address(db, cunos[12], "D1")
    # An address that stops being a delivery address is removed from POS.
    customers.set_address(db, cunos[14], "D1", {"ADRT": 3})
    customers.set_card(db, cunos[16], 3_000_016, {"CTP1": 3, "REFE": "Gift card"})
    customers.add_customer(
        db, "NEW001", {"CUNM": "Neukunde Köln", "CSCD": "DE", "TOWN": "Köln"}
    )
    customers.set_card(db, "NEW001", 4_000_001, {"CTP1": 1})
    shops.add_shop(db, "A03", "S1", segments=["LATAM", "US"])
    shops.change_shop(db, "A02", active=True)
    shops.set_shop_segments(db, "B01", ["US"])
    transfer.export_customer(db, cunos[20])
    transfer.net_transfer(
        db, sbs1="S1", function="delete", force=True, from_cuno="B", to_cuno="C"
    )


def test_agents_bring_every_shop_to_its_target(
    server_database: tuple[str, Database], tmp_path: Path
) -> None:
    database_url, db = server_database
    cunos = set_up_master(db)
    store_s1 = tmp_path / "s1.db"
    store_s2 = tmp_path / "s2.db"

    for sbs1, password in PASSWORDS.items():
        added = subprocess.run(
            posoutbox_command(
                "--database-url",
                database_url,
                "user",
                "add",
                f"pos-{sbs1.lower()}",
                "--subscriber",
                sbs1,
                "--password-env",
                PASSWORD_VARIABLE,
            ),
            env=clean_environment(**{PASSWORD_VARIABLE: password}),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert added.returncode == 0, added.stderr

    server = start_server(database_url, tmp_path / "server.log")
    try:
        # Round 1: the initial load, with the S1 agent killed twice.
        transfer.net_transfer(db)
        assert unconfirmed(db, "S1") > 30

        killed = run_agent(server, "S1", store_s1, "--max", "7", kill_at="apply:10")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        # Killed inside its second transaction: only the first batch is there.
        confirmed = outbox.browse_records(db, "S1", states=("confirmed",), limit=1000)
        assert len(confirmed) == 7

        killed = run_agent(server, "S1", store_s1, "--max", "7", kill_at="confirm:8")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        listed = outbox.browse_records(db, "S1", states=("listed",), limit=1000)
        assert len(listed) == 7

        resumed = run_agent(server, "S1", store_s1, "--max", "7")
        assert resumed.returncode == 0, resumed.stderr
        assert "applied before but not confirmed" in resumed.stderr
        assert "agent_batch" in resumed.stderr
        drained = run_agent(server, "S2", store_s2, "--max", "0", "--format", "xml")
        assert drained.returncode == 0, drained.stderr

        assert unconfirmed(db, "S1") == 0
        assert unconfirmed(db, "S2") == 0
        assert assert_shops_at_target(db, "S1", store_s1) > 10
        assert assert_shops_at_target(db, "S2", store_s2) > 50

        # Round 2: edits, status changes, a segment move, an inactive shop.
        first_edits(db, cunos)
        transfer.net_transfer(db)

        kill_after_first_batch(
            server, "S1", store_s1, tmp_path / "s1.log", "--max", "2"
        )
        resumed = run_agent(server, "S1", store_s1, "--max", "3")
        assert resumed.returncode == 0, resumed.stderr
        kill_after_first_batch(
            server, "S2", store_s2, tmp_path / "s2.log", "--max", "3"
        )
        resumed = run_agent(server, "S2", store_s2)
        assert resumed.returncode == 0, resumed.stderr

        assert unconfirmed(db, "S1") == 0
        assert unconfirmed(db, "S2") == 0
        assert_shops_at_target(db, "S1", store_s1)
        assert_shops_at_target(db, "S2", store_s2)

        # Round 3: deletes, a new shop, a shop back on, an export, a forced delete.
        second_edits(db, cunos)
        assert unconfirmed(db, "S1") > 0
        transfer.net_transfer(db)

        killed = run_agent(server, "S1", store_s1, "--max", "5", kill_at="apply:7")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        resumed = run_agent(server, "S1", store_s1, "--max", "5")
        assert resumed.returncode == 0, resumed.stderr
        resumed = run_agent(server, "S2", store_s2, "--format", "xml")
        assert resumed.returncode == 0, resumed.stderr

        assert unconfirmed(db, "S1") == 0
        assert unconfirmed(db, "S2") == 0
        assert_shops_at_target(db, "S1", store_s1)
        assert_shops_at_target(db, "S2", store_s2)
        assert "NEW001" in [row["CUNO"] for row in show(store_s1, "A01")]
        assert show(store_s1, "A03") != []
    finally:
        stop(server.process)

"""End-to-end tests of the ``posoutbox`` command line on real databases.

Every command's main path runs the real CLI as a subprocess (``python -m
posoutbox``), on an SQLite file and, for the key flows, on the PostgreSQL server.
A subprocess costs about half a second. So the long table of rejected input and
the variants of a command run in this process, through the same entry point
(`common.run_command`). Set-up that is not under test goes through the service
modules directly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from posoutbox import customers, shops, transfer
from posoutbox.cli import common
from posoutbox.cli import customer as customer_commands
from posoutbox.cli import outbox as outbox_commands
from posoutbox.cli.app import app
from posoutbox.db import migrate
from posoutbox.db.storage import Database, open_database

pytestmark = pytest.mark.slow

# Generous, so that only a hung command trips it on a loaded machine.
COMMAND_TIMEOUT = 300

# The lock that a running net transfer of subscriber S1 holds.
S1_RUN_LOCK = "net transfer of subscriber S1"


@dataclass
class Result:
    """The outcome of one command."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs ``python -m posoutbox`` against one database, in a working directory."""

    def __init__(self, url: str, cwd: Path) -> None:
        self.url = url
        self.cwd = cwd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env[common.DATABASE_URL_VARIABLE] = self.url
        # Tables then take the width meant for pipes, not that of the terminal
        # pytest runs in.
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        return env

    def execute(self, args: tuple[str, ...]) -> Result:
        completed = subprocess.run(
            [sys.executable, "-m", "posoutbox", *args],
            cwd=self.cwd,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        return Result(args, completed.returncode, completed.stdout, completed.stderr)

    def run(self, *args: str, code: int = 0) -> Result:
        """Run a command and check its exit code."""
        result = self.execute(args)
        assert result.code == code, (
            f"posoutbox {' '.join(args)} exited {result.code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def json(self, *args: str) -> Any:
        """Run a command with --json; return its output, checked for M3 strings."""
        value = self.run(*args, "--json").json()
        assert_api_strings(value)
        return value

    def error(self, *args: str, code: int = 1) -> str:
        """Run a command that must fail; return its one line on stderr."""
        result = self.run(*args, code=code)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, f"posoutbox {' '.join(args)} stderr: {result.stderr}"
        assert lines[0].startswith("error: "), lines[0]
        assert result.stdout == ""
        return lines[0]


class InProcessCli(Cli):
    """Runs the CLI's entry point in this process, with output captured."""

    def __init__(self, url: str, cwd: Path, capsys: pytest.CaptureFixture[str]):
        super().__init__(url, cwd)
        self.capsys = capsys

    def execute(self, args: tuple[str, ...]) -> Result:
        self.capsys.readouterr()
        command = typer.main.get_command(app)
        code = common.run_command(command, ["--database-url", self.url, *args])
        captured = self.capsys.readouterr()
        return Result(args, code, captured.out, captured.err)


def assert_api_strings(value: object, key: str = "") -> None:
    """Check that every value is a string, except lists, whose items are checked."""
    if isinstance(value, dict):
        for name, item in value.items():
            assert isinstance(name, str)
            assert_api_strings(item, name)
    elif isinstance(value, list):
        for item in value:
            assert_api_strings(item, key)
    else:
        assert isinstance(value, str), f"{key}: {value!r} is not a string"


@pytest.fixture
def cli(sqlite_db: Database, sqlite_url: str, tmp_path: Path) -> Cli:
    """The CLI as a subprocess on a migrated SQLite file."""
    return Cli(sqlite_url, tmp_path)


@pytest.fixture
def fast_cli(
    sqlite_db: Database,
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[InProcessCli]:
    """The CLI in this process on a migrated SQLite file; logging is restored
    afterwards, since the CLI configures it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield InProcessCli(sqlite_url, tmp_path, capsys)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def pg_db(postgresql_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL database."""
    database = open_database(postgresql_url)
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.close()


def add_setup(db: Database) -> None:
    """Add subscriber S1 with shops A01 (segment DE: CSCD=DE) and A02 (segment
    ALL), customer C001 (German, with an address, a card and a message) and
    customer C002 (Swedish)."""
    shops.add_subscriber(db, "S1", name="Stockholm")
    shops.add_segment(db, "DE", conditions=["CSCD=DE"])
    shops.add_segment(db, "ALL")
    shops.add_shop(db, "A01", "S1", segments=["DE"])
    shops.add_shop(db, "A02", "S1", segments=["ALL"])
    customers.add_customer(
        db, "C001", {"CUNM": "Alfreds Futterkiste", "CSCD": "DE", "TOWN": "Berlin"}
    )
    customers.set_address(db, "C001", "1", {"CUA1": "Obere Str. 57"})
    customers.set_card(db, "C001", "4000123412341234", {"CTP1": "1"})
    customers.set_message(db, "C001", "M1", "Welcome back")
    customers.add_customer(db, "C002", {"CUNM": "Berglunds snabbköp", "CSCD": "SE"})


def stored_state(cli: Cli) -> dict[str, Any]:
    """Return what rejected input must leave unchanged."""
    return {
        "customer": cli.json("customer", "show", "C001"),
        "shops": cli.json("shop", "list"),
    }


# Schema


def test_schema_missing_then_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    cli = Cli(f"sqlite:///{path}", tmp_path)

    line = cli.error("customer", "list")
    assert "run 'posoutbox db upgrade'" in line
    assert not path.exists()
    status = cli.run("db", "status", code=1)
    assert "(none)" in status.stdout
    assert "posoutbox db upgrade" in status.stderr

    head = migrate.head_revision()
    first = cli.run("db", "upgrade")
    assert first.stdout == f"schema upgraded from revision (none) to {head}\n"
    second = cli.run("db", "upgrade")
    assert second.stdout == f"schema already at revision {head}\n"
    assert cli.json("db", "status") == {
        "URL": f"sqlite:///{path}",
        "REVISION": head,
        "HEAD": head,
        "CURRENT": "1",
    }
    assert cli.json("customer", "list") == []


def test_schema_of_empty_file_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    cli = InProcessCli(f"sqlite:///{path}", tmp_path, capsys)

    line = cli.error("subscriber", "list")

    assert "has no posoutbox schema" in line
    assert "run 'posoutbox db upgrade'" in line


def test_database_url_option_and_bad_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.db"
    cli = InProcessCli(f"sqlite:///{other}", tmp_path, capsys)
    cli.run("db", "upgrade")
    assert other.exists()

    line = cli.error("--database-url", "mysql://localhost/x", "customer", "list")

    assert "'mysql://localhost/x'" in line
    assert "sqlite:///FILE" in line


# Customers and their records


def test_customer_commands(cli: Cli, sqlite_db: Database) -> None:
    customers.add_customer(sqlite_db, "C002", {"CUNM": "Königlich Essen"})
    added = cli.run(
        "customer", "add", "C001", "CUNM=Alfreds [Futterkiste]", "cscd=DE", "CUTP=1"
    )
    assert added.stdout == "customer C001 added\n"
    changed = cli.run("customer", "change", "C001", "TOWN=Berlin")
    assert changed.stdout == "customer C001 changed\n"
    unchanged = cli.run("customer", "change", "C001", "TOWN=Berlin")
    assert unchanged.stdout == "customer C001 unchanged\n"

    shown = cli.json("customer", "show", "C001")
    assert shown["CUNO"] == "C001"
    assert shown["CUNM"] == "Alfreds [Futterkiste]"
    assert shown["TOWN"] == "Berlin"
    assert shown["CUTP"] == "1"
    assert shown["STAT"] == "20"
    assert shown["CUA1"] == ""
    assert len(shown["LMDT"]) == 8
    assert shown["ADDRESSES"] == []
    assert shown["CARDS"] == []
    assert shown["MESSAGES"] == []
    table = cli.run("customer", "show", "C001").stdout
    assert "Alfreds [Futterkiste]" in table
    assert "Berlin" in table

    listed = cli.json("customer", "list")
    assert [row["CUNO"] for row in listed] == ["C001", "C002"]
    assert listed[1]["CUNM"] == "Königlich Essen"
    by_name = cli.run("customer", "list", "--name", "LICH ESS").stdout
    assert "Königlich Essen" in by_name
    assert "C001" not in by_name

    assert cli.run("customer", "delete", "C002").stdout == "customer C002 deleted\n"
    assert [row["CUNO"] for row in customers.list_customers(sqlite_db)] == ["C001"]


def test_customer_list_limit_and_paging(
    fast_cli: InProcessCli, sqlite_db: Database
) -> None:
    count = customer_commands.PAGE_SIZE + 2
    rows = [(line, {"CUNO": f"K{line:05d}"}) for line in range(2, count + 2)]
    customers.import_customers(sqlite_db, rows)

    listed = fast_cli.json("customer", "list")
    limited = fast_cli.json("customer", "list", "--limit", str(count - 1))
    one = fast_cli.json("customer", "list", "--limit", "1")

    assert len(listed) == count
    assert len({row["CUNO"] for row in listed}) == count
    assert [row["CUNO"] for row in limited] == [row["CUNO"] for row in listed][:-1]
    assert [row["CUNO"] for row in one] == ["K00002"]
    assert fast_cli.json("customer", "list", "--name", "nobody") == []


def test_address_card_message_commands(cli: Cli, sqlite_db: Database) -> None:
    customers.add_customer(sqlite_db, "C001", {"CUNM": "Alfreds"})

    address = cli.run("address", "set", "C001", "D1", "CUA1=Obere Str. 57", "ADRT=2")
    assert address.stdout == "address D1 of customer C001 saved\n"
    card = cli.run("card", "set", "C001", "4000123412341234", "CTP1=1", "REFE=Gold")
    assert card.stdout == "card 4000123412341234 of customer C001 saved\n"
    message = cli.run("message", "set", "C001", "M1", "Ask for the card")
    assert message.stdout == "message M1 of customer C001 saved\n"

    assert cli.json("address", "list", "C001") == [
        {
            "CUNO": "C001",
            "ADRT": "2",
            "ADID": "D1",
            "CUNM": "",
            "CUA1": "Obere Str. 57",
            "CUA2": "",
            "CUA3": "",
            "CUA4": "",
            "PONO": "",
            "TOWN": "",
            "ECAR": "",
            "CSCD": "",
            "PHNO": "",
        }
    ]
    assert cli.json("card", "list", "C001") == [
        {
            "CUNO": "C001",
            "CCNR": "4000123412341234",
            "CTP1": "1",
            "BLCD": "0",
            "MCRD": "",
            "VTMM": "0",
            "VTYY": "0",
            "REFE": "Gold",
        }
    ]
    assert "Ask for the card" in cli.run("message", "list", "C001").stdout

    cli.run("address", "delete", "C001", "D1")
    cli.run("card", "delete", "C001", "4000123412341234")
    cli.run("message", "delete", "C001", "M1")
    shown = cli.json("customer", "show", "C001")
    assert shown["ADDRESSES"] == []
    assert shown["CARDS"] == []
    assert shown["MESSAGES"] == []


def test_child_command_variants(fast_cli: InProcessCli, sqlite_db: Database) -> None:
    customers.add_customer(sqlite_db, "C001", {"CUNM": "Alfreds"})
    fast_cli.run("address", "set", "C001", "D1", "TOWN=Berlin")
    fast_cli.run("card", "set", "C001", "4000999988887777")
    fast_cli.run("message", "set", "C001", "M1", "First", "--priority", "7")
    fast_cli.run("message", "set", "C001", "M2", "Second")

    again = fast_cli.run("address", "set", "C001", "D1", "TOWN=Berlin")
    assert again.stdout == "address D1 of customer C001 unchanged\n"
    assert fast_cli.json("address", "list", "C001")[0]["ADRT"] == "1"
    assert fast_cli.json("message", "list", "C001") == [
        {"CUNO": "C001", "MSID": "M1", "PRIO": "7", "MSTX": "First"},
        {"CUNO": "C001", "MSID": "M2", "PRIO": "5", "MSTX": "Second"},
    ]
    table = fast_cli.run("customer", "show", "C001").stdout
    assert "4000999988887777" in table
    assert "Second" in table
    assert "message M9 of customer C001 not found" in fast_cli.error(
        "message", "delete", "C001", "M9"
    )
    fast_cli.run("card", "delete", "C001", "4000999988887777")
    assert fast_cli.run("card", "list", "C001").stderr == "customer C001 has no card\n"
    assert fast_cli.json("card", "list", "C001") == []


# Rejected input


BAD_INPUT = [
    # (command, text expected in the error line)
    (["customer", "change", "C001", "CUNM=" + "x" * 37], "CUNM: invalid value 'xxx"),
    (["customer", "change", "C001", "CUTP=abc"], "CUTP: invalid value 'abc'"),
    (["customer", "change", "C001", "CUNM=a\x07b"], "CUNM: invalid value 'a\\x07b'"),
    (["customer", "change", "C001", "CUNM=a\tb"], "found U+0009 at position 2"),
    (["customer", "change", "C001", "STAT=30"], "STAT: invalid value '30'"),
    (["customer", "change", "C001", "CSCD=Germany"], "CSCD: invalid value 'Germany'"),
    (["customer", "change", "C001", "CUNM"], "argument: invalid value 'CUNM'"),
    (["customer", "change", "C001", "=x"], "argument: invalid value '=x'"),
    (["customer", "change", "C001", "XXXX=1"], "XXXX: unknown field"),
    (["customer", "change", "C001", "CUNO=C9"], "CUNO: unknown field"),
    (["customer", "change", "C001", "CUNM=a", "cunm=b"], "CUNM is given twice"),
    (["customer", "add", "C,1"], "CUNO: invalid value 'C,1'"),
    (["customer", "add", "C001"], "customer C001 already exists"),
    (["customer", "change", "C404", "CUNM=x"], "customer C404 not found"),
    (["customer", "show", "C404"], "customer C404 not found"),
    (["customer", "delete", "C404"], "customer C404 not found"),
    (["address", "set", "C001", "D1", "ADRT=x"], "ADRT: invalid value 'x'"),
    (["address", "set", "C001", "D1", "MSTX=x"], "MSTX: unknown field"),
    (["address", "delete", "C001", "D9"], "address D9 of customer C001 not found"),
    (["card", "set", "C001", "12ab"], "CCNR: invalid value '12ab'"),
    (["card", "set", "C001", "1", "BLCD=2"], "BLCD: invalid value '2'"),
    (["message", "set", "C001", "M1", "x", "--priority", "0"], "PRIO: invalid value"),
    (["message", "set", "C001", "M1", "x" * 61], "MSTX: invalid value"),
    (["subscriber", "add", "S1"], "subscriber S1 already exists"),
    (["subscriber", "add", "S" * 11], "SBS1: invalid value 'SSSSSSSSSSS'"),
    (["subscriber", "delete", "S1"], "still has shops"),
    (["shop", "add", "A09", "--subscriber", "S9"], "subscriber S9 not found"),
    (
        ["shop", "add", "A09", "--subscriber", "S1", "--segment", "NOPE"],
        "segment NOPE not found",
    ),
    (["shop", "add", "A001", "--subscriber", "S1"], "WHLO: invalid value 'A001'"),
    (["shop", "add", "A01", "--subscriber", "S1"], "shop A01 already exists"),
    (["shop", "segments", "A01", "NOPE"], "segment NOPE not found"),
    (["shop", "change", "A01", "--subscriber", "S9"], "subscriber S9 not found"),
    (["shop", "show", "Z99"], "shop Z99 not found"),
    (["shop", "delete", "Z99"], "shop Z99 not found"),
    (["segment", "add", "SX", "CSCD"], "condition: invalid value 'CSCD'"),
    (["segment", "add", "SX", "MAIL=x"], "condition: invalid value 'MAIL=x'"),
    (["segment", "add", "SX", "CUTP=x"], "CUTP: invalid value 'x'"),
    (["segment", "add", "SX", "CSCD=DE", "CSCD=SE"], "CSCD is given twice"),
    (["segment", "add", "DE"], "segment DE already exists"),
    (["segment", "change", "NOPE", "CSCD=DE"], "segment NOPE not found"),
    (["segment", "delete", "DE"], "used by shops A01"),
    (["cleanup", "--before", "20261340"], "--before: invalid value '20261340'"),
    (["cleanup", "--before", "2026-01-01"], "--before: invalid value '2026-01-01'"),
    (["cleanup", "--subscriber", "S9"], "subscriber S9 not found"),
    (["outbox", "confirm", "S1", "--up-to", "abc"], "TRNR: invalid value 'abc'"),
    (["outbox", "show", "S9"], "subscriber S9 not found"),
    (["outbox", "list", "S9"], "subscriber S9 not found"),
    (["outbox", "status", "--subscriber", "S9"], "subscriber S9 not found"),
    (["net-transfer", "--subscriber", "S9"], "subscriber S9 not found"),
    (["net-transfer", "--function", "purge"], "function: invalid value 'purge'"),
    (["net-transfer", "--force"], "force only with the delete function"),
    (["net-transfer", "--from", "C9", "--to", "C1"], "to: invalid value 'C1'"),
    (["export", "C404"], "customer C404 not found"),
    (["customer", "import", "missing.csv"], "missing.csv: file not found"),
]


def test_bad_input_rejected(fast_cli: InProcessCli, sqlite_db: Database) -> None:
    add_setup(sqlite_db)
    before = stored_state(fast_cli)

    for args, expected in BAD_INPUT:
        line = fast_cli.error(*args)
        assert expected in line, f"posoutbox {' '.join(args)}: {line}"

    assert stored_state(fast_cli) == before
    assert fast_cli.json("segment", "list") == [
        {"SEID": "ALL", "DESCRIPTION": "", "CONDITIONS": [], "SHOP": ["A02"]},
        {"SEID": "DE", "DESCRIPTION": "", "CONDITIONS": ["CSCD=DE"], "SHOP": ["A01"]},
    ]
    assert [row["SBS1"] for row in fast_cli.json("subscriber", "list")] == ["S1"]


def test_bad_input_in_subprocess(cli: Cli, sqlite_db: Database) -> None:
    add_setup(sqlite_db)
    before = cli.json("customer", "show", "C001")
    too_long = "CUNM=" + "x" * 37

    assert "CUNM: invalid value" in cli.error("customer", "change", "C001", too_long)
    assert "'a\\x1bb'" in cli.error("customer", "change", "C001", "CUNM=a\x1bb")
    assert "argument: invalid value 'CUNM'" in cli.error(
        "customer", "change", "C001", "CUNM"
    )
    assert "segment NOPE not found" in cli.error(
        "shop", "add", "A09", "--subscriber", "S1", "--segment", "NOPE"
    )
    assert "condition: invalid value 'CSCD'" in cli.error(
        "segment", "add", "SX", "CSCD"
    )
    assert "--before: invalid value '20261340'" in cli.error(
        "cleanup", "--before", "20261340"
    )

    assert cli.json("customer", "show", "C001") == before


def test_usage_errors_and_verbose(cli: Cli) -> None:
    missing = cli.error("customer", "show", code=2)
    assert "Missing argument 'CUNO'" in missing
    assert "posoutbox customer show --help" in missing

    verbose = cli.run("--verbose", "customer", "show", "C404", code=1)
    assert "Traceback" in verbose.stderr
    assert verbose.stderr.splitlines()[-1] == "error: customer C404 not found"


def test_usage_error_variants(fast_cli: InProcessCli) -> None:
    assert "'--max'" in fast_cli.error("outbox", "list", "S1", "--max", "-1", code=2)
    assert "'--limit'" in fast_cli.error("customer", "list", "--limit", "0", code=2)
    assert "'--every'" in fast_cli.error("net-transfer", "--every", "0", code=2)
    assert "No such command 'nope'" in fast_cli.error("nope", code=2)
    assert "--clear" in fast_cli.error(
        "segment", "change", "DE", "--clear", "CSCD=DE", code=2
    )
    assert "Missing argument" in fast_cli.error("customer", "change", "C1", code=2)


# Subscribers, shops and segments


def test_subscriber_shop_segment_commands(cli: Cli, sqlite_db: Database) -> None:
    shops.add_subscriber(sqlite_db, "S1", name="Stockholm")
    added = cli.run("subscriber", "add", "S2")
    assert added.stdout == "subscriber S2 added\n"
    cli.run("segment", "add", "DE", "CSCD=DE,AT", "--description", "German-speaking")
    bare = cli.run(
        *("shop", "add", "B01", "--subscriber", "S2", "--name", "Bergen"),
        *("--inactive", "--no-pos-interface"),
    )
    assert bare.stdout == "shop B01 added to subscriber S2\n"
    assert "warning: shop B01: no segment, so it receives no customers" in bare.stderr
    assert "warning: shop B01: inactive" in bare.stderr
    assert "warning: shop B01: POS interface off" in bare.stderr

    assert cli.json("subscriber", "list") == [
        {"SBS1": "S1", "NAME": "Stockholm", "SHOP": []},
        {"SBS1": "S2", "NAME": "", "SHOP": ["B01"]},
    ]
    assert cli.json("shop", "show", "B01") == {
        "WHLO": "B01",
        "SBS1": "S2",
        "NAME": "Bergen",
        "ACTIVE": "0",
        "POS_INTERFACE": "0",
        "CUSTOMER_INTERFACE": "1",
        "SEGMENTS": [],
        "WARNINGS": [
            "no segment, so it receives no customers",
            "inactive",
            "POS interface off",
        ],
    }
    table = cli.run("shop", "list").stdout
    assert "no segment, so it receives no customers" in table
    assert "POS interface off" in table

    segments = cli.run("shop", "segments", "B01", "DE")
    assert segments.stdout == "shop B01 segments: DE\n"
    changed = cli.run(
        "shop", "change", "B01", "--active", "--pos-interface", "--subscriber", "S1"
    )
    assert changed.stdout == (
        "shop B01 of subscriber S1: active, POS interface on, customer interface on\n"
    )
    assert changed.stderr == ""

    assert cli.json("segment", "show", "DE") == {
        "SEID": "DE",
        "DESCRIPTION": "German-speaking",
        "CONDITIONS": ["CSCD=AT,DE"],
        "SHOP": ["B01"],
    }
    assert cli.run("segment", "change", "DE", "CSCD=DE", "CUCL=RET,WHS").stdout == (
        "segment DE: CSCD=DE, CUCL=RET,WHS\n"
    )
    assert "German-speaking" in cli.run("segment", "list").stdout

    cli.run("shop", "delete", "B01")
    cli.run("subscriber", "delete", "S2")
    cli.run("segment", "delete", "DE")
    assert [row["SBS1"] for row in cli.json("subscriber", "list")] == ["S1"]
    assert shops.list_shops(sqlite_db) == []
    assert shops.list_segments(sqlite_db) == []


def test_shop_and_segment_variants(fast_cli: InProcessCli) -> None:
    fast_cli.run("subscriber", "add", "S1")
    fast_cli.run("subscriber", "add", "S2")
    fast_cli.run("segment", "add", "ALL")
    fast_cli.run("segment", "add", "SE", "CSCD=SE")
    fast_cli.run("shop", "add", "A01", "--subscriber", "S1", "--segment", "ALL")
    fast_cli.run(
        *("shop", "add", "A02", "--subscriber", "S2", "--segment", "ALL"),
        *("--segment", "SE", "--no-customer-interface"),
    )

    # Options not given stay as they are.
    renamed = fast_cli.run("shop", "change", "A02", "--name", "Malmö")
    assert "customer interface off" in renamed.stdout
    assert "warning: shop A02: customer interface off" in renamed.stderr
    shop = fast_cli.json("shop", "show", "A02")
    assert shop["NAME"] == "Malmö"
    assert shop["SEGMENTS"] == ["ALL", "SE"]
    assert shop["CUSTOMER_INTERFACE"] == "0"
    fast_cli.run("shop", "change", "A02", "--customer-interface", "--inactive")
    shop = fast_cli.json("shop", "show", "A02")
    assert (shop["ACTIVE"], shop["CUSTOMER_INTERFACE"]) == ("0", "1")
    assert [
        row["WHLO"] for row in fast_cli.json("shop", "list", "--subscriber", "S2")
    ] == ["A02"]
    assert "Malmö" in fast_cli.run("shop", "show", "A02").stdout
    assert "Malmö" in fast_cli.run("shop", "list", "--subscriber", "S2").stdout

    fast_cli.run("segment", "change", "SE", "--description", "Sweden")
    assert fast_cli.json("segment", "show", "SE")["CONDITIONS"] == ["CSCD=SE"]
    cleared = fast_cli.run("segment", "change", "SE", "--clear")
    assert cleared.stdout == "segment SE: matches every customer\n"
    assert fast_cli.json("segment", "show", "SE") == {
        "SEID": "SE",
        "DESCRIPTION": "Sweden",
        "CONDITIONS": [],
        "SHOP": ["A02"],
    }
    assert "matches every customer" in fast_cli.run("segment", "show", "SE").stdout

    cleared = fast_cli.run("shop", "segments", "A02")
    assert cleared.stdout == "shop A02 segments: (none)\n"
    assert "warning: shop A02: no segment, so it receives no customers" in (
        cleared.stderr
    )


# Net transfer and the outbox


def test_net_transfer_outbox_and_cleanup(cli: Cli, sqlite_db: Database) -> None:
    add_setup(sqlite_db)

    summary = cli.json("net-transfer")
    assert summary["FUNCTION"] == "update"
    assert summary["CUSTOMERS"] == "2"
    assert summary["TOTAL"] == "5"
    # C001's four records go to both shops, C002's customer record to A02 only.
    assert summary["COUNTS"] == [
        {"SBS1": "S1", "TRTP": "OCUSAD", "ACCT": "*UPD", "RECORDS": "1"},
        {"SBS1": "S1", "TRTP": "OCUSMA", "ACCT": "*UPD", "RECORDS": "2"},
        {"SBS1": "S1", "TRTP": "OOEMSG", "ACCT": "*UPD", "RECORDS": "1"},
        {"SBS1": "S1", "TRTP": "OPCARD", "ACCT": "*UPD", "RECORDS": "1"},
    ]
    assert summary["LOADS"] == [
        {"WHLO": "A01", "CUSTOMERS": "1"},
        {"WHLO": "A02", "CUSTOMERS": "2"},
    ]

    customers.change_customer(sqlite_db, "C001", {"TOWN": "Köln"})
    customers.add_customer(sqlite_db, "C003", {"CUNM": "Chop-suey", "CSCD": "CH"})
    table = cli.run("net-transfer", "--subscriber", "S1").stdout
    assert "OCUSMA" in table
    assert "2 customers processed, 1 records created" in table
    exported = cli.json("export", "C002")
    assert exported["FUNCTION"] == "export"

    status = cli.json("outbox", "status")
    assert [(row["SBS1"], row["WHLO"], row["NEW"]) for row in status] == [
        ("S1", "A01", "4"),
        ("S1", "A02", "6"),
    ]
    assert all(row["AGE_SECONDS"].isdigit() for row in status)
    shown = cli.json("outbox", "show", "S1", "--cuno", "C001", "--limit", "2")
    assert [(row["TRNR"], row["TRTP"], row["STATE"]) for row in shown] == [
        ("1", "OCUSMA", "new"),
        ("2", "OCUSAD", "new"),
    ]
    assert shown[0]["SHOP"] == ["A01", "A02"]
    assert shown[0]["TOWN"] == "Köln"
    assert shown[0]["RDDA"].startswith("C001      Alfreds Futterkiste")
    assert shown[1]["CUA1"] == "Obere Str. 57"

    # Paging as a POS does it: list, confirm, list again until nothing is left.
    seen: list[str] = []
    while True:
        page = cli.json("outbox", "list", "S1", "--max", "2")
        if not page:
            break
        assert set(page[0]) == {"TRNR", "TRTP", "ACCT", "CUNO", "SHOP", "RDDA", "RDD2"}
        seen.extend(record["TRNR"] for record in page)
        confirmed = cli.run("outbox", "confirm", "S1", "--up-to", page[-1]["TRNR"])
        assert confirmed.stdout == f"confirmed {len(page)} records\n"
    assert seen == sorted(seen, key=int)
    assert len(seen) == 6

    assert cli.json("cleanup", "--preview") == {
        "PREVIEW": "1",
        "TOTAL": "6",
        "COUNTS": [{"SBS1": "S1", "RECORDS": "6"}],
    }
    removed = cli.run("cleanup", "--subscriber", "S1").stdout
    assert "cleanup removed 6 confirmed records" in removed
    assert cli.json("outbox", "status")[0]["CONFIRMED"] == "0"


def test_outbox_variants(fast_cli: InProcessCli, sqlite_db: Database) -> None:
    add_setup(sqlite_db)
    transfer.net_transfer(sqlite_db)

    first = fast_cli.run("outbox", "list", "S1", "--max", "2")
    assert "OCUSMA" in first.stdout
    assert "--up-to 2" in first.stderr
    shown = fast_cli.json("outbox", "show", "S1")
    assert [row["STATE"] for row in shown] == ["listed", "listed", "new", "new", "new"]
    browsed = fast_cli.run("outbox", "show", "S1").stdout
    assert "CUNM=Alfreds Futterkiste" in browsed
    assert "Oldest unconfirmed" in fast_cli.run("outbox", "status").stdout

    # Confirming covers the listed records only.
    assert fast_cli.run("outbox", "confirm", "S1").stdout == "confirmed 2 records\n"
    assert fast_cli.run("outbox", "confirm", "S1").stdout == "confirmed 0 records\n"
    rest = fast_cli.json("outbox", "list", "S1", "--max", "0")
    assert [row["TRNR"] for row in rest] == ["3", "4", "5"]
    assert rest[2]["SHOP"] == ["A02"]
    fast_cli.run("outbox", "confirm", "S1", "--up-to", "4")
    assert [row["TRNR"] for row in fast_cli.json("outbox", "list", "S1")] == ["5"]

    everything = fast_cli.json("outbox", "show", "S1", "--all")
    assert [row["STATE"] for row in everything] == ["confirmed"] * 4 + ["listed"]
    assert "would remove 4" in fast_cli.run("cleanup", "--preview").stdout
    assert fast_cli.json("cleanup", "--before", "19991231")["TOTAL"] == "0"
    assert fast_cli.json("cleanup", "--subscriber", "S1")["TOTAL"] == "4"


def test_delete_function_and_range(fast_cli: InProcessCli, sqlite_db: Database) -> None:
    add_setup(sqlite_db)
    transfer.net_transfer(sqlite_db)
    customers.change_customer(sqlite_db, "C002", {"STAT": "90"})

    ranged = fast_cli.json("net-transfer", "--from", "C001", "--to", "C001")
    deleted = fast_cli.json("net-transfer", "--function", "delete")
    forced = fast_cli.json(
        "net-transfer", "--function", "delete", "--force", "--from", "C001"
    )

    assert ranged["TOTAL"] == "0"
    assert deleted["FUNCTION"] == "delete"
    assert deleted["COUNTS"] == [
        {"SBS1": "S1", "TRTP": "OCUSMA", "ACCT": "*DEL", "RECORDS": "1"}
    ]
    assert forced["COUNTS"] == [
        {"SBS1": "S1", "TRTP": "OCUSMA", "ACCT": "*DEL", "RECORDS": "2"}
    ]


def test_net_transfer_no_wait_when_busy(cli: Cli, sqlite_db: Database) -> None:
    add_setup(sqlite_db)

    with sqlite_db.run_lock(S1_RUN_LOCK, wait=False):
        line = cli.error("net-transfer", "--subscriber", "S1", "--no-wait", code=75)
    assert "already running" in line

    assert cli.json("net-transfer", "--no-wait")["TOTAL"] == "5"


def test_net_transfer_every_until_interrupt(cli: Cli, sqlite_db: Database) -> None:
    add_setup(sqlite_db)
    command = ["net-transfer", "--every", "1", "--no-wait", "--json"]
    # One pipe for stdout and stderr keeps the order of summaries and errors.
    process = subprocess.Popen(
        [sys.executable, "-m", "posoutbox", *command],
        cwd=cli.cwd,
        env=cli.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout

    def next_line() -> str:
        line = output.readline()
        assert line, "net-transfer --every ended before it was interrupted"
        return line

    try:
        first = json.loads(next_line())

        # A run that finds the lock taken reports it, and the next run goes ahead.
        with sqlite_db.run_lock(S1_RUN_LOCK, wait=False):
            line = next_line()
            while not line.startswith("error: "):
                line = next_line()
        busy = line
        line = next_line()
        while line.startswith("error: "):
            line = next_line()
        after_busy = json.loads(line)

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, rest
    assert first["TOTAL"] == "5"
    assert "already running" in busy
    assert after_busy["TOTAL"] == "0"
    assert "stopping after the current run" in rest


# Import


def test_import_reports_rejected_rows(cli: Cli, sqlite_db: Database) -> None:
    customers.add_customer(sqlite_db, "I3", {"CUNM": "Kept", "CSCD": "SE"})
    path = cli.cwd / "customers.csv"
    path.write_text(
        "CUNO,CUNM,CSCD\n"
        "I1,Imported one,DE\n"
        "I2,Bad country,XX\n"
        "I3,Kept,SE\n"
        'I4,"Two\nlines",SE\n'
        "I5,Too,many,cells\n"
        "I1,Again,DE\n",
        encoding="utf-8",
    )

    result = cli.json("customer", "import", str(path))

    assert result["ADDED"] == "1"
    assert result["CHANGED"] == "0"
    assert result["UNCHANGED"] == "1"
    assert result["REJECTED"] == "4"
    rejections = {(row["LINE"], row["FIELD"]) for row in result["REJECTIONS"]}
    assert rejections == {("3", "CSCD"), ("5", "CUNM"), ("7", "row"), ("8", "CUNO")}
    bad_country = next(r for r in result["REJECTIONS"] if r["FIELD"] == "CSCD")
    assert bad_country["VALUE"] == "XX"
    assert "ISO 3166-1" in bad_country["REASON"]
    assert [row["CUNO"] for row in cli.json("customer", "list")] == ["I1", "I3"]

    table = cli.run("customer", "import", str(path)).stdout
    assert "Two\\nlines" in table
    assert "added 0, changed 0, unchanged 2, rejected 4" in table


def test_import_of_unreadable_file_fails(cli: Cli) -> None:
    malformed = cli.cwd / "malformed.csv"
    malformed.write_text('CUNO,CUNM\nM1,Fine\nM2,"unterminated\n', encoding="utf-8")

    assert "line 3: invalid CSV" in cli.error("customer", "import", str(malformed))
    assert cli.json("customer", "list") == []


def test_import_header_problems(fast_cli: InProcessCli) -> None:
    semicolons = fast_cli.cwd / "semicolons.csv"
    semicolons.write_text("CUNO;CUNM\nM1;Fine\n", encoding="utf-8")
    m3_file = fast_cli.cwd / "m3.csv"
    m3_file.write_text("CUNO,CUNM\nM1,Fine\n", encoding="utf-8")

    assert "semicolons" in fast_cli.error("customer", "import", str(semicolons))
    assert "missing columns customer_id" in fast_cli.error(
        "customer", "import", str(m3_file), "--mapping", "northwind"
    )
    assert "mapping: invalid value 'xml'" in fast_cli.error(
        "customer", "import", str(m3_file), "--mapping", "xml"
    )
    assert fast_cli.json("customer", "list") == []
    assert "added 1" in fast_cli.run("customer", "import", str(m3_file)).stdout


def test_format_age() -> None:
    assert outbox_commands.format_age(None) == ""
    assert outbox_commands.format_age(0) == "0 s"
    assert outbox_commands.format_age(59) == "59 s"
    assert outbox_commands.format_age(180) == "3 min"
    assert outbox_commands.format_age(3600) == "1 h"
    assert outbox_commands.format_age(7500) == "2 h 5 min"
    assert outbox_commands.format_age(86400 * 3 + 3600 * 4 + 59) == "3 d 4 h"


# Demo


def test_demo_refuses_existing_database(cli: Cli) -> None:
    existing = cli.cwd / "existing.db"
    existing.write_bytes(b"")

    result = cli.run("demo", "--database", str(existing), code=2)

    assert f"demo database: {existing}" in result.stderr


# PostgreSQL


@pytest.mark.postgresql
def test_postgresql_main_flow(postgresql_url: str, tmp_path: Path) -> None:
    cli = Cli(postgresql_url, tmp_path)
    assert "run 'posoutbox db upgrade'" in cli.error("customer", "list")
    cli.run("db", "upgrade")
    database = open_database(postgresql_url)
    try:
        shops.add_subscriber(database, "S1")
        shops.add_segment(database, "DE", conditions=["CSCD=DE"])
    finally:
        database.close()
    cli.run("customer", "add", "C001", "CUNM=Alfreds Futterkiste", "CSCD=DE")
    cli.run("shop", "add", "A01", "--subscriber", "S1", "--segment", "DE")
    before = cli.json("customer", "show", "C001")
    assert "CUNM: invalid value" in cli.error(
        "customer", "change", "C001", "CUNM=" + "x" * 37
    )
    assert cli.json("customer", "show", "C001") == before

    assert cli.json("net-transfer")["COUNTS"] == [
        {"SBS1": "S1", "TRTP": "OCUSMA", "ACCT": "*UPD", "RECORDS": "1"}
    ]
    listed = cli.json("outbox", "list", "S1")
    assert [(row["TRNR"], row["CUNO"], row["SHOP"]) for row in listed] == [
        ("1", "C001", ["A01"])
    ]
    assert cli.run("outbox", "confirm", "S1").stdout == "confirmed 1 records\n"
    assert cli.json("outbox", "list", "S1") == []
    assert cli.json("cleanup")["TOTAL"] == "1"


@pytest.mark.postgresql
def test_postgresql_import_and_busy(
    pg_db: Database, postgresql_url: str, tmp_path: Path
) -> None:
    add_setup(pg_db)
    cli = Cli(postgresql_url, tmp_path)

    with pg_db.run_lock(S1_RUN_LOCK, wait=False):
        line = cli.error("net-transfer", "--no-wait", code=75)
    assert "already running" in line

    path = tmp_path / "customers.csv"
    path.write_text("CUNO,CUNM,CSCD\nP1,Imported,DE\nP2,Bad,XX\n", encoding="utf-8")
    imported = cli.json("customer", "import", str(path))
    assert (imported["ADDED"], imported["REJECTED"]) == ("1", "1")
    assert cli.json("net-transfer", "--no-wait")["TOTAL"] == "6"

"""A real API server for tests: uvicorn serving ``create_app`` on 127.0.0.1 in a
background thread, with the subscribers, shops and users most API tests need."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher

from posoutbox import customers, shops, transfer, users
from posoutbox.api.app import create_app
from posoutbox.api.render import NAMESPACE
from posoutbox.db import migrate
from posoutbox.db.storage import Database, open_database

PASSWORD = "correct horse battery"
ADMIN = "admin"
POS1 = "pos1"
POS2 = "pos2"

#: Argon2 parameters that make hashing take about a millisecond, so that tests
#: can add users freely. Production hashes use argon2-cffi's defaults.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)

# The server thread normally starts within a second; this only bounds a hang.
_STARTUP_LIMIT_SECONDS = 30.0


@dataclass
class RunningServer:
    """A server listening on 127.0.0.1 and the database behind it."""

    base_url: str
    db: Database

    def client(
        self, user: str | None = ADMIN, password: str = PASSWORD, **options: Any
    ) -> httpx.Client:
        """Return an HTTP client, authenticated as ``user`` unless it is None."""
        auth = None if user is None else (user, password)
        return httpx.Client(base_url=self.base_url, auth=auth, timeout=60, **options)


@contextlib.contextmanager
def serve(database_url: str, **app_options: Any) -> Iterator[str]:
    """Run the API for ``database_url`` on a free port; yield its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    app = create_app(database_url, **app_options)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + _STARTUP_LIMIT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=_STARTUP_LIMIT_SECONDS)
        listener.close()


def prepare_database(database_url: str) -> Database:
    """Migrate the database and add subscribers S1 (shops 001 and 002) and S2
    (shop 101), a segment that every customer matches, and the users admin,
    pos1 (of S1) and pos2 (of S2)."""
    db = open_database(database_url)
    migrate.upgrade(db)
    shops.add_segment(db, "ALL", description="every customer")
    shops.add_subscriber(db, "S1")
    shops.add_subscriber(db, "S2")
    shops.add_shop(db, "001", "S1", segments=["ALL"])
    shops.add_shop(db, "002", "S1", segments=["ALL"])
    shops.add_shop(db, "101", "S2", segments=["ALL"])
    users.add_user(db, ADMIN, PASSWORD, admin=True)
    users.add_user(db, POS1, PASSWORD, sbs1="S1")
    users.add_user(db, POS2, PASSWORD, sbs1="S2")
    return db


@contextlib.contextmanager
def running_api(
    database_url: str, monkeypatch: pytest.MonkeyPatch, **app_options: Any
) -> Iterator[RunningServer]:
    """Prepare the database and run the API on it."""
    monkeypatch.setattr(users, "PASSWORD_HASHER", CHEAP_HASHER)
    db = prepare_database(database_url)
    try:
        with serve(database_url, **app_options) as base_url:
            yield RunningServer(base_url, db)
    finally:
        db.close()


def add_customers(db: Database, count: int, *, prefix: str = "C") -> list[str]:
    """Add ``count`` customers and run a net transfer, so that every subscriber
    gets one OCUSMA record per customer; return the customer numbers."""
    cunos = [f"{prefix}{number:05d}" for number in range(1, count + 1)]
    rows = [
        (line, {"CUNO": cuno, "CUNM": f"Customer {cuno}", "CSCD": "SE"})
        for line, cuno in enumerate(cunos, start=2)
    ]
    result = customers.import_customers(db, rows)
    assert result.rejected_rows == 0
    transfer.net_transfer(db)
    return cunos


def qualified(tag: str) -> str:
    """Return an element name in the API's namespace, as ElementTree writes it."""
    return f"{{{NAMESPACE}}}{tag}"


def parse_xml(response: httpx.Response) -> ElementTree.Element:
    """Parse an XML response and check that every element is in the namespace."""
    assert response.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(response.content)
    for element in root.iter():
        assert element.tag.startswith(f"{{{NAMESPACE}}}"), element.tag
    return root


def xml_records(root: ElementTree.Element) -> list[dict[str, str]]:
    """Return the MIRecord elements of an MIResult as dictionaries."""
    records = []
    for record in root.findall(qualified("MIRecord")):
        values = {}
        for pair in record.findall(qualified("NameValue")):
            name = pair.findtext(qualified("Name"))
            assert name is not None
            values[name] = pair.findtext(qualified("Value")) or ""
        records.append(values)
    return records


def json_records(document: dict[str, Any]) -> list[dict[str, str]]:
    """Return the MIRecord entries of a JSON MIResult as dictionaries."""
    return [
        {pair["Name"]: pair["Value"] for pair in record["NameValue"]}
        for record in document["MIRecord"]
    ]

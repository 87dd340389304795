"""Tests of the POS agent's OPS600MI client and loop against a stand-in for M3.

The stand-in is a small standard-library HTTP server on 127.0.0.1 that serves
LstCus and CnfCus as M3 does, without the TRNR, CUNO and SHOP extension fields
unless a test turns them on. The last tests run the real agent as a subprocess
against it, to show the fallback mode for servers without the extensions.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from posoutbox.agent.client import (
    DELETE,
    UPDATE,
    XML,
    ApiError,
    M3Client,
    ResponseError,
    RetriesExhausted,
    RetryPolicy,
    Stopped,
)
from posoutbox.agent.runner import Agent
from posoutbox.agent.store import ALL_SHOPS, Store, open_store
from posoutbox.fields import Value
from posoutbox.layouts import KEY_FIELDS, encode, split_data

USER = "POS1"
PASSWORD = "s3cret pass"
NAMESPACE = "http://www.infor.com/m3/api"


@dataclass
class StandInRecord:
    trnr: int
    trtp: str
    acct: str
    data: str
    shops: tuple[str, ...] = ("A01",)
    state: str = "new"


@dataclass
class StandInM3:
    """The server side of OPS600MI LstCus and CnfCus for one subscriber."""

    sbs1: str = "S1"
    extensions: bool = False
    records: list[StandInRecord] = field(default_factory=list)
    #: HTTP statuses returned, one per call, before calls are served again.
    failures: list[int] = field(default_factory=list)
    #: A body returned once with HTTP 200 instead of a result.
    raw_body: bytes | None = None
    paths: list[str] = field(default_factory=list)
    confirm_params: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        trtp: str,
        acct: str,
        values: dict[str, Value],
        shops: tuple[str, ...] = ("A01",),
    ) -> None:
        if acct == DELETE:
            values = {name: values[name] for name in KEY_FIELDS[trtp]}
        trnr = len(self.records) + 1
        self.records.append(
            StandInRecord(trnr, trtp, acct, encode(trtp, values), shops)
        )

    def unconfirmed(self) -> list[StandInRecord]:
        return [record for record in self.records if record.state != "confirmed"]

    def handle(self, path: str, authorization: str | None) -> tuple[int, Any]:
        """Return the status and the body (a result or error dict) of one call."""
        with self.lock:
            self.paths.append(path)
            if self.failures:
                return self.failures.pop(0), None
            expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if authorization != f"Basic {expected}":
                return 401, error_body("user or password incorrect")
            parts = urlsplit(path)
            segments = parts.path.split("/")
            transaction, *matrix = segments[-1].split(";")
            params = {
                name: values[0]
                for name, values in parse_qs(
                    parts.query, keep_blank_values=True
                ).items()
            }
            if params.get("SBS1") != self.sbs1:
                return 200, error_body(
                    f"Subscriber {params.get('SBS1')} does not exist", "SBS1"
                )
            if transaction == "LstCus":
                maxrecs = 100
                for item in matrix:
                    name, _, value = item.partition("=")
                    if name == "maxrecs":
                        maxrecs = int(value)
                return 200, self._list(maxrecs)
            if transaction == "CnfCus":
                self.confirm_params.append(params)
                up_to = int(params["TRNR"]) if "TRNR" in params else None
                for record in self.records:
                    if record.state == "listed" and (
                        up_to is None or record.trnr <= up_to
                    ):
                        record.state = "confirmed"
                return 200, []
            return 404, error_body(f"transaction {transaction} not found")

    def _list(self, maxrecs: int) -> list[dict[str, str]]:
        listed = self.unconfirmed()[: maxrecs or None]
        rows = []
        for record in listed:
            record.state = "listed"
            rdda, rdd2 = split_data(record.data)
            row = {"TRTP": record.trtp, "ACCT": record.acct, "RDDA": rdda, "RDD2": rdd2}
            if self.extensions:
                row["TRNR"] = str(record.trnr)
                row["CUNO"] = record.data[:10].rstrip()
                row["SHOP"] = ",".join(record.shops)
            rows.append(row)
        return rows


def error_body(message: str, field: str = "") -> dict[str, str]:
    return {
        "@type": "ServerReturnedNOK",
        "@code": "XRE0103",
        "@field": field,
        "Message": message,
    }


def render(body: Any, as_json: bool) -> bytes:
    if as_json:
        if isinstance(body, dict):
            return json.dumps(body).encode()
        return json.dumps(
            {
                "Program": "OPS600MI",
                "Transaction": "LstCus",
                "Metadata": {
                    "Field": [{"@name": name} for name in (body[0] if body else {})]
                },
                "MIRecord": [
                    {
                        "RowIndex": str(index),
                        "NameValue": [{"Name": k, "Value": v} for k, v in row.items()],
                    }
                    for index, row in enumerate(body)
                ],
            },
            ensure_ascii=False,
        ).encode()
    if isinstance(body, dict):
        root = ElementTree.Element(
            f"{{{NAMESPACE}}}ErrorMessage", type=body["@type"], code=body["@code"]
        )
        ElementTree.SubElement(root, f"{{{NAMESPACE}}}Message").text = body["Message"]
    else:
        root = ElementTree.Element(f"{{{NAMESPACE}}}MIResult")
        ElementTree.SubElement(root, f"{{{NAMESPACE}}}Program").text = "OPS600MI"
        ElementTree.SubElement(root, f"{{{NAMESPACE}}}Transaction").text = "LstCus"
        ElementTree.SubElement(root, f"{{{NAMESPACE}}}Metadata")
        for index, row in enumerate(body):
            record = ElementTree.SubElement(root, f"{{{NAMESPACE}}}MIRecord")
            ElementTree.SubElement(record, f"{{{NAMESPACE}}}RowIndex").text = str(index)
            for name, value in row.items():
                pair = ElementTree.SubElement(record, f"{{{NAMESPACE}}}NameValue")
                ElementTree.SubElement(pair, f"{{{NAMESPACE}}}Name").text = name
                ElementTree.SubElement(pair, f"{{{NAMESPACE}}}Value").text = value
    document: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def make_handler(server_state: StandInM3) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = server_state.handle(
                self.path, self.headers.get("Authorization")
            )
            accept = self.headers.get("Accept", "")
            as_json = "application/json" in accept
            if body is None:
                payload = b"<html>Service Unavailable</html>"
                content_type = "text/html"
            elif server_state.raw_body is not None:
                payload, server_state.raw_body = server_state.raw_body, None
                content_type = "text/html"
            else:
                payload = render(body, as_json)
                content_type = "application/json" if as_json else "application/xml"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class RunningServer:
    state: StandInM3
    url: str


@pytest.fixture
def m3() -> Iterator[RunningServer]:
    state = StandInM3()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RunningServer(state, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def client_for(server: RunningServer, **options: Any) -> M3Client:
    options.setdefault("retry", RetryPolicy(initial_delay=0.01, max_delay=0.05))
    return M3Client(server.url, USER, PASSWORD, **options)


def customer(cuno: str, name: str, **values: Value) -> dict[str, Value]:
    return {"CUNO": cuno, "CUNM": name, "STAT": "20", **values}


def card(cuno: str, ccnr: int, blocked: int = 0) -> dict[str, Value]:
    return {"CUNO": cuno, "CCNR": ccnr, "CTP1": 1, "BLCD": blocked}


# The client


@pytest.mark.parametrize("response_format", ["json", "xml"])
def test_list_parses_records(m3: RunningServer, response_format: str) -> None:
    m3.state.add("OCUSMA", UPDATE, customer("C1", "Königlich Essen", CUTP=2))
    m3.state.add("OPCARD", UPDATE, card("C1", 4711))

    with client_for(m3, response_format=response_format) as client:
        listing = client.list_customers("S1", 10)

    assert not listing.has_trnr
    assert not listing.has_shop
    first, second = listing.records
    assert first.trnr is None
    assert first.shops is None
    assert (first.trtp, first.acct, first.cuno) == ("OCUSMA", UPDATE, "C1")
    assert first.values["CUNM"] == "Königlich Essen"
    assert first.values["CUTP"] == 2
    assert first.values["LMDT"] == 0
    assert second.values["CCNR"] == 4711


@pytest.mark.parametrize("response_format", ["json", "xml"])
def test_list_reads_extension_fields(m3: RunningServer, response_format: str) -> None:
    m3.state.extensions = True
    m3.state.add("OCUSMA", UPDATE, customer("C1", "A"), shops=("A01", "A02"))

    with client_for(m3, response_format=response_format) as client:
        listing = client.list_customers("S1", 10)

    assert listing.has_trnr
    assert listing.has_shop
    (record,) = listing.records
    assert record.trnr == 1
    assert record.shops == ("A01", "A02")


def test_list_of_nothing(m3: RunningServer) -> None:
    with client_for(m3, response_format=XML) as client:
        listing = client.list_customers("S1", 10)

    assert listing.records == []


def test_request_puts_maxrecs_on_path(m3: RunningServer) -> None:
    m3.state.sbs1 = "S 1"

    with client_for(m3) as client:
        client.list_customers("S 1", 25)
        client.confirm_customers("S 1", 7)

    list_path, confirm_path = m3.state.paths
    assert list_path == "/m3api-rest/execute/OPS600MI/LstCus;maxrecs=25?SBS1=S%201"
    assert confirm_path == "/m3api-rest/execute/OPS600MI/CnfCus?SBS1=S%201&TRNR=7"


def test_url_may_end_with_gateway_path(m3: RunningServer) -> None:
    with M3Client(m3.url + "/m3api-rest/", USER, PASSWORD) as client:
        client.list_customers("S1", 1)

    assert unquote(m3.state.paths[0]).startswith("/m3api-rest/execute/OPS600MI/")


@pytest.mark.parametrize("response_format", ["json", "xml"])
def test_nok_raises_api_error(m3: RunningServer, response_format: str) -> None:
    with (
        client_for(m3, response_format=response_format) as client,
        pytest.raises(ApiError) as raised,
    ):
        client.list_customers("S9", 10)

    assert raised.value.status == 200
    assert raised.value.error_type == "ServerReturnedNOK"
    assert raised.value.code == "XRE0103"
    assert "Subscriber S9 does not exist" in raised.value.message


def test_wrong_password_raises_api_error(m3: RunningServer) -> None:
    with (
        M3Client(m3.url, USER, "wrong") as client,
        pytest.raises(ApiError) as raised,
    ):
        client.list_customers("S1", 10)

    assert raised.value.status == 401
    assert "--password-env" in raised.value.message
    assert "wrong" not in raised.value.message


def test_server_errors_are_retried(
    m3: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    m3.state.failures = [503, 502]
    m3.state.add("OCUSMA", UPDATE, customer("C1", "A"))

    with caplog.at_level(logging.WARNING), client_for(m3) as client:
        listing = client.list_customers("S1", 10)

    assert len(listing.records) == 1
    retries = [r for r in caplog.records if getattr(r, "action", "") == "agent_retry"]
    assert [getattr(r, "attempt", None) for r in retries] == [1, 2]
    assert all(r.levelno == logging.WARNING for r in retries)
    assert "HTTP 503" in retries[0].getMessage()


def test_retries_stop_at_attempt_limit(m3: RunningServer) -> None:
    m3.state.failures = [500, 500, 500]
    retry = RetryPolicy(initial_delay=0.01, max_attempts=2)

    with (
        client_for(m3, retry=retry) as client,
        pytest.raises(RetriesExhausted) as raised,
    ):
        client.list_customers("S1", 10)

    assert "failed 2 times" in raised.value.message
    assert "HTTP 500" in raised.value.message


def test_connection_refused_is_retried(unused_port: int) -> None:
    retry = RetryPolicy(initial_delay=0.01, max_attempts=3)
    with (
        M3Client(
            f"http://127.0.0.1:{unused_port}", USER, PASSWORD, retry=retry
        ) as client,
        pytest.raises(RetriesExhausted, match="ConnectError"),
    ):
        client.list_customers("S1", 10)


def test_stop_interrupts_retry_wait(m3: RunningServer) -> None:
    m3.state.failures = [503]
    stop = threading.Event()
    stop.set()
    retry = RetryPolicy(initial_delay=30, max_delay=30)

    with client_for(m3, retry=retry, stop=stop) as client, pytest.raises(Stopped):
        client.list_customers("S1", 10)


def test_unreadable_response_raises(m3: RunningServer) -> None:
    m3.state.raw_body = b"<html><body>Login</body>"

    with client_for(m3) as client, pytest.raises(ResponseError, match="unreadable"):
        client.list_customers("S1", 10)


def test_xml_with_dtd_is_rejected(m3: RunningServer) -> None:
    m3.state.raw_body = (
        b'<?xml version="1.0"?><!DOCTYPE MIResult [<!ENTITY a "aaaa">]>'
        b"<MIResult><Program>&a;</Program></MIResult>"
    )

    with (
        client_for(m3, response_format=XML) as client,
        pytest.raises(ResponseError, match="document type declaration"),
    ):
        client.list_customers("S1", 10)


def test_unknown_record_type_raises(m3: RunningServer) -> None:
    m3.state.add("OCUSMA", UPDATE, customer("C1", "A"))
    m3.state.records[0].trtp = "OXXXXX"

    with client_for(m3) as client, pytest.raises(ResponseError, match="TRTP"):
        client.list_customers("S1", 10)


def test_bad_number_in_data_raises(m3: RunningServer) -> None:
    m3.state.add("OPCARD", UPDATE, card("C1", 4711))
    data = m3.state.records[0].data
    m3.state.records[0].data = data[:10] + "12345678901234X6" + data[26:]

    with client_for(m3) as client, pytest.raises(ResponseError, match="CCNR"):
        client.list_customers("S1", 10)


def test_retry_delays_grow_to_cap() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=8.0)

    delays = [policy.delay(attempt) for attempt in range(1, 8)]

    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert 2.0 <= delays[2] <= 4.0
    assert all(4.0 <= delay <= 8.0 for delay in delays[3:])


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The loop, in process


def dump(store: Store) -> dict[str, list[dict[str, object]]]:
    return {
        summary.whlo: [
            stored.as_fields() for stored in store.iter_customers(summary.whlo)
        ]
        for summary in store.shops()
    }


def test_agent_without_extensions_keeps_one_copy(
    m3: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for number in range(5):
        m3.state.add("OCUSMA", UPDATE, customer(f"C{number}", "A"))
    m3.state.add("OCUSMA", DELETE, customer("C0", "A"))

    with (
        caplog.at_level(logging.INFO),
        client_for(m3) as client,
        open_store(tmp_path / "agent.db") as store,
    ):
        totals = Agent(client, store, "S1", maxrecs=2).run(once=True)
        held = dump(store)

    assert totals.batches == 3
    assert totals.applied == 6
    assert list(held) == [ALL_SHOPS]
    assert [row["CUNO"] for row in held[ALL_SHOPS]] == ["C1", "C2", "C3", "C4"]
    assert m3.state.unconfirmed() == []
    assert all("TRNR" not in params for params in m3.state.confirm_params)
    modes = [r for r in caplog.records if getattr(r, "action", "") == "agent_mode"]
    assert len(modes) == 2
    batches = [r for r in caplog.records if getattr(r, "action", "") == "agent_batch"]
    assert [getattr(r, "records", None) for r in batches] == [2, 2, 2]


def test_agent_skips_applied_records_and_confirms_them(
    m3: RunningServer, tmp_path: Path
) -> None:
    m3.state.extensions = True
    m3.state.add("OCUSMA", UPDATE, customer("C1", "Old"))
    m3.state.add("OCUSMA", UPDATE, customer("C1", "New"))
    m3.state.add("OCUSMA", UPDATE, customer("C2", "Other"))

    with client_for(m3) as client, open_store(tmp_path / "agent.db") as store:
        store.bind_subscriber("S1")
        # As if a previous run applied TRNR 1 and 2 and was killed before CnfCus:
        # the store contains 2 as the last TRNR, while its data is not what
        # TRNR 1 wrote.
        store.apply([], last_trnr=2)
        agent = Agent(client, store, "S1")
        batch = agent.process_batch()
        held = dump(store)

    assert batch is not None
    assert (batch.records, batch.applied, batch.skipped) == (3, 1, 2)
    assert [row["CUNO"] for row in held["A01"]] == ["C2"]
    assert m3.state.confirm_params == [{"SBS1": "S1", "TRNR": "3"}]


def test_agent_rejects_descending_trnr(m3: RunningServer, tmp_path: Path) -> None:
    m3.state.extensions = True
    m3.state.add("OCUSMA", UPDATE, customer("C1", "A"))
    m3.state.add("OCUSMA", UPDATE, customer("C2", "B"))
    m3.state.records[1].trnr = 1

    with (
        client_for(m3) as client,
        open_store(tmp_path / "agent.db") as store,
        pytest.raises(ResponseError, match="ascending"),
    ):
        Agent(client, store, "S1").run(once=True)
    assert m3.state.confirm_params == []


# The real agent as a subprocess against the stand-in


def run_agent(
    server: RunningServer,
    store: Path,
    *options: str,
    environment: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_PASSWORD": PASSWORD}
    env.pop("POSOUTBOX_AGENT_KILL_AT", None)
    env.update(environment or {})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "posoutbox",
            "pos-agent",
            "run",
            "--url",
            server.url,
            "--subscriber",
            "S1",
            "--user",
            USER,
            "--password-env",
            "AGENT_PASSWORD",
            "--store",
            str(store),
            "--retry-delay",
            "0.01",
            "--max-attempts",
            "5",
            *options,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def show_json(store: Path, shop: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "posoutbox",
            "pos-agent",
            "show",
            "--store",
            str(store),
            shop,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown: list[dict[str, Any]] = json.loads(result.stdout)
    return shown


def expected_copy(records: list[StandInRecord]) -> dict[str, dict[str, Any]]:
    """Apply records to plain dicts, the way a POS applies them."""
    from posoutbox.layouts import decode

    held: dict[str, dict[str, Any]] = {}
    for record in records:
        values = {
            name: str(value) for name, value in decode(record.trtp, record.data).items()
        }
        cuno = values["CUNO"]
        if record.trtp == "OCUSMA":
            if record.acct == DELETE:
                held.pop(cuno, None)
            else:
                previous = held.get(cuno, {})
                held[cuno] = {
                    **values,
                    "ADDRESSES": previous.get("ADDRESSES", {}),
                    "CARDS": previous.get("CARDS", {}),
                    "MESSAGES": previous.get("MESSAGES", {}),
                }
            continue
        child = {"OCUSAD": "ADDRESSES", "OPCARD": "CARDS", "OOEMSG": "MESSAGES"}[
            record.trtp
        ]
        key = tuple(values[name] for name in KEY_FIELDS[record.trtp])
        children = held[cuno][child]
        if record.acct == DELETE:
            children.pop(key, None)
        else:
            children[key] = values
    return held


def as_shown(copy: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    shown = []
    for cuno in sorted(copy):
        entry = dict(copy[cuno])
        for child in ("ADDRESSES", "CARDS", "MESSAGES"):
            entry[child] = [
                entry[child][key] for key in sorted(entry[child], key=sort_key)
            ]
        shown.append(entry)
    return shown


def sort_key(key: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in key)


def add_plain_m3_history(state: StandInM3) -> None:
    for number in range(8):
        cuno = f"C{number}"
        state.add("OCUSMA", UPDATE, customer(cuno, f"Customer {number}", TOWN="Malmö"))
        state.add("OPCARD", UPDATE, card(cuno, 1000 + number))
        state.add(
            "OOEMSG",
            UPDATE,
            {"CUNO": cuno, "MSID": "WELCOME", "PRIO": 5, "MSTX": "Välkommen"},
        )
    state.add("OPCARD", UPDATE, card("C1", 1001, blocked=1))
    state.add("OCUSMA", UPDATE, customer("C2", "Renamed"))
    state.add("OOEMSG", DELETE, {"CUNO": "C3", "MSID": "WELCOME"})
    state.add("OCUSMA", DELETE, customer("C4", ""))
    state.add("OCUSMA", UPDATE, customer("C4", "Back again"))
    state.add("OCUSMA", DELETE, customer("C5", ""))


def test_agent_process_against_plain_m3(m3: RunningServer, tmp_path: Path) -> None:
    add_plain_m3_history(m3.state)
    store = tmp_path / "agent.db"

    result = run_agent(m3, store, "--once", "--max", "5", "--format", "xml")

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("sends no TRNR") == 1
    assert result.stderr.count("sends no SHOP") == 1
    assert m3.state.unconfirmed() == []
    assert all("TRNR" not in params for params in m3.state.confirm_params)
    assert show_json(store, ALL_SHOPS) == as_shown(expected_copy(m3.state.records))


def test_agent_process_killed_before_confirm_applies_again(
    m3: RunningServer, tmp_path: Path
) -> None:
    add_plain_m3_history(m3.state)
    store = tmp_path / "agent.db"

    killed = run_agent(
        m3,
        store,
        "--once",
        "--max",
        "4",
        environment={"POSOUTBOX_AGENT_KILL_AT": "confirm:10"},
    )
    assert killed.returncode == -signal.SIGKILL
    listed_not_confirmed = [r for r in m3.state.records if r.state == "listed"]
    assert len(listed_not_confirmed) == 4

    result = run_agent(m3, store, "--once", "--max", "4")

    assert result.returncode == 0, result.stderr
    assert m3.state.unconfirmed() == []
    assert show_json(store, ALL_SHOPS) == as_shown(expected_copy(m3.state.records))


def test_agent_process_stops_on_wrong_password(
    m3: RunningServer, tmp_path: Path
) -> None:
    result = run_agent(
        m3, tmp_path / "agent.db", "--once", environment={"AGENT_PASSWORD": "wrong"}
    )

    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert "wrong" not in result.stderr


def test_agent_process_needs_password_variable(
    m3: RunningServer, tmp_path: Path
) -> None:
    result = run_agent(
        m3, tmp_path / "agent.db", "--once", environment={"AGENT_PASSWORD": ""}
    )

    assert result.returncode == 1
    assert "--password-env" in result.stderr
    assert m3.state.paths == []


def test_agent_process_gives_up_after_attempts(
    m3: RunningServer, tmp_path: Path
) -> None:
    m3.state.failures = [503] * 5

    result = run_agent(m3, tmp_path / "agent.db", "--once")

    assert result.returncode == 1
    assert result.stderr.count("retrying in") == 4
    assert "failed 5 times" in result.stderr

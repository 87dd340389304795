"""Hostile and malformed input: no request may produce a server error or a
stack trace, and a rejected call changes nothing."""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import Iterator
from urllib.parse import quote
from xml.etree import ElementTree

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_server import ADMIN, PASSWORD, POS1, RunningServer, add_customers, running_api
from posoutbox import customers, outbox
from posoutbox.api.render import NAMESPACE

JSON = {"Accept": "application/json"}
EXECUTE = "/m3api-rest/execute"


@pytest.fixture
def api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    with running_api(database_url, monkeypatch) as server:
        yield server


@pytest.fixture
def sqlite_api(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningServer]:
    with running_api(sqlite_url, monkeypatch) as server:
        yield server


def check_m3_response(response: httpx.Response) -> None:
    """Assert that a response is no server error and has an M3 body."""
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        document = json.loads(response.content.decode("utf-8"))
        assert document.keys() & {"Program", "@Program", "Name", "@type"}
    elif content_type.startswith("application/xml"):
        root = ElementTree.fromstring(response.content)
        roots = ("MIResult", "ErrorMessage", "Program", "Programs")
        assert root.tag in [f"{{{NAMESPACE}}}{name}" for name in roots]
    else:
        # Only the HTTP layer itself responds in another form, for requests it
        # cannot parse at all, and never with a server error.
        assert response.status_code == 400, response.text


def raw_get(api: RunningServer, target: str) -> bytes:
    """Send a GET request as raw bytes, past httpx's own URL length limit, and
    return the start of the response."""
    host, port = api.base_url.removeprefix("http://").split(":")
    credentials = base64.b64encode(f"{ADMIN}:{PASSWORD}".encode()).decode()
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Basic {credentials}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(request.encode("ascii"))
        return connection.recv(4096)


GARBAGE_URLS = [
    f"{EXECUTE}/OPS600MI/LstCus?SBS1=%FF",
    f"{EXECUTE}/OPS600MI/LstCus?SBS1=%C0%AF",
    f"{EXECUTE}/OPS600MI/LstCus?SBS1=%ED%A0%80",
    f"{EXECUTE}/OPS600MI/LstCus?SBS1=%00",
    f"{EXECUTE}/OPS600MI/LstCus?SBS1=%EF%BF%BE",
    f"{EXECUTE}/OPS600MI/LstCus?SBS1=a%E2%80%A8b",
    f"{EXECUTE}/OPS600MI/LstCus?%FF=1",
    f"{EXECUTE}/OPS600MI/LstCus?S%0ABS1=1",
    f"{EXECUTE}/OPS600MI/LstCus?SBS1=%G1",
    f"{EXECUTE}/OPS600MI/LstCus?SBS1==&&&=&SBS1",
    f"{EXECUTE}/OPS600MI/LstCus?SBS1=S1&SBS1=S1",
    f"{EXECUTE}/OPS600MI/LstCus;maxrecs=1?SBS1=S1&maxrecs=2",
    f"{EXECUTE}/OPS600MI/LstCus;maxrecs=1;maxrecs=1?SBS1=S1",
    f"{EXECUTE}/OPS600MI/LstCus;maxrecs=99999999999999999999999999?SBS1=S1",
    f"{EXECUTE}/OPS600MI/LstCus;maxrecs=%EF%BC%91?SBS1=S1",
    f"{EXECUTE}/OPS600MI/LstCus;;;=;=x;metadata=maybe?SBS1=S1",
    f"{EXECUTE}/OPS600MI/LstCus;returncols=,,,?SBS1=S1",
    f"{EXECUTE}/OPS600MI/LstCus;returncols=%00?SBS1=S1",
    f"{EXECUTE}/OPS600MI/LstCus;foo=bar?SBS1=S1",
    f"{EXECUTE}/OPS600MI/CnfCus?SBS1=S1&TRNR=1e5",
    f"{EXECUTE}/OPS600MI/CnfCus?SBS1=S1&TRNR=-1",
    f"{EXECUTE}/OPS600MI/CnfCus?SBS1=S1&TRNR=99999999999999999999",
    f"{EXECUTE}/OPS600MI/CnfCus?SBS1=S1&TRNR=%EF%BC%91",
    f"{EXECUTE}/CRS610MI/Add?CUNO=%20X",
    f"{EXECUTE}/CRS610MI/Add?CUNO=X&CUTP=%D9%A3",
    f"{EXECUTE}/CRS610MI/Add?CUNO=X&CONO=abc",
    f"{EXECUTE}/CRS610MI/Add?CUNO=X&CONO=0001",
    f"{EXECUTE}/CRS612MI/GetCustCard?CUNO=X&CCNR=1" + "0" * 5000,
    f"{EXECUTE}/CRS612MI/GetCustCard?CUNO=X&CCNR=" + "9" * 5000,
    f"{EXECUTE}/%00/%FF",
    f"{EXECUTE}/OPS600MI%0A/LstCus",
    f"{EXECUTE}/OPS600MI/" + "x" * 5000,
    f"{EXECUTE}/../../etc/passwd",
    f"{EXECUTE}/OPS600MI",
    f"{EXECUTE}/OPS600MI/LstCus/",
    "/m3api-rest/metadata/%FF",
    "/m3api-rest/metadata/OPS600MI;x=1",
]


def test_garbage_requests(api: RunningServer) -> None:
    with api.client(ADMIN) as client:
        for url in GARBAGE_URLS:
            for headers in ({}, JSON):
                response = client.get(url, headers=headers)
                check_m3_response(response)
    assert outbox.backlog(api.db, "S1")[0].listed == 0


def test_odd_encodings_are_rejected_not_replaced(api: RunningServer) -> None:
    with api.client(ADMIN, headers=JSON) as client:
        latin1 = client.get(f"{EXECUTE}/CRS610MI/Add?CUNO=X1&CUNM=K%F6nig").json()
        nul = client.get(f"{EXECUTE}/CRS610MI/Add?CUNO=X2&CUNM=a%00b").json()
        separator = client.get(f"{EXECUTE}/CRS610MI/Add?CUNO=X3&CUNM=a%E2%80%A8b")
        plus = client.get(f"{EXECUTE}/CRS610MI/Add?CUNO=X4&CUNM=a+b%2Bc")

    assert latin1["@field"] == "CUNM"
    assert "UTF-8" in latin1["Message"]
    assert nul["@code"] == "WVALUE"
    assert separator.json()["@code"] == "WVALUE"
    assert plus.json()["MIRecord"] == []
    assert customers.get_customer(api.db, "X4")["CUNM"] == "a b+c"
    for cuno in ("X1", "X2", "X3"):
        assert not customers.customer_exists(api.db, cuno)


def test_huge_values(api: RunningServer) -> None:
    with api.client(ADMIN, headers=JSON) as client:
        long_name = client.get(
            f"{EXECUTE}/CRS610MI/Add", params={"CUNO": "H1", "CUNM": "x" * 5000}
        )
        many = client.get(
            f"{EXECUTE}/CRS610MI/Add",
            params=[("CUNO", "H3"), *((f"F{number}", "1") for number in range(2000))],
        )

    very_long = raw_get(api, f"{EXECUTE}/CRS610MI/Add?CUNO=H2&CUNM={'x' * 200_000}")
    assert long_name.json()["@field"] == "CUNM"
    assert very_long.startswith(b"HTTP/1.1 4"), very_long[:100]
    check_m3_response(many)
    assert not customers.customer_exists(api.db, "H1")
    assert not customers.customer_exists(api.db, "H2")
    assert not customers.customer_exists(api.db, "H3")


def test_repeated_parameters(api: RunningServer) -> None:
    with api.client(ADMIN, headers=JSON) as client:
        twice = client.get(
            f"{EXECUTE}/OPS600MI/LstCus", params=[("SBS1", "S1"), ("SBS1", "S2")]
        ).json()
        mixed_case = client.get(
            f"{EXECUTE}/OPS600MI/LstCus", params=[("SBS1", "S1"), ("sbs1", "S1")]
        ).json()
        matrix_and_query = client.get(
            f"{EXECUTE}/OPS600MI/LstCus;maxrecs=1", params={"SBS1": "S1", "maxrecs": 5}
        ).json()

    assert (twice["@code"], twice["@field"]) == ("WVALUE", "SBS1")
    assert mixed_case["@field"] == "SBS1"
    assert matrix_and_query["@field"] == "maxrecs"


def test_odd_credentials(api: RunningServer) -> None:
    latin1 = base64.b64encode(f"{ADMIN}:{PASSWORD}".encode("latin-1")).decode()
    headers_list = [
        {"Authorization": "Basic " + latin1},
        {"Authorization": "basic " + latin1},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"a\x00b:pw").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"x" * 3000).decode()},
        {"Authorization": "Basic " + "A" * 5000},
        {"Authorization": "Basic =="},
        {"Authorization": "Basic"},
        {"Authorization": ""},
        {"Authorization": "Digest username=admin"},
    ]
    statuses = []
    with httpx.Client(base_url=api.base_url) as client:
        for headers in headers_list:
            response = client.get(f"{EXECUTE}/OPS600MI/LstCus?SBS1=S1", headers=headers)
            check_m3_response(response)
            statuses.append(response.status_code)
    assert statuses == [200, 200] + [401] * (len(headers_list) - 2)


def test_odd_accept_headers(api: RunningServer) -> None:
    with api.client(ADMIN) as client:
        for accept in (
            "application/json;q=abc",
            "application/json;q=0",
            ";;;,,,",
            "application/json" * 100,
            "\u00ff",
        ):
            response = client.get(
                f"{EXECUTE}/OPS600MI/LstCus?SBS1=S1",
                headers={b"Accept": accept.encode("latin-1")},
            )
            check_m3_response(response)


def test_failed_call_changes_nothing(api: RunningServer) -> None:
    add_customers(api.db, 2)
    with api.client(ADMIN, headers=JSON) as client:
        client.get(f"{EXECUTE}/CRS610MI/Add", params={"CUNO": "F1", "CUNM": "First"})
        bad_change = client.get(
            f"{EXECUTE}/CRS610MI/ChgBasicData",
            params={"CUNO": "F1", "CUNM": "Second", "CSCD": "??"},
        ).json()
        bad_list = client.get(
            f"{EXECUTE}/OPS600MI/LstCus;returncols=NOPE", params={"SBS1": "S1"}
        ).json()

    assert bad_change["@field"] == "CSCD"
    assert customers.get_customer(api.db, "F1")["CUNM"] == "First"
    assert bad_list["@field"] == "returncols"
    assert outbox.backlog(api.db, "S1")[0].listed == 0


def test_access_log_line(api: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="posoutbox.api")
    with api.client(POS1) as client:
        client.get(f"{EXECUTE}/OPS600MI/LstCus;maxrecs=5?SBS1=S1")
        client.get(f"{EXECUTE}/OPS600MI/LstCus?SBS1=S1", auth=("pos1", "bad secret"))

    lines = [
        record
        for record in caplog.records
        if getattr(record, "action", "") == "api_request"
    ]
    assert len(lines) == 2
    success, failure = lines
    assert success.__dict__["method"] == "GET"
    assert success.__dict__["path"] == f"{EXECUTE}/OPS600MI/LstCus;maxrecs=5"
    assert success.__dict__["program"] == "OPS600MI"
    assert success.__dict__["transaction"] == "LstCus"
    assert success.__dict__["user"] == POS1
    assert success.__dict__["status"] == 200
    assert success.__dict__["duration_ms"] >= 0
    assert success.__dict__["error"] == ""
    assert failure.__dict__["status"] == 401
    assert failure.__dict__["error"] == "WAUTH"
    assert failure.__dict__["user"] == ""
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert PASSWORD not in text
        assert "bad secret" not in text
        assert "Basic " not in text


_query_text = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from("%&=;+?#"), max_size=40
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    program=st.sampled_from(["OPS600MI", "CRS610MI", "CRS612MI", "OIS002MI", "X"]),
    transaction=st.sampled_from(
        ["LstCus", "CnfCus", "Add", "ChgBasicData", "AddCustCard", "LstAddress", ""]
    )
    | st.text(max_size=10),
    matrix=_query_text,
    pairs=st.lists(
        st.tuples(
            st.sampled_from(["SBS1", "CUNO", "CUNM", "TRNR", "CCNR", "maxrecs"])
            | _query_text,
            _query_text | st.binary(max_size=20).map(lambda data: data.hex()),
        ),
        max_size=6,
    ),
    raw_tail=st.binary(max_size=30),
    as_json=st.booleans(),
)
def test_fuzzed_requests(
    sqlite_api: RunningServer,
    program: str,
    transaction: str,
    matrix: str,
    pairs: list[tuple[str, str]],
    raw_tail: bytes,
    as_json: bool,
) -> None:
    query = "&".join(f"{quote(name)}={quote(value)}" for name, value in pairs)
    query += "&" + "".join(f"%{byte:02X}" for byte in raw_tail)
    path = f"{EXECUTE}/{quote(program, safe='')}/{quote(transaction, safe='')}"
    url = f"{path};{quote(matrix, safe='=;,')}?{query}"
    with sqlite_api.client(ADMIN, headers=JSON if as_json else {}) as client:
        check_m3_response(client.get(url))

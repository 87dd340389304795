"""The M3 REST API over HTTP: shapes, paging, confirming, every transaction's
success and errors, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from api_server import (
    ADMIN,
    PASSWORD,
    POS1,
    POS2,
    RunningServer,
    add_customers,
    json_records,
    parse_xml,
    qualified,
    running_api,
    xml_records,
)
from posoutbox import customers, outbox, transfer
from posoutbox.api.render import NAMESPACE
from posoutbox.api.transactions import PROGRAMS
from posoutbox.db import schema

JSON = {"Accept": "application/json"}
EXECUTE = "/m3api-rest/execute"


@pytest.fixture
def api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    with running_api(database_url, monkeypatch) as server:
        yield server


@pytest.fixture
def admin(api: RunningServer) -> Iterator[httpx.Client]:
    with api.client(ADMIN, headers=JSON) as client:
        yield client


def call(client: httpx.Client, path: str, **params: str) -> tuple[int, dict[str, Any]]:
    """Call a JSON endpoint; return the status and the parsed body."""
    response = client.get(f"{EXECUTE}/{path}", params=params)
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


def records(client: httpx.Client, path: str, **params: str) -> list[dict[str, str]]:
    """Call a JSON endpoint that must succeed and return its records."""
    status, body = call(client, path, **params)
    assert status == 200, body
    assert "@type" not in body, body
    return json_records(body)


def error(client: httpx.Client, path: str, **params: str) -> dict[str, Any]:
    """Call a JSON endpoint that must fail with HTTP 200 and return the error."""
    status, body = call(client, path, **params)
    assert status == 200, body
    assert body["@type"] == "ServerReturnedNOK", body
    return body


# Shapes


def test_lstcus_xml_shape(api: RunningServer) -> None:
    add_customers(api.db, 2)
    with api.client(ADMIN) as client:
        response = client.get(f"{EXECUTE}/OPS600MI/LstCus", params={"SBS1": "S1"})

    assert response.status_code == 200
    root = parse_xml(response)
    assert root.tag == qualified("MIResult")
    assert f'xmlns="{NAMESPACE}"' in response.text
    assert root.findtext(qualified("Program")) == "OPS600MI"
    assert root.findtext(qualified("Transaction")) == "LstCus"
    metadata = root.findall(f"{qualified('Metadata')}/{qualified('Field')}")
    assert [field.get("name") for field in metadata] == [
        "TRTP",
        "ACCT",
        "RDDA",
        "RDD2",
        "TRNR",
        "CUNO",
        "SHOP",
    ]
    rdda = metadata[2]
    assert rdda.get("type") == "A"
    assert rdda.get("length") == "900"
    assert rdda.get("description")
    found = xml_records(root)
    assert [record["CUNO"] for record in found] == ["C00001", "C00002"]
    assert found[0]["TRTP"] == "OCUSMA"
    assert found[0]["ACCT"] == "*UPD"
    assert found[0]["SHOP"] == "001,002"
    assert found[0]["RDDA"].startswith("C00001    Customer C00001")
    assert found[0]["RDDA"] == found[0]["RDDA"].rstrip(" ")
    assert found[0]["TRNR"].isdigit()
    row_indexes = [
        record.findtext(qualified("RowIndex"))
        for record in root.findall(qualified("MIRecord"))
    ]
    assert row_indexes == ["0", "1"]


def test_lstcus_json_shape(api: RunningServer, admin: httpx.Client) -> None:
    add_customers(api.db, 1)

    status, body = call(admin, "OPS600MI/LstCus", SBS1="S2")

    assert status == 200
    assert body["Program"] == "OPS600MI"
    assert body["Transaction"] == "LstCus"
    assert body["Metadata"]["Field"][0] == {
        "@name": "TRTP",
        "@type": "A",
        "@length": 8,
        "@description": "Record type",
    }
    record = body["MIRecord"][0]
    assert record["RowIndex"] == 0
    assert all(isinstance(pair["Value"], str) for pair in record["NameValue"])
    values = {pair["Name"]: pair["Value"] for pair in record["NameValue"]}
    assert values["SHOP"] == "101"
    assert values["RDD2"] == ""
    assert len(values["RDDA"]) < 900


def test_empty_result_keeps_metadata(api: RunningServer, admin: httpx.Client) -> None:
    status, body = call(admin, "OPS600MI/LstCus", SBS1="S1")
    assert status == 200
    assert body["MIRecord"] == []
    assert len(body["Metadata"]["Field"]) == 7

    with api.client(ADMIN) as client:
        root = parse_xml(client.get(f"{EXECUTE}/OPS600MI/LstCus?SBS1=S1"))
    assert root.find(qualified("Metadata")) is not None
    assert root.findall(qualified("MIRecord")) == []


def test_accept_header_chooses_format(api: RunningServer) -> None:
    url = f"{EXECUTE}/OPS600MI/LstCus?SBS1=S1"
    with api.client(ADMIN) as client:
        cases = {
            None: "application/xml",
            "*/*": "application/xml",
            "application/xml": "application/xml",
            "text/html": "application/xml",
            "application/json": "application/json",
            "application/json, */*": "application/json",
            "application/xml;q=0.5, application/json": "application/json",
            "application/json;q=0.1, application/xml": "application/xml",
        }
        for accept, expected in cases.items():
            headers = {"Accept": accept} if accept else {}
            response = client.get(url, headers=headers)
            assert response.headers["content-type"].startswith(expected), accept


def test_text_keeps_umlaut_and_is_trimmed(admin: httpx.Client) -> None:
    assert records(admin, "CRS610MI/Add", CUNO="K1", CUNM="Königlich Essen  ") == []

    (customer,) = records(admin, "CRS610MI/GetBasicData", CUNO="K1")

    assert customer["CUNM"] == "Königlich Essen"
    assert customer["CUA1"] == ""
    assert customer["STAT"] == "20"
    assert customer["CUTP"] == "0"
    assert len(customer["LMDT"]) == 8


def test_matrix_parameters_with_trailing_semicolon(api: RunningServer) -> None:
    add_customers(api.db, 3)
    with api.client(ADMIN) as client:
        response = client.get(f"{EXECUTE}/OPS600MI/LstCus;maxrecs=2;?SBS1=S1")
    assert len(xml_records(parse_xml(response))) == 2


def test_v2_route_takes_query_options(api: RunningServer, admin: httpx.Client) -> None:
    add_customers(api.db, 3)

    response = admin.get(
        "/m3api-rest/v2/execute/OPS600MI/LstCus",
        params={"SBS1": "S1", "maxrecs": "1", "returncols": "CUNO"},
    )

    assert json_records(response.json()) == [{"CUNO": "C00001"}]


# Paging, maxrecs and returncols


def test_paging_list_confirm_until_empty(
    api: RunningServer, admin: httpx.Client
) -> None:
    cunos = add_customers(api.db, 7)
    seen: list[str] = []

    pages = []
    while True:
        page = records(admin, "OPS600MI/LstCus;maxrecs=3", SBS1="S1")
        if not page:
            break
        pages.append(len(page))
        seen += [record["CUNO"] for record in page]
        assert records(admin, "OPS600MI/CnfCus", SBS1="S1") == []

    assert pages == [3, 3, 1]
    assert seen == cunos


def test_listed_records_come_again_until_confirmed(
    api: RunningServer, admin: httpx.Client
) -> None:
    add_customers(api.db, 2)

    first = records(admin, "OPS600MI/LstCus", SBS1="S1")
    again = records(admin, "OPS600MI/LstCus", SBS1="S1")

    assert again == first


def test_maxrecs_default_zero_and_ceiling(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_api(database_url, monkeypatch, max_records=110) as api:
        add_customers(api.db, 120)
        with api.client(ADMIN, headers=JSON) as client:
            assert len(records(client, "CRS610MI/LstByNumber")) == 100
            assert len(records(client, "CRS610MI/LstByNumber;maxrecs=0")) == 110
            assert len(records(client, "CRS610MI/LstByNumber;maxrecs=500")) == 110
            assert len(records(client, "CRS610MI/LstByNumber;maxrecs=7")) == 7
            assert len(records(client, "OPS600MI/LstCus;maxrecs=0", SBS1="S1")) == 110
            records(client, "OPS600MI/CnfCus", SBS1="S1")
            # Records beyond the ceiling were not marked: they come next.
            rest = records(client, "OPS600MI/LstCus", SBS1="S1")
    assert [record["CUNO"] for record in rest] == [
        f"C{number:05d}" for number in range(111, 121)
    ]


def test_maxrecs_invalid(admin: httpx.Client) -> None:
    for value in ("-1", "abc", "1.5", ""):
        body = error(admin, f"OPS600MI/LstCus;maxrecs={value}", SBS1="S1")
        assert body["@code"] == "WVALUE", value
        assert body["@field"] == "maxrecs", value


def test_returncols_selects_and_orders(api: RunningServer, admin: httpx.Client) -> None:
    add_customers(api.db, 1)

    status, body = call(admin, "OPS600MI/LstCus;returncols=CUNO,TRNR", SBS1="S1")

    assert status == 200
    assert [field["@name"] for field in body["Metadata"]["Field"]] == ["CUNO", "TRNR"]
    names = [pair["Name"] for pair in body["MIRecord"][0]["NameValue"]]
    assert names == ["CUNO", "TRNR"]


def test_returncols_unknown_field(admin: httpx.Client) -> None:
    body = error(admin, "CRS610MI/GetBasicData;returncols=CUNO,XXXX", CUNO="A")
    assert body["@code"] == "WVALUE"
    assert body["@field"] == "returncols"
    assert "CUNM" in body["Message"]


# Confirming


def test_record_created_between_list_and_confirm_stays(
    api: RunningServer, admin: httpx.Client
) -> None:
    add_customers(api.db, 2)
    listed = records(admin, "OPS600MI/LstCus", SBS1="S1")

    customers.add_customer(api.db, "LATE", {"CUNM": "Late customer"})
    transfer.net_transfer(api.db, sbs1="S1")
    records(admin, "OPS600MI/CnfCus", SBS1="S1")

    assert len(listed) == 2
    remaining = records(admin, "OPS600MI/LstCus", SBS1="S1")
    assert [record["CUNO"] for record in remaining] == ["LATE"]


def test_confirm_up_to_trnr(api: RunningServer, admin: httpx.Client) -> None:
    add_customers(api.db, 5)
    listed = records(admin, "OPS600MI/LstCus", SBS1="S1")

    records(admin, "OPS600MI/CnfCus", SBS1="S1", TRNR=listed[2]["TRNR"])

    remaining = records(admin, "OPS600MI/LstCus", SBS1="S1")
    assert remaining == listed[3:]


def test_two_pollers_confirm_with_trnr(api: RunningServer) -> None:
    add_customers(api.db, 3)
    with (
        api.client(POS1, headers=JSON) as first,
        api.client(POS1, headers=JSON) as second,
    ):
        first_page = records(first, "OPS600MI/LstCus", SBS1="S1")
        add_customers(api.db, 2, prefix="N")
        second_page = records(second, "OPS600MI/LstCus", SBS1="S1")

        records(first, "OPS600MI/CnfCus", SBS1="S1", TRNR=first_page[-1]["TRNR"])
        after_first = records(second, "OPS600MI/LstCus", SBS1="S1")
        records(second, "OPS600MI/CnfCus", SBS1="S1", TRNR=second_page[-1]["TRNR"])
        after_second = records(first, "OPS600MI/LstCus", SBS1="S1")

    assert len(first_page) == 3
    assert len(second_page) == 5
    # The first poller's confirmation left the records it never applied.
    assert after_first == second_page[3:]
    assert after_second == []


def test_confirm_errors(admin: httpx.Client) -> None:
    assert error(admin, "OPS600MI/CnfCus")["@code"] == "WMISSING"
    assert error(admin, "OPS600MI/CnfCus", SBS1="NOPE")["@code"] == "WNOTFOUND"
    assert error(admin, "OPS600MI/CnfCus", SBS1="S1", TRNR="x")["@code"] == "WVALUE"
    assert error(admin, "OPS600MI/LstCus", SBS1="NOPE")["@field"] == "SBS1"


def test_export_one_customer(api: RunningServer, admin: httpx.Client) -> None:
    records(admin, "CRS610MI/Add", CUNO="E1", CUNM="Exported")

    assert records(admin, "OPS600MI/CrtCstRepl", CUNO="E1") == []

    listed = records(admin, "OPS600MI/LstCus", SBS1="S2")
    assert [(record["CUNO"], record["TRTP"]) for record in listed] == [("E1", "OCUSMA")]
    body = error(admin, "OPS600MI/CrtCstRepl", CUNO="NOPE")
    assert body["@code"] == "WNOTFOUND"
    assert body["@field"] == "CUNO"


# Users and roles


def test_subscribers_are_isolated(api: RunningServer) -> None:
    add_customers(api.db, 2)
    with (
        api.client(POS1, headers=JSON) as pos1,
        api.client(POS2, headers=JSON) as pos2,
    ):
        status, body = call(pos1, "OPS600MI/LstCus", SBS1="S2")
        assert status == 403
        assert body["@code"] == "WDENIED"
        assert "S1" in body["Message"]
        assert "S2" in body["Message"]

        status, body = call(pos1, "OPS600MI/CnfCus", SBS1="S2")
        assert status == 403

        own = records(pos2, "OPS600MI/LstCus", SBS1="S2")
        assert [record["SHOP"] for record in own] == ["101", "101"]
        assert len(records(pos1, "OPS600MI/LstCus", SBS1="S1")) == 2

    assert outbox.backlog(api.db, "S2")[0].listed == 2


def test_subscriber_may_not_call_master_data(api: RunningServer) -> None:
    with api.client(POS1) as client:
        xml = client.get(f"{EXECUTE}/CRS610MI/Add", params={"CUNO": "X"})
        json_response = client.get(
            f"{EXECUTE}/OPS600MI/CrtCstRepl", params={"CUNO": "X"}, headers=JSON
        )

    assert xml.status_code == 403
    root = parse_xml(xml)
    assert root.tag == qualified("ErrorMessage")
    assert root.get("type") == "ServerReturnedNOK"
    assert "CRS610MI Add" in (root.findtext(qualified("Message")) or "")
    assert json_response.status_code == 403
    assert "OPS600MI CrtCstRepl" in json_response.json()["Message"]
    assert not customers.customer_exists(api.db, "X")


def test_unauthenticated_bodies(api: RunningServer) -> None:
    url = f"{EXECUTE}/OPS600MI/LstCus?SBS1=S1"
    cases: list[tuple[str | None, str, dict[str, str]]] = [
        (None, PASSWORD, {}),
        (ADMIN, "wrong password", {}),
        ("nobody", PASSWORD, {}),
        (None, PASSWORD, {"Authorization": "Bearer abc"}),
        (None, PASSWORD, {"Authorization": "Basic !!!"}),
        (None, PASSWORD, {"Authorization": "Basic bm9jb2xvbg=="}),
    ]
    for user, password, headers in cases:
        with api.client(user, password) as client:
            xml = client.get(url, headers=headers)
            json_response = client.get(url, headers={**headers, **JSON})
        assert xml.status_code == 401, (user, headers)
        assert xml.headers["www-authenticate"].startswith("Basic")
        root = parse_xml(xml)
        assert root.tag == qualified("ErrorMessage")
        assert root.get("code") == "WAUTH"
        assert json_response.status_code == 401
        assert json_response.json()["@type"] == "ServerReturnedNOK"
        assert PASSWORD not in xml.text


def test_unknown_program_and_transaction(api: RunningServer) -> None:
    with api.client(ADMIN) as client:
        for path, code in (
            ("MMS200MI/GetItmBasic", "WPROGRAM"),
            ("OPS600MI/LstItm", "WTRANSACTION"),
            ("CRS610MI/GetAddress", "WTRANSACTION"),
        ):
            xml = client.get(f"{EXECUTE}/{path}")
            json_response = client.get(f"{EXECUTE}/{path}", headers=JSON)
            assert xml.status_code == 404, path
            assert parse_xml(xml).get("code") == code
            assert json_response.status_code == 404
            assert json_response.json()["@code"] == code

        other = client.get("/m3api-rest/nothing/here", headers=JSON)
        post = client.post(f"{EXECUTE}/OPS600MI/LstCus", headers=JSON)
    assert other.status_code == 404
    assert other.json()["@type"] == "ServerReturnedNOK"
    assert post.status_code == 405
    assert post.json()["@code"] == "WMETHOD"


# Metadata


def test_metadata_lists_programs(api: RunningServer) -> None:
    with api.client(POS1) as client:
        xml = client.get("/m3api-rest/metadata")
        json_response = client.get("/m3api-rest/metadata", headers=JSON)

    root = parse_xml(xml)
    names = [element.text for element in root.findall(qualified("Name"))]
    assert names == sorted(PROGRAMS)
    assert json_response.json() == {"Name": sorted(PROGRAMS)}


def test_metadata_of_program_matches_table(api: RunningServer) -> None:
    with api.client(POS1) as client:
        for name, program in PROGRAMS.items():
            root = parse_xml(client.get(f"/m3api-rest/metadata/{name}"))
            document = client.get(f"/m3api-rest/metadata/{name}", headers=JSON).json()

            assert root.get("Program") == name
            assert root.get("Version") == program.version
            assert document["@Description"] == program.description
            elements = root.findall(qualified("Transaction"))
            assert [element.get("Transaction") for element in elements] == list(
                program.transactions
            )
            for element, item in zip(elements, document["Transaction"], strict=True):
                transaction = program.transactions[element.get("Transaction", "")]
                assert element.get("Multi") == str(transaction.multi).lower()
                assert item["@Multi"] is transaction.multi
                inputs = element.findall(
                    f"{qualified('InputFieldList')}/{qualified('Field')}"
                )
                assert [
                    (field.get("Name"), field.get("Mandatory") == "true")
                    for field in inputs
                ] == [(field.name, field.mandatory) for field in transaction.inputs]
                outputs = item["OutputFieldList"]["Field"]
                assert [field["@Name"] for field in outputs] == list(
                    transaction.outputs
                )


def test_metadata_unknown_program(api: RunningServer) -> None:
    with api.client(ADMIN) as client:
        response = client.get("/m3api-rest/metadata/MMS200MI")
        anonymous = httpx.get(f"{api.base_url}/m3api-rest/metadata")
    assert response.status_code == 404
    assert parse_xml(response).get("code") == "WPROGRAM"
    assert anonymous.status_code == 401


# CRS610MI


def test_customer_add_and_errors(api: RunningServer, admin: httpx.Client) -> None:
    assert records(admin, "CRS610MI/Add", CUNO="A1", CUNM="Anna", CONO="1") == []

    cases: list[tuple[dict[str, str], str, str]] = [
        ({"CUNO": "A1"}, "WEXISTS", "CUNO"),
        ({"CUNM": "No number"}, "WMISSING", "CUNO"),
        ({"CUNO": "A2", "CUNM": "x" * 37}, "WVALUE", "CUNM"),
        ({"CUNO": "A2", "CUNM": "bell\x07"}, "WVALUE", "CUNM"),
        ({"CUNO": "A2", "CUTP": "x"}, "WVALUE", "CUTP"),
        ({"CUNO": "A2", "STAT": "50"}, "WVALUE", "STAT"),
        ({"CUNO": "A2", "LMDT": "20250101"}, "WFIELD", "LMDT"),
        ({"CUNO": "A2", "XXXX": "1"}, "WFIELD", "XXXX"),
        ({"CUNO": "A2", "CONO": "2"}, "WVALUE", "CONO"),
        ({"CUNO": "A,2"}, "WVALUE", "CUNO"),
        ({"CUNO": "A2", "CSCD": "XX"}, "WVALUE", "CSCD"),
    ]
    for params, code, field in cases:
        body = error(admin, "CRS610MI/Add", **params)
        assert (body["@code"], body["@field"]) == (code, field), params
        assert body["Message"]

    assert not customers.customer_exists(api.db, "A2")
    with api.db.reading() as conn:
        changed_by = conn.execute(
            sa.select(schema.customers.c.changed_by).where(
                schema.customers.c.cuno == "A1"
            )
        ).scalar_one()
    assert changed_by == ADMIN


def test_customer_change(admin: httpx.Client) -> None:
    records(admin, "CRS610MI/Add", CUNO="B1", CUNM="Bert", CUA1="Street 1", TOWN="Ulm")

    records(admin, "CRS610MI/ChgBasicData", CUNO="B1", CUNM="Berta", TOWN="", CUA1="?")
    (customer,) = records(admin, "CRS610MI/GetBasicData", CUNO="B1")
    assert customer["CUNM"] == "Berta"
    assert customer["TOWN"] == "Ulm"
    assert customer["CUA1"] == ""

    records(admin, "CRS610MI/ChgBasicData", CUNO="B1", STAT="90")
    (customer,) = records(admin, "CRS610MI/GetBasicData", CUNO="B1")
    assert customer["STAT"] == "90"

    body = error(admin, "CRS610MI/ChgBasicData", CUNO="B1", CUNM="Ok", STAT="55")
    assert body["@field"] == "STAT"
    (customer,) = records(admin, "CRS610MI/GetBasicData", CUNO="B1")
    assert customer["CUNM"] == "Berta"
    assert error(admin, "CRS610MI/ChgBasicData", CUNO="NOPE")["@code"] == "WNOTFOUND"
    assert error(admin, "CRS610MI/ChgBasicData", CUNO="B1", STAT="?")["@code"] == (
        "WVALUE"
    )


def test_customer_get_and_delete(admin: httpx.Client) -> None:
    records(admin, "CRS610MI/Add", CUNO="D1", CUNM="Dora")
    assert error(admin, "CRS610MI/GetBasicData", CUNO="NOPE")["@code"] == "WNOTFOUND"
    assert error(admin, "CRS610MI/GetBasicData")["@code"] == "WMISSING"

    assert records(admin, "CRS610MI/Delete", CUNO="D1") == []

    assert error(admin, "CRS610MI/GetBasicData", CUNO="D1")["@code"] == "WNOTFOUND"
    assert error(admin, "CRS610MI/Delete", CUNO="D1")["@code"] == "WNOTFOUND"


def test_customer_lists(api: RunningServer, admin: httpx.Client) -> None:
    for cuno, name in (("L1", "Zeta"), ("L2", "Alpha"), ("L3", "Mike")):
        records(admin, "CRS610MI/Add", CUNO=cuno, CUNM=name)

    by_number = records(admin, "CRS610MI/LstByNumber", CUNO="L2")
    by_name = records(admin, "CRS610MI/LstByName", CUNM="M")
    everyone = records(admin, "CRS610MI/LstByNumber;maxrecs=2")

    assert [row["CUNO"] for row in by_number] == ["L2", "L3"]
    assert [row["CUNM"] for row in by_name] == ["Mike", "Zeta"]
    assert [row["CUNO"] for row in everyone] == ["L1", "L2"]
    assert records(admin, "CRS610MI/LstByNumber", CUNO="L9") == []


# CRS612MI


def test_cards(admin: httpx.Client) -> None:
    records(admin, "CRS610MI/Add", CUNO="K1", CUNM="Card holder")
    records(admin, "CRS610MI/Add", CUNO="K2", CUNM="Other holder")

    assert (
        records(admin, "CRS612MI/AddCustCard", CUNO="K1", CCNR="1001", VTYY="2030")
        == []
    )
    records(admin, "CRS612MI/AddCustCard", CUNO="K1", CCNR="1002", REFE="Second")
    records(admin, "CRS612MI/UpdCustCard", CUNO="K1", CCNR="1001", BLCD="1")

    (card,) = records(admin, "CRS612MI/GetCustCard", CUNO="K1", CCNR="1001")
    assert card["BLCD"] == "1"
    assert card["VTYY"] == "2030"
    listed = records(admin, "CRS612MI/LstCustCard", CUNO="K1")
    assert [row["CCNR"] for row in listed] == ["1001", "1002"]

    cases: list[tuple[str, dict[str, str], str, str]] = [
        ("AddCustCard", {"CUNO": "K1", "CCNR": "1001"}, "WEXISTS", "CCNR"),
        ("AddCustCard", {"CUNO": "K2", "CCNR": "1001"}, "WRULE", "CCNR"),
        ("AddCustCard", {"CUNO": "K1", "CCNR": "0"}, "WVALUE", "CCNR"),
        ("AddCustCard", {"CUNO": "K1", "CCNR": "1003", "BLCD": "2"}, "WVALUE", "BLCD"),
        ("AddCustCard", {"CUNO": "NOPE", "CCNR": "1003"}, "WNOTFOUND", "CUNO"),
        ("UpdCustCard", {"CUNO": "K1", "CCNR": "9999"}, "WNOTFOUND", "CCNR"),
        ("GetCustCard", {"CUNO": "K2", "CCNR": "1001"}, "WNOTFOUND", "CCNR"),
        ("DelCustCard", {"CUNO": "K1"}, "WMISSING", "CCNR"),
        ("LstCustCard", {"CUNO": "NOPE"}, "WNOTFOUND", "CUNO"),
    ]
    for transaction, params, code, field in cases:
        body = error(admin, f"CRS612MI/{transaction}", **params)
        assert (body["@code"], body["@field"]) == (code, field), (transaction, params)

    assert records(admin, "CRS612MI/DelCustCard", CUNO="K1", CCNR="1002") == []
    assert len(records(admin, "CRS612MI/LstCustCard", CUNO="K1")) == 1


# OIS002MI


def test_addresses(admin: httpx.Client) -> None:
    records(admin, "CRS610MI/Add", CUNO="A1", CUNM="Address holder")

    records(admin, "OIS002MI/AddAddress", CUNO="A1", ADID="HOME", TOWN="Köln")
    records(admin, "OIS002MI/AddAddress", CUNO="A1", ADID="BILL", ADRT="2")
    (home,) = records(admin, "OIS002MI/GetAddress", CUNO="A1", ADID="HOME")
    assert home["ADRT"] == "1"
    assert home["TOWN"] == "Köln"

    records(admin, "OIS002MI/ChgAddress", CUNO="A1", ADID="HOME", PONO="50667")
    (home,) = records(admin, "OIS002MI/GetAddress", CUNO="A1", ADID="HOME", ADRT="1")
    assert home["PONO"] == "50667"
    listed = records(admin, "OIS002MI/LstAddress", CUNO="A1")
    assert [row["ADID"] for row in listed] == ["HOME", "BILL"]
    billing = records(admin, "OIS002MI/LstAddress", CUNO="A1", ADRT="2")
    assert [row["ADID"] for row in billing] == ["BILL"]

    cases: list[tuple[str, dict[str, str], str, str]] = [
        ("AddAddress", {"CUNO": "A1", "ADID": "HOME"}, "WEXISTS", "ADID"),
        ("AddAddress", {"CUNO": "A1", "ADID": "X", "ADRT": "0"}, "WVALUE", "ADRT"),
        ("AddAddress", {"CUNO": "A1"}, "WMISSING", "ADID"),
        ("ChgAddress", {"CUNO": "A1", "ADID": "NONE"}, "WNOTFOUND", "ADID"),
        (
            "GetAddress",
            {"CUNO": "A1", "ADID": "HOME", "ADRT": "2"},
            "WNOTFOUND",
            "ADID",
        ),
        (
            "DelAddress",
            {"CUNO": "A1", "ADID": "BILL", "ADRT": "1"},
            "WNOTFOUND",
            "ADID",
        ),
        ("LstAddress", {"CUNO": "NOPE"}, "WNOTFOUND", "CUNO"),
    ]
    for transaction, params, code, field in cases:
        body = error(admin, f"OIS002MI/{transaction}", **params)
        assert (body["@code"], body["@field"]) == (code, field), (transaction, params)

    assert records(admin, "OIS002MI/DelAddress", CUNO="A1", ADID="BILL") == []
    assert len(records(admin, "OIS002MI/LstAddress", CUNO="A1")) == 1


def test_address_records_reach_pos(api: RunningServer, admin: httpx.Client) -> None:
    records(admin, "CRS610MI/Add", CUNO="P1", CUNM="Pos customer")
    records(admin, "OIS002MI/AddAddress", CUNO="P1", ADID="HOME", TOWN="Bonn")
    records(admin, "CRS612MI/AddCustCard", CUNO="P1", CCNR="77")
    records(admin, "OPS600MI/CrtCstRepl", CUNO="P1")

    listed = records(admin, "OPS600MI/LstCus", SBS1="S1")

    assert [row["TRTP"] for row in listed] == ["OCUSMA", "OCUSAD", "OPCARD"]

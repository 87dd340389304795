"""The API as an M3 client sees it: read the metadata, call every transaction it
lists, and get 404 for M3 programs and transactions it does not list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api_server import ADMIN, PASSWORD, POS1, RunningServer, add_customers, running_api
from m3client import M3Client, M3Error

# One successful call of each transaction, in an order in which each succeeds:
# (program, transaction, inputs, expected record count or None for any).
SAMPLE_CALLS: list[tuple[str, str, dict[str, str], int | None]] = [
    ("CRS610MI", "Add", {"CONO": "1", "CUNO": "M1", "CUNM": "Müller"}, 0),
    ("CRS610MI", "ChgBasicData", {"CUNO": "M1", "TOWN": "Graz", "STAT": "20"}, 0),
    ("CRS610MI", "GetBasicData", {"CUNO": "M1"}, 1),
    ("CRS610MI", "LstByNumber", {"CUNO": "M1"}, None),
    ("CRS610MI", "LstByName", {"CUNM": "M"}, None),
    ("CRS612MI", "AddCustCard", {"CUNO": "M1", "CCNR": "4711", "VTMM": "12"}, 0),
    ("CRS612MI", "UpdCustCard", {"CUNO": "M1", "CCNR": "4711", "VTYY": "2031"}, 0),
    ("CRS612MI", "GetCustCard", {"CUNO": "M1", "CCNR": "4711"}, 1),
    ("CRS612MI", "LstCustCard", {"CUNO": "M1"}, 1),
    ("OIS002MI", "AddAddress", {"CUNO": "M1", "ADID": "A1", "TOWN": "Linz"}, 0),
    ("OIS002MI", "ChgAddress", {"CUNO": "M1", "ADID": "A1", "PONO": "4020"}, 0),
    ("OIS002MI", "GetAddress", {"CUNO": "M1", "ADID": "A1", "ADRT": "1"}, 1),
    ("OIS002MI", "LstAddress", {"CUNO": "M1"}, 1),
    ("OPS600MI", "CrtCstRepl", {"CUNO": "M1"}, 0),
    ("OPS600MI", "LstCus", {"SBS1": "S1"}, None),
    ("OPS600MI", "CnfCus", {"SBS1": "S1"}, 0),
    ("OIS002MI", "DelAddress", {"CUNO": "M1", "ADID": "A1"}, 0),
    ("CRS612MI", "DelCustCard", {"CUNO": "M1", "CCNR": "4711"}, 0),
    ("CRS610MI", "Delete", {"CUNO": "M1"}, 0),
]

# Real M3 programs and transactions that posoutbox does not serve.
UNSERVED_CALLS = [
    ("MMS200MI", "GetItmBasic"),
    ("OIS100MI", "AddBatchHead"),
    ("CRS610MI", "GetAddress"),
    ("CRS610MI", "LstAddresses"),
    ("OPS600MI", "LstItm"),
    ("OPS600MI", "CnfItm"),
    ("OIS002MI", "GetBasicData"),
]


@pytest.fixture
def api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    with running_api(database_url, monkeypatch) as server:
        yield server


@pytest.mark.parametrize("use_json", [False, True], ids=["xml", "json"])
def test_every_listed_transaction_succeeds(api: RunningServer, use_json: bool) -> None:
    with M3Client(api.base_url, ADMIN, PASSWORD, use_json=use_json) as client:
        listed = {
            (name, transaction)
            for name in client.programs()
            for transaction in client.program(name).transactions
        }
        assert listed == {(program, name) for program, name, _, _ in SAMPLE_CALLS}

        for program, transaction, inputs, expected in SAMPLE_CALLS:
            info = client.program(program).transactions[transaction]
            given = {field.name for field in info.inputs}
            assert set(inputs) <= given
            mandatory = {field.name for field in info.inputs if field.mandatory}
            assert mandatory <= set(inputs)

            result = client.execute(program, transaction, inputs)

            assert result.program == program
            assert result.transaction == transaction
            assert [field.name for field in result.metadata] == [
                field.name for field in info.outputs
            ]
            if expected is not None:
                assert len(result.records) == expected, (program, transaction)
            for record in result.records:
                assert list(record) == [field.name for field in info.outputs]


def test_metadata_describes_lstcus(api: RunningServer) -> None:
    with M3Client(api.base_url, POS1, PASSWORD) as client:
        program = client.program("OPS600MI")

    lstcus = program.transactions["LstCus"]
    assert program.version
    assert lstcus.multi
    assert [(field.name, field.mandatory) for field in lstcus.inputs] == [
        ("CONO", False),
        ("SBS1", True),
    ]
    outputs = {field.name: field for field in lstcus.outputs}
    assert (outputs["RDDA"].type, outputs["RDDA"].length) == ("A", 900)
    assert (outputs["RDD2"].type, outputs["RDD2"].length) == ("A", 62)
    assert (outputs["SHOP"].type, outputs["SHOP"].length) == ("A", 8000)
    assert outputs["TRNR"].type == "N"
    cnfcus = program.transactions["CnfCus"]
    assert not cnfcus.multi
    assert [field.name for field in cnfcus.inputs] == ["CONO", "SBS1", "TRNR"]


@pytest.mark.parametrize("use_json", [False, True], ids=["xml", "json"])
def test_unlisted_calls_are_not_found(api: RunningServer, use_json: bool) -> None:
    with M3Client(api.base_url, ADMIN, PASSWORD, use_json=use_json) as client:
        listed = set(client.programs())
        for program, transaction in UNSERVED_CALLS:
            if program in listed:
                assert transaction not in client.program(program).transactions
            with pytest.raises(M3Error) as raised:
                client.execute(program, transaction)
            assert raised.value.status == 404, (program, transaction)
            assert raised.value.message


def test_client_pages_like_a_pos(api: RunningServer) -> None:
    cunos = add_customers(api.db, 5)
    applied: list[str] = []

    with M3Client(api.base_url, POS1, PASSWORD, use_json=True) as client:
        while True:
            page = client.execute("OPS600MI", "LstCus", {"SBS1": "S1"}, maxrecs=2)
            if not page.records:
                break
            applied += [record["CUNO"] for record in page.records]
            last = page.records[-1]["TRNR"]
            client.execute("OPS600MI", "CnfCus", {"SBS1": "S1", "TRNR": last})

        with pytest.raises(M3Error) as raised:
            client.execute("OPS600MI", "LstCus", {"SBS1": "S2"})

    assert applied == cunos
    assert raised.value.status == 403
    assert raised.value.code == "WDENIED"


def test_client_reads_errors(api: RunningServer) -> None:
    for use_json in (False, True):
        with M3Client(api.base_url, ADMIN, PASSWORD, use_json=use_json) as client:
            with pytest.raises(M3Error) as missing:
                client.execute("CRS610MI", "GetBasicData", returncols=["CUNM"])
            with pytest.raises(M3Error) as wrong_company:
                client.execute("CRS610MI", "GetBasicData", {"CUNO": "X", "CONO": "7"})
        assert (missing.value.status, missing.value.code) == (200, "WMISSING")
        assert missing.value.field == "CUNO"
        assert wrong_company.value.field == "CONO"
        assert "1" in wrong_company.value.message

    with (
        M3Client(api.base_url, ADMIN, "wrong password") as client,
        pytest.raises(M3Error) as refused,
    ):
        client.programs()
    assert refused.value.status == 401

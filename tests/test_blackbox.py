"""Black-box checks of the customer download against its published contract.

The tests drive the product only through its public surfaces: the `posoutbox`
CLI as subprocesses and a `posoutbox serve` process on 127.0.0.1, on a SQLite
file of their own. A POS model reads the records with OPS600MI LstCus, cuts the
data string by the published layouts (RDDA padded to 900 characters, then
RDD2), applies each shop's records in TRNR order and confirms with CnfCus and
TRNR. After each step the tests compare the shops' copies with the targets
computed from the master. A shop's target is the current state of every
customer with status 20 that matches one of its segments, and it exists only
for a shop that is active with both interfaces on.

The tests share one database and server. Each test uses its own subscribers,
shops and segments, and every segment includes a condition on the district
SDST that only the test's customers have, so the tests do not see each
other's customers.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

POSOUTBOX = str(Path(sys.executable).parent / "posoutbox")
PASSWORD = "black box secret"
NAMESPACE = "{urn:posoutbox:m3api-rest:1}"
MAX_RECORDS = 120
CLI_TIMEOUT_SECONDS = 120
STARTUP_LIMIT_SECONDS = 60

#: The published layouts: (field, type, length) in data-string order.
LAYOUTS: dict[str, list[tuple[str, str, int]]] = {
    "OCUSMA": [
        ("CUNO", "A", 10), ("CUNM", "A", 36), ("CUA1", "A", 36),
        ("CUA2", "A", 36), ("CUA3", "A", 36), ("CUA4", "A", 36),
        ("PONO", "A", 10), ("TOWN", "A", 20), ("ECAR", "A", 2),
        ("CSCD", "A", 3), ("PHNO", "A", 16), ("PHN2", "A", 16),
        ("TFNO", "A", 16), ("MAIL", "A", 50), ("YREF", "A", 30),
        ("LNCD", "A", 2), ("CUCD", "A", 3), ("CUTP", "N", 1),
        ("CUCL", "A", 3), ("SDST", "A", 3), ("STAT", "A", 2),
        ("LMDT", "N", 8),
    ],
    "OCUSAD": [
        ("CUNO", "A", 10), ("ADRT", "N", 1), ("ADID", "A", 6),
        ("CUNM", "A", 36), ("CUA1", "A", 36), ("CUA2", "A", 36),
        ("CUA3", "A", 36), ("CUA4", "A", 36), ("PONO", "A", 10),
        ("TOWN", "A", 20), ("ECAR", "A", 2), ("CSCD", "A", 3),
        ("PHNO", "A", 16),
    ],
    "OPCARD": [
        ("CUNO", "A", 10), ("CCNR", "N", 16), ("CTP1", "N", 1),
        ("BLCD", "N", 1), ("MCRD", "A", 1), ("VTMM", "N", 2),
        ("VTYY", "N", 4), ("REFE", "A", 40),
    ],
    "OOEMSG": [
        ("CUNO", "A", 10), ("MSID", "A", 10), ("PRIO", "N", 1),
        ("MSTX", "A", 60),
    ],
}  # fmt: skip
KEY_FIELDS = {
    "OCUSMA": ("CUNO",),
    "OCUSAD": ("CUNO", "ADRT", "ADID"),
    "OPCARD": ("CUNO", "CCNR"),
    "OOEMSG": ("CUNO", "MSID"),
}
CHILD_TYPES = ("OCUSAD", "OPCARD", "OOEMSG")
NUMERIC_FIELDS = {
    name for layout in LAYOUTS.values() for name, kind, _ in layout if kind == "N"
}

#: A customer at a shop: "OCUSMA" maps to its fields, each child type maps a
#: key tuple to the child's fields.
CustomerCopy = dict[str, Any]
ShopCopies = dict[str, dict[str, CustomerCopy]]


def parse_data(trtp: str, rdda: str, rdd2: str) -> dict[str, str]:
    """Cut a record's data string into fields, numbers as plain decimals."""
    data = rdda.ljust(900) + rdd2
    values: dict[str, str] = {}
    position = 0
    for name, kind, length in LAYOUTS[trtp]:
        raw = data[position : position + length]
        position += length
        if kind == "N":
            values[name] = str(int(raw)) if raw.strip() else "0"
        else:
            values[name] = raw.rstrip()
    if data[position:].strip():
        raise AssertionError(f"{trtp} data has text after its last field: {data!r}")
    return values


def record_fields(record: Mapping[str, Any]) -> dict[str, str]:
    return {pair["Name"]: pair["Value"] for pair in record["NameValue"]}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Product:
    """The CLI and the running server of one database."""

    workdir: Path
    env: dict[str, str]
    base_url: str = ""
    server: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [POSOUTBOX, *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"posoutbox {' '.join(args)} exited {completed.returncode}: "
                f"{completed.stderr.strip()}"
            )
        return completed

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        user: str | None = "admin",
        accept: str | None = "application/json",
    ) -> httpx.Response:
        headers = {} if accept is None else {"Accept": accept}
        auth = None if user is None else (user, PASSWORD)
        return httpx.get(
            self.base_url + path, params=params, auth=auth, headers=headers, timeout=60
        )

    def call(
        self,
        program: str,
        transaction: str,
        params: Mapping[str, str],
        user: str = "admin",
        matrix: str = "",
    ) -> dict[str, Any]:
        path = f"/m3api-rest/execute/{program}/{transaction}{matrix}"
        response = self.get(path, params, user)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def change(self, program: str, transaction: str, **params: str) -> None:
        """Call a master-data transaction that must succeed."""
        result = self.call(program, transaction, params)
        assert "@code" not in result, result

    def list_records(
        self, sbs1: str, maxrecs: int = 100, user: str = "admin"
    ) -> list[dict[str, str]]:
        result = self.call(
            "OPS600MI", "LstCus", {"SBS1": sbs1}, user, f";maxrecs={maxrecs}"
        )
        assert "@code" not in result, result
        return [record_fields(record) for record in result["MIRecord"]]

    def confirm(self, sbs1: str, trnr: str | None = None, user: str = "admin") -> None:
        params = {"SBS1": sbs1} if trnr is None else {"SBS1": sbs1, "TRNR": trnr}
        result = self.call("OPS600MI", "CnfCus", params, user)
        assert "@code" not in result, result

    def net_transfer(self, *args: str) -> None:
        self.cli("net-transfer", *args)


@dataclass
class PosModel:
    """One subscriber's POS, which applies records per shop and records every
    breach of the contract in ``problems``."""

    shops: ShopCopies = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    last_trnr_of_customer: dict[str, int] = field(default_factory=dict)
    listed: dict[str, dict[str, str]] = field(default_factory=dict)

    def drain(self, product: Product, sbs1: str, user: str = "admin") -> None:
        """List, apply and confirm with TRNR until nothing is left."""
        while True:
            records = product.list_records(sbs1, maxrecs=7, user=user)
            if not records:
                return
            for record in records:
                self.apply(record)
            product.confirm(sbs1, records[-1]["TRNR"], user=user)

    def apply(self, record: dict[str, str]) -> None:
        trnr = record["TRNR"]
        earlier = self.listed.get(trnr)
        if earlier is not None:
            if earlier != record:
                self.problems.append(f"TRNR {trnr} changed after it was listed")
            return
        self.listed[trnr] = record
        trtp, action, cuno = record["TRTP"], record["ACCT"], record["CUNO"]
        data = parse_data(trtp, record["RDDA"], record["RDD2"])
        self._check_order(int(trnr), cuno)
        if data["CUNO"] != cuno:
            self.problems.append(f"TRNR {trnr}: CUNO {cuno}, data {data['CUNO']}")
        if action == "*DEL":
            self._check_delete_data(trnr, trtp, data)
        shops = [whlo for whlo in record["SHOP"].split(",") if whlo]
        if not shops:
            self.problems.append(f"TRNR {trnr} has an empty mailing list")
        for whlo in shops:
            self._apply_to_shop(self.shops.setdefault(whlo, {}), whlo, record, data)

    def _check_order(self, trnr: int, cuno: str) -> None:
        last = self.last_trnr_of_customer.get(cuno, 0)
        if trnr <= last:
            self.problems.append(f"{cuno}: TRNR {trnr} arrived after {last}")
        self.last_trnr_of_customer[cuno] = trnr

    def _check_delete_data(self, trnr: str, trtp: str, data: dict[str, str]) -> None:
        for name, value in data.items():
            if name not in KEY_FIELDS[trtp] and value not in ("", "0"):
                self.problems.append(f"TRNR {trnr}: *DEL carries {name}={value}")

    def _apply_to_shop(
        self,
        shop: dict[str, CustomerCopy],
        whlo: str,
        record: dict[str, str],
        data: dict[str, str],
    ) -> None:
        trtp, action, cuno = record["TRTP"], record["ACCT"], record["CUNO"]
        if trtp == "OCUSMA":
            if action == "*DEL":
                shop.pop(cuno, None)
                return
            customer = shop.setdefault(cuno, {kind: {} for kind in CHILD_TYPES})
            customer["OCUSMA"] = data
            return
        held = shop.get(cuno)
        if held is None:
            if action == "*UPD":
                self.problems.append(
                    f"TRNR {record['TRNR']}: {trtp} of {cuno} reached {whlo} "
                    "before the customer"
                )
            return
        key = tuple(data[name] for name in KEY_FIELDS[trtp])
        if action == "*UPD":
            held[trtp][key] = data
        else:
            held[trtp].pop(key, None)


def matches(conditions: list[str], customer: Mapping[str, str]) -> bool:
    """Tell whether a customer meets every FIELD=V1,V2 condition of a segment."""
    for condition in conditions:
        name, _, listed = condition.partition("=")
        allowed = listed.split(",")
        value = customer[name]
        if name in NUMERIC_FIELDS:
            value = str(int(value or "0"))
            allowed = [str(int(option or "0")) for option in allowed]
        if value not in allowed:
            return False
    return True


def compute_targets(product: Product, sbs1: str) -> ShopCopies:
    """Compute each enabled shop's target from the master data."""
    shops = [shop for shop in product.cli_json("shop", "list") if shop["SBS1"] == sbs1]
    segments = {
        segment["SEID"]: segment["CONDITIONS"]
        for segment in product.cli_json("segment", "list")
    }
    customers = product.cli_json("customer", "list")
    full_states: dict[str, CustomerCopy] = {}
    targets: ShopCopies = {}
    for shop in shops:
        enabled = (shop["ACTIVE"], shop["POS_INTERFACE"], shop["CUSTOMER_INTERFACE"])
        if enabled != ("1", "1", "1"):
            continue
        target: dict[str, CustomerCopy] = {}
        for customer in customers:
            if customer["STAT"] != "20":
                continue
            if not any(matches(segments[seid], customer) for seid in shop["SEGMENTS"]):
                continue
            cuno = customer["CUNO"]
            if cuno not in full_states:
                full_states[cuno] = full_state(
                    product.cli_json("customer", "show", cuno)
                )
            target[cuno] = full_states[cuno]
        targets[shop["WHLO"]] = target
    return targets


def full_state(customer_json: Mapping[str, Any]) -> CustomerCopy:
    """Convert the output of `customer show --json` to a customer copy."""
    children = {"ADDRESSES": "OCUSAD", "CARDS": "OPCARD", "MESSAGES": "OOEMSG"}
    state: CustomerCopy = {
        "OCUSMA": {
            name: value for name, value in customer_json.items() if name not in children
        }
    }
    for listing, trtp in children.items():
        rows = customer_json[listing]
        if trtp == "OCUSAD":
            rows = [row for row in rows if row["ADRT"] == "1"]
        state[trtp] = {
            tuple(row[name] for name in KEY_FIELDS[trtp]): row for row in rows
        }
    return state


def off_target(pos: PosModel, targets: ShopCopies) -> list[str]:
    """Describe every difference between the POS copies and the targets."""
    differences = []
    for whlo, target in sorted(targets.items()):
        copies = pos.shops.get(whlo, {})
        for cuno in sorted(set(copies) | set(target)):
            if cuno not in copies:
                differences.append(f"{whlo}: {cuno} missing")
            elif cuno not in target:
                differences.append(f"{whlo}: {cuno} held but should not be")
            elif copies[cuno] != target[cuno]:
                differences.append(
                    f"{whlo}: {cuno} is {copies[cuno]}, expected {target[cuno]}"
                )
    return differences


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    """A migrated SQLite database with three users and a server on 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("blackbox")
    env = dict(
        os.environ,
        POSOUTBOX_DATABASE_URL=f"sqlite:///{workdir / 'posoutbox.db'}",
        BLACKBOX_PASSWORD=PASSWORD,
        COLUMNS="200",
    )
    env.pop("POSOUTBOX_MAX_RECORDS", None)
    env.pop("POSOUTBOX_COMPANY", None)
    running = Product(workdir, env)

    running.cli("db", "upgrade")
    running.cli("subscriber", "add", "SA")
    running.cli("subscriber", "add", "SB")
    password = ("--password-env", "BLACKBOX_PASSWORD")
    running.cli("user", "add", "admin", "--admin", *password)
    running.cli("user", "add", "pos-a", "--subscriber", "SA", *password)
    running.cli("user", "add", "pos-b", "--subscriber", "SB", *password)

    port = free_port()
    log = (workdir / "server.log").open("wb")
    command = [POSOUTBOX, "serve", "--host", "127.0.0.1", "--port", str(port)]
    running.server = subprocess.Popen(
        [*command, "--max-records", str(MAX_RECORDS)],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running.base_url = f"http://127.0.0.1:{port}"

    try:
        wait_until_healthy(running)
        yield running
    finally:
        running.server.terminate()
        try:
            running.server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            running.server.kill()
            running.server.wait(timeout=20)
        log.close()


def wait_until_healthy(running: Product) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while time.monotonic() < deadline:
        assert running.server is not None
        if running.server.poll() is not None:
            raise AssertionError("posoutbox serve exited during startup")
        try:
            if httpx.get(running.base_url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(
        f"posoutbox serve not healthy within {STARTUP_LIMIT_SECONDS} s"
    )


def test_every_xml_element_in_namespace(product: Product) -> None:
    product.cli("segment", "add", "XALL", "SDST=X")
    product.cli("shop", "add", "X01", "--subscriber", "SA", "--segment", "XALL")
    product.change("CRS610MI", "Add", CUNO="X1", CUNM="Königlich Essen", SDST="X")
    product.net_transfer("--subscriber", "SA")
    requests = [
        ("admin", "/m3api-rest/execute/OPS600MI/LstCus;maxrecs=1?SBS1=SA", 200),
        ("admin", "/m3api-rest/execute/OPS600MI/LstCus?SBS1=SB", 200),
        ("admin", "/m3api-rest/execute/OPS600MI/CnfCus?SBS1=NONE", 200),
        ("admin", "/m3api-rest/execute/CRS610MI/GetBasicData?CUNO=X1", 200),
        (None, "/m3api-rest/execute/OPS600MI/LstCus?SBS1=SA", 401),
        ("pos-a", "/m3api-rest/execute/OPS600MI/LstCus?SBS1=SB", 403),
        ("admin", "/m3api-rest/execute/NOSUCHMI/LstCus", 404),
        ("admin", "/m3api-rest/execute/OPS600MI/NoSuch", 404),
        ("pos-a", "/m3api-rest/metadata", 200),
        ("pos-a", "/m3api-rest/metadata/OPS600MI", 200),
        ("pos-a", "/m3api-rest/metadata/NOSUCHMI", 404),
    ]
    for user, path, status in requests:
        response = product.get(path, user=user, accept=None)
        root = ElementTree.fromstring(response.content)
        outside = [
            element.tag
            for element in root.iter()
            if not element.tag.startswith(NAMESPACE)
        ]
        assert response.status_code == status, path
        assert outside == [], path


def test_umlaut_survives_rdda_parsing(product: Product) -> None:
    product.cli("segment", "add", "UALL", "SDST=U")
    product.cli("shop", "add", "U01", "--subscriber", "SA", "--segment", "UALL")
    name = "Ko\u0308niglich Essen Straße 1234567890"
    product.change("CRS610MI", "Add", CUNO="U1", CUNM=name, TOWN="Düsseldorf", SDST="U")
    product.net_transfer("--subscriber", "SA")
    xml = product.get(
        "/m3api-rest/execute/OPS600MI/LstCus;maxrecs=0?SBS1=SA",
        user="pos-a",
        accept=None,
    )
    parsed = {}
    for record in ElementTree.fromstring(xml.content).iter(NAMESPACE + "MIRecord"):
        pairs = {
            pair.findtext(NAMESPACE + "Name"): pair.findtext(NAMESPACE + "Value") or ""
            for pair in record.iter(NAMESPACE + "NameValue")
        }
        parsed[pairs["CUNO"]] = parse_data(pairs["TRTP"], pairs["RDDA"], pairs["RDD2"])
    assert xml.headers["content-type"].startswith("application/xml")
    assert "U1" in parsed
    values = parsed["U1"]
    assert values["CUNM"] == "Königlich Essen Straße 1234567890"
    assert values["TOWN"] == "Düsseldorf"
    assert values["SDST"] == "U"


def test_metadata_agrees_with_validation(product: Product) -> None:
    keys = {"CUNO": "NOSUCH", "SBS1": "NOSUCH", "CCNR": "1", "ADID": "NOSUCH"}
    programs = product.get("/m3api-rest/metadata").json()["Name"]
    for program in programs:
        described = product.get(f"/m3api-rest/metadata/{program}").json()
        for transaction in described["Transaction"]:
            name = transaction["@Transaction"]
            inputs = transaction["InputFieldList"]["Field"]
            mandatory = {
                described_field["@Name"]: keys.get(described_field["@Name"], "1")
                for described_field in inputs
                if described_field["@Mandatory"]
            }
            for described_field in inputs:
                field_name = described_field["@Name"]
                length = described_field["@Length"]
                if field_name == "CONO":
                    continue
                filler = "9" if described_field["@FieldType"] == "N" else "X"
                result = product.call(
                    program, name, {**mandatory, field_name: filler * (length + 1)}
                )
                assert (result.get("@code"), result.get("@field")) == (
                    "WVALUE",
                    field_name,
                ), f"{program} {name} {field_name} longer than {length}"
            for field_name in mandatory:
                others = {
                    key: value for key, value in mandatory.items() if key != field_name
                }
                result = product.call(program, name, others)
                assert (result.get("@code"), result.get("@field")) == (
                    "WMISSING",
                    field_name,
                ), f"{program} {name} without {field_name}"


def test_other_company_changes_nothing(product: Product) -> None:
    product.cli("segment", "add", "CALL", "SDST=C")
    product.cli("shop", "add", "C01", "--subscriber", "SB", "--segment", "CALL")
    product.change("CRS610MI", "Add", CUNO="CO1", CUNM="Company", SDST="C")
    product.change("CRS612MI", "AddCustCard", CUNO="CO1", CCNR="7001")
    product.net_transfer("--subscriber", "SB")
    PosModel().drain(product, "SB", user="pos-b")
    before = product.cli("customer", "show", "CO1", "--json").stdout
    calls = [
        ("CRS610MI", "Add", {"CUNO": "CO2"}),
        ("CRS610MI", "ChgBasicData", {"CUNO": "CO1", "TOWN": "Elsewhere"}),
        ("CRS610MI", "Delete", {"CUNO": "CO1"}),
        ("CRS612MI", "DelCustCard", {"CUNO": "CO1", "CCNR": "7001"}),
        ("OIS002MI", "AddAddress", {"CUNO": "CO1", "ADID": "D1"}),
        ("OPS600MI", "CrtCstRepl", {"CUNO": "CO1"}),
    ]
    for program, transaction, params in calls:
        result = product.call(program, transaction, {**params, "CONO": "2"})
        assert (result.get("@code"), result.get("@field")) == ("WVALUE", "CONO")
    assert product.cli("customer", "show", "CO1", "--json").stdout == before
    assert product.cli("customer", "show", "CO2", check=False).returncode != 0
    assert product.list_records("SB") == []


def test_subscriber_user_kept_to_own_subscriber(product: Product) -> None:
    product.cli("segment", "add", "IALL", "SDST=I")
    product.cli("shop", "add", "I01", "--subscriber", "SB", "--segment", "IALL")
    product.change("CRS610MI", "Add", CUNO="I1", CUNM="Isolated", SDST="I")
    product.net_transfer("--subscriber", "SB")
    listed = product.list_records("SB", user="pos-b")
    attempts = [
        "/m3api-rest/execute/OPS600MI/CnfCus?SBS1=SB",
        "/m3api-rest/execute/OPS600MI/CnfCus;SBS1=SB",
        "/m3api-rest/execute/OPS600MI/CNFCUS?sbs1=SB",
        "/m3api-rest/execute/OPS600MI/CnfCus?SBS1=SB+",
        "/m3api-rest/v2/execute/OPS600MI/CnfCus?SBS1=SB",
        "/m3api-rest/execute/OPS600MI/LstCus?SBS1=SB",
        "/m3api-rest/v2/execute/OPS600MI/CrtCstRepl?CUNO=I1",
        "/m3api-rest/execute/CRS610MI/Delete?CUNO=I1",
    ]
    for path in attempts:
        response = product.get(path, user="pos-a")
        assert response.status_code == 403, path
        assert response.json()["@code"] == "WDENIED", path
    assert len(listed) == 1
    assert product.list_records("SB", user="pos-b") == listed


def test_served_ceiling_bounds_maxrecs(product: Product) -> None:
    rows = ["CUNO,CUNM,SDST"] + [
        f"M{number:03d},Many {number},M" for number in range(130)
    ]
    (product.workdir / "many.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    product.cli("customer", "import", "many.csv")
    product.cli("subscriber", "add", "SM")
    product.cli("segment", "add", "MALL", "SDST=M")
    product.cli("shop", "add", "M01", "--subscriber", "SM", "--segment", "MALL")
    product.net_transfer("--subscriber", "SM")
    lstcus = "/m3api-rest/execute/OPS600MI/LstCus"
    counts = {
        "default": product.get(lstcus, {"SBS1": "SM"}),
        "maxrecs=0": product.get(lstcus + ";maxrecs=0;", {"SBS1": "SM"}),
        "maxrecs=500": product.get(lstcus + ";maxrecs=500", {"SBS1": "SM"}),
        "v2 maxrecs=3": product.get(
            "/m3api-rest/v2/execute/OPS600MI/LstCus", {"SBS1": "SM", "maxrecs": "3"}
        ),
    }
    sizes = {
        label: len(response.json()["MIRecord"]) for label, response in counts.items()
    }
    assert sizes["default"] == 100
    assert sizes["maxrecs=0"] == MAX_RECORDS
    assert sizes["maxrecs=500"] == MAX_RECORDS
    assert sizes["v2 maxrecs=3"] == 3


def test_switched_off_shop_not_reached_by_coalescing(product: Product) -> None:
    product.cli("subscriber", "add", "SK")
    product.cli("segment", "add", "KALL", "SDST=K")
    product.cli("shop", "add", "K01", "--subscriber", "SK", "--segment", "KALL")
    product.cli("shop", "add", "K02", "--subscriber", "SK", "--segment", "KALL")
    product.change("CRS610MI", "Add", CUNO="K1", CUNM="Kept", SDST="K", TOWN="Before")
    product.net_transfer("--subscriber", "SK")
    pos = PosModel()
    pos.drain(product, "SK")
    product.change("CRS610MI", "ChgBasicData", CUNO="K1", TOWN="First")
    product.net_transfer("--subscriber", "SK")
    product.cli("shop", "change", "K02", "--inactive")
    product.change("CRS610MI", "ChgBasicData", CUNO="K1", TOWN="Second")
    product.net_transfer("--subscriber", "SK")
    pos.drain(product, "SK")

    assert pos.shops["K01"]["K1"]["OCUSMA"]["TOWN"] == "Second"
    # K02 was switched off before the second change, so its copy keeps the
    # state of the record created while it was on.
    assert pos.shops["K02"]["K1"]["OCUSMA"]["TOWN"] == "First"


@dataclass
class Journey:
    """A subscriber SJ with shops J01-J03 and its POS, checked after every run."""

    product: Product
    pos: PosModel = field(default_factory=PosModel)

    def settle(self, *options: str) -> list[str]:
        """Run a net transfer of SJ, drain its POS and return the differences."""
        self.product.net_transfer("--subscriber", "SJ", *options)
        self.pos.drain(self.product, "SJ")
        return off_target(self.pos, compute_targets(self.product, "SJ"))


def test_journey_keeps_shops_on_target(product: Product) -> None:
    change = product.change
    product.cli("subscriber", "add", "SJ")
    product.cli("subscriber", "add", "SJ2")
    product.cli("segment", "add", "JDE", "SDST=J", "CSCD=DE")
    product.cli("segment", "add", "JRT", "SDST=J", "CUCL=RET")
    product.cli("shop", "add", "J01", "--subscriber", "SJ", "--segment", "JDE")
    product.cli("shop", "add", "J02", "--subscriber", "SJ", "--segment", "JRT")
    product.cli("shop", "add", "J03", "--subscriber", "SJ", "--segment", "JRT")
    change("CRS610MI", "Add", CUNO="J1", CUNM="Jäger", SDST="J", CSCD="DE", CUCL="RET")
    change("CRS610MI", "Add", CUNO="J2", CUNM="Two", SDST="J", CSCD="DE")
    change("CRS610MI", "Add", CUNO="J3", CUNM="Three", SDST="J", CSCD="FR", CUCL="RET")
    change("CRS610MI", "Add", CUNO="J4", CUNM="Four", SDST="J", CSCD="DE", CUCL="RET")
    change("OIS002MI", "AddAddress", CUNO="J1", ADID="D1", TOWN="Bochum")
    change("OIS002MI", "AddAddress", CUNO="J1", ADID="D2", ADRT="2", TOWN="Invoice")
    change("CRS612MI", "AddCustCard", CUNO="J1", CCNR="9101", CTP1="1")
    change("CRS612MI", "AddCustCard", CUNO="J2", CCNR="9201")
    product.cli("message", "set", "J1", "M1", "Grüß Gott", "--priority", "7")
    journey = Journey(product)

    initial = journey.settle()
    assert initial == []

    # A card changes for every holder while J03 is switched off. Then J1 leaves
    # J02's segment and comes back, and J2 enters it for the first time, so
    # neither may get its card on a record older than its customer record.
    product.cli("shop", "change", "J03", "--inactive")
    j03_before = copy.deepcopy(journey.pos.shops["J03"])
    change("CRS612MI", "UpdCustCard", CUNO="J1", CCNR="9101", REFE="first")
    change("CRS612MI", "UpdCustCard", CUNO="J2", CCNR="9201", REFE="first")
    product.net_transfer("--subscriber", "SJ")
    change("CRS610MI", "ChgBasicData", CUNO="J1", CUCL="OTH")
    product.net_transfer("--subscriber", "SJ")
    change("CRS610MI", "ChgBasicData", CUNO="J1", CUCL="RET")
    change("CRS610MI", "ChgBasicData", CUNO="J2", CUCL="RET")
    change("CRS610MI", "Delete", CUNO="J3")
    requalified = journey.settle()
    assert requalified == []
    assert journey.pos.problems == []
    assert journey.pos.shops["J03"] == j03_before

    # J03 catches up on J3's removal. Meanwhile a card moves to another
    # customer, J2 is deleted and added again without its card, and an
    # address leaves type 1.
    product.cli("shop", "change", "J03", "--active")
    change("CRS612MI", "DelCustCard", CUNO="J1", CCNR="9101")
    change("CRS612MI", "AddCustCard", CUNO="J4", CCNR="9101", BLCD="1")
    change("CRS610MI", "Delete", CUNO="J2")
    change("CRS610MI", "Add", CUNO="J2", CUNM="Two again", SDST="J", CSCD="DE")
    change("OIS002MI", "ChgAddress", CUNO="J1", ADID="D1", ADRT="3")
    change("OIS002MI", "ChgAddress", CUNO="J1", ADID="D2", ADRT="1")
    caught_up = journey.settle()
    assert caught_up == []
    assert "J3" not in journey.pos.shops["J03"]

    # J01 moves to SJ2 and back while J1 changes, so SJ must load J01 again
    # with J1's current state. J02 is deleted and added again.
    product.cli("shop", "change", "J01", "--subscriber", "SJ2")
    product.net_transfer("--subscriber", "SJ2")
    change("CRS610MI", "ChgBasicData", CUNO="J1", TOWN="Moved")
    product.net_transfer("--subscriber", "SJ")
    product.cli("shop", "change", "J01", "--subscriber", "SJ")
    product.cli("shop", "delete", "J02")
    product.cli("shop", "add", "J02", "--subscriber", "SJ", "--segment", "JRT")
    # Both are new shops of SJ, so their POS starts empty.
    del journey.pos.shops["J01"]
    del journey.pos.shops["J02"]
    reloaded = journey.settle()
    assert reloaded == []
    assert journey.pos.shops["J01"]["J1"]["OCUSMA"]["TOWN"] == "Moved"

    # The delete function sends only deletes. With force it sends a delete to
    # every enabled shop, and the next update run loads the customer again.
    change("CRS610MI", "ChgBasicData", CUNO="J4", STAT="90")
    change("CRS610MI", "ChgBasicData", CUNO="J1", TOWN="Later")
    product.net_transfer("--subscriber", "SJ", "--function", "delete")
    deletes = product.list_records("SJ", maxrecs=0)
    assert {(record["CUNO"], record["ACCT"]) for record in deletes} == {("J4", "*DEL")}
    for record in deletes:
        journey.pos.apply(record)
    product.confirm("SJ")
    product.net_transfer("--subscriber", "SJ", "--function", "delete", "--force",
                         "--from", "J1", "--to", "J1")  # fmt: skip
    forced = product.list_records("SJ", maxrecs=0)
    assert [(record["CUNO"], record["ACCT"]) for record in forced] == [("J1", "*DEL")]
    assert set(forced[0]["SHOP"].split(",")) == {"J01", "J02", "J03"}
    for record in forced:
        journey.pos.apply(record)
    product.confirm("SJ")
    after_force = journey.settle()
    assert after_force == []
    assert journey.pos.problems == []

    # Cleanup removes the confirmed records and keeps a listed one.
    change("CRS610MI", "ChgBasicData", CUNO="J1", TOWN="Unconfirmed")
    product.net_transfer("--subscriber", "SJ")
    pending = product.list_records("SJ")
    product.cli("cleanup", "--subscriber", "SJ", "--before", "29991231")
    left = product.cli_json("outbox", "show", "SJ", "--all")
    assert [record["TRNR"] for record in left] == [record["TRNR"] for record in pending]
    assert [record["STATE"] for record in left] == ["listed"] * len(pending)

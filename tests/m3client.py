"""A small M3 REST client, written from the public conventions of M3's REST
gateway only, so that tests can check posoutbox the way an M3 client sees it.

It uses nothing of posoutbox: it calls ``/m3api-rest/execute/PROGRAM/TRANS``
with input fields as query parameters and ``maxrecs`` and ``returncols`` as
matrix parameters, reads ``/m3api-rest/metadata``, and parses MIResult,
metadata and error responses in XML (whatever namespace the server uses, as
long as every element uses it) and in JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import httpx


class M3Error(Exception):
    """An error response: ServerReturnedNOK, or a response that is not M3's."""

    def __init__(self, status: int, code: str, field: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code} {field}: {message}")
        self.status = status
        self.code = code
        self.field = field
        self.message = message


@dataclass(frozen=True)
class FieldInfo:
    """A field as MIResult metadata or program metadata describes it."""

    name: str
    type: str
    length: int
    description: str
    mandatory: bool = False


@dataclass
class MIResult:
    """A transaction's result: its output field metadata and its records."""

    program: str
    transaction: str
    metadata: list[FieldInfo]
    records: list[dict[str, str]]


@dataclass
class TransactionInfo:
    """A transaction as the program metadata describes it."""

    program: str
    name: str
    description: str
    multi: bool
    inputs: list[FieldInfo] = field(default_factory=list)
    outputs: list[FieldInfo] = field(default_factory=list)


@dataclass
class ProgramInfo:
    name: str
    description: str
    version: str
    transactions: dict[str, TransactionInfo]


class M3Client:
    """Calls an M3 REST gateway as one user, in XML or in JSON."""

    def __init__(
        self, base_url: str, user: str, password: str, *, use_json: bool = False
    ) -> None:
        headers = {"Accept": "application/json"} if use_json else {}
        self.use_json = use_json
        self.http = httpx.Client(
            base_url=base_url, auth=(user, password), headers=headers, timeout=60
        )
        self.namespace = ""

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> M3Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def execute(
        self,
        program: str,
        transaction: str,
        inputs: Mapping[str, str] | None = None,
        *,
        maxrecs: int | None = None,
        returncols: Sequence[str] = (),
    ) -> MIResult:
        """Call a transaction; raise M3Error for an error response."""
        matrix = ""
        if maxrecs is not None:
            matrix += f";maxrecs={maxrecs}"
        if returncols:
            matrix += f";returncols={','.join(returncols)}"
        path = (
            f"/m3api-rest/execute/{quote(program, safe='')}/"
            f"{quote(transaction, safe='')}{matrix}"
        )
        response = self.http.get(path, params=dict(inputs or {}))
        document = self._parse(response)
        if self.use_json:
            return self._json_result(document)
        return self._xml_result(document)

    def programs(self) -> list[str]:
        """Return the names of the programs the server offers."""
        document = self._parse(self.http.get("/m3api-rest/metadata"))
        if self.use_json:
            return [str(name) for name in document["Name"]]
        return [element.text or "" for element in document.findall(self._tag("Name"))]

    def program(self, name: str) -> ProgramInfo:
        """Return a program's metadata."""
        response = self.http.get(f"/m3api-rest/metadata/{quote(name, safe='')}")
        document = self._parse(response)
        if self.use_json:
            return self._json_program(document)
        return self._xml_program(document)

    # Parsing

    def _tag(self, name: str) -> str:
        return f"{{{self.namespace}}}{name}" if self.namespace else name

    def _parse(self, response: httpx.Response) -> Any:
        content_type = response.headers.get("content-type", "")
        if self.use_json:
            if not content_type.startswith("application/json"):
                raise M3Error(response.status_code, "", "", response.text[:200])
            document = response.json()
            if isinstance(document, dict) and document.get("@type"):
                raise M3Error(
                    response.status_code,
                    str(document.get("@code", "")),
                    str(document.get("@field", "")),
                    str(document.get("Message", "")),
                )
            if response.status_code != 200:
                raise M3Error(response.status_code, "", "", response.text[:200])
            return document

        if "xml" not in content_type:
            raise M3Error(response.status_code, "", "", response.text[:200])
        root = ElementTree.fromstring(response.content)
        namespace = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
        for element in root.iter():
            if not element.tag.startswith(f"{{{namespace}}}" if namespace else ""):
                raise M3Error(
                    response.status_code, "", "", f"{element.tag} outside {namespace}"
                )
        self.namespace = namespace
        if root.tag == self._tag("ErrorMessage"):
            raise M3Error(
                response.status_code,
                root.get("code", ""),
                root.get("field", ""),
                root.findtext(self._tag("Message")) or "",
            )
        if response.status_code != 200:
            raise M3Error(response.status_code, "", "", response.text[:200])
        return root

    def _xml_result(self, root: ElementTree.Element) -> MIResult:
        metadata = [
            FieldInfo(
                element.get("name", ""),
                element.get("type", ""),
                int(element.get("length", "0")),
                element.get("description", ""),
            )
            for element in root.iterfind(
                f"{self._tag('Metadata')}/{self._tag('Field')}"
            )
        ]
        records = []
        for record in root.iterfind(self._tag("MIRecord")):
            values = {}
            for pair in record.iterfind(self._tag("NameValue")):
                name = pair.findtext(self._tag("Name")) or ""
                values[name] = pair.findtext(self._tag("Value")) or ""
            records.append(values)
        return MIResult(
            root.findtext(self._tag("Program")) or "",
            root.findtext(self._tag("Transaction")) or "",
            metadata,
            records,
        )

    @staticmethod
    def _json_result(document: dict[str, Any]) -> MIResult:
        metadata = [
            FieldInfo(
                str(item["@name"]),
                str(item["@type"]),
                int(item["@length"]),
                str(item.get("@description", "")),
            )
            for item in document.get("Metadata", {}).get("Field", [])
        ]
        records = [
            {str(pair["Name"]): str(pair["Value"]) for pair in record["NameValue"]}
            for record in document.get("MIRecord", [])
        ]
        return MIResult(
            str(document["Program"]), str(document["Transaction"]), metadata, records
        )

    def _xml_fields(self, parent: ElementTree.Element | None) -> list[FieldInfo]:
        if parent is None:
            return []
        return [
            FieldInfo(
                element.get("Name", ""),
                element.get("FieldType", ""),
                int(element.get("Length", "0")),
                element.get("Description", ""),
                element.get("Mandatory") == "true",
            )
            for element in parent.iterfind(self._tag("Field"))
        ]

    def _xml_program(self, root: ElementTree.Element) -> ProgramInfo:
        transactions = {}
        for element in root.iterfind(self._tag("Transaction")):
            info = TransactionInfo(
                element.get("Program", ""),
                element.get("Transaction", ""),
                element.get("Description", ""),
                element.get("Multi") == "true",
                self._xml_fields(element.find(self._tag("InputFieldList"))),
                self._xml_fields(element.find(self._tag("OutputFieldList"))),
            )
            transactions[info.name] = info
        return ProgramInfo(
            root.get("Program", ""),
            root.get("Description", ""),
            root.get("Version", ""),
            transactions,
        )

    @staticmethod
    def _json_fields(parent: dict[str, Any]) -> list[FieldInfo]:
        return [
            FieldInfo(
                str(item["@Name"]),
                str(item["@FieldType"]),
                int(item["@Length"]),
                str(item["@Description"]),
                item["@Mandatory"] in (True, "true"),
            )
            for item in parent.get("Field", [])
        ]

    def _json_program(self, document: dict[str, Any]) -> ProgramInfo:
        transactions = {}
        for item in document["Transaction"]:
            info = TransactionInfo(
                str(item["@Program"]),
                str(item["@Transaction"]),
                str(item["@Description"]),
                item["@Multi"] in (True, "true"),
                self._json_fields(item["InputFieldList"]),
                self._json_fields(item["OutputFieldList"]),
            )
            transactions[info.name] = info
        return ProgramInfo(
            str(document["@Program"]),
            str(document["@Description"]),
            str(document["@Version"]),
            transactions,
        )

"""Rendering a result as JSON and XML: the body written record by record as text
must be the one that ``json.dumps`` or ElementTree makes of the whole MIResult."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

import pytest

from posoutbox import fields
from posoutbox.api import render
from posoutbox.api.request import Format
from posoutbox.api.transactions import OPS600MI
from posoutbox.errors import InvalidValue

LSTCUS = OPS600MI.transactions["LstCus"]


def _row(trnr: int, rdda: str, rdd2: str = "", shop: str = "001") -> dict[str, Any]:
    return {
        "TRTP": "OCUSMA",
        "ACCT": "*UPD",
        "RDDA": rdda,
        "RDD2": rdd2,
        "TRNR": trnr,
        "CUNO": f"C{trnr:05d}",
        "SHOP": shop,
    }


def _expected(
    rows: list[dict[str, Any]], *, metadata: bool, exclude_empty: bool
) -> bytes:
    """The MIResult built as one dictionary and dumped in one call."""
    content: dict[str, Any] = {"Program": "OPS600MI", "Transaction": "LstCus"}
    if metadata:
        content["Metadata"] = {
            "Field": [
                {
                    "@name": field.name,
                    "@type": field.type.value,
                    "@length": field.length,
                    "@description": field.description,
                }
                for field in LSTCUS.output_fields()
            ]
        }
    content["MIRecord"] = [
        {
            "RowIndex": index,
            "NameValue": [
                {"Name": name, "Value": render.safe_text(value)}
                for name in LSTCUS.outputs
                if (value := fields.to_api(name, row[name])) or not exclude_empty
            ],
        }
        for index, row in enumerate(rows)
    ]
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


ROWS = [
    _row(1, 'Müller "Bäckerei"  ', "Zweite  "),
    _row(2, "back\\slash / slash\ttab", shop="001,002,003"),
    _row(30, "Ærø Łódź 東京 \u2028 line separator"),
    _row(4_000_000_000, ""),
]


@pytest.mark.parametrize("metadata", [True, False])
@pytest.mark.parametrize("exclude_empty", [False, True])
def test_json_body_is_what_json_dumps_makes(
    metadata: bool, exclude_empty: bool
) -> None:
    response = render.render_result(
        LSTCUS,
        LSTCUS.outputs,
        ROWS,
        Format.JSON,
        metadata=metadata,
        exclude_empty=exclude_empty,
    )

    assert response.body == _expected(
        ROWS, metadata=metadata, exclude_empty=exclude_empty
    )
    body = json.loads(bytes(response.body))
    assert body["MIRecord"][0]["NameValue"][2] == {
        "Name": "RDDA",
        "Value": 'Müller "Bäckerei"',
    }


def test_unsafe_characters_are_written_out_in_every_value() -> None:
    rows = [_row(1, "plain"), _row(2, "bell\x07 and \ud800 lone", "nul\x00")]

    response = render.render_result(LSTCUS, LSTCUS.outputs, rows, Format.JSON)

    assert response.body == _expected(rows, metadata=True, exclude_empty=False)
    values = {
        pair["Name"]: pair["Value"]
        for pair in json.loads(bytes(response.body))["MIRecord"][1]["NameValue"]
    }
    assert values["RDDA"] == "bell\\u0007 and \\ud800 lone"
    assert values["RDD2"] == "nul\\u0000"


def test_value_of_the_wrong_type_is_still_rejected() -> None:
    rows = [{**_row(1, "text"), "TRNR": "1"}]

    with pytest.raises(InvalidValue):
        render.render_result(LSTCUS, LSTCUS.outputs, rows, Format.JSON)


def test_returned_columns_in_requested_order() -> None:
    columns = ("TRNR", "CUNO")

    response = render.render_result(LSTCUS, columns, ROWS[:1], Format.JSON)

    (record,) = json.loads(bytes(response.body))["MIRecord"]
    assert record["NameValue"] == [
        {"Name": "TRNR", "Value": "1"},
        {"Name": "CUNO", "Value": "C00001"},
    ]


def _expected_xml(rows: list[dict[str, Any]], *, exclude_empty: bool) -> bytes:
    """The MIResult built as an ElementTree and serialised in one call."""
    root = ElementTree.Element("MIResult", {"xmlns": render.NAMESPACE})
    ElementTree.SubElement(root, "Program").text = "OPS600MI"
    ElementTree.SubElement(root, "Transaction").text = "LstCus"
    metadata = ElementTree.SubElement(root, "Metadata")
    for field in LSTCUS.output_fields():
        ElementTree.SubElement(
            metadata,
            "Field",
            name=field.name,
            type=field.type.value,
            length=str(field.length),
            description=field.description,
        )
    for index, row in enumerate(rows):
        record = ElementTree.SubElement(root, "MIRecord")
        ElementTree.SubElement(record, "RowIndex").text = str(index)
        for name in LSTCUS.outputs:
            value = render.safe_text(fields.to_api(name, row[name]))
            if value or not exclude_empty:
                pair = ElementTree.SubElement(record, "NameValue")
                ElementTree.SubElement(pair, "Name").text = name
                ElementTree.SubElement(pair, "Value").text = value
    text = ElementTree.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{text}'.encode()


@pytest.mark.parametrize("exclude_empty", [False, True])
def test_xml_body_is_what_elementtree_makes(exclude_empty: bool) -> None:
    rows = [*ROWS, _row(5, "a < b && c > d", "bell\x07")]

    response = render.render_result(
        LSTCUS, LSTCUS.outputs, rows, Format.XML, exclude_empty=exclude_empty
    )

    assert response.body == _expected_xml(rows, exclude_empty=exclude_empty)

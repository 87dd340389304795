"""Rendering results, errors and metadata in M3's XML and JSON shapes.

Every element of an XML response is in one namespace, ``NAMESPACE``, declared
as the default namespace on the root element, as M3's responses put theirs.
JSON attributes of XML elements carry an ``@`` prefix (``@name``, ``@code``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from xml.etree import ElementTree

from starlette.responses import Response

from posoutbox import fields
from posoutbox.api.request import Format
from posoutbox.api.transactions import Program, Transaction
from posoutbox.errors import PosOutboxError

#: The namespace of every element in the API's XML responses.
NAMESPACE = "urn:posoutbox:m3api-rest:1"

XML_MEDIA_TYPE = "application/xml; charset=utf-8"
JSON_MEDIA_TYPE = "application/json"

ERROR_TYPE = "ServerReturnedNOK"

# Characters that XML 1.0 cannot carry, and lone surrogates, which UTF-8 cannot.
# Stored values never contain them, but error messages may quote client input.
_UNSAFE_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def safe_text(text: str) -> str:
    """Return ``text`` with characters XML or UTF-8 cannot carry written as \\uXXXX."""
    return _UNSAFE_CHARACTERS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _root(tag: str, **attributes: str) -> ElementTree.Element:
    # Unqualified child elements inherit the default namespace declared here.
    return ElementTree.Element(tag, {"xmlns": NAMESPACE, **attributes})


def _xml_response(root: ElementTree.Element, status: int = 200) -> Response:
    text = ElementTree.tostring(root, encoding="unicode")
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n{text}'.encode()
    return Response(body, status_code=status, media_type=XML_MEDIA_TYPE)


def _json_response(content: Any, status: int = 200) -> Response:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return Response(
        body.encode("utf-8"), status_code=status, media_type=JSON_MEDIA_TYPE
    )


def _child(parent: ElementTree.Element, tag: str, text: str) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, tag)
    element.text = safe_text(text)
    return element


def render_result(
    transaction: Transaction,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, fields.Value]],
    output: Format,
    *,
    metadata: bool = True,
    exclude_empty: bool = False,
) -> Response:
    """Render an MIResult with the given output columns of each row.

    Values are formatted as M3 sends them: numbers as plain decimals, text
    right-trimmed. ``exclude_empty`` leaves out name-value pairs whose value
    is empty.
    """
    described = [fields.FIELDS[name] for name in columns]
    records = _formatted(columns, rows, exclude_empty=exclude_empty)
    if output is Format.JSON:
        content: dict[str, Any] = {
            "Program": transaction.program,
            "Transaction": transaction.name,
        }
        if metadata:
            content["Metadata"] = {
                "Field": [
                    {
                        "@name": field.name,
                        "@type": field.type.value,
                        "@length": field.length,
                        "@description": field.description,
                    }
                    for field in described
                ]
            }
        return _json_result(content, records)

    root = _root("MIResult")
    _child(root, "Program", transaction.program)
    _child(root, "Transaction", transaction.name)
    if metadata:
        element = ElementTree.SubElement(root, "Metadata")
        for field in described:
            ElementTree.SubElement(
                element,
                "Field",
                name=field.name,
                type=field.type.value,
                length=str(field.length),
                description=field.description,
            )
    for index, pairs in enumerate(records):
        record = ElementTree.SubElement(root, "MIRecord")
        _child(record, "RowIndex", str(index))
        for name, value in pairs:
            pair = ElementTree.SubElement(record, "NameValue")
            _child(pair, "Name", name)
            _child(pair, "Value", value)
    return _xml_response(root)


def _formatted(
    columns: Sequence[str],
    rows: Iterable[Mapping[str, fields.Value]],
    *,
    exclude_empty: bool,
) -> list[list[tuple[str, str]]]:
    """Return each row's name-value pairs as the API sends them, made safe.

    A LstCus page has thousands of values, so text values are trimmed here
    rather than through ``fields.to_api``, which still formats numbers and
    rejects values of the wrong type. ``safe_text`` runs only when one search
    over all values finds a character that it replaces.
    """
    text_columns = [
        (name, fields.FIELDS[name].type is fields.FieldType.ALPHA) for name in columns
    ]
    records: list[list[tuple[str, str]]] = []
    for row in rows:
        pairs = []
        for name, is_text in text_columns:
            value = row[name]
            if is_text and type(value) is str:
                text = value.rstrip(" ")
            else:
                text = fields.to_api(name, value)
            if text or not exclude_empty:
                pairs.append((name, text))
        records.append(pairs)
    values = "".join(text for pairs in records for _, text in pairs)
    if _UNSAFE_CHARACTERS.search(values) is None:
        return records
    return [[(name, safe_text(text)) for name, text in pairs] for pairs in records]


def _json_result(
    content: dict[str, Any], records: list[list[tuple[str, str]]]
) -> Response:
    """Return ``content`` with an MIRecord list of ``records`` appended, as JSON.

    The records are written as text, each value through the string encoder of
    the json module, which is what ``json.dumps`` would call on it: the body is
    the same, without building and walking a dictionary per name-value pair.
    """
    encode = json.encoder.encode_basestring
    names: dict[str, str] = {}
    parts = []
    for index, pairs in enumerate(records):
        values = []
        for name, value in pairs:
            prefix = names.get(name)
            if prefix is None:
                prefix = names[name] = f'{{"Name":{encode(name)},"Value":'
            values.append(f"{prefix}{encode(value)}}}")
        parts.append(f'{{"RowIndex":{index},"NameValue":[{",".join(values)}]}}')
    head = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    body = f'{head[:-1]},"MIRecord":[{",".join(parts)}]}}'
    return Response(body.encode("utf-8"), media_type=JSON_MEDIA_TYPE)


def render_error(error: PosOutboxError, output: Format, status: int) -> Response:
    """Render an error in M3's shape: ServerReturnedNOK with code, field, message."""
    message = safe_text(error.message)
    field = safe_text(error.field)
    if output is Format.JSON:
        content = {
            "@type": ERROR_TYPE,
            "@code": error.code,
            "@field": field,
            "Message": message,
        }
        response = _json_response(content, status)
    else:
        root = _root("ErrorMessage", type=ERROR_TYPE, code=error.code, field=field)
        _child(root, "Message", message)
        response = _xml_response(root, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="m3api-rest"'
    return response


def render_program_list(programs: Iterable[Program], output: Format) -> Response:
    """Render the list of programs: one Name element each under the root."""
    names = [program.name for program in programs]
    if output is Format.JSON:
        return _json_response({"Name": names})
    root = _root("Programs")
    for name in names:
        _child(root, "Name", name)
    return _xml_response(root)


def _field_attributes(field: fields.Field, mandatory: bool) -> dict[str, str]:
    return {
        "Name": field.name,
        "Description": field.description,
        "FieldType": field.type.value,
        "Length": str(field.length),
        "Mandatory": "true" if mandatory else "false",
    }


def _field_json(field: fields.Field, mandatory: bool) -> dict[str, Any]:
    return {
        "@Name": field.name,
        "@Description": field.description,
        "@FieldType": field.type.value,
        "@Length": field.length,
        "@Mandatory": mandatory,
    }


def render_program(program: Program, output: Format) -> Response:
    """Render a program's metadata: its transactions with their input and
    output fields. Output fields are never mandatory."""
    transactions = list(program.transactions.values())
    if output is Format.JSON:
        content = {
            "@Program": program.name,
            "@Description": program.description,
            "@Version": program.version,
            "Transaction": [
                {
                    "@Program": program.name,
                    "@Transaction": transaction.name,
                    "@Description": transaction.description,
                    "@Multi": transaction.multi,
                    "InputFieldList": {
                        "Field": [
                            _field_json(item.field, item.mandatory)
                            for item in transaction.inputs
                        ]
                    },
                    "OutputFieldList": {
                        "Field": [
                            _field_json(field, False)
                            for field in transaction.output_fields()
                        ]
                    },
                }
                for transaction in transactions
            ],
        }
        return _json_response(content)

    root = _root(
        "Program",
        Program=program.name,
        Description=program.description,
        Version=program.version,
    )
    for transaction in transactions:
        element = ElementTree.SubElement(
            root,
            "Transaction",
            Program=program.name,
            Transaction=transaction.name,
            Description=transaction.description,
            Multi="true" if transaction.multi else "false",
        )
        inputs = ElementTree.SubElement(element, "InputFieldList")
        for item in transaction.inputs:
            ElementTree.SubElement(
                inputs, "Field", _field_attributes(item.field, item.mandatory)
            )
        outputs = ElementTree.SubElement(element, "OutputFieldList")
        for field in transaction.output_fields():
            ElementTree.SubElement(outputs, "Field", _field_attributes(field, False))
    return _xml_response(root)

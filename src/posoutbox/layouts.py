"""Fixed-width data layouts of the transfer records, with an encoder and a parser.

A transfer record carries one fixed-width string, the same layout for ``*UPD`` and
``*DEL``. Its first 900 characters travel in RDDA and the rest, at most 62, in
RDD2. Each field takes exactly its M3 length: text is left-aligned and padded with
blanks, numbers are right-aligned and padded with zeros. Positions count
characters (Unicode code points of NFC text), not bytes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from posoutbox.errors import InvalidValue, MissingValue, UnknownField
from posoutbox.fields import (
    ADDRESS_FIELDS,
    CARD_FIELDS,
    CUSTOMER_FIELDS,
    FIELDS,
    MESSAGE_FIELDS,
    FieldType,
    Value,
    default,
    validate,
    validate_key,
)

__all__ = [
    "DATA_LENGTH",
    "KEY_FIELDS",
    "LAYOUTS",
    "RDD2_LENGTH",
    "RDDA_LENGTH",
    "RECORD_TYPES",
    "LayoutField",
    "decode",
    "encode",
    "encode_delete",
    "encode_stored",
    "join_data",
    "layout",
    "markdown_tables",
    "split_data",
]

RECORD_TYPES: tuple[str, ...] = ("OCUSMA", "OCUSAD", "OPCARD", "OOEMSG")

LAYOUTS: dict[str, tuple[str, ...]] = {
    "OCUSMA": CUSTOMER_FIELDS,
    "OCUSAD": ADDRESS_FIELDS,
    "OPCARD": CARD_FIELDS,
    "OOEMSG": MESSAGE_FIELDS,
}

KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "OCUSMA": ("CUNO",),
    "OCUSAD": ("CUNO", "ADRT", "ADID"),
    "OPCARD": ("CUNO", "CCNR"),
    "OOEMSG": ("CUNO", "MSID"),
}

RDDA_LENGTH = FIELDS["RDDA"].length
RDD2_LENGTH = FIELDS["RDD2"].length
DATA_LENGTH = RDDA_LENGTH + RDD2_LENGTH


@dataclass(frozen=True)
class LayoutField:
    """A field's place in a data layout, with 1-based, inclusive positions."""

    name: str
    type: FieldType
    length: int
    start: int
    end: int


def _build_layout(names: tuple[str, ...]) -> tuple[LayoutField, ...]:
    layout_fields = []
    start = 1
    for name in names:
        field = FIELDS[name]
        end = start + field.length - 1
        layout_fields.append(LayoutField(name, field.type, field.length, start, end))
        start = end + 1
    return tuple(layout_fields)


_LAYOUT_FIELDS: dict[str, tuple[LayoutField, ...]] = {
    trtp: _build_layout(names) for trtp, names in LAYOUTS.items()
}


def layout(trtp: str) -> tuple[LayoutField, ...]:
    """Return the fields of record type ``trtp`` with their positions.

    Raises InvalidValue on field TRTP for an unknown record type.
    """
    try:
        return _LAYOUT_FIELDS[trtp]
    except KeyError:
        raise InvalidValue("TRTP", trtp, _record_types_expected()) from None


def encode(trtp: str, values: Mapping[str, Value]) -> str:
    """Validate ``values`` and return the fixed-width data string of an ``*UPD``.

    Every value goes through `fields.validate`, and the key fields through
    `fields.validate_key`, so text that is too long or contains control characters
    raises InvalidValue and is never cut. Key fields are mandatory (MissingValue).
    Other fields missing from ``values`` take their default, blank or 0. A name
    outside the layout raises UnknownField.
    """
    layout_fields = layout(trtp)
    keys = KEY_FIELDS[trtp]
    _check_names(values, LAYOUTS[trtp])
    parts = []
    for field in layout_fields:
        if field.name in keys:
            if field.name not in values:
                raise MissingValue(field.name)
            value = validate_key(field.name, values[field.name])
        elif field.name in values:
            value = validate(field.name, values[field.name])
        else:
            value = default(field.name)
        parts.append(_format(field, value))
    return "".join(parts)


def _compile_template(layout_fields: tuple[LayoutField, ...]) -> str:
    parts = []
    for field in layout_fields:
        if field.type is FieldType.NUMERIC:
            parts.append(f"%0{field.length}d")
        else:
            parts.append(f"%-{field.length}s")
    return "".join(parts)


# One printf-style template and one item getter per record type, so that
# encoding a stored record is two C-level calls instead of a validation and a
# format per field.
_TEMPLATES: dict[str, str] = {
    trtp: _compile_template(layout_fields)
    for trtp, layout_fields in _LAYOUT_FIELDS.items()
}
_GETTERS: dict[str, Callable[[Mapping[str, Value]], tuple[Value, ...]]] = {
    trtp: operator.itemgetter(*(field.name for field in layout_fields))
    for trtp, layout_fields in _LAYOUT_FIELDS.items()
}
_LENGTHS: dict[str, int] = {
    trtp: layout_fields[-1].end for trtp, layout_fields in _LAYOUT_FIELDS.items()
}


def encode_stored(trtp: str, values: Mapping[str, Value]) -> str:
    """Return the data string of an ``*UPD`` for values read from the database.

    The values were validated when they were saved, so this skips `encode`'s
    per-field validation, which costs most of a net transfer's time. Values
    that do not fit (a field missing, None, text in a numeric field, or text
    or a number too long for its field) fall back to `encode`, which raises the
    error that names the field. Only values that passed `fields.validate` may
    come here: control characters, for instance, are not checked again.
    """
    try:
        ordered = _GETTERS[trtp](values)
        if None in ordered:
            return encode(trtp, values)
        data: str = _TEMPLATES[trtp] % ordered
    except (KeyError, ValueError, TypeError):
        return encode(trtp, values)
    if len(data) != _LENGTHS[trtp]:
        return encode(trtp, values)
    return data


def encode_delete(trtp: str, key: Mapping[str, Value]) -> str:
    """Return the data string of a ``*DEL``: the key fields, blanks and zeros elsewhere.

    ``key`` must contain exactly the record type's key fields. A missing key field
    raises MissingValue, any other field raises UnknownField.
    """
    layout(trtp)  # raises InvalidValue for an unknown record type
    _check_names(key, KEY_FIELDS[trtp])
    return encode(trtp, key)


def decode(trtp: str, data: str) -> dict[str, Value]:
    """Parse a data string of record type ``trtp`` into its field values.

    Accepts a string shorter than the layout, because the API right-trims values,
    and pads it with blanks. Numbers become ``int`` (all blanks read as 0) and text
    is right-trimmed. Raises InvalidValue for data longer than DATA_LENGTH,
    non-blank text after the layout's last field, or a numeric field that is not
    all digits. The data must not be normalised as a whole before parsing, because
    a field starting with a combining mark would merge with the field before it.
    """
    layout_fields = layout(trtp)
    _check_data_length(data)
    layout_end = layout_fields[-1].end
    _check_tail(trtp, data, layout_end)
    padded = data.ljust(layout_end)
    values: dict[str, Value] = {}
    for field in layout_fields:
        text = padded[field.start - 1 : field.end]
        if field.type is FieldType.NUMERIC:
            values[field.name] = _parse_number(field, text)
        else:
            values[field.name] = text.rstrip(" ")
    return values


def split_data(data: str) -> tuple[str, str]:
    """Split a data string into RDDA and RDD2, right-trimmed as the API serves them.

    RDDA is the first 900 characters and RDD2 the rest. Raises InvalidValue on RDD2
    for data longer than DATA_LENGTH.
    """
    _check_data_length(data)
    return data[:RDDA_LENGTH].rstrip(" "), data[RDDA_LENGTH:].rstrip(" ")


def join_data(rdda: str, rdd2: str) -> str:
    """Join RDDA and RDD2 as served by the API into one data string.

    RDDA is padded back to 900 characters before RDD2 is appended, because the API
    right-trims it. Raises InvalidValue when either part exceeds its length.
    """
    if len(rdda) > RDDA_LENGTH:
        raise InvalidValue("RDDA", rdda, f"at most {RDDA_LENGTH} characters")
    if len(rdd2) > RDD2_LENGTH:
        raise InvalidValue("RDD2", rdd2, f"at most {RDD2_LENGTH} characters")
    return rdda.ljust(RDDA_LENGTH) + rdd2


def markdown_tables() -> str:
    """Return the Markdown section of every record type's layout.

    Each section names the key fields and the length, followed by a table of the
    fields with positions, type, length and description.
    """
    sections = []
    for trtp in RECORD_TYPES:
        layout_fields = layout(trtp)
        lines = [
            f"### {trtp}",
            "",
            f"Key fields: {', '.join(KEY_FIELDS[trtp])}. "
            f"Length: {layout_fields[-1].end} characters.",
            "",
            "| Field | Positions | Type | Length | Description |",
            "|---|---|---|---|---|",
        ]
        for field in layout_fields:
            description = FIELDS[field.name].description
            lines.append(
                f"| {field.name} | {field.start}-{field.end} | {field.type.value} "
                f"| {field.length} | {description} |"
            )
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def _record_types_expected() -> str:
    return "one of " + ", ".join(RECORD_TYPES)


def _check_names(values: Mapping[str, Value], allowed: tuple[str, ...]) -> None:
    for name in values:
        if name not in allowed:
            raise UnknownField(name, allowed)


def _format(field: LayoutField, value: Value) -> str:
    if isinstance(value, int):
        return f"{value:0{field.length}d}"
    return value.ljust(field.length)


def _check_data_length(data: str) -> None:
    if len(data) > DATA_LENGTH:
        raise InvalidValue(
            "RDD2",
            data[DATA_LENGTH:],
            f"at most {DATA_LENGTH} characters of data (RDDA {RDDA_LENGTH} + RDD2 "
            f"{RDD2_LENGTH}), got {len(data)}",
        )


def _check_tail(trtp: str, data: str, layout_end: int) -> None:
    tail = data[layout_end:]
    stripped = tail.lstrip(" ")
    if not stripped:
        return
    position = layout_end + len(tail) - len(stripped) + 1
    field = "RDDA" if position <= RDDA_LENGTH else "RDD2"
    raise InvalidValue(
        field,
        stripped.rstrip(" "),
        f"blanks after position {layout_end}, the end of the {trtp} layout, "
        f"found text at position {position}",
    )


def _parse_number(field: LayoutField, text: str) -> int:
    if not text.strip(" "):
        return 0
    if not text.isascii() or not text.isdigit():
        raise InvalidValue(
            field.name,
            text,
            f"only digits, or only blanks, at positions {field.start}-{field.end}",
        )
    return int(text)

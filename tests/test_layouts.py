"""Tests of the fixed-width data layouts, their encoder and their parser."""

from __future__ import annotations

import datetime
import itertools
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posoutbox.errors import InvalidValue, MissingValue, UnknownField
from posoutbox.fields import FIELDS, FieldType, Value, default, validate, validate_key
from posoutbox.layouts import (
    DATA_LENGTH,
    KEY_FIELDS,
    LAYOUTS,
    RDD2_LENGTH,
    RDDA_LENGTH,
    RECORD_TYPES,
    decode,
    encode,
    encode_delete,
    join_data,
    layout,
    markdown_tables,
    split_data,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "layouts.md"

# The worked example of docs/layouts.md.
EXAMPLE_CUSTOMER: dict[str, Value] = {
    "CUNO": "10042",
    "CUNM": "Café Königlich",
    "CUA1": "Kettwiger Straße 12",
    "PONO": "45127",
    "TOWN": "Essen",
    "CSCD": "DE",
    "PHNO": "+49 201 123456",
    "MAIL": "kasse@example.com",
    "LNCD": "DE",
    "CUCD": "EUR",
    "CUTP": 0,
    "CUCL": "RET",
    "SDST": "RUH",
    "STAT": "20",
    "LMDT": 20261204,
}

# Characters that validate accepts.
allowed_characters = st.characters(
    blacklist_categories=("Cc", "Cs"),
    blacklist_characters="\u2028\u2029\ufffe\uffff",
)

TEXT_CHOICES: dict[str, list[str]] = {
    "STAT": ["10", "20", "90"],
    "CSCD": ["", "SE", "DE", "JP", "BR"],
    "MCRD": ["", "0", "1"],
}

NUMBER_RANGES: dict[str, tuple[int, int]] = {
    "CUTP": (0, 9),
    "ADRT": (1, 9),
    "CTP1": (0, 9),
    "BLCD": (0, 1),
    "VTMM": (0, 12),
    "PRIO": (1, 9),
}


def fits(name: str, text: str) -> bool:
    stored = unicodedata.normalize("NFC", text).rstrip(" ")
    return len(stored) <= FIELDS[name].length


def text_values(name: str, key: bool) -> st.SearchStrategy[str]:
    """Text for ``name`` that fits after NFC, given in NFC or NFD."""
    length = FIELDS[name].length
    text = st.text(allowed_characters, max_size=length + 4)
    if key:
        text = text.filter(
            lambda t: t.strip() != "" and not t[0].isspace() and "," not in t
        )
    as_given_or_nfd = st.tuples(text, st.booleans()).map(
        lambda pair: unicodedata.normalize("NFD", pair[0]) if pair[1] else pair[0]
    )
    return as_given_or_nfd.filter(lambda t: fits(name, t))


def number_values(name: str, key: bool) -> st.SearchStrategy[int]:
    if name in NUMBER_RANGES:
        low, high = NUMBER_RANGES[name]
        return st.integers(low, high)
    if name == "VTYY":
        return st.one_of(st.just(0), st.integers(1900, 9999))
    if name == "LMDT":
        dates = st.dates(datetime.date(1900, 1, 1), datetime.date(9999, 12, 31))
        return st.one_of(st.just(0), dates.map(lambda d: int(d.strftime("%Y%m%d"))))
    low = 1 if key else 0
    return st.integers(low, 10 ** FIELDS[name].length - 1)


def field_values(trtp: str, name: str) -> st.SearchStrategy[Value]:
    key = name in KEY_FIELDS[trtp]
    if FIELDS[name].type is FieldType.NUMERIC:
        return number_values(name, key)
    if name in TEXT_CHOICES:
        return st.sampled_from(TEXT_CHOICES[name])
    return text_values(name, key)


@st.composite
def records(draw: st.DrawFn) -> tuple[str, dict[str, Value]]:
    """Draw a record type with values for all its key fields and some others."""
    trtp = draw(st.sampled_from(RECORD_TYPES))
    keys = KEY_FIELDS[trtp]
    required = {name: field_values(trtp, name) for name in keys}
    optional = {
        name: field_values(trtp, name) for name in LAYOUTS[trtp] if name not in keys
    }
    values = draw(st.fixed_dictionaries(required, optional=optional))
    return trtp, values


def stored_values(trtp: str, values: dict[str, Value]) -> dict[str, Value]:
    stored: dict[str, Value] = {}
    for name in LAYOUTS[trtp]:
        if name in KEY_FIELDS[trtp]:
            stored[name] = validate_key(name, values[name])
        elif name in values:
            stored[name] = validate(name, values[name])
        else:
            stored[name] = default(name)
    return stored


# Layout definitions


def test_data_lengths() -> None:
    assert RDDA_LENGTH == 900
    assert RDD2_LENGTH == 62
    assert DATA_LENGTH == 962


@pytest.mark.parametrize(
    ("trtp", "length"),
    [("OCUSMA", 375), ("OCUSAD", 248), ("OPCARD", 75), ("OOEMSG", 81)],
)
def test_layout_length(trtp: str, length: int) -> None:
    assert layout(trtp)[-1].end == length
    assert length <= DATA_LENGTH


@pytest.mark.parametrize("trtp", RECORD_TYPES)
def test_positions_contiguous(trtp: str) -> None:
    fields = layout(trtp)
    assert fields[0].start == 1
    for previous, field in itertools.pairwise(fields):
        assert field.start == previous.end + 1, field.name
    for field in fields:
        assert field.end - field.start + 1 == field.length, field.name
        assert field.length == FIELDS[field.name].length, field.name
        assert field.type is FIELDS[field.name].type, field.name


@pytest.mark.parametrize("trtp", RECORD_TYPES)
def test_layout_follows_field_tuple(trtp: str) -> None:
    assert tuple(field.name for field in layout(trtp)) == LAYOUTS[trtp]
    assert set(KEY_FIELDS[trtp]) <= set(LAYOUTS[trtp])


def test_ocusma_positions() -> None:
    positions = {field.name: (field.start, field.end) for field in layout("OCUSMA")}
    assert positions["CUNO"] == (1, 10)
    assert positions["CUNM"] == (11, 46)
    assert positions["CUTP"] == (359, 359)
    assert positions["STAT"] == (366, 367)
    assert positions["LMDT"] == (368, 375)


def test_layout_unknown_type() -> None:
    with pytest.raises(InvalidValue) as caught:
        layout("OCUSXX")
    assert caught.value.field == "TRTP"
    assert "'OCUSXX'" in str(caught.value)


# Encoding


def test_encode_padding() -> None:
    data = encode("OOEMSG", {"CUNO": "C1", "MSID": "M7", "PRIO": 9, "MSTX": "Hi"})
    assert data == "C1" + " " * 8 + "M7" + " " * 8 + "9" + "Hi" + " " * 58


def test_encode_numbers_zero_padded() -> None:
    data = encode("OPCARD", {"CUNO": "C1", "CCNR": 42, "VTMM": 3, "VTYY": 2027})
    assert data[10:26] == "0" * 14 + "42"
    assert data[29:31] == "03"
    assert data[31:35] == "2027"


def test_encode_defaults() -> None:
    data = encode("OCUSMA", {"CUNO": "C1", "STAT": "20"})
    assert len(data) == 375
    assert data[10:358] == " " * 348
    assert data[358] == "0"
    assert data[367:] == "00000000"


def test_encode_counts_characters() -> None:
    data = encode("OCUSMA", EXAMPLE_CUSTOMER)
    assert len(data) == 375
    assert len(data.encode("utf-8")) == 378


def test_encode_nfd_input() -> None:
    values = dict(EXAMPLE_CUSTOMER)
    values["CUNM"] = unicodedata.normalize("NFD", "Café Königlich")
    assert encode("OCUSMA", values) == encode("OCUSMA", EXAMPLE_CUSTOMER)


def test_encode_too_long() -> None:
    with pytest.raises(InvalidValue) as caught:
        encode("OCUSMA", {"CUNO": "C1", "TOWN": "T" * 21})
    assert caught.value.field == "TOWN"


def test_encode_control_character() -> None:
    with pytest.raises(InvalidValue) as caught:
        encode("OOEMSG", {"CUNO": "C1", "MSID": "M1", "MSTX": "line\nbreak"})
    assert caught.value.field == "MSTX"


def test_encode_unknown_field() -> None:
    with pytest.raises(UnknownField) as caught:
        encode("OPCARD", {"CUNO": "C1", "CCNR": 1, "CUNM": "Anna"})
    assert caught.value.field == "CUNM"


def test_encode_missing_key() -> None:
    with pytest.raises(MissingValue) as caught:
        encode("OCUSAD", {"CUNO": "C1", "ADRT": 1})
    assert caught.value.field == "ADID"


def test_encode_blank_key() -> None:
    with pytest.raises(MissingValue) as caught:
        encode("OCUSMA", {"CUNO": "  "})
    assert caught.value.field == "CUNO"


def test_encode_unknown_type() -> None:
    with pytest.raises(InvalidValue) as caught:
        encode("OXXXXX", {"CUNO": "C1"})
    assert caught.value.field == "TRTP"


# Deletes


def test_delete_ocusma() -> None:
    data = encode_delete("OCUSMA", {"CUNO": "C1001"})
    assert data[:10] == "C1001     "
    assert data[10:358] == " " * 348
    assert data[358] == "0"
    assert data[359:367] == " " * 8
    assert data[367:] == "0" * 8


def test_delete_opcard() -> None:
    data = encode_delete("OPCARD", {"CUNO": "C1", "CCNR": 123})
    assert data == "C1" + " " * 8 + "0" * 13 + "123" + "00" + " " + "000000" + " " * 40


def test_delete_decodes_to_key() -> None:
    key: dict[str, Value] = {"CUNO": "C1", "ADRT": 1, "ADID": "HOME"}
    decoded = decode("OCUSAD", encode_delete("OCUSAD", key))
    for name in LAYOUTS["OCUSAD"]:
        expected = key[name] if name in key else default(name)
        assert decoded[name] == expected, name


def test_delete_rejects_other_fields() -> None:
    with pytest.raises(UnknownField) as caught:
        encode_delete("OCUSMA", {"CUNO": "C1", "STAT": "90"})
    assert caught.value.field == "STAT"


def test_delete_missing_key() -> None:
    with pytest.raises(MissingValue) as caught:
        encode_delete("OOEMSG", {"CUNO": "C1"})
    assert caught.value.field == "MSID"


def test_delete_rejects_zero_card() -> None:
    with pytest.raises(InvalidValue) as caught:
        encode_delete("OPCARD", {"CUNO": "C1", "CCNR": 0})
    assert caught.value.field == "CCNR"


# Decoding


def test_decode_short_data() -> None:
    decoded = decode("OCUSMA", "C1001")
    assert decoded["CUNO"] == "C1001"
    assert decoded["CUNM"] == ""
    assert decoded["LMDT"] == 0


def test_decode_blank_number() -> None:
    data = encode("OPCARD", {"CUNO": "C1", "CCNR": 5})
    blanked = data[:26] + " " + data[27:]
    assert decode("OPCARD", blanked)["CTP1"] == 0


def test_decode_bad_number() -> None:
    data = encode("OCUSMA", EXAMPLE_CUSTOMER)
    broken = data[:358] + "X" + data[359:]
    with pytest.raises(InvalidValue) as caught:
        decode("OCUSMA", broken)
    assert caught.value.field == "CUTP"
    assert "'X'" in str(caught.value)


def test_decode_partly_blank_number() -> None:
    data = encode("OPCARD", {"CUNO": "C1", "CCNR": 5, "VTMM": 11})
    broken = data[:29] + " 1" + data[31:]
    with pytest.raises(InvalidValue) as caught:
        decode("OPCARD", broken)
    assert caught.value.field == "VTMM"


def test_decode_signed_number() -> None:
    data = encode("OPCARD", {"CUNO": "C1", "CCNR": 5})
    broken = data[:10] + "-" + data[11:]
    with pytest.raises(InvalidValue) as caught:
        decode("OPCARD", broken)
    assert caught.value.field == "CCNR"


def test_decode_too_long() -> None:
    data = encode("OOEMSG", {"CUNO": "C1", "MSID": "M1"}).ljust(DATA_LENGTH + 1)
    with pytest.raises(InvalidValue) as caught:
        decode("OOEMSG", data)
    assert caught.value.field == "RDD2"


def test_decode_blank_tail_accepted() -> None:
    data = encode("OOEMSG", {"CUNO": "C1", "MSID": "M1"}).ljust(DATA_LENGTH)
    assert decode("OOEMSG", data)["MSID"] == "M1"


def test_decode_text_after_layout() -> None:
    data = encode("OOEMSG", {"CUNO": "C1", "MSID": "M1"}) + "  extra"
    with pytest.raises(InvalidValue) as caught:
        decode("OOEMSG", data)
    assert caught.value.field == "RDDA"
    assert "position 84" in str(caught.value)


def test_decode_text_in_rdd2() -> None:
    data = join_data(encode("OOEMSG", {"CUNO": "C1", "MSID": "M1"}), "x")
    with pytest.raises(InvalidValue) as caught:
        decode("OOEMSG", data)
    assert caught.value.field == "RDD2"


def test_decode_keeps_combining_mark() -> None:
    # A field that starts with a combining mark stays apart from the field before.
    values: dict[str, Value] = {"CUNO": "C1", "CUNM": "e" * 36, "CUA1": "\u0301x"}
    decoded = decode("OCUSMA", encode("OCUSMA", values))
    assert decoded["CUNM"] == "e" * 36
    assert decoded["CUA1"] == "\u0301x"


# Round trips


@given(records())
def test_round_trip(record: tuple[str, dict[str, Value]]) -> None:
    trtp, values = record
    data = encode(trtp, values)
    assert len(data) == layout(trtp)[-1].end
    assert decode(trtp, data) == stored_values(trtp, values)


@given(records())
def test_round_trip_split(record: tuple[str, dict[str, Value]]) -> None:
    trtp, values = record
    rdda, rdd2 = split_data(encode(trtp, values))
    assert not rdda.endswith(" ")
    assert len(rdda) <= RDDA_LENGTH
    assert rdd2 == ""
    assert decode(trtp, join_data(rdda, rdd2)) == stored_values(trtp, values)
    assert decode(trtp, rdda) == stored_values(trtp, values)


def test_split_data_long() -> None:
    data = "A" * 895 + "  " + "Z  " + "B" * 10 + "  "
    rdda, rdd2 = split_data(data)
    assert rdda == "A" * 895 + "  Z"
    assert rdd2 == "B" * 10
    assert join_data(rdda, rdd2) == data.rstrip(" ")


def test_split_data_trims_rdda() -> None:
    data = "A" * 10 + " " * 890 + "B"
    rdda, rdd2 = split_data(data)
    assert rdda == "A" * 10
    assert rdd2 == "B"
    assert join_data(rdda, rdd2) == data


def test_split_data_too_long() -> None:
    with pytest.raises(InvalidValue) as caught:
        split_data("A" * (DATA_LENGTH + 1))
    assert caught.value.field == "RDD2"


def test_join_data_pads() -> None:
    assert join_data("A", "B") == "A" + " " * 899 + "B"
    assert join_data("", "") == " " * 900


def test_join_data_too_long() -> None:
    with pytest.raises(InvalidValue) as caught:
        join_data("A" * 901, "")
    assert caught.value.field == "RDDA"
    with pytest.raises(InvalidValue) as caught:
        join_data("", "B" * 63)
    assert caught.value.field == "RDD2"


# Documentation


def test_markdown_tables_rows() -> None:
    tables = markdown_tables()
    assert "| CUNO | 1-10 | A | 10 | Customer number |" in tables
    assert "| LMDT | 368-375 | N | 8 |" in tables
    assert "Key fields: CUNO, ADRT, ADID." in tables
    for trtp in RECORD_TYPES:
        assert f"### {trtp}" in tables


def test_docs_tables_current() -> None:
    text = DOCS.read_text(encoding="utf-8")
    start_marker = "<!-- layout tables start -->\n"
    end_marker = "<!-- layout tables end -->"
    assert start_marker in text
    assert end_marker in text
    start = text.index(start_marker) + len(start_marker)
    end = text.index(end_marker)
    assert text[start:end] == "\n" + markdown_tables() + "\n"


def test_docs_example_current() -> None:
    text = DOCS.read_text(encoding="utf-8")
    data = encode("OCUSMA", EXAMPLE_CUSTOMER)
    assert f"```text\n{data}\n```" in text

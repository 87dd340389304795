"""Tests of the M3 field definitions and value validation."""

from __future__ import annotations

import datetime
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posoutbox.errors import InvalidValue, MissingValue, UnknownField
from posoutbox.fields import (
    ADDRESS_FIELDS,
    CARD_FIELDS,
    CUSTOMER_FIELDS,
    FIELDS,
    MESSAGE_FIELDS,
    FieldType,
    default,
    parse_date,
    to_api,
    validate,
    validate_key,
)

ALPHA_KEYS = ("CUNO", "ADID", "MSID", "SBS1", "WHLO", "SEID")

# Text that validate accepts: no control characters, separators, surrogates or
# the two noncharacters that XML cannot carry.
allowed_text = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs"),
        blacklist_characters="\u2028\u2029\ufffe\uffff",
    )
)


def expect_invalid(name: str, raw: object) -> InvalidValue:
    with pytest.raises(InvalidValue) as caught:
        validate(name, raw)
    return caught.value


@pytest.mark.parametrize(
    ("name", "type_", "length"),
    [
        ("CUNO", FieldType.ALPHA, 10),
        ("CUNM", FieldType.ALPHA, 36),
        ("CSCD", FieldType.ALPHA, 3),
        ("CUTP", FieldType.NUMERIC, 1),
        ("LMDT", FieldType.NUMERIC, 8),
        ("CCNR", FieldType.NUMERIC, 16),
        ("SEID", FieldType.ALPHA, 10),
        ("CONO", FieldType.NUMERIC, 3),
        ("TRNR", FieldType.NUMERIC, 15),
        ("RDDA", FieldType.ALPHA, 900),
        ("RDD2", FieldType.ALPHA, 62),
        ("SHOP", FieldType.ALPHA, 8000),
    ],
)
def test_field_definitions(name: str, type_: FieldType, length: int) -> None:
    field = FIELDS[name]
    assert field.name == name
    assert field.type is type_
    assert field.length == length
    assert field.description


def test_field_type_values() -> None:
    assert FieldType.ALPHA.value == "A"
    assert FieldType.NUMERIC.value == "N"


def test_layout_tuples_use_known_fields() -> None:
    for names in (CUSTOMER_FIELDS, ADDRESS_FIELDS, CARD_FIELDS, MESSAGE_FIELDS):
        assert set(names) <= set(FIELDS)
        assert len(set(names)) == len(names)
        assert names[0] == "CUNO"


def test_customer_fields_order() -> None:
    assert CUSTOMER_FIELDS[-3:] == ("SDST", "STAT", "LMDT")
    assert ADDRESS_FIELDS[:3] == ("CUNO", "ADRT", "ADID")
    assert CARD_FIELDS[1] == "CCNR"
    assert MESSAGE_FIELDS == ("CUNO", "MSID", "PRIO", "MSTX")


def test_default_by_type() -> None:
    assert default("CUNM") == ""
    assert default("LMDT") == 0
    assert default("STAT") == ""


def test_unknown_field() -> None:
    with pytest.raises(UnknownField) as caught:
        validate("XXXX", "a")
    assert caught.value.field == "XXXX"
    with pytest.raises(UnknownField):
        default("XXXX")
    with pytest.raises(UnknownField):
        validate_key("XXXX", None)
    with pytest.raises(UnknownField):
        to_api("XXXX", "a")


# Text


def test_text_trailing_blanks_stripped() -> None:
    assert validate("CUNM", "  Anna Berg   ") == "  Anna Berg"


def test_text_too_long() -> None:
    error = expect_invalid("CUNO", "A" * 11)
    assert error.field == "CUNO"
    assert "'AAAAAAAAAAA'" in str(error)
    assert "at most 10 characters" in str(error)


def test_text_exact_length_accepted() -> None:
    assert validate("CUNO", "A" * 10) == "A" * 10


def test_text_trailing_blanks_not_counted() -> None:
    assert validate("CUNO", "A" * 10 + "   ") == "A" * 10


def test_text_not_str() -> None:
    error = expect_invalid("CUNM", 12)
    assert error.field == "CUNM"
    assert "12" in str(error)


def test_nfd_stored_as_nfc() -> None:
    decomposed = "Ko\u0308niglich Essen"
    stored = validate("CUNM", decomposed)
    assert stored == "K\u00f6niglich Essen"
    assert isinstance(stored, str)
    assert unicodedata.is_normalized("NFC", stored)


def test_length_counted_after_nfc() -> None:
    # 72 code points in NFD, 36 after NFC.
    assert validate("CUNM", "e\u0301" * 36) == "\u00e9" * 36


def test_nfc_expansion_counted() -> None:
    # U+0344 has a two-character canonical decomposition that NFC keeps.
    error = expect_invalid("ECAR", "\u0344\u0344")
    assert "got 4 after NFC" in str(error)


def test_astral_character_counts_one() -> None:
    assert validate("ECAR", "\U0001f600\U0001f600") == "\U0001f600\U0001f600"


@pytest.mark.parametrize(
    "character",
    ["\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\ud800"],
)
def test_control_character_rejected(character: str) -> None:
    error = expect_invalid("CUNM", f"Anna{character}Berg")
    assert error.field == "CUNM"
    assert f"U+{ord(character):04X} at position 5" in str(error)


def test_trailing_newline_rejected() -> None:
    error = expect_invalid("CUNM", "Anna Berg\n")
    assert error.field == "CUNM"


def test_xml_noncharacter_rejected() -> None:
    error = expect_invalid("MSTX", "a\uffffb")
    assert "U+FFFF" in str(error)


@given(allowed_text)
def test_text_validation_is_nfc(text: str) -> None:
    normalised = unicodedata.normalize("NFC", text).rstrip(" ")
    if len(normalised) > 60:
        with pytest.raises(InvalidValue):
            validate("MSTX", text)
    else:
        assert validate("MSTX", text) == normalised


# Numbers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, 0), (7, 7), ("7", 7), (" 7 ", 7), ("", 0), ("   ", 0), ("0007", 7)],
)
def test_number_accepted(raw: object, expected: int) -> None:
    assert validate("CTP1", raw) == expected


@pytest.mark.parametrize(
    "raw", [10, -1, "10", "-1", "+1", "1.0", "1e0", 1.0, True, None, "\u0663", "x"]
)
def test_number_rejected(raw: object) -> None:
    error = expect_invalid("CTP1", raw)
    assert error.field == "CTP1"
    assert repr(raw) in str(error)
    assert "a number of at most 1 digit" in str(error)


def test_number_digit_limit() -> None:
    assert validate("CCNR", 10**16 - 1) == 10**16 - 1
    error = expect_invalid("CCNR", 10**16)
    assert "at most 16 digits" in str(error)


def test_number_huge_string_rejected() -> None:
    error = expect_invalid("TRNR", "9" * 5000)
    assert error.field == "TRNR"


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_number_string_round_trip(number: int) -> None:
    assert validate("TRNR", str(number)) == number
    assert validate("TRNR", number) == number


# Field-specific rules


@pytest.mark.parametrize("raw", ["10", "20", "90", "20 "])
def test_stat_accepted(raw: str) -> None:
    assert validate("STAT", raw) == raw.strip()


@pytest.mark.parametrize("raw", ["", "  ", "30", "2", " 2", "99"])
def test_stat_rejected(raw: str) -> None:
    error = expect_invalid("STAT", raw)
    assert error.field == "STAT"
    assert "expected 10, 20 or 90" in str(error)


@pytest.mark.parametrize("raw", ["", "SE", "DE", "US"])
def test_cscd_accepted(raw: str) -> None:
    assert validate("CSCD", raw) == raw


@pytest.mark.parametrize("raw", ["se", "SWE", "XX", "S", " SE"])
def test_cscd_rejected(raw: str) -> None:
    error = expect_invalid("CSCD", raw)
    assert error.field == "CSCD"
    assert repr(raw) in str(error)
    assert "ISO 3166-1 alpha-2" in str(error)


@pytest.mark.parametrize(
    ("name", "accepted", "rejected", "expected"),
    [
        ("PRIO", [1, 5, 9], [0], "a priority from 1 to 9"),
        ("BLCD", [0, 1], [2, 9], "0 or 1"),
        ("ADRT", [1, 9], [0], "an address type from 1 to 9"),
        ("VTMM", [0, 1, 12], [13, 99], "a month from 0 to 12"),
        ("VTYY", [0, 1900, 2030, 9999], [1, 1899, 999], "0 or a year from 1900"),
        ("CUTP", [0, 9], [10], "at most 1 digit"),
        ("LMDT", [0, 20261204, 20240229], [20230229, 20261301, 101], "YYYYMMDD"),
    ],
)
def test_number_rule(
    name: str, accepted: list[int], rejected: list[int], expected: str
) -> None:
    for value in accepted:
        assert validate(name, value) == value
    for value in rejected:
        error = expect_invalid(name, value)
        assert error.field == name
        assert str(value) in str(error)
        assert expected in str(error)


@pytest.mark.parametrize("raw", ["", "0", "1"])
def test_mcrd_accepted(raw: str) -> None:
    assert validate("MCRD", raw) == raw


@pytest.mark.parametrize("raw", ["2", "Y", "X"])
def test_mcrd_rejected(raw: str) -> None:
    error = expect_invalid("MCRD", raw)
    assert error.field == "MCRD"
    assert 'blank, "0" or "1"' in str(error)


# Keys


@pytest.mark.parametrize("name", ALPHA_KEYS)
def test_key_blank_missing(name: str) -> None:
    for raw in (None, "", "   "):
        with pytest.raises(MissingValue) as caught:
            validate_key(name, raw)
        assert caught.value.field == name


@pytest.mark.parametrize("name", ALPHA_KEYS)
def test_key_comma_rejected(name: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate_key(name, "A,B")
    assert caught.value.field == name
    assert "'A,B'" in str(caught.value)
    assert "without commas" in str(caught.value)


@pytest.mark.parametrize("name", ALPHA_KEYS)
def test_key_leading_blank_rejected(name: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate_key(name, " A")
    assert caught.value.field == name
    assert "start with a blank" in str(caught.value)


def test_key_valid() -> None:
    assert validate_key("CUNO", "C1001  ") == "C1001"
    assert validate_key("CCNR", "1234") == 1234


def test_key_too_long() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate_key("WHLO", "ABCD")
    assert "at most 3 characters" in str(caught.value)


def test_card_number_zero() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate_key("CCNR", 0)
    assert caught.value.field == "CCNR"
    assert "greater than 0" in str(caught.value)
    with pytest.raises(MissingValue):
        validate_key("CCNR", "")


def test_comma_allowed_outside_keys() -> None:
    assert validate("CUNM", "Berg, Anna") == "Berg, Anna"
    assert validate_key("CUNM", "Berg, Anna") == "Berg, Anna"


# API format and dates


def test_to_api() -> None:
    assert to_api("LMDT", 20261204) == "20261204"
    assert to_api("CUTP", 0) == "0"
    assert to_api("CUNM", "Anna  ") == "Anna"
    assert to_api("CUNM", "") == ""


def test_to_api_wrong_type() -> None:
    with pytest.raises(InvalidValue):
        to_api("LMDT", "20261204")
    with pytest.raises(InvalidValue):
        to_api("LMDT", True)
    with pytest.raises(InvalidValue):
        to_api("CUNM", 5)


def test_parse_date() -> None:
    assert parse_date("LMDT", "20261204") == datetime.date(2026, 12, 4)
    assert parse_date("LMDT", "20240229") == datetime.date(2024, 2, 29)


@pytest.mark.parametrize(
    "raw",
    ["2026-12-04", "2026124", "202612040", "20230229", "20261301", "00000101", ""],
)
def test_parse_date_rejected(raw: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_date("LMDT", raw)
    assert caught.value.field == "LMDT"
    assert repr(raw) in str(caught.value)
    assert "expected a date as YYYYMMDD" in str(caught.value)


def test_parse_date_non_ascii_digits() -> None:
    with pytest.raises(InvalidValue):
        parse_date("LMDT", "\u0662\u0660\u0662\u0666\u0661\u0662\u0660\u0664")

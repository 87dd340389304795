"""M3 field definitions and the validation of values stored in them.

Field names are M3's four-letter API names, which are the wire format. M3 has no
NULL: an unset text field is blank and an unset number is 0, so every stored value
is a ``str`` or an ``int``.
"""

from __future__ import annotations

import datetime
import enum
import unicodedata
from dataclasses import dataclass

import pycountry

from posoutbox.errors import InvalidValue, MissingValue, UnknownField

__all__ = [
    "ADDRESS_FIELDS",
    "CARD_FIELDS",
    "CUSTOMER_FIELDS",
    "FIELDS",
    "MESSAGE_FIELDS",
    "Field",
    "FieldType",
    "Value",
    "default",
    "parse_date",
    "to_api",
    "validate",
    "validate_key",
]


class FieldType(enum.Enum):
    """M3 field type, as the API metadata reports it."""

    ALPHA = "A"
    NUMERIC = "N"


@dataclass(frozen=True)
class Field:
    """An M3 field: name, type, length in characters or digits, and description."""

    name: str
    type: FieldType
    length: int
    description: str


Value = str | int

_A = FieldType.ALPHA
_N = FieldType.NUMERIC

FIELDS: dict[str, Field] = {
    field.name: field
    for field in (
        # Customer (CRS610, table OCUSMA)
        Field("CUNO", _A, 10, "Customer number"),
        Field("CUNM", _A, 36, "Customer name"),
        Field("CUA1", _A, 36, "Address line 1"),
        Field("CUA2", _A, 36, "Address line 2"),
        Field("CUA3", _A, 36, "Address line 3"),
        Field("CUA4", _A, 36, "Address line 4"),
        Field("PONO", _A, 10, "Postal code"),
        Field("TOWN", _A, 20, "City"),
        Field("ECAR", _A, 2, "State or area"),
        Field("CSCD", _A, 3, "Country (ISO 3166-1 alpha-2)"),
        Field("PHNO", _A, 16, "Telephone number 1"),
        Field("PHN2", _A, 16, "Telephone number 2"),
        Field("TFNO", _A, 16, "Fax number"),
        Field("MAIL", _A, 50, "E-mail address"),
        Field("YREF", _A, 30, "Your reference (contact)"),
        Field("LNCD", _A, 2, "Language"),
        Field("CUCD", _A, 3, "Currency"),
        Field("CUTP", _N, 1, "Customer type (9 = temporary customer)"),
        Field("CUCL", _A, 3, "Customer group"),
        Field("SDST", _A, 3, "District"),
        Field("STAT", _A, 2, "Status (10 preliminary, 20 definite, 90 blocked)"),
        Field("LMDT", _N, 8, "Change date (YYYYMMDD)"),
        # Delivery address (OIS002, table OCUSAD)
        Field("ADRT", _N, 1, "Address type (1 = delivery address)"),
        Field("ADID", _A, 6, "Address id"),
        # Customer card (CRS612, table OPCARD)
        Field("CCNR", _N, 16, "Card number"),
        Field("CTP1", _N, 1, "Card type"),
        Field("BLCD", _N, 1, "Blocked (1 = card blocked)"),
        Field("MCRD", _A, 1, "Main card (1 = main card)"),
        Field("VTMM", _N, 2, "Valid through month"),
        Field("VTYY", _N, 4, "Valid through year"),
        Field("REFE", _A, 40, "Reference"),
        # Customer message (OIS165, table OOEMSG)
        Field("MSID", _A, 10, "Message id"),
        Field("PRIO", _N, 1, "Priority (1-9, 9 highest)"),
        Field("MSTX", _A, 60, "Message text"),
        # Setup
        Field("SBS1", _A, 10, "Subscriber"),
        Field("WHLO", _A, 3, "Shop (warehouse)"),
        Field("SEID", _A, 10, "Segment id"),
        Field("CONO", _N, 3, "Company"),
        # Outbox (transfer records)
        Field("TRNR", _N, 15, "Transaction number"),
        Field("TRTP", _A, 8, "Record type"),
        Field("ACCT", _A, 6, "Action code (*UPD or *DEL)"),
        Field("RDDA", _A, 900, "Record data, positions 1-900"),
        Field("RDD2", _A, 62, "Record data, positions 901-962"),
        Field("SHOP", _A, 8000, "Shops on the mailing list, separated by commas"),
    )
}

# Field names in the order of each record type's data layout.
CUSTOMER_FIELDS: tuple[str, ...] = (
    "CUNO",
    "CUNM",
    "CUA1",
    "CUA2",
    "CUA3",
    "CUA4",
    "PONO",
    "TOWN",
    "ECAR",
    "CSCD",
    "PHNO",
    "PHN2",
    "TFNO",
    "MAIL",
    "YREF",
    "LNCD",
    "CUCD",
    "CUTP",
    "CUCL",
    "SDST",
    "STAT",
    "LMDT",
)
ADDRESS_FIELDS: tuple[str, ...] = (
    "CUNO",
    "ADRT",
    "ADID",
    "CUNM",
    "CUA1",
    "CUA2",
    "CUA3",
    "CUA4",
    "PONO",
    "TOWN",
    "ECAR",
    "CSCD",
    "PHNO",
)
CARD_FIELDS: tuple[str, ...] = (
    "CUNO",
    "CCNR",
    "CTP1",
    "BLCD",
    "MCRD",
    "VTMM",
    "VTYY",
    "REFE",
)
MESSAGE_FIELDS: tuple[str, ...] = ("CUNO", "MSID", "PRIO", "MSTX")

# Text keys that must not start with a blank or contain a comma, because list
# fields such as SHOP and segment conditions separate codes with commas.
_CODE_KEYS = frozenset({"CUNO", "ADID", "MSID", "SBS1", "WHLO", "SEID"})

# Rejected characters outside the categories Cc and Cs: U+FFFE and U+FFFF, which
# XML 1.0 cannot carry, and U+2028 and U+2029, which some readers take as line breaks.
_FORBIDDEN_CHARACTERS = frozenset("\u2028\u2029\ufffe\uffff")

_ASCII_DIGITS = frozenset("0123456789")

_COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)

# Allowed values of the numeric fields that have a field-specific range.
_NUMBER_RANGES: dict[str, tuple[range, str]] = {
    "CUTP": (range(0, 10), "a customer type from 0 to 9"),
    "ADRT": (range(1, 10), "an address type from 1 to 9"),
    "BLCD": (range(0, 2), "0 or 1"),
    "VTMM": (range(0, 13), "a month from 0 to 12 (0 = not set)"),
    "PRIO": (range(1, 10), "a priority from 1 to 9"),
}

_ALLOWED_TEXT: dict[str, tuple[frozenset[str], str]] = {
    "STAT": (frozenset({"10", "20", "90"}), "10, 20 or 90"),
    "MCRD": (frozenset({"", "0", "1"}), 'blank, "0" or "1"'),
}


def _get_field(name: str) -> Field:
    try:
        return FIELDS[name]
    except KeyError:
        raise UnknownField(name, sorted(FIELDS)) from None


def default(name: str) -> Value:
    """Return the unset value of a field: blank for text, 0 for a number."""
    if _get_field(name).type is FieldType.NUMERIC:
        return 0
    return ""


def validate(name: str, raw: object) -> Value:
    """Validate a value for field ``name`` and return it in its stored form.

    Text is normalised to Unicode NFC and loses its trailing blanks. Numbers are
    returned as ``int``. Raises UnknownField for an unknown name and InvalidValue
    for a value that does not fit the field or its field-specific rule.
    """
    field = _get_field(name)
    if field.type is FieldType.NUMERIC:
        number = _validate_number(field, raw)
        _check_number_rule(name, raw, number)
        return number
    text = _validate_text(field, raw)
    _check_text_rule(name, raw, text)
    return text


def validate_key(name: str, raw: object) -> Value:
    """Validate a mandatory key value for field ``name`` and return its stored form.

    Applies every check of `validate`. In addition, None or a blank value raises
    MissingValue, a number must be greater than 0, and the codes CUNO, ADID, MSID,
    SBS1, WHLO and SEID must not start with a blank or contain a comma.
    """
    _get_field(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise MissingValue(name)
    value = validate(name, raw)
    if isinstance(value, int):
        if value == 0:
            raise InvalidValue(name, raw, "a number greater than 0")
        return value
    if name in _CODE_KEYS:
        if value[0].isspace():
            raise InvalidValue(name, raw, "a code that does not start with a blank")
        if "," in value:
            raise InvalidValue(name, raw, "a code without commas")
    return value


def to_api(name: str, value: Value) -> str:
    """Format a stored value as the M3 API returns it.

    Numbers become plain decimals without padding ("0", "20261204") and text is
    right-trimmed. Raises InvalidValue when the value's type does not match the
    field's type.
    """
    field = _get_field(name)
    if field.type is FieldType.NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValue(name, value, "a number stored as int")
        return str(value)
    if not isinstance(value, str):
        raise InvalidValue(name, value, "text stored as str")
    return value.rstrip(" ")


def parse_date(name: str, raw: str) -> datetime.date:
    """Parse a date written as YYYYMMDD, such as an LMDT value or a date option.

    ``name`` is the field or option that the error names. Raises InvalidValue
    unless ``raw`` is exactly eight ASCII digits forming a real calendar date.
    """
    expected = "a date as YYYYMMDD"
    if not isinstance(raw, str) or len(raw) != 8 or not _ASCII_DIGITS.issuperset(raw):
        raise InvalidValue(name, raw, expected)
    try:
        return datetime.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        raise InvalidValue(name, raw, expected) from None


def _validate_text(field: Field, raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidValue(
            field.name, raw, f"text of at most {field.length} characters"
        )
    # Check before normalising, because normalisation keeps these characters and
    # a lone surrogate cannot be encoded to report it afterwards.
    for position, character in enumerate(raw, start=1):
        if _is_forbidden(character):
            raise InvalidValue(
                field.name,
                raw,
                "text without control characters (category Cc), surrogates, U+2028, "
                f"U+2029, U+FFFE or U+FFFF, found U+{ord(character):04X} at position "
                f"{position}",
            )
    text = unicodedata.normalize("NFC", raw).rstrip(" ")
    # NFC can shorten a string (e + U+0301 becomes U+00E9) or lengthen it (U+0344
    # becomes two characters), so the limit applies to the normalised form.
    if len(text) > field.length:
        raise InvalidValue(
            field.name,
            raw,
            f"at most {field.length} characters, got {len(text)} after NFC "
            "normalisation",
        )
    return text


def _is_forbidden(character: str) -> bool:
    if character in _FORBIDDEN_CHARACTERS:
        return True
    return unicodedata.category(character) in ("Cc", "Cs")


def _validate_number(field: Field, raw: object) -> int:
    expected = f"a number of at most {_digits(field.length)}"
    if isinstance(raw, bool):
        raise InvalidValue(field.name, raw, expected)
    if isinstance(raw, int):
        if raw < 0 or raw >= 10**field.length:
            raise InvalidValue(field.name, raw, expected)
        return raw
    if not isinstance(raw, str):
        raise InvalidValue(field.name, raw, expected)
    digits = raw.strip(" ")
    if not _ASCII_DIGITS.issuperset(digits):
        raise InvalidValue(field.name, raw, expected)
    # Leading zeros do not count, because the fixed-width layouts pad with zeros.
    # Checking the length before int() also avoids converting huge strings.
    if len(digits.lstrip("0")) > field.length:
        raise InvalidValue(field.name, raw, expected)
    return int(digits or "0")


def _digits(count: int) -> str:
    if count == 1:
        return "1 digit"
    return f"{count} digits"


def _check_number_rule(name: str, raw: object, number: int) -> None:
    if name in _NUMBER_RANGES:
        allowed, expected = _NUMBER_RANGES[name]
        if number not in allowed:
            raise InvalidValue(name, raw, expected)
    elif name == "VTYY":
        if number != 0 and not 1900 <= number <= 9999:
            raise InvalidValue(name, raw, "0 or a year from 1900 to 9999")
    elif name == "LMDT" and number != 0:
        try:
            parse_date(name, f"{number:08d}")
        except InvalidValue:
            raise InvalidValue(name, raw, "0 or a date as YYYYMMDD") from None


def _check_text_rule(name: str, raw: object, text: str) -> None:
    if name in _ALLOWED_TEXT:
        allowed, expected = _ALLOWED_TEXT[name]
        if text not in allowed:
            raise InvalidValue(name, raw, expected)
    elif name == "CSCD" and text and text not in _COUNTRY_CODES:
        raise InvalidValue(
            name,
            raw,
            "blank or an ISO 3166-1 alpha-2 country code in capitals, such as SE",
        )

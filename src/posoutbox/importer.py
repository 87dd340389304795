"""Reading customer CSV files into rows of M3 customer values for the import.

Two mappings are known. ``m3`` names every column by its M3 customer field
(CUNO is mandatory). ``northwind`` reads the customers table of the Northwind
sample database, as bundled in ``posoutbox/data``. Neither mapping cuts or
rewrites a value: a value that does not fit its field is rejected by the
validation in `customers.import_customers`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import unicodedata
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path

import pycountry

from posoutbox import fields
from posoutbox.customers import CUSTOMER_INPUT_FIELDS, ROW_PROBLEM
from posoutbox.errors import InvalidValue, PosOutboxError

MAPPINGS = ("m3", "northwind")

NORTHWIND_COLUMNS = (
    "customer_id",
    "company_name",
    "contact_name",
    "contact_title",
    "address",
    "city",
    "region",
    "postal_code",
    "country",
    "phone",
    "fax",
)

#: Country names of the Northwind file that pycountry 24.6.1 does not resolve.
COUNTRY_ALIASES = {"UK": "GB"}

_ADDRESS_LINE_LENGTH = fields.FIELDS["CUA1"].length
_AREA_LENGTH = fields.FIELDS["ECAR"].length

#: A row converter: cells keyed by normalised column name to M3 values.
_Converter = Callable[[Mapping[str, str]], dict[str, str]]


class FileProblem(PosOutboxError):
    """A customer file that cannot be read, or whose header does not fit the
    mapping. Nothing of the file has been imported when this is raised by
    `read_customer_file`."""

    code = "WFILE"

    def __init__(self, path: Path, problem: str, *, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


def read_customer_file(
    path: Path, mapping: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """Check a customer file and return its rows as (file line, M3 values).

    The whole file is read and checked before this returns, so a file that is
    missing, not UTF-8 or not valid CSV, or whose header does not fit the
    mapping, raises FileProblem before anything is imported. The line of a row
    is the file line it starts on, the header being line 1, and a quoted value
    that spans lines counts all of them. Empty lines are skipped. A row with the
    wrong number of values is returned holding only `customers.ROW_PROBLEM`,
    so that the import rejects it on field "row".
    """
    if mapping not in MAPPINGS:
        raise InvalidValue("mapping", mapping, " or ".join(MAPPINGS))
    count_rows(path)
    with contextlib.closing(_csv_rows(path)) as rows:
        columns = _check_header(path, _header(path, rows), mapping)
    return _read_rows(path, columns, _CONVERTERS[mapping])


def count_rows(path: Path) -> int:
    """Count the rows after the header, empty lines excluded.

    Reads the whole file, so it raises FileProblem for every problem that
    `read_customer_file` finds except a header that does not fit a mapping.
    """
    _check_encoding(path)
    with contextlib.closing(_csv_rows(path)) as rows:
        _header(path, rows)
        return sum(1 for _line, cells in rows if cells)


@contextlib.contextmanager
def _opening(path: Path) -> Iterator[None]:
    """Translate the errors of opening ``path`` into FileProblem."""
    try:
        yield
    except FileNotFoundError:
        raise FileProblem(path, "file not found") from None
    except IsADirectoryError:
        raise FileProblem(path, "is a directory, expected a CSV file") from None
    except OSError as error:
        raise FileProblem(path, f"cannot be read: {error.strerror}") from error


def _check_encoding(path: Path) -> None:
    """Raise FileProblem naming the first line that is not valid UTF-8."""
    with _opening(path):
        file = path.open("rb")
    with file:
        # A UTF-8 multi-byte sequence never contains the byte 0x0A, so decoding
        # line by line finds exactly the errors of decoding the whole file.
        for line, raw in enumerate(file, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise FileProblem(
                    path,
                    f"not UTF-8: invalid byte 0x{raw[error.start]:02x} at byte "
                    f"{error.start + 1} of the line, expected UTF-8 text "
                    "(save the file as UTF-8)",
                    line=line,
                ) from None


def _csv_rows(path: Path) -> Generator[tuple[int, list[str]], None, None]:
    """Yield (first file line, cells) for every row, the header included."""
    # utf-8-sig drops the byte order mark that spreadsheet programs write.
    with _opening(path):
        file = path.open(encoding="utf-8-sig", newline="")
    with file:
        reader = csv.reader(file, strict=True)
        end = 0
        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise FileProblem(
                    path,
                    f"invalid CSV in the row that starts on this line ({error}), "
                    "check its quotes",
                    line=start,
                ) from None
            end = reader.line_num
            yield start, cells


def _header(path: Path, rows: Iterator[tuple[int, list[str]]]) -> list[str]:
    first = next(rows, None)
    if first is None:
        raise FileProblem(path, "empty file, expected a header line naming the columns")
    if not first[1]:
        raise FileProblem(
            path, "empty line, expected a header line naming the columns", line=1
        )
    return first[1]


def _check_header(path: Path, header: list[str], mapping: str) -> list[str]:
    """Check the header against the mapping; return the normalised column names."""
    if mapping == "m3":
        columns = [cell.strip().upper() for cell in header]
        required: Sequence[str] = ("CUNO",)
        allowed: Sequence[str] = ("CUNO", *CUSTOMER_INPUT_FIELDS)
        expected = f"CUNO and any of {', '.join(CUSTOMER_INPUT_FIELDS)}"
    else:
        columns = [cell.strip().lower() for cell in header]
        required = allowed = NORTHWIND_COLUMNS
        expected = f"the columns {', '.join(NORTHWIND_COLUMNS)}"

    problems = []
    missing = [name for name in required if name not in columns]
    if missing:
        problems.append(f"missing columns {', '.join(missing)}")
    unknown = [name for name in columns if name not in allowed]
    if unknown:
        problems.append(f"unknown columns {', '.join(repr(n) for n in unknown)}")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        problems.append(f"repeated columns {', '.join(repeated)}")
    if not problems:
        return columns

    message = (
        f"header does not fit the {mapping} mapping: {'; '.join(problems)}; "
        f"expected {expected}"
    )
    if len(header) == 1 and ";" in header[0]:
        message += ". The file must be comma-separated, and this header has semicolons"
    raise FileProblem(path, message, line=1)


def _read_rows(
    path: Path, columns: list[str], convert: _Converter
) -> Iterator[tuple[int, dict[str, str]]]:
    with contextlib.closing(_csv_rows(path)) as rows:
        _header(path, rows)
        for line, cells in rows:
            if not cells:
                continue
            if len(cells) != len(columns):
                reason = (
                    f"row: {len(cells)} values, expected {len(columns)}, one per "
                    "column of the header"
                )
                yield line, {ROW_PROBLEM: reason}
                continue
            yield line, convert(dict(zip(columns, cells, strict=True)))


def _m3_values(cells: Mapping[str, str]) -> dict[str, str]:
    return dict(cells)


def _northwind_values(cells: Mapping[str, str]) -> dict[str, str]:
    """Map a Northwind customers row to M3 customer fields.

    contact_title has no M3 field and is not imported. STAT is not set, so a
    new customer is definite (20) and a re-import keeps a status set since,
    such as a block.
    """
    address_1, address_2 = split_address(cells["address"])
    area, region_name = split_region(cells["region"])
    return {
        "CUNO": cells["customer_id"],
        "CUNM": cells["company_name"],
        "YREF": cells["contact_name"],
        "CUA1": address_1,
        "CUA2": address_2,
        "CUA3": region_name,
        "ECAR": area,
        "TOWN": cells["city"],
        "PONO": cells["postal_code"],
        "CSCD": country_code(cells["country"]),
        "PHNO": cells["phone"],
        "TFNO": cells["fax"],
    }


_CONVERTERS: dict[str, _Converter] = {
    "m3": _m3_values,
    "northwind": _northwind_values,
}


def split_address(address: str) -> tuple[str, str]:
    """Split an address into CUA1 and CUA2 at the last blank that fits CUA1.

    An address that fits in 36 characters (after NFC, as stored) stays whole in
    CUA1. An address without a blank in its first 37 characters also stays
    whole, and validation rejects CUA1. A remainder longer than 36 characters is
    left for validation to reject on CUA2.
    """
    text = unicodedata.normalize("NFC", address)
    if len(text) <= _ADDRESS_LINE_LENGTH:
        return text, ""
    blank = text.rfind(" ", 0, _ADDRESS_LINE_LENGTH + 1)
    if blank <= 0:
        return text, ""
    return text[:blank], text[blank + 1 :]


def split_region(region: str) -> tuple[str, str]:
    """Return (ECAR, CUA3) for a Northwind region.

    A region of at most 2 characters is a state or province code such as WA or
    SP and goes to ECAR. A longer region is a name such as "Isle of Wight",
    which ECAR cannot hold, so it goes to the free address line CUA3.
    """
    text = unicodedata.normalize("NFC", region).strip()
    if len(text) <= _AREA_LENGTH:
        return region, ""
    return "", region


@functools.cache
def country_code(name: str) -> str:
    """Return the ISO 3166-1 alpha-2 code of a country name or code.

    A blank name gives a blank code. A name that neither pycountry nor
    COUNTRY_ALIASES resolves is returned unchanged, so that validation rejects it
    on CSCD and the rejection shows the name.
    """
    text = name.strip()
    if not text:
        return ""
    if text.upper() in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[text.upper()]
    try:
        country = pycountry.countries.lookup(text)
    except LookupError:
        return name
    return str(country.alpha_2)

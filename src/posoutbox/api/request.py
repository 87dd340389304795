"""Reading an M3 REST request: matrix and query parameters, paging options and
the response format that the client accepts.

M3's gateway takes ``maxrecs`` and ``returncols`` as matrix parameters on the
path (``/execute/OPS600MI/LstCus;maxrecs=10?SBS1=A``); its newer form takes them
as query parameters. Both are accepted on both routes. Query strings are decoded
here rather than by the framework, which would replace invalid UTF-8 with U+FFFD
and so store text that the client never sent.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from posoutbox.errors import InvalidValue

#: Records a list returns when the client sets no maxrecs, as M3 does.
DEFAULT_MAX_RECORDS = 100

#: Parameters that control the call rather than feed a transaction field.
OPTION_NAMES = ("maxrecs", "returncols", "metadata", "excludeempty")

# A maxrecs with more digits than this is above any ceiling; checking the length
# first keeps int() away from huge strings.
_MAX_DIGITS = 18


class Format(enum.Enum):
    """Response format."""

    XML = "xml"
    JSON = "json"


@dataclass(frozen=True)
class Options:
    """The call options: paging, columns and what the result contains."""

    maxrecs: int | None = None
    returncols: tuple[str, ...] = ()
    metadata: bool = True
    excludeempty: bool = False

    def record_limit(self, ceiling: int) -> int:
        """Return how many records a list may return under the server ceiling.

        No maxrecs means 100, and 0 means no limit, which the ceiling still bounds.
        """
        if self.maxrecs is None:
            return min(DEFAULT_MAX_RECORDS, ceiling)
        if self.maxrecs == 0:
            return ceiling
        return min(self.maxrecs, ceiling)


@dataclass(frozen=True)
class Parameters:
    """The input fields (upper-case names, raw values) and the options of a call."""

    inputs: dict[str, str]
    options: Options


def response_format(accept: str | None) -> Format:
    """Choose JSON or XML from an Accept header.

    XML is the default, as in M3: without an Accept header, with ``*/*`` or with
    any header that does not name ``application/json``. JSON wins when the client
    names it with a higher quality than any XML type it also names.
    """
    if not accept:
        return Format.XML
    json_quality = 0.0
    xml_quality = 0.0
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        quality = _quality(parameters)
        media_type = media_type.lower()
        if media_type == "application/json":
            json_quality = max(json_quality, quality)
        elif media_type in ("application/xml", "text/xml"):
            xml_quality = max(xml_quality, quality)
    if json_quality > 0 and json_quality > xml_quality:
        return Format.JSON
    return Format.XML


def _quality(parameters: Iterable[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def split_matrix(segment: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a path segment into its name and its matrix parameters.

    An empty parameter, such as the one a trailing ``;`` leaves, is ignored.
    """
    name, *parameters = segment.split(";")
    pairs = []
    for parameter in parameters:
        if parameter:
            key, _, value = parameter.partition("=")
            pairs.append((key, value))
    return name, pairs


def parse_query(raw: bytes) -> list[tuple[str, str]]:
    """Decode a query string into (name, value) pairs, in order, blanks kept.

    Raises InvalidValue for a name or value that is not UTF-8 once decoded.
    """
    pairs = []
    for part in raw.split(b"&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition(b"=")
        name = _decode(raw_name, "query")
        pairs.append((name, _decode(raw_value, name)))
    return pairs


def _decode(raw: bytes, field: str) -> str:
    data = unquote_to_bytes(raw.replace(b"+", b" "))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValue(
            field,
            data.decode("utf-8", errors="backslashreplace"),
            "UTF-8 text, percent-encoded",
        ) from None


def split_parameters(pairs: Iterable[tuple[str, str]]) -> Parameters:
    """Sort parameters into input fields and options, rejecting repeated ones.

    Option names are matched in any case; field names are upper-cased.
    """
    inputs: dict[str, str] = {}
    options: dict[str, str] = {}
    seen: dict[str, list[str]] = {}
    for raw_name, value in pairs:
        name = raw_name.strip()
        key = name.lower() if name.lower() in OPTION_NAMES else name.upper()
        seen.setdefault(key, []).append(value)
        if len(seen[key]) > 1:
            raise InvalidValue(
                key, seen[key], "the parameter once, as a matrix or query parameter"
            )
        if key in OPTION_NAMES:
            options[key] = value
        else:
            inputs[key] = value
    return Parameters(inputs, _parse_options(options))


def _parse_options(raw: dict[str, str]) -> Options:
    maxrecs = None
    if "maxrecs" in raw:
        maxrecs = _parse_maxrecs(raw["maxrecs"])
    returncols: tuple[str, ...] = ()
    if raw.get("returncols", "").strip():
        names = [name.strip().upper() for name in raw["returncols"].split(",")]
        # dict.fromkeys drops repeated names and keeps the client's order.
        returncols = tuple(dict.fromkeys(name for name in names if name))
    return Options(
        maxrecs=maxrecs,
        returncols=returncols,
        metadata=_parse_boolean("metadata", raw.get("metadata"), default=True),
        excludeempty=_parse_boolean(
            "excludeempty", raw.get("excludeempty"), default=False
        ),
    )


def _parse_maxrecs(raw: str) -> int:
    text = raw.strip()
    if not text or not text.isascii() or not text.isdigit():
        raise InvalidValue("maxrecs", raw, "0 (no limit) or a positive number")
    if len(text.lstrip("0")) > _MAX_DIGITS:
        return int(10**_MAX_DIGITS)
    return int(text)


def _parse_boolean(name: str, raw: str | None, *, default: bool) -> bool:
    if raw is None or not raw.strip():
        return default
    text = raw.strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise InvalidValue(name, raw, "true or false")

"""The POS agent's HTTP client of OPS600MI LstCus and CnfCus, as M3's REST gateway
serves them.

A call is ``GET {url}/m3api-rest/execute/OPS600MI/{TRANSACTION}`` with the input
fields as query parameters, ``;maxrecs=N`` on the path and HTTP Basic
authentication. Responses are parsed in both forms the gateway sends: XML (an
``MIResult`` or ``ErrorMessage`` root in any namespace) and JSON (``MIRecord`` with
``NameValue`` pairs, or an ``@type`` error object). Network errors and HTTP 408,
429 and 5xx are retried with capped exponential backoff and jitter, because
listing and confirming can both be repeated without harm. Anything else that is
not a result stops the caller with an AgentError.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from posoutbox import __version__
from posoutbox.db.storage import redact_url
from posoutbox.errors import PosOutboxError
from posoutbox.fields import Value
from posoutbox.layouts import RECORD_TYPES, decode, join_data

logger = logging.getLogger(__name__)

PROGRAM = "OPS600MI"
LIST_TRANSACTION = "LstCus"
CONFIRM_TRANSACTION = "CnfCus"

UPDATE = "*UPD"
DELETE = "*DEL"
ACTIONS = (UPDATE, DELETE)

JSON = "json"
XML = "xml"
FORMATS = (JSON, XML)
_ACCEPT = {JSON: "application/json", XML: "application/xml"}

#: HTTP statuses that mean "try again later" rather than "this call is wrong".
_RETRIED_STATUSES = frozenset({408, 429})


class AgentError(PosOutboxError):
    """A failure that stops the POS agent: wrong credentials, a rejected call, a
    response it cannot read, or a store it cannot use."""

    code = "WAGENT"


class ApiError(AgentError):
    """An error response of the M3 API: HTTP 401, 403 or 404, or a NOK result.

    ``code`` and ``field`` are the ``@code`` and ``@field`` of the response when it
    has them; ``error_type`` is its ``@type``, such as ServerReturnedNOK.
    """

    def __init__(
        self,
        transaction: str,
        status: int,
        message: str,
        *,
        error_type: str = "",
        code: str = "",
        field: str = "",
    ) -> None:
        self.transaction = transaction
        self.status = status
        self.error_type = error_type
        if code:
            self.code = code
        details = ", ".join(
            part
            for part in (
                f"HTTP {status}",
                error_type,
                f"code {code}" if code else "",
                f"field {field}" if field else "",
            )
            if part
        )
        super().__init__(
            f"{PROGRAM}/{transaction} failed ({details}): {message}{_hint(status)}",
            field=field,
        )


def _hint(status: int) -> str:
    if status == 401:
        return "; check --user and the password in the --password-env variable"
    if status == 403:
        return "; the user may not call this transaction for this subscriber"
    if status == 404:
        return "; check --url, it must point at the server that serves /m3api-rest"
    return ""


class ResponseError(AgentError):
    """A response that is neither an M3 result nor an M3 error."""

    code = "WRESPONSE"


class RetriesExhausted(AgentError):
    """A call that kept failing with network errors or 5xx until the attempt
    limit."""

    code = "WRETRY"


class Stopped(AgentError):
    """The stop event was set while a call waited to be retried."""

    code = "WSTOP"


@dataclass(frozen=True)
class TransferRecord:
    """One record of a LstCus result, its data string parsed with its layout.

    ``trnr`` and ``shops`` are None when the server does not send the TRNR and
    SHOP extension fields, as M3 itself does not.
    """

    trnr: int | None
    trtp: str
    acct: str
    cuno: str
    shops: tuple[str, ...] | None
    values: dict[str, Value]


@dataclass(frozen=True)
class Listing:
    """A LstCus result: its records and whether every record has the TRNR and
    the SHOP extension field (both false for an empty result)."""

    records: list[TransferRecord]
    has_trnr: bool
    has_shop: bool


@dataclass(frozen=True)
class MIResult:
    """A parsed M3 API result: output field names and one dict per record."""

    program: str
    transaction: str
    field_names: tuple[str, ...]
    records: list[dict[str, str]]


@dataclass
class RetryPolicy:
    """Capped exponential backoff with jitter.

    The n-th retry waits a random time between half and all of
    ``min(max_delay, initial_delay * 2 ** (n - 1))`` seconds, so agents that lost
    the server at the same moment do not come back in step. ``max_attempts`` 0
    retries without limit.
    """

    initial_delay: float = 1.0
    max_delay: float = 60.0
    max_attempts: int = 0
    random: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Return the seconds to wait after failed attempt number ``attempt``."""
        ceiling = min(self.max_delay, self.initial_delay * 2 ** min(attempt - 1, 62))
        return self.random.uniform(ceiling / 2, ceiling)


class M3Client:
    """A client of the OPS600MI transactions that a POS calls.

    ``url`` is the server's base URL, such as ``http://127.0.0.1:8080``; a
    trailing ``/m3api-rest`` is accepted too. The password is sent with HTTP
    Basic authentication on every call and never logged.
    """

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        *,
        response_format: str = JSON,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if response_format not in FORMATS:
            raise AgentError(
                f"format: invalid value {response_format!r}, expected json or xml"
            )
        base = url.rstrip("/")
        base = base.removesuffix("/m3api-rest")
        if not base.startswith(("http://", "https://")):
            raise AgentError(
                f"url: invalid value {url!r}, expected http://HOST:PORT or "
                "https://HOST:PORT"
            )
        self.base_url = base
        #: The base URL without a password, for messages.
        self.shown_url = redact_url(base)
        self.response_format = response_format
        self.retry = retry or RetryPolicy()
        self.stop = stop or threading.Event()
        self._http = httpx.Client(
            auth=httpx.BasicAuth(user, password),
            timeout=timeout,
            headers={
                "Accept": _ACCEPT[response_format],
                "User-Agent": f"posoutbox-pos-agent/{__version__}",
            },
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> M3Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def list_customers(self, sbs1: str, maxrecs: int) -> Listing:
        """Call LstCus: the subscriber's oldest unconfirmed records, at most
        ``maxrecs`` (0 lets the server apply its own limit)."""
        result = self.execute(LIST_TRANSACTION, {"SBS1": sbs1}, maxrecs=maxrecs)
        records = [
            _parse_record(index, row) for index, row in enumerate(result.records)
        ]
        return Listing(
            records,
            has_trnr=bool(records)
            and all(record.trnr is not None for record in records),
            has_shop=bool(records)
            and all(record.shops is not None for record in records),
        )

    def confirm_customers(self, sbs1: str, trnr: int | None = None) -> None:
        """Call CnfCus: confirm the subscriber's listed records, with ``trnr``
        only those up to that transaction number."""
        params = {"SBS1": sbs1}
        if trnr is not None:
            params["TRNR"] = str(trnr)
        self.execute(CONFIRM_TRANSACTION, params)

    def execute(
        self,
        transaction: str,
        params: Mapping[str, str],
        *,
        maxrecs: int | None = None,
    ) -> MIResult:
        """Call one OPS600MI transaction and return its parsed result.

        Retries network errors and HTTP 408, 429 and 5xx following the retry
        policy. Raises ApiError for an M3 error response, ResponseError for a
        response that is no M3 result, RetriesExhausted at the attempt limit and
        Stopped when the stop event is set while waiting to retry.
        """
        url = self._url(transaction, params, maxrecs)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.get(url)
            except httpx.TransportError as error:
                failure = f"{type(error).__name__}: {error}"
            else:
                if (
                    response.status_code < 500
                    and response.status_code not in _RETRIED_STATUSES
                ):
                    return self._read(transaction, response)
                failure = f"HTTP {response.status_code}"
            self._wait_to_retry(transaction, params, attempt, failure)

    def _url(
        self, transaction: str, params: Mapping[str, str], maxrecs: int | None
    ) -> str:
        # Built by hand so that blanks become %20 and not "+", which not every
        # gateway reads as a blank, and so that ;maxrecs stays on the path.
        path = f"{self.base_url}/m3api-rest/execute/{PROGRAM}/{transaction}"
        if maxrecs is not None:
            path += f";maxrecs={maxrecs}"
        query = "&".join(
            f"{quote(name, safe='')}={quote(value, safe='')}"
            for name, value in params.items()
        )
        return f"{path}?{query}" if query else path

    def _wait_to_retry(
        self,
        transaction: str,
        params: Mapping[str, str],
        attempt: int,
        failure: str,
    ) -> None:
        limit = self.retry.max_attempts
        if limit and attempt >= limit:
            raise RetriesExhausted(
                f"{PROGRAM}/{transaction} failed {attempt} times, the last time with "
                f"{failure}; check that the server at {self.shown_url} is running"
            )
        delay = self.retry.delay(attempt)
        logger.warning(
            "%s/%s failed on attempt %d with %s, retrying in %.1f s",
            PROGRAM,
            transaction,
            attempt,
            failure,
            delay,
            extra={
                "action": "agent_retry",
                "transaction": transaction,
                "sbs1": params.get("SBS1", ""),
                "attempt": attempt,
                "delay_seconds": round(delay, 3),
            },
        )
        if self.stop.wait(delay):
            raise Stopped(f"{PROGRAM}/{transaction}: stopped while waiting to retry")

    def _read(self, transaction: str, response: httpx.Response) -> MIResult:
        content = response.content
        status = response.status_code
        try:
            parsed = (
                _parse_json(content)
                if _is_json(response, content)
                else _parse_xml(content)
            )
        except ResponseError as error:
            if status != 200:
                raise ApiError(transaction, status, _reason(response)) from error
            raise ResponseError(
                f"{PROGRAM}/{transaction}: unreadable response from "
                f"{self.shown_url}: {error.message}"
            ) from error
        if isinstance(parsed, _ErrorBody):
            raise ApiError(
                transaction,
                status,
                parsed.message,
                error_type=parsed.type,
                code=parsed.code,
                field=parsed.field,
            )
        if status != 200:
            raise ApiError(transaction, status, _reason(response))
        return parsed


def _reason(response: httpx.Response) -> str:
    return response.reason_phrase or "no error message in the response"


def _is_json(response: httpx.Response, content: bytes) -> bool:
    content_type = response.headers.get("content-type", "")
    if "json" in content_type:
        return True
    if "xml" in content_type:
        return False
    return content.lstrip()[:1] in (b"{", b"[")


@dataclass(frozen=True)
class _ErrorBody:
    type: str
    code: str
    field: str
    message: str


def _parse_json(content: bytes) -> MIResult | _ErrorBody:
    try:
        body = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResponseError(f"invalid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ResponseError(f"expected a JSON object, got {type(body).__name__}")
    if "@type" in body or ("Message" in body and "MIRecord" not in body):
        return _ErrorBody(
            type=str(body.get("@type", "")),
            code=str(body.get("@code", "")),
            field=str(body.get("@field", "")),
            message=str(body.get("Message", "")).strip(),
        )
    metadata = body.get("Metadata") or {}
    field_names = tuple(
        str(item.get("@name", ""))
        for item in _as_list(
            metadata.get("Field") if isinstance(metadata, dict) else []
        )
        if isinstance(item, dict)
    )
    records = []
    for record in _as_list(body.get("MIRecord")):
        if not isinstance(record, dict):
            raise ResponseError("expected MIRecord entries to be objects")
        values: dict[str, str] = {}
        for pair in _as_list(record.get("NameValue")):
            if not isinstance(pair, dict) or "Name" not in pair:
                raise ResponseError("expected NameValue entries with Name and Value")
            values[str(pair["Name"])] = _json_text(pair.get("Value"))
        records.append(values)
    return MIResult(
        program=str(body.get("Program", "")),
        transaction=str(body.get("Transaction", "")),
        field_names=field_names,
        records=records,
    )


def _as_list(value: Any) -> list[Any]:
    # Lenient on purpose: a single object where a list is expected reads as a
    # list of one.
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


def _parse_xml(content: bytes) -> MIResult | _ErrorBody:
    # M3 responses carry no DTD, and without a DTD no entity can be declared. So
    # rejecting a DTD rules out entity expansion attacks whatever the version of
    # Expat, which Python's XML security documentation says older ones allow.
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ResponseError(f"invalid XML: expected UTF-8, {error}") from None
    if "<!DOCTYPE" in text:
        raise ResponseError("invalid XML: expected no document type declaration")
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError as error:
        raise ResponseError(f"invalid XML: {error}") from None
    name = _local_name(root.tag)
    if name == "ErrorMessage":
        return _ErrorBody(
            type=root.get("type", ""),
            code=root.get("code", ""),
            field=root.get("field", ""),
            message=_child_text(root, "Message").strip(),
        )
    if name != "MIResult":
        raise ResponseError(f"expected an MIResult or ErrorMessage root, got {name}")
    field_names: list[str] = []
    records = []
    for child in root:
        child_name = _local_name(child.tag)
        if child_name == "Metadata":
            field_names.extend(
                item.get("name", "")
                for item in child
                if _local_name(item.tag) == "Field"
            )
        elif child_name == "MIRecord":
            values: dict[str, str] = {}
            for pair in child:
                if _local_name(pair.tag) == "NameValue":
                    values[_child_text(pair, "Name")] = _child_text(pair, "Value")
            records.append(values)
    return MIResult(
        program=_child_text(root, "Program"),
        transaction=_child_text(root, "Transaction"),
        field_names=tuple(field_names),
        records=records,
    )


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child_text(element: ElementTree.Element, name: str) -> str:
    for child in element:
        if _local_name(child.tag) == name:
            return child.text or ""
    return ""


def _parse_record(index: int, row: Mapping[str, str]) -> TransferRecord:
    where = f"LstCus record {index + 1}"
    if row.get("TRNR"):
        where += f" (TRNR {row['TRNR']})"
    try:
        return _build_record(row)
    except PosOutboxError as error:
        raise ResponseError(f"{where}: {error.message}") from error


def _build_record(row: Mapping[str, str]) -> TransferRecord:
    trtp = row.get("TRTP", "").strip()
    if trtp not in RECORD_TYPES:
        raise ResponseError(
            f"TRTP: invalid value {trtp!r}, expected one of {', '.join(RECORD_TYPES)}"
        )
    acct = row.get("ACCT", "").strip()
    if acct not in ACTIONS:
        raise ResponseError(f"ACCT: invalid value {acct!r}, expected *UPD or *DEL")
    values = decode(trtp, join_data(row.get("RDDA", ""), row.get("RDD2", "")))
    cuno = str(values["CUNO"])
    if "CUNO" in row and row["CUNO"].strip() != cuno:
        raise ResponseError(
            f"CUNO: invalid value {row['CUNO']!r}, expected {cuno!r} as in RDDA"
        )
    return TransferRecord(
        trnr=_parse_trnr(row["TRNR"]) if "TRNR" in row else None,
        trtp=trtp,
        acct=acct,
        cuno=cuno,
        shops=_parse_shops(row["SHOP"]) if "SHOP" in row else None,
        values=values,
    )


def _parse_trnr(text: str) -> int:
    digits = text.strip()
    if not digits.isascii() or not digits.isdigit() or int(digits) == 0:
        raise ResponseError(
            f"TRNR: invalid value {text!r}, expected a transaction number above 0"
        )
    return int(digits)


def _parse_shops(text: str) -> tuple[str, ...]:
    return tuple(whlo.strip() for whlo in text.split(",") if whlo.strip())

"""The M3 programs and transactions that the API serves, as one declarative table.

The table drives routing, input validation, authorisation and the metadata
responses, so the metadata cannot describe a transaction differently from how
it is checked and run. Field types, lengths and descriptions come from
``fields.FIELDS``, and every handler calls a service function, which applies
the rules of the domain.

Input conventions follow M3: an empty parameter counts as not given, so a
change transaction leaves that field as it is, and ``?`` sets a field that is
not a key to blank (text) or 0 (number).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from posoutbox import customers, fields, layouts, metrics, outbox, transfer
from posoutbox.db.storage import Database
from posoutbox.errors import InvalidValue, NotFound, UnknownField
from posoutbox.fields import Value

#: The value that clears a field that is not a key.
CLEAR_VALUE = "?"

#: Company field accepted by every transaction; it must name the served company.
COMPANY_FIELD = "CONO"


@dataclass(frozen=True)
class Call:
    """One validated call: its input values, its caller and its record limit.

    ``values`` contains the given input fields in their stored form, CONO excluded.
    """

    db: Database
    values: dict[str, Value]
    user: str
    limit: int

    def text(self, name: str) -> str:
        return str(self.values[name])

    def optional(self, name: str) -> Value | None:
        return self.values.get(name)

    def fields_of(self, names: tuple[str, ...]) -> dict[str, Value]:
        return {name: self.values[name] for name in names if name in self.values}


#: A handler runs a call and returns its output rows keyed by field name.
Handler = Callable[[Call], list[dict[str, Value]]]


@dataclass(frozen=True)
class InputField:
    """An input field of a transaction and whether it must be given."""

    name: str
    mandatory: bool = False

    @property
    def field(self) -> fields.Field:
        return fields.FIELDS[self.name]


@dataclass(frozen=True)
class Transaction:
    """One transaction: its fields, its handler and who may call it.

    ``multi`` marks a list, which returns any number of records and obeys
    maxrecs. ``for_subscribers`` lets a subscriber's user call it for that
    subscriber's SBS1.
    """

    program: str
    name: str
    description: str
    inputs: tuple[InputField, ...]
    outputs: tuple[str, ...]
    handler: Handler
    multi: bool = False
    for_subscribers: bool = False

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(item.name for item in self.inputs)

    def output_fields(self) -> list[fields.Field]:
        return [fields.FIELDS[name] for name in self.outputs]

    def parse_inputs(self, raw: Mapping[str, str], *, company: int) -> dict[str, Value]:
        """Validate raw input values; return the given ones, CONO checked and
        dropped.

        Raises UnknownField, MissingValue or InvalidValue, for the first field at
        fault: unknown names first, then fields in the transaction's order.
        """
        allowed = self.input_names
        for name in raw:
            if name not in allowed:
                raise UnknownField(name, allowed)

        values: dict[str, Value] = {}
        for item in self.inputs:
            text = raw.get(item.name, "")
            if item.mandatory:
                values[item.name] = fields.validate_key(item.name, text)
            elif text == CLEAR_VALUE:
                values[item.name] = fields.validate(
                    item.name, fields.default(item.name)
                )
            elif text != "":
                values[item.name] = fields.validate(item.name, text)

        cono = values.pop(COMPANY_FIELD, None)
        if cono is not None and cono != company:
            raise InvalidValue(
                COMPANY_FIELD, raw[COMPANY_FIELD], f"{company}, the company served here"
            )
        return values


@dataclass(frozen=True)
class Program:
    """An M3 program (an API, such as OPS600MI) and its transactions."""

    name: str
    description: str
    version: str
    transactions: dict[str, Transaction]


def _inputs(*names: str, mandatory: tuple[str, ...] = ()) -> tuple[InputField, ...]:
    company = InputField(COMPANY_FIELD)
    return (company, *(InputField(name, name in mandatory) for name in names))


def _limited(rows: list[dict[str, Value]], limit: int) -> list[dict[str, Value]]:
    return rows[:limit]


# OPS600MI: the outbox as POS systems poll it.

RECORD_OUTPUTS = ("TRTP", "ACCT", "RDDA", "RDD2", "TRNR", "CUNO", "SHOP")


def _list_records(call: Call) -> list[dict[str, Value]]:
    records = outbox.list_records(
        call.db, call.text("SBS1"), maxrecs=call.limit, user=call.user
    )
    rows: list[dict[str, Value]] = []
    for record in records:
        rdda, rdd2 = layouts.split_data(record.data)
        rows.append(
            {
                "TRTP": record.trtp,
                "ACCT": record.acct,
                "RDDA": rdda,
                "RDD2": rdd2,
                "TRNR": record.trnr,
                "CUNO": record.cuno,
                "SHOP": ",".join(record.shops),
            }
        )
    return rows


def _confirm_records(call: Call) -> list[dict[str, Value]]:
    up_to = call.optional("TRNR")
    confirmed = outbox.confirm_records(
        call.db,
        call.text("SBS1"),
        up_to=None if up_to is None else int(up_to),
        user=call.user,
    )
    metrics.count_records_confirmed(call.text("SBS1"), confirmed)
    return []


def _export_customer(call: Call) -> list[dict[str, Value]]:
    result = transfer.export_customer(call.db, call.text("CUNO"), user=call.user)
    metrics.count_records_created(result.counts)
    return []


OPS600MI = Program(
    "OPS600MI",
    "Customer transfer to POS",
    "1",
    {
        "LstCus": Transaction(
            "OPS600MI",
            "LstCus",
            "List unconfirmed customer records of a subscriber, oldest first",
            _inputs("SBS1", mandatory=("SBS1",)),
            RECORD_OUTPUTS,
            _list_records,
            multi=True,
            for_subscribers=True,
        ),
        "CnfCus": Transaction(
            "OPS600MI",
            "CnfCus",
            "Confirm listed customer records, optionally only up to TRNR",
            _inputs("SBS1", "TRNR", mandatory=("SBS1",)),
            (),
            _confirm_records,
            for_subscribers=True,
        ),
        "CrtCstRepl": Transaction(
            "OPS600MI",
            "CrtCstRepl",
            "Export one customer to every shop now",
            _inputs("CUNO", mandatory=("CUNO",)),
            (),
            _export_customer,
        ),
    },
)


# CRS610MI: customers.


def _add_customer(call: Call) -> list[dict[str, Value]]:
    values = call.fields_of(customers.CUSTOMER_INPUT_FIELDS)
    customers.add_customer(call.db, call.text("CUNO"), values, user=call.user)
    return []


def _change_customer(call: Call) -> list[dict[str, Value]]:
    values = call.fields_of(customers.CUSTOMER_INPUT_FIELDS)
    customers.change_customer(call.db, call.text("CUNO"), values, user=call.user)
    return []


def _get_customer(call: Call) -> list[dict[str, Value]]:
    return [customers.get_customer(call.db, call.text("CUNO"))]


def _list_customers_by_number(call: Call) -> list[dict[str, Value]]:
    start = call.optional("CUNO")
    if start is None:
        return customers.list_customers(call.db, limit=call.limit)
    # The list starts at the given number, which list_customers excludes.
    rows = []
    with contextlib.suppress(NotFound):
        rows.append(customers.get_customer(call.db, str(start)))
    rows += customers.list_customers(call.db, after=str(start), limit=call.limit)
    return _limited(rows, call.limit)


def _list_customers_by_name(call: Call) -> list[dict[str, Value]]:
    start = str(call.optional("CUNM") or "")
    return customers.list_customers_by_name(call.db, from_name=start, limit=call.limit)


def _delete_customer(call: Call) -> list[dict[str, Value]]:
    customers.delete_customer(call.db, call.text("CUNO"), user=call.user)
    return []


_CUSTOMER_INPUTS = customers.CUSTOMER_INPUT_FIELDS

CRS610MI = Program(
    "CRS610MI",
    "Customer master",
    "1",
    {
        "Add": Transaction(
            "CRS610MI",
            "Add",
            "Add a customer; STAT defaults to 20",
            _inputs("CUNO", *_CUSTOMER_INPUTS, mandatory=("CUNO",)),
            (),
            _add_customer,
        ),
        "ChgBasicData": Transaction(
            "CRS610MI",
            "ChgBasicData",
            "Change a customer's basic data and status",
            _inputs("CUNO", *_CUSTOMER_INPUTS, mandatory=("CUNO",)),
            (),
            _change_customer,
        ),
        "GetBasicData": Transaction(
            "CRS610MI",
            "GetBasicData",
            "Get a customer",
            _inputs("CUNO", mandatory=("CUNO",)),
            fields.CUSTOMER_FIELDS,
            _get_customer,
        ),
        "LstByNumber": Transaction(
            "CRS610MI",
            "LstByNumber",
            "List customers by number, from CUNO on",
            _inputs("CUNO"),
            fields.CUSTOMER_FIELDS,
            _list_customers_by_number,
            multi=True,
        ),
        "LstByName": Transaction(
            "CRS610MI",
            "LstByName",
            "List customers by name, from CUNM on",
            _inputs("CUNM"),
            fields.CUSTOMER_FIELDS,
            _list_customers_by_name,
            multi=True,
        ),
        "Delete": Transaction(
            "CRS610MI",
            "Delete",
            "Delete a customer with its addresses, cards and messages",
            _inputs("CUNO", mandatory=("CUNO",)),
            (),
            _delete_customer,
        ),
    },
)


# CRS612MI: customer cards.

_CARD_INPUTS = customers.CARD_INPUT_FIELDS


def _add_card(call: Call) -> list[dict[str, Value]]:
    return _set_card(call, must_exist=False)


def _change_card(call: Call) -> list[dict[str, Value]]:
    return _set_card(call, must_exist=True)


def _set_card(call: Call, *, must_exist: bool) -> list[dict[str, Value]]:
    customers.set_card(
        call.db,
        call.text("CUNO"),
        call.values["CCNR"],
        call.fields_of(_CARD_INPUTS),
        user=call.user,
        must_exist=must_exist,
    )
    return []


def _delete_card(call: Call) -> list[dict[str, Value]]:
    customers.delete_card(
        call.db, call.text("CUNO"), call.values["CCNR"], user=call.user
    )
    return []


def _get_card(call: Call) -> list[dict[str, Value]]:
    return [customers.get_card(call.db, call.text("CUNO"), call.values["CCNR"])]


def _list_cards(call: Call) -> list[dict[str, Value]]:
    return _limited(customers.list_cards(call.db, call.text("CUNO")), call.limit)


CRS612MI = Program(
    "CRS612MI",
    "Customer cards",
    "1",
    {
        "AddCustCard": Transaction(
            "CRS612MI",
            "AddCustCard",
            "Add a card to a customer; the card number is unique in the company",
            _inputs("CUNO", "CCNR", *_CARD_INPUTS, mandatory=("CUNO", "CCNR")),
            (),
            _add_card,
        ),
        "UpdCustCard": Transaction(
            "CRS612MI",
            "UpdCustCard",
            "Change a customer's card",
            _inputs("CUNO", "CCNR", *_CARD_INPUTS, mandatory=("CUNO", "CCNR")),
            (),
            _change_card,
        ),
        "DelCustCard": Transaction(
            "CRS612MI",
            "DelCustCard",
            "Delete a customer's card",
            _inputs("CUNO", "CCNR", mandatory=("CUNO", "CCNR")),
            (),
            _delete_card,
        ),
        "GetCustCard": Transaction(
            "CRS612MI",
            "GetCustCard",
            "Get a customer's card",
            _inputs("CUNO", "CCNR", mandatory=("CUNO", "CCNR")),
            fields.CARD_FIELDS,
            _get_card,
        ),
        "LstCustCard": Transaction(
            "CRS612MI",
            "LstCustCard",
            "List a customer's cards by card number",
            _inputs("CUNO", mandatory=("CUNO",)),
            fields.CARD_FIELDS,
            _list_cards,
            multi=True,
        ),
    },
)


# OIS002MI: customer addresses. The key is CUNO and ADID; ADRT is a field.

_ADDRESS_INPUTS = customers.ADDRESS_INPUT_FIELDS


def _add_address(call: Call) -> list[dict[str, Value]]:
    return _set_address(call, must_exist=False)


def _change_address(call: Call) -> list[dict[str, Value]]:
    return _set_address(call, must_exist=True)


def _set_address(call: Call, *, must_exist: bool) -> list[dict[str, Value]]:
    customers.set_address(
        call.db,
        call.text("CUNO"),
        call.text("ADID"),
        call.fields_of(_ADDRESS_INPUTS),
        user=call.user,
        must_exist=must_exist,
    )
    return []


def _address_of_type(call: Call) -> dict[str, Value]:
    """Return the addressed address; a given ADRT must match its type, as it
    would in M3, where the address type is part of the key."""
    cuno, adid = call.text("CUNO"), call.text("ADID")
    address = customers.get_address(call.db, cuno, adid)
    adrt = call.optional("ADRT")
    if adrt is not None and address["ADRT"] != adrt:
        raise NotFound("address", "ADID", f"{adid} of type {adrt} of customer {cuno}")
    return address


def _delete_address(call: Call) -> list[dict[str, Value]]:
    _address_of_type(call)
    customers.delete_address(
        call.db, call.text("CUNO"), call.text("ADID"), user=call.user
    )
    return []


def _get_address(call: Call) -> list[dict[str, Value]]:
    return [_address_of_type(call)]


def _list_addresses(call: Call) -> list[dict[str, Value]]:
    adrt = call.optional("ADRT")
    rows = customers.list_addresses(call.db, call.text("CUNO"))
    if adrt is not None:
        rows = [row for row in rows if row["ADRT"] == adrt]
    return _limited(rows, call.limit)


OIS002MI = Program(
    "OIS002MI",
    "Customer addresses",
    "1",
    {
        "AddAddress": Transaction(
            "OIS002MI",
            "AddAddress",
            "Add an address to a customer; ADRT defaults to 1 (delivery)",
            _inputs("CUNO", "ADID", *_ADDRESS_INPUTS, mandatory=("CUNO", "ADID")),
            (),
            _add_address,
        ),
        "ChgAddress": Transaction(
            "OIS002MI",
            "ChgAddress",
            "Change a customer's address",
            _inputs("CUNO", "ADID", *_ADDRESS_INPUTS, mandatory=("CUNO", "ADID")),
            (),
            _change_address,
        ),
        "DelAddress": Transaction(
            "OIS002MI",
            "DelAddress",
            "Delete a customer's address; a given ADRT must match",
            _inputs("CUNO", "ADID", "ADRT", mandatory=("CUNO", "ADID")),
            (),
            _delete_address,
        ),
        "GetAddress": Transaction(
            "OIS002MI",
            "GetAddress",
            "Get a customer's address; a given ADRT must match",
            _inputs("CUNO", "ADID", "ADRT", mandatory=("CUNO", "ADID")),
            fields.ADDRESS_FIELDS,
            _get_address,
        ),
        "LstAddress": Transaction(
            "OIS002MI",
            "LstAddress",
            "List a customer's addresses, optionally of one type ADRT",
            _inputs("CUNO", "ADRT", mandatory=("CUNO",)),
            fields.ADDRESS_FIELDS,
            _list_addresses,
            multi=True,
        ),
    },
)


#: Every program the API serves, by name.
PROGRAMS: dict[str, Program] = {
    program.name: program for program in (CRS610MI, CRS612MI, OIS002MI, OPS600MI)
}

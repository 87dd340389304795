"""Console pages of the customer master (CRS610): search, edit, delivery
addresses, cards, messages and the export of one customer to POS."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from fastapi import APIRouter
from starlette.responses import Response

from posoutbox import customers, fields, layouts, metrics, transfer
from posoutbox.errors import MissingValue, NotFound, PosOutboxError
from posoutbox.fields import Value
from posoutbox.web import queries
from posoutbox.web.base import (
    ConsoleRoute,
    Posted,
    PostedForm,
    Session,
    SignedIn,
    changed_values,
    field_errors,
    form_values,
    redirect,
    render,
    url,
)

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50

# The customer form in groups, as CRS610 shows them on its panels.
CUSTOMER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Name and address", ("CUNM", "CUA1", "CUA2", "CUA3", "CUA4", "PONO", "TOWN")),
    ("Region", ("ECAR", "CSCD", "LNCD", "CUCD")),
    ("Contact", ("PHNO", "PHN2", "TFNO", "MAIL", "YREF")),
    ("Classification", ("STAT", "CUTP", "CUCL", "SDST")),
)

#: Choices of fields with a closed list of values.
CHOICES: dict[str, list[tuple[str, str]]] = {
    "STAT": [("10", "10 preliminary"), ("20", "20 definite"), ("90", "90 blocked")],
    "MCRD": [("", "not set"), ("0", "0 no"), ("1", "1 main card")],
    "BLCD": [("0", "0 not blocked"), ("1", "1 blocked")],
}


def describe(name: str) -> dict[str, object]:
    """Return what a form needs to show an M3 field: label, size and kind."""
    definition = fields.FIELDS[name]
    numeric = definition.type is fields.FieldType.NUMERIC
    unit = "digit" if numeric else "character"
    if definition.length > 1:
        unit += "s"
    return {
        "name": name,
        "label": definition.description,
        "length": definition.length,
        "numeric": numeric,
        "hint": f"{name}, up to {definition.length} {unit}",
        "choices": CHOICES.get(name, []),
    }


def _shown(form_shown: str) -> dict[str, object]:
    try:
        shown = json.loads(form_shown) if form_shown else {}
    except ValueError:
        return {}
    return shown if isinstance(shown, dict) else {}


def _as_text(values: Mapping[str, Value]) -> dict[str, str]:
    return {name: str(value) for name, value in values.items()}


# Search


@router.get("/customers")
def search(
    session: SignedIn,
    q: str = "",
    after: str = "",
    before: str = "",
) -> Response:
    page = queries.search_customers(
        session.db, q, after=after, before=before, limit=PAGE_SIZE
    )
    total = customers.count_customers(session.db) if not q.strip() else None
    return render(
        session,
        "customers.html",
        active="customers",
        q=q,
        page=page,
        total=total,
        next_url=url("/customers", q=q, after=page.next_after)
        if page.next_after
        else "",
        previous_url=url("/customers", q=q, before=page.previous_before)
        if page.previous_before
        else "",
        first_url=url("/customers", q=q) if page.previous_before else "",
    )


# One customer


def _customer_page(
    session: Session,
    cuno: str,
    *,
    values: Mapping[str, object] | None = None,
    errors: Mapping[str, str] | None = None,
    export: transfer.TransferResult | None = None,
    status: int = 200,
) -> Response:
    db = session.db
    customer = customers.get_customer(db, cuno)
    return render(
        session,
        "customer.html",
        status=status,
        active="customers",
        customer=customer,
        shown=json.dumps(_as_text(customer)),
        values=values if values is not None else _as_text(customer),
        errors=errors or {},
        groups=[
            (title, [describe(name) for name in names])
            for title, names in CUSTOMER_GROUPS
        ],
        addresses=customers.list_addresses(db, cuno),
        cards=customers.list_cards(db, cuno),
        messages=customers.list_messages(db, cuno),
        export=_export_rows(export) if export is not None else None,
    )


@router.get("/customer")
def show(session: SignedIn, cuno: str = "") -> Response:
    return _customer_page(session, cuno)


@router.post("/customer/save")
def save(posted: PostedForm) -> Response:
    cuno = posted.text("CUNO")
    submitted = form_values(posted.form, customers.CUSTOMER_INPUT_FIELDS)
    changes = changed_values(submitted, _shown(posted.text("shown")))
    _, errors = customers.collect_errors(changes, customers.CUSTOMER_INPUT_FIELDS)
    if not errors:
        try:
            _, changed = customers.change_customer(
                posted.session.db, cuno, changes, user=posted.session.user
            )
        except NotFound:
            raise
        except PosOutboxError as error:
            errors = [error]
        else:
            message = (
                f"Customer {cuno} saved." if changed else f"Customer {cuno}: no change."
            )
            return redirect(url("/customer", cuno=cuno), message)
    return _customer_page(
        posted.session,
        cuno,
        values=submitted,
        errors=field_errors(errors),
        status=422,
    )


@router.post("/customer/export")
def export(posted: PostedForm) -> Response:
    cuno = posted.text("CUNO")
    result = transfer.export_customer(posted.session.db, cuno, user=posted.session.user)
    metrics.count_records_created(result.counts)
    return _customer_page(posted.session, cuno, export=result)


def _export_rows(result: transfer.TransferResult) -> list[dict[str, object]]:
    """Group an export's record counts by subscriber for the result table."""
    by_subscriber: dict[str, list[tuple[str, str, int]]] = {}
    # In the order a POS applies them: the customer before its children.
    order = {trtp: index for index, trtp in enumerate(layouts.RECORD_TYPES)}
    keys = sorted(result.counts, key=lambda key: (key[0], order[key[1]], key[2]))
    for sbs1, trtp, acct in keys:
        count = result.counts[(sbs1, trtp, acct)]
        by_subscriber.setdefault(sbs1, []).append((trtp, acct, count))
    return [
        {
            "sbs1": sbs1,
            "records": sum(count for _, _, count in rows),
            "kinds": rows,
        }
        for sbs1, rows in by_subscriber.items()
    ]


@router.get("/customers/new")
def new_form(session: SignedIn) -> Response:
    return _new_page(session, {"STAT": customers.DEFAULT_STATUS}, {})


def _new_page(
    session: Session,
    values: Mapping[str, object],
    errors: Mapping[str, str],
    status: int = 200,
) -> Response:
    return render(
        session,
        "customer_new.html",
        status=status,
        active="customers",
        values=values,
        errors=errors,
        cuno_field=describe("CUNO"),
        groups=[
            (title, [describe(name) for name in names])
            for title, names in CUSTOMER_GROUPS
        ],
    )


@router.post("/customers/new")
def add(posted: PostedForm) -> Response:
    submitted = form_values(posted.form, ("CUNO", *customers.CUSTOMER_INPUT_FIELDS))
    cuno = submitted.pop("CUNO", "")
    # Blank fields take their default, as in the API's add transaction.
    given = {name: value for name, value in submitted.items() if value.strip()}
    errors: list[PosOutboxError] = []
    try:
        fields.validate_key("CUNO", cuno)
    except PosOutboxError as error:
        errors.append(error)
    errors += customers.collect_errors(given, customers.CUSTOMER_INPUT_FIELDS)[1]
    if not errors:
        try:
            customers.add_customer(
                posted.session.db, cuno, given, user=posted.session.user
            )
        except PosOutboxError as error:
            errors = [error]
        else:
            return redirect(url("/customer", cuno=cuno), f"Customer {cuno} added.")
    return _new_page(
        posted.session,
        {"CUNO": cuno, **submitted},
        field_errors(errors),
        status=422,
    )


@router.post("/customer/delete")
def delete(posted: PostedForm) -> Response:
    cuno = posted.text("CUNO")
    if not posted.flag("confirmed"):
        customer = customers.get_customer(posted.session.db, cuno)
        return render(
            posted.session,
            "confirm.html",
            active="customers",
            title=f"Delete customer {cuno}",
            question=(
                f"Delete customer {cuno} ({customer['CUNM']}) with its addresses, "
                "cards and messages? Shops that hold it get an OCUSMA *DEL from "
                "the next net transfer."
            ),
            action="/customer/delete",
            hidden={"CUNO": cuno},
            confirm_label="Delete customer",
            cancel_url=url("/customer", cuno=cuno),
        )
    customers.delete_customer(posted.session.db, cuno, user=posted.session.user)
    return redirect("/customers", f"Customer {cuno} deleted.")


# Delivery addresses, cards and messages


@router.get("/customer/address")
def address_form(
    session: SignedIn,
    cuno: str = "",
    adid: str = "",
) -> Response:
    customer = customers.get_customer(session.db, cuno)
    if adid:
        values = _as_text(customers.get_address(session.db, cuno, adid))
    else:
        values = {"ADRT": "1"}
    return _child_page(session, "address", customer, adid, values, {})


@router.post("/customer/address/save")
def address_save(posted: PostedForm) -> Response:
    cuno, adid = posted.text("CUNO"), posted.text("ADID")
    exists = posted.flag("exists")
    submitted = form_values(posted.form, customers.ADDRESS_INPUT_FIELDS)
    values = (
        changed_values(submitted, _shown(posted.text("shown")))
        if exists
        else {name: value for name, value in submitted.items() if value.strip()}
    )

    def save_address() -> None:
        customers.set_address(
            posted.session.db,
            cuno,
            adid,
            values,
            user=posted.session.user,
            must_exist=exists,
        )

    return _save_child(
        posted,
        "address",
        cuno,
        adid,
        "ADID",
        submitted,
        values,
        customers.ADDRESS_INPUT_FIELDS,
        save_address,
    )


@router.get("/customer/card")
def card_form(
    session: SignedIn,
    cuno: str = "",
    ccnr: str = "",
) -> Response:
    customer = customers.get_customer(session.db, cuno)
    values = _as_text(customers.get_card(session.db, cuno, ccnr)) if ccnr else {}
    return _child_page(session, "card", customer, ccnr, values, {})


@router.post("/customer/card/save")
def card_save(posted: PostedForm) -> Response:
    cuno, ccnr = posted.text("CUNO"), posted.text("CCNR")
    exists = posted.flag("exists")
    submitted = form_values(posted.form, customers.CARD_INPUT_FIELDS)
    values = (
        changed_values(submitted, _shown(posted.text("shown")))
        if exists
        else {name: value for name, value in submitted.items() if value.strip()}
    )

    def save_card() -> None:
        customers.set_card(
            posted.session.db,
            cuno,
            ccnr,
            values,
            user=posted.session.user,
            must_exist=exists,
        )

    return _save_child(
        posted,
        "card",
        cuno,
        ccnr,
        "CCNR",
        submitted,
        values,
        customers.CARD_INPUT_FIELDS,
        save_card,
    )


@router.get("/customer/message")
def message_form(
    session: SignedIn,
    cuno: str = "",
    msid: str = "",
) -> Response:
    customer = customers.get_customer(session.db, cuno)
    values: dict[str, str] = {"PRIO": str(customers.DEFAULT_PRIORITY)}
    if msid:
        found = [
            message
            for message in customers.list_messages(session.db, cuno)
            if message["MSID"] == msid
        ]
        if not found:
            raise NotFound("message", "MSID", f"{msid} of customer {cuno}")
        values = _as_text(found[0])
    return _child_page(session, "message", customer, msid, values, {})


@router.post("/customer/message/save")
def message_save(posted: PostedForm) -> Response:
    cuno, msid = posted.text("CUNO"), posted.text("MSID")
    exists = posted.flag("exists")
    submitted = form_values(posted.form, customers.MESSAGE_INPUT_FIELDS)
    # A blank priority keeps the current one, or the default for a new message.
    values = {
        name: value
        for name, value in submitted.items()
        if name != "PRIO" or value.strip()
    }

    def save_message() -> None:
        customers.set_message(
            posted.session.db,
            cuno,
            msid,
            submitted.get("MSTX", ""),
            priority=values.get("PRIO"),
            user=posted.session.user,
        )

    if not exists:
        # set_message adds or changes; a new message must not replace one.
        existing = {
            str(message["MSID"])
            for message in customers.list_messages(posted.session.db, cuno)
        }
        if msid in existing:
            return _child_page(
                posted.session,
                "message",
                customers.get_customer(posted.session.db, cuno),
                "",
                {"MSID": msid, **submitted},
                {"MSID": f"message {msid} of customer {cuno} already exists"},
                status=422,
            )
    return _save_child(
        posted,
        "message",
        cuno,
        msid,
        "MSID",
        submitted,
        values,
        customers.MESSAGE_INPUT_FIELDS,
        save_message,
    )


CHILD_KINDS: dict[str, dict[str, object]] = {
    "address": {
        "title": "delivery address",
        "key": "ADID",
        "fields": customers.ADDRESS_INPUT_FIELDS,
        "action": "/customer/address",
    },
    "card": {
        "title": "card",
        "key": "CCNR",
        "fields": customers.CARD_INPUT_FIELDS,
        "action": "/customer/card",
    },
    "message": {
        "title": "message",
        "key": "MSID",
        "fields": customers.MESSAGE_INPUT_FIELDS,
        "action": "/customer/message",
    },
}


def _child_page(
    session: Session,
    kind: str,
    customer: Mapping[str, Value],
    key: str,
    values: Mapping[str, object],
    errors: Mapping[str, str],
    status: int = 200,
) -> Response:
    spec = CHILD_KINDS[kind]
    names: Sequence[str] = spec["fields"]  # type: ignore[assignment]
    key_name = str(spec["key"])
    return render(
        session,
        "child.html",
        status=status,
        active="customers",
        kind=kind,
        spec=spec,
        customer=customer,
        key=key,
        key_field=describe(key_name),
        values=values,
        shown=json.dumps({name: str(values.get(name, "")) for name in names}),
        errors=errors,
        inputs=[describe(name) for name in names],
    )


def _save_child(
    posted: Posted,
    kind: str,
    cuno: str,
    key: str,
    key_name: str,
    submitted: Mapping[str, str],
    values: Mapping[str, str],
    allowed: Sequence[str],
    save: Callable[[], None],
) -> Response:
    session = posted.session
    exists = posted.flag("exists")
    errors: list[PosOutboxError] = []
    try:
        fields.validate_key(key_name, key)
    except PosOutboxError as error:
        errors.append(error)
    errors += customers.collect_errors(values, allowed)[1]
    if not errors:
        try:
            save()
        except NotFound as error:
            if error.field != key_name:
                raise
            errors = [error]
        except PosOutboxError as error:
            errors = [error]
        else:
            title = CHILD_KINDS[kind]["title"]
            return redirect(
                url("/customer", cuno=cuno),
                f"{str(title).capitalize()} {key} of customer {cuno} saved.",
            )
    customer = customers.get_customer(session.db, cuno)
    shown_key = key if exists else ""
    return _child_page(
        session,
        kind,
        customer,
        shown_key,
        {key_name: key, **submitted},
        field_errors(errors),
        status=422,
    )


@router.post("/customer/child/delete")
def child_delete(posted: PostedForm) -> Response:
    kind = posted.text("kind")
    cuno, key = posted.text("CUNO"), posted.text("key")
    if kind not in CHILD_KINDS:
        raise MissingValue("kind")
    title = str(CHILD_KINDS[kind]["title"])
    if not posted.flag("confirmed"):
        return render(
            posted.session,
            "confirm.html",
            active="customers",
            title=f"Delete {title} {key}",
            question=(
                f"Delete {title} {key} of customer {cuno}? Shops that hold the "
                "customer get a *DEL record for it from the next net transfer."
            ),
            action="/customer/child/delete",
            hidden={"CUNO": cuno, "key": key, "kind": kind},
            confirm_label=f"Delete {title}",
            cancel_url=url("/customer", cuno=cuno),
        )
    db, user = posted.session.db, posted.session.user
    if kind == "address":
        customers.delete_address(db, cuno, key, user=user)
    elif kind == "card":
        customers.delete_card(db, cuno, key, user=user)
    else:
        customers.delete_message(db, cuno, key, user=user)
    return redirect(
        url("/customer", cuno=cuno),
        f"{title.capitalize()} {key} of customer {cuno} deleted.",
    )

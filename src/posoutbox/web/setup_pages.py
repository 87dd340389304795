"""Console pages of the set-up: subscribers and shops (OPS500) and customer
segments (OPS030)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from posoutbox import fields, rules, shops
from posoutbox.errors import PosOutboxError
from posoutbox.web import queries
from posoutbox.web.base import (
    ConsoleRoute,
    PostedForm,
    Session,
    SignedIn,
    field_errors,
    redirect,
    render,
    url,
)

router = APIRouter(route_class=ConsoleRoute)


# Subscribers


def _subscribers_page(
    session: Session,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return render(
        session,
        "subscribers.html",
        status=status,
        active="subscribers",
        subscribers=shops.list_subscribers(session.db),
        values=values or {},
        errors=errors or {},
    )


@router.get("/subscribers")
def subscribers(session: SignedIn) -> Response:
    return _subscribers_page(session)


@router.post("/subscribers/add")
def subscriber_add(posted: PostedForm) -> Response:
    sbs1, name = posted.text("SBS1"), posted.text("name")
    try:
        shops.add_subscriber(
            posted.session.db, sbs1, name=name, user=posted.session.user
        )
    except PosOutboxError as error:
        return _subscribers_page(
            posted.session,
            values={"SBS1": sbs1, "name": name},
            errors=field_errors([error]),
            status=422,
        )
    return redirect("/subscribers", f"Subscriber {sbs1} added.")


@router.post("/subscribers/delete")
def subscriber_delete(posted: PostedForm) -> Response:
    sbs1 = posted.text("SBS1")
    if not posted.flag("confirmed"):
        return render(
            posted.session,
            "confirm.html",
            active="subscribers",
            title=f"Delete subscriber {sbs1}",
            question=(
                f"Delete subscriber {sbs1}? A subscriber can be deleted only "
                "when it has no shops and no unconfirmed record."
            ),
            action="/subscribers/delete",
            hidden={"SBS1": sbs1},
            confirm_label="Delete subscriber",
            cancel_url="/subscribers",
        )
    try:
        shops.delete_subscriber(posted.session.db, sbs1, user=posted.session.user)
    except PosOutboxError as error:
        return redirect("/subscribers", error.message, kind="warning")
    return redirect("/subscribers", f"Subscriber {sbs1} deleted.")


# Shops


@router.get("/shops")
def shop_list(
    session: SignedIn,
    sbs1: str = "",
) -> Response:
    found = shops.list_shops(session.db, sbs1 or None)
    return render(
        session,
        "shops.html",
        active="shops",
        shops=found,
        subscribers=shops.list_subscribers(session.db),
        sbs1=sbs1,
        warned=sum(1 for shop in found if shop.warnings()),
    )


def _shop_page(
    session: Session,
    shop: shops.Shop | None,
    values: dict[str, object],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    return render(
        session,
        "shop.html",
        status=status,
        active="shops",
        shop=shop,
        values=values,
        errors=errors,
        subscribers=shops.list_subscribers(session.db),
        segments=shops.list_segments(session.db),
    )


def _shop_values(shop: shops.Shop) -> dict[str, object]:
    return {
        "WHLO": shop.whlo,
        "SBS1": shop.sbs1,
        "name": shop.name,
        "active": shop.active,
        "pos_interface": shop.pos_interface,
        "customer_interface": shop.customer_interface,
        "segments": list(shop.segments),
    }


@router.get("/shop")
def shop_form(
    session: SignedIn,
    whlo: str = "",
    sbs1: str = "",
) -> Response:
    if whlo:
        shop = shops.get_shop(session.db, whlo)
        return _shop_page(session, shop, _shop_values(shop), {})
    values: dict[str, object] = {
        "WHLO": "",
        "SBS1": sbs1,
        "name": "",
        "active": True,
        "pos_interface": True,
        "customer_interface": True,
        "segments": [],
    }
    return _shop_page(session, None, values, {})


@router.post("/shop/save")
def shop_save(posted: PostedForm) -> Response:
    session = posted.session
    whlo = posted.text("WHLO")
    exists = posted.flag("exists")
    values: dict[str, object] = {
        "WHLO": whlo,
        "SBS1": posted.text("SBS1"),
        "name": posted.text("name"),
        "active": posted.flag("active"),
        "pos_interface": posted.flag("pos_interface"),
        "customer_interface": posted.flag("customer_interface"),
        "segments": posted.texts("segments"),
    }
    segments = posted.texts("segments")
    try:
        if exists:
            shops.change_shop(
                session.db,
                whlo,
                sbs1=posted.text("SBS1") or None,
                name=posted.text("name"),
                active=posted.flag("active"),
                pos_interface=posted.flag("pos_interface"),
                customer_interface=posted.flag("customer_interface"),
                user=session.user,
            )
            shop = shops.set_shop_segments(
                session.db, whlo, segments, user=session.user
            )
        else:
            shop = shops.add_shop(
                session.db,
                whlo,
                posted.text("SBS1"),
                name=posted.text("name"),
                active=posted.flag("active"),
                pos_interface=posted.flag("pos_interface"),
                customer_interface=posted.flag("customer_interface"),
                segments=segments,
                user=session.user,
            )
    except PosOutboxError as error:
        current = shops.get_shop(session.db, whlo) if exists else None
        return _shop_page(session, current, values, field_errors([error]), status=422)

    message = f"Shop {shop.whlo} saved."
    warnings = shop.warnings()
    if warnings:
        return redirect(
            url("/shop", whlo=shop.whlo),
            f"{message} It receives no customers now: {', '.join(warnings)}.",
            kind="warning",
        )
    return redirect(url("/shop", whlo=shop.whlo), message)


@router.post("/shop/delete")
def shop_delete(posted: PostedForm) -> Response:
    whlo = posted.text("WHLO")
    if not posted.flag("confirmed"):
        shop = shops.get_shop(posted.session.db, whlo)
        return render(
            posted.session,
            "confirm.html",
            active="shops",
            title=f"Delete shop {whlo}",
            question=(
                f"Delete shop {whlo} of subscriber {shop.sbs1}? It leaves the "
                "mailing lists of future records; records already created for it "
                "stay in the outbox until its POS confirms them."
            ),
            action="/shop/delete",
            hidden={"WHLO": whlo},
            confirm_label="Delete shop",
            cancel_url=url("/shop", whlo=whlo),
        )
    shops.delete_shop(posted.session.db, whlo, user=posted.session.user)
    return redirect("/shops", f"Shop {whlo} deleted.")


# Segments


@router.get("/segments")
def segment_list(session: SignedIn) -> Response:
    found = shops.list_segments(session.db)
    matches = {
        segment.seid: queries.count_segment_matches(session.db, segment.conditions)
        for segment in found
    }
    return render(
        session,
        "segments.html",
        active="segments",
        segments=found,
        matches=matches,
    )


def _segment_page(
    session: Session,
    segment: shops.Segment | None,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    matches = (
        queries.count_segment_matches(session.db, segment.conditions)
        if segment is not None
        else None
    )
    shop_rows = (
        [shop for shop in shops.list_shops(session.db) if segment.seid in shop.segments]
        if segment is not None
        else []
    )
    return render(
        session,
        "segment.html",
        status=status,
        active="segments",
        segment=segment,
        values=values,
        errors=errors,
        matches=matches,
        shops=shop_rows,
        segment_fields=[
            (name, fields.FIELDS[name].description) for name in rules.SEGMENT_FIELDS
        ],
    )


@router.get("/segment")
def segment_form(
    session: SignedIn,
    seid: str = "",
) -> Response:
    if not seid:
        return _segment_page(
            session, None, {"SEID": "", "description": "", "conditions": ""}, {}
        )
    segment = shops.get_segment(session.db, seid)
    values = {
        "SEID": segment.seid,
        "description": segment.description,
        "conditions": "\n".join(str(condition) for condition in segment.conditions),
    }
    return _segment_page(session, segment, values, {})


@router.post("/segment/save")
def segment_save(posted: PostedForm) -> Response:
    session = posted.session
    seid = posted.text("SEID")
    exists = posted.flag("exists")
    values = {
        "SEID": seid,
        "description": posted.text("description"),
        "conditions": posted.text("conditions"),
    }
    lines = [line.strip() for line in values["conditions"].splitlines()]
    conditions = [line for line in lines if line]
    errors: list[PosOutboxError] = []
    try:
        rules.parse_conditions(conditions)
    except PosOutboxError as error:
        # Field-level errors of a condition's values belong to the conditions box.
        errors.append(_as_condition_error(error))
    if not errors:
        try:
            if exists:
                shops.change_segment(
                    session.db,
                    seid,
                    description=values["description"],
                    conditions=conditions,
                    user=session.user,
                )
            else:
                shops.add_segment(
                    session.db,
                    seid,
                    description=values["description"],
                    conditions=conditions,
                    user=session.user,
                )
        except PosOutboxError as error:
            errors.append(error)
    if errors:
        current = shops.get_segment(session.db, seid) if exists else None
        return _segment_page(session, current, values, field_errors(errors), 422)
    return redirect(url("/segment", seid=seid), f"Segment {seid} saved.")


def _as_condition_error(error: PosOutboxError) -> PosOutboxError:
    copy = PosOutboxError(error.message, field="conditions")
    copy.code = error.code
    return copy


@router.post("/segment/delete")
def segment_delete(posted: PostedForm) -> Response:
    seid = posted.text("SEID")
    if not posted.flag("confirmed"):
        return render(
            posted.session,
            "confirm.html",
            active="segments",
            title=f"Delete segment {seid}",
            question=f"Delete segment {seid}? Only a segment no shop uses can go.",
            action="/segment/delete",
            hidden={"SEID": seid},
            confirm_label="Delete segment",
            cancel_url=url("/segment", seid=seid),
        )
    try:
        shops.delete_segment(posted.session.db, seid, user=posted.session.user)
    except PosOutboxError as error:
        return redirect(url("/segment", seid=seid), error.message, kind="warning")
    return redirect("/segments", f"Segment {seid} deleted.")

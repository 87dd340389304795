"""Console pages of the outbox: backlog per shop with its chart, the records of
a subscriber decoded field by field, and cleanup (OPS690)."""

from __future__ import annotations

import datetime
import logging

from fastapi import APIRouter
from starlette.responses import Response

from posoutbox import fields, layouts, outbox, shops
from posoutbox.db.storage import utcnow
from posoutbox.errors import InvalidValue, PosOutboxError
from posoutbox.web import chart, queries
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

logger = logging.getLogger(__name__)

router = APIRouter(route_class=ConsoleRoute)

#: Chart periods offered, by their query value.
PERIODS: dict[str, tuple[str, datetime.timedelta]] = {
    "1h": ("last hour", datetime.timedelta(hours=1)),
    "24h": ("last 24 hours", datetime.timedelta(hours=24)),
    "7d": ("last 7 days", datetime.timedelta(days=7)),
    "30d": ("last 30 days", datetime.timedelta(days=30)),
}
DEFAULT_PERIOD = "24h"

RECORDS_PAGE = 50

#: Record states a browse can show, by their query value.
STATE_FILTERS: dict[str, tuple[str, ...]] = {
    "unconfirmed": (outbox.NEW, outbox.LISTED),
    "new": (outbox.NEW,),
    "listed": (outbox.LISTED,),
    "confirmed": (outbox.CONFIRMED,),
    "all": outbox.STATES,
}


@router.get("/outbox")
def backlog_page(
    session: SignedIn,
    sbs1: str = "",
    period: str = DEFAULT_PERIOD,
) -> Response:
    if period not in PERIODS:
        period = DEFAULT_PERIOD
    now = utcnow()
    entries = outbox.backlog(session.db, sbs1 or None)
    label, span = PERIODS[period]
    since = now - span
    points = queries.backlog_series(session.db, since=since, sbs1=sbs1)
    series = chart.build_series(points)
    if sbs1:
        subject = f"shops of subscriber {sbs1}"
    else:
        subject = "subscribers (sum over their shops)"
    svg = chart.render_svg(
        series,
        start=since,
        end=now,
        title=f"Unconfirmed records, {label}, per {subject}",
        description=(
            "Line chart of unconfirmed records over time; the table below the "
            "chart gives the latest and the highest value of each line."
        ),
    )
    return render(
        session,
        "outbox.html",
        active="outbox",
        entries=entries,
        now=now,
        sbs1=sbs1,
        period=period,
        period_options=[(key, label) for key, (label, _) in PERIODS.items()],
        subscribers=shops.list_subscribers(session.db),
        svg=svg,
        series=series,
        legend=chart.legend(series),
        sample_seconds=session.console.settings.sample_seconds,
        totals=_totals(entries),
    )


def _totals(entries: list[outbox.Backlog]) -> dict[str, int]:
    return {
        "new": sum(entry.new for entry in entries),
        "listed": sum(entry.listed for entry in entries),
        "confirmed": sum(entry.confirmed for entry in entries),
    }


@router.get("/outbox/records")
def records_page(
    session: SignedIn,
    sbs1: str = "",
    state: str = "unconfirmed",
    cuno: str = "",
    after: int = 0,
) -> Response:
    subscribers = shops.list_subscribers(session.db)
    if not sbs1 and subscribers:
        sbs1 = subscribers[0].sbs1
    if state not in STATE_FILTERS:
        state = "unconfirmed"
    records: list[outbox.OutboxRecord] = []
    if sbs1:
        records = outbox.browse_records(
            session.db,
            sbs1,
            states=STATE_FILTERS[state],
            after_trnr=after,
            limit=RECORDS_PAGE,
            cuno=cuno.strip() or None,
        )
    decoded = [_decode(record) for record in records]
    return render(
        session,
        "records.html",
        active="outbox",
        sbs1=sbs1,
        state=state,
        states=list(STATE_FILTERS),
        cuno=cuno,
        subscribers=subscribers,
        records=list(zip(records, decoded, strict=True)),
        next_url=url(
            "/outbox/records",
            sbs1=sbs1,
            state=state,
            cuno=cuno,
            after=records[-1].trnr,
        )
        if len(records) == RECORDS_PAGE
        else "",
        first_url=url("/outbox/records", sbs1=sbs1, state=state, cuno=cuno)
        if after
        else "",
    )


def _decode(record: outbox.OutboxRecord) -> list[tuple[str, str, str]]:
    """Return (field, description, value) of a record's data in layout order."""
    values = layouts.decode(record.trtp, record.data)
    return [
        (name, fields.FIELDS[name].description, str(value))
        for name, value in values.items()
    ]


# Cleanup


def _parse_before(text: str) -> datetime.date | None:
    text = text.strip()
    if not text:
        return None
    if len(text) == 8 and text.isdigit():
        return fields.parse_date("before", text)
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise InvalidValue("before", text, "a date as YYYY-MM-DD or YYYYMMDD") from None


def _cleanup_page(
    session: Session,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    preview: outbox.CleanupResult | None = None,
    status: int = 200,
) -> Response:
    return render(
        session,
        "cleanup.html",
        status=status,
        active="outbox",
        values=values,
        errors=errors,
        preview=preview,
        subscribers=shops.list_subscribers(session.db),
    )


@router.get("/outbox/cleanup")
def cleanup_form(
    session: SignedIn,
    sbs1: str = "",
) -> Response:
    return _cleanup_page(session, {"SBS1": sbs1, "before": ""}, {})


@router.post("/outbox/cleanup")
def cleanup(posted: PostedForm) -> Response:
    session = posted.session
    values = {"SBS1": posted.text("SBS1"), "before": posted.text("before")}
    sbs1 = values["SBS1"] or None
    try:
        before = _parse_before(values["before"])
        if not posted.flag("confirmed"):
            preview = outbox.cleanup(session.db, sbs1=sbs1, before=before, preview=True)
            return _cleanup_page(session, values, {}, preview=preview)
        result = outbox.cleanup(session.db, sbs1=sbs1, before=before)
    except PosOutboxError as error:
        return _cleanup_page(session, values, field_errors([error]), status=422)

    # cleanup() takes no user, so the console logs who ran it.
    logger.info(
        "cleanup run from the console",
        extra={
            "action": "console_cleanup",
            "user": session.user,
            "sbs1": sbs1,
            "before": str(before or ""),
            "removed": result.total,
        },
    )
    per_subscriber = ", ".join(
        f"{subscriber}: {count}" for subscriber, count in sorted(result.removed.items())
    )
    message = f"Cleanup removed {result.total} confirmed records"
    message += f" ({per_subscriber})." if per_subscriber else "."
    return redirect(url("/outbox/cleanup", sbs1=values["SBS1"]), message)

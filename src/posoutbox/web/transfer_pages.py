"""Console pages of the net transfer (OPS630): start the update or delete
function, follow its progress and read the history of runs."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from posoutbox import fields, shops, transfer
from posoutbox.errors import NotFound, PosOutboxError
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
from posoutbox.web.jobs import STARTING, TransferJob

logger = logging.getLogger(__name__)

router = APIRouter(route_class=ConsoleRoute)

HISTORY_SIZE = 20
#: Jobs of this process listed under "Started here", newest first.
RECENT_JOBS = 5
POLL_SECONDS = 2


def _progress_context(session: Session) -> dict[str, Any]:
    """Return the context of the polled part of the page: running runs, this
    process's recent jobs and the first page of the history."""
    jobs = session.console.jobs
    history = queries.list_runs(session.db, limit=HISTORY_SIZE)
    running = [
        run
        for run in queries.running_runs(session.db)
        if jobs.shown_state(run) == "running"
    ]
    recent: list[TransferJob] = jobs.jobs()[:RECENT_JOBS]
    # A job waiting for its run to begin has no runs row to show yet.
    starting = [job for job in recent if job.state == STARTING]
    return {
        "running": running,
        "recent_jobs": recent,
        "starting": starting,
        "history": history,
        "shown_state": jobs.shown_state,
        "owned": jobs.owns,
        "live_active": bool(running or any(job.active for job in recent)),
        "more_history": len(history) == HISTORY_SIZE,
        "stale_seconds": jobs.stale_seconds,
    }


def _transfer_page(
    session: Session,
    values: dict[str, object],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    return render(
        session,
        "transfer.html",
        status=status,
        active="transfer",
        values=values,
        errors=errors,
        subscribers=shops.list_subscribers(session.db),
        poll_seconds=POLL_SECONDS,
        **_progress_context(session),
    )


@router.get("/transfer")
def transfer_page(
    session: SignedIn,
    sbs1: str = "",
) -> Response:
    values: dict[str, object] = {
        "function": transfer.UPDATE_FUNCTION,
        "SBS1": sbs1,
        "force": False,
        "from": "",
        "to": "",
    }
    return _transfer_page(session, values, {})


@router.get("/transfer/progress")
def progress(session: SignedIn) -> Response:
    return render(
        session,
        "transfer_progress.html",
        fragment=True,
        poll_seconds=POLL_SECONDS,
        **_progress_context(session),
    )


@router.post("/transfer/start")
def start(posted: PostedForm) -> Response:
    session = posted.session
    values: dict[str, object] = {
        "function": posted.text("function"),
        "SBS1": posted.text("SBS1"),
        "force": posted.flag("force"),
        "from": posted.text("from").strip(),
        "to": posted.text("to").strip(),
    }
    errors: list[PosOutboxError] = []
    # The range bounds are both CUNO values, so their errors are renamed to
    # the input they came from.
    for name in ("from", "to"):
        text = str(values[name])
        if text:
            try:
                fields.validate_key("CUNO", text)
            except PosOutboxError as error:
                errors.append(PosOutboxError(error.message, field=name))
    if not errors:
        try:
            job = session.console.jobs.start(
                function=str(values["function"]),
                sbs1=str(values["SBS1"]),
                force=bool(values["force"]),
                from_cuno=str(values["from"]),
                to_cuno=str(values["to"]),
                user=session.user,
            )
        except PosOutboxError as error:
            errors.append(error)
        else:
            name = "delete function" if job.function == "delete" else "net transfer"
            return redirect("/transfer", f"{name.capitalize()} of {job.scope} started.")
    return _transfer_page(session, values, field_errors(errors), status=422)


@router.get("/transfer/history")
def history(
    session: SignedIn,
    before: int | None = None,
    sbs1: str = "",
) -> Response:
    runs = queries.list_runs(
        session.db, before_run_id=before, sbs1=sbs1, limit=HISTORY_SIZE
    )
    return render(
        session,
        "transfer_history.html",
        active="transfer",
        runs=runs,
        sbs1=sbs1,
        shown_state=session.console.jobs.shown_state,
        next_url=url("/transfer/history", before=runs[-1].run_id, sbs1=sbs1)
        if len(runs) == HISTORY_SIZE
        else "",
        subscribers=shops.list_subscribers(session.db),
    )


@router.get("/transfer/run")
def run_page(
    session: SignedIn,
    id: int = 0,
) -> Response:
    return _run_page(session, id, "run.html")


@router.get("/transfer/run/progress")
def run_progress(
    session: SignedIn,
    id: int = 0,
) -> Response:
    return _run_page(session, id, "run_progress.html", fragment=True)


def _run_page(
    session: Session, run_id: int, template: str, *, fragment: bool = False
) -> Response:
    run = queries.get_run(session.db, run_id)
    if run is None:
        raise NotFound("run", "run", run_id)
    jobs = session.console.jobs
    state = jobs.shown_state(run)
    return render(
        session,
        template,
        active="transfer",
        fragment=fragment,
        run=run,
        state=state,
        owned=jobs.owns(run),
        stale_seconds=jobs.stale_seconds,
        poll_seconds=POLL_SECONDS,
        active_run=state == "running",
    )


@router.post("/transfer/stop")
def stop(posted: PostedForm) -> Response:
    run_id = int(posted.text("run_id") or 0)
    run = queries.get_run(posted.session.db, run_id)
    jobs = posted.session.console.jobs
    if run is None or not jobs.request_stop(run):
        return redirect(
            url("/transfer/run", id=run_id),
            f"Run {run_id} is not running in this server process, so it cannot "
            "be stopped from here.",
            kind="warning",
        )
    logger.info(
        "run stop requested",
        extra={
            "action": "console_run_stop",
            "run_id": run_id,
            "user": posted.session.user,
        },
    )
    return redirect(
        url("/transfer/run", id=run_id),
        f"Run {run_id} stops after the batch of customers it is working on.",
    )

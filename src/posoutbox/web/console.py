"""The console's router: its pages, static files, /metrics and the background
work (backlog sampler, net transfer threads) that runs while the server does."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse, Response

from posoutbox import customers, metrics, outbox, shops
from posoutbox.db.storage import utcnow
from posoutbox.errors import NotFound
from posoutbox.web import (
    customer_pages,
    outbox_pages,
    queries,
    setup_pages,
    transfer_pages,
)
from posoutbox.web.base import (
    STATIC,
    Console,
    ConsoleRoute,
    SignedIn,
    render,
    sign_in,
)
from posoutbox.web.jobs import TransferJobs
from posoutbox.web.settings import ConsoleSettings

logger = logging.getLogger(__name__)

# Files under static/ that the console serves, fixed at start so that no path
# from a request ever reaches the file system.
STATIC_FILES = {
    path.name: path for path in STATIC.iterdir() if path.is_file() and path.suffix
}
_MEDIA_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the backlog sampler and the net transfer threads' registry; at
    shutdown, stop runs after their current batch."""
    settings = ConsoleSettings.from_environment()
    db = app.state.db
    jobs = TransferJobs(db, stale_seconds=settings.stale_seconds)
    app.state.console = Console(
        db=db,
        authenticator=app.state.authenticator,
        settings=settings,
        jobs=jobs,
    )
    sampler = asyncio.create_task(
        metrics.run_sampler(
            db,
            settings.sample_seconds,
            retention=datetime.timedelta(days=settings.retention_days),
        )
    )
    logger.info(
        "console started",
        extra={
            "action": "console_start",
            "metrics_public": settings.metrics_public,
            "sample_seconds": settings.sample_seconds,
        },
    )
    try:
        yield
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await asyncio.to_thread(jobs.shutdown)
        logger.info("console stopped", extra={"action": "console_stop"})


router = APIRouter(route_class=ConsoleRoute, lifespan=lifespan)
router.include_router(customer_pages.router)
router.include_router(setup_pages.router)
router.include_router(transfer_pages.router)
router.include_router(outbox_pages.router)


@router.get("/")
def overview(session: SignedIn) -> Response:
    db = session.db
    now = utcnow()
    entries = outbox.backlog(db)
    shop_list = shops.list_shops(db)
    jobs = session.console.jobs
    recent = queries.list_runs(db, limit=5)
    running = [
        run for run in queries.running_runs(db) if jobs.shown_state(run) == "running"
    ]
    ages = [entry.age_seconds(now) for entry in entries]
    return render(
        session,
        "overview.html",
        active="overview",
        customer_count=customers.count_customers(db),
        subscriber_count=len(shops.list_subscribers(db)),
        shop_count=len(shop_list),
        warned_shops=[shop for shop in shop_list if shop.warnings()],
        unconfirmed=sum(entry.unconfirmed for entry in entries),
        oldest_age=max((age for age in ages if age is not None), default=None),
        running=running,
        recent=recent,
        shown_state=jobs.shown_state,
    )


@router.get("/metrics")
def prometheus_metrics(request: Request) -> Response:
    """Serve the metrics in the Prometheus text format; behind the admin
    sign-in unless the server was started with --metrics-public."""
    console: Console = request.app.state.console
    if not console.settings.metrics_public:
        sign_in(request)
    return Response(metrics.render(console.db), media_type=metrics.CONTENT_TYPE)


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    path = STATIC_FILES.get(name)
    if path is None:
        raise NotFound("file", "name", name)
    return FileResponse(
        path,
        media_type=_MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
        headers={"Cache-Control": "max-age=300"},
    )

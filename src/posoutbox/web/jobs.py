"""Net transfers started from the console, run in background threads of the server.

The transfer engine records each run of a subscriber in the runs table, with its
progress and a heartbeat after every batch, so the console's pages read
progress from the database and a closed browser tab does not stop anything.
This module only starts the threads, remembers what they are doing, stops them
between batches on request or at server shutdown, and decides whether a run
recorded as running is still alive.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from posoutbox import metrics, shops, transfer
from posoutbox.db.storage import Database, process_identity, utcnow
from posoutbox.errors import Busy, NotFound, PosOutboxError
from posoutbox.web.queries import Run
from posoutbox.web.settings import DEFAULT_STALE_SECONDS

logger = logging.getLogger(__name__)

#: How long a POST that starts a run waits for it to begin. An error found
#: before the first batch, such as another run of the same subscriber, is
#: then shown on the form instead of on a later page.
START_WAIT_SECONDS = 2.0

#: Ended jobs kept in memory for the "Started from this server" list; the
#: runs table keeps the full history.
KEPT_JOBS = 50

STARTING = "starting"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
STOPPED = "stopped"


class StopRequested(BaseException):
    """Raised in a run's progress callback to end the run after the batch it
    just committed. A BaseException, so that the engine records the run as
    interrupted rather than failed; its remaining changes wait for the next run."""


@dataclass
class TransferJob:
    """A net transfer or delete function started from the console, for one
    subscriber or, one after the other, for all of them."""

    job_id: int
    function: str
    sbs1: str
    force: bool
    from_cuno: str
    to_cuno: str
    user: str
    started_at: datetime.datetime
    state: str = STARTING
    #: The subscriber being processed now.
    current: str = ""
    messages: list[str] = field(default_factory=list)
    result: transfer.TransferResult = field(
        default_factory=lambda: transfer.TransferResult(transfer.UPDATE_FUNCTION)
    )
    stop: threading.Event = field(default_factory=threading.Event)
    #: Set at the first progress report of a run, or when the job ends.
    begun: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    #: The error that ended the job before any run began, for the form.
    early_error: PosOutboxError | None = None

    @property
    def active(self) -> bool:
        return self.state in (STARTING, RUNNING)

    @property
    def scope(self) -> str:
        return self.sbs1 or "all subscribers"


class TransferJobs:
    """The console's background runs in this server process."""

    def __init__(self, db: Database, *, stale_seconds: int = DEFAULT_STALE_SECONDS):
        self.db = db
        self.stale_seconds = stale_seconds
        self._jobs: dict[int, TransferJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False

    def start(
        self,
        *,
        function: str,
        sbs1: str = "",
        force: bool = False,
        from_cuno: str = "",
        to_cuno: str = "",
        user: str,
    ) -> TransferJob:
        """Start a run in a new thread and wait briefly for it to begin.

        Raises the error that ended it before its first batch, such as Busy
        for a subscriber whose run is still going or InvalidValue for the
        function, so the form can show it.
        """
        with self._lock:
            if self._closed:
                raise Busy("the server is shutting down, start the run again later")
            job = TransferJob(
                job_id=next(self._ids),
                function=function,
                sbs1=sbs1,
                force=force,
                from_cuno=from_cuno,
                to_cuno=to_cuno,
                user=user,
                started_at=utcnow(),
            )
            job.thread = threading.Thread(
                target=self._work,
                args=(job,),
                name=f"posoutbox-transfer-{job.job_id}",
                daemon=True,
            )
            self._jobs[job.job_id] = job
            ended = sorted(key for key, old in self._jobs.items() if not old.active)
            for key in ended[: max(0, len(ended) - KEPT_JOBS)]:
                del self._jobs[key]
        job.thread.start()

        job.begun.wait(START_WAIT_SECONDS)
        if job.early_error is not None:
            raise job.early_error
        return job

    def _work(self, job: TransferJob) -> None:
        logger.info(
            "console run started",
            extra={
                "action": "console_run_start",
                "job_id": job.job_id,
                "sbs1": job.sbs1,
                "function": job.function,
                "user": job.user,
            },
        )
        try:
            subscribers = [job.sbs1] if job.sbs1 else self._all_subscribers()
            for subscriber in subscribers:
                if job.stop.is_set():
                    job.state = STOPPED
                    break
                job.current = subscriber
                if not self._run_one(job, subscriber):
                    break
            else:
                job.state = FINISHED
        except Exception as error:
            job.state = FAILED
            job.messages.append(f"failed: {error}")
            logger.exception(
                "console run failed",
                extra={"action": "console_run_error", "job_id": job.job_id},
            )
        finally:
            job.current = ""
            job.begun.set()
        logger.info(
            "console run ended",
            extra={
                "action": "console_run_end",
                "job_id": job.job_id,
                "state": job.state,
                "records": job.result.records,
            },
        )

    def _all_subscribers(self) -> list[str]:
        return [subscriber.sbs1 for subscriber in shops.list_subscribers(self.db)]

    def _run_one(self, job: TransferJob, subscriber: str) -> bool:
        """Run one subscriber; return whether the job goes on to the next."""

        def progress(done: int, total: int) -> None:
            job.state = RUNNING
            job.begun.set()
            if job.stop.is_set():
                raise StopRequested

        try:
            result = transfer.net_transfer(
                self.db,
                sbs1=subscriber,
                function=job.function,
                force=job.force,
                from_cuno=job.from_cuno or None,
                to_cuno=job.to_cuno or None,
                user=job.user,
                wait=False,
                progress=progress,
            )
        except StopRequested:
            job.state = STOPPED
            job.messages.append(f"{subscriber}: stopped after the last full batch")
            logger.info(
                "console run stopped",
                extra={
                    "action": "console_run_stop",
                    "job_id": job.job_id,
                    "sbs1": subscriber,
                },
            )
            return False
        except PosOutboxError as error:
            job.messages.append(f"{subscriber}: {error}")
            logger.warning(
                "console run of subscriber %s not done: %s",
                subscriber,
                error,
                extra={
                    "action": "console_run_error",
                    "job_id": job.job_id,
                    "sbs1": subscriber,
                },
            )
            # With all subscribers, the others still go ahead after a run that
            # is busy or a subscriber deleted meanwhile. Otherwise the form
            # shows the error.
            if not job.sbs1 and isinstance(error, Busy | NotFound):
                return True
            job.early_error = error
            job.state = FAILED
            return False
        job.result.merge(result)
        metrics.count_records_created(result.counts)
        return True

    def jobs(self) -> list[TransferJob]:
        """Return the jobs of this process, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: -job.job_id)

    def _job_running(self, sbs1: str) -> TransferJob | None:
        for job in self.jobs():
            if job.active and job.current == sbs1:
                return job
        return None

    def request_stop(self, run: Run) -> bool:
        """Ask this process's thread running ``run`` to stop after its batch."""
        if not self.owns(run):
            return False
        job = self._job_running(run.sbs1)
        if job is None:
            return False
        job.stop.set()
        logger.info(
            "console run stop requested",
            extra={
                "action": "console_run_stop",
                "job_id": job.job_id,
                "sbs1": run.sbs1,
            },
        )
        return True

    def owns(self, run: Run) -> bool:
        """Tell whether ``run`` was started by this process."""
        pid, host = process_identity()
        return run.pid == pid and run.host == host

    def shown_state(self, run: Run, now: datetime.datetime | None = None) -> str:
        """Return the state to show for a run: a run recorded as running counts
        as interrupted when its process is gone or its heartbeat is stale."""
        if run.state != RUNNING:
            return run.state
        if self.owns(run):
            return RUNNING if self._job_running(run.sbs1) else "interrupted"
        _, host = process_identity()
        if run.host == host and not _process_alive(run.pid):
            return "interrupted"
        now = now or utcnow()
        if (now - run.heartbeat_at).total_seconds() > self.stale_seconds:
            return "interrupted"
        return RUNNING

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every job after its current batch and wait up to ``timeout``."""
        with self._lock:
            self._closed = True
            jobs = [job for job in self._jobs.values() if job.active]
        for job in jobs:
            job.stop.set()
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
        still = [job.job_id for job in jobs if job.thread and job.thread.is_alive()]
        if still:
            logger.warning(
                "console runs still going at shutdown: %s",
                still,
                extra={"action": "console_run_shutdown", "job_ids": still},
            )


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

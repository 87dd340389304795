"""Scenarios over HTTP: ``posoutbox serve`` as a subprocess, httpx as the POS.

The server listens on 127.0.0.1 only, with 2 worker processes, and is stopped
by its process id when the scenario ends.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import functools
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import sqlalchemy as sa

from bench.generate import customer_number
from bench.measure import Latencies
from bench.sizes import MAXRECS
from posoutbox.db import migrate, schema
from posoutbox.db.storage import Database, open_database, utcnow

HOST = "127.0.0.1"
SERVER_WORKERS = 2
PASSWORD = "bench-password-1"
ADMIN = "benchadmin"

#: Seconds to wait for the server's health check to pass.
START_TIMEOUT = 60

EXECUTE = "/m3api-rest/execute"
JSON_HEADERS = {"Accept": "application/json"}

#: Seconds an HTTP call may take before the scenario fails. Generous, because
#: a benchmark measures slow calls instead of failing on them.
CALL_TIMEOUT = 120


def server_available() -> str:
    """Return why the HTTP scenarios cannot run, or "" when they can."""
    try:
        import posoutbox.api.app
        import posoutbox.users  # noqa: F401
    except ImportError as error:
        return f"the API server is not available: {error}"
    return ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(url: str) -> Iterator[str]:
    """Start ``posoutbox serve`` on a free port; yield its base URL."""
    port = _free_port()
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in finally
        prefix="posoutbox-bench-serve-", suffix=".log", delete=False
    )
    command = [
        sys.executable,
        "-m",
        "posoutbox",
        "--database-url",
        url,
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(SERVER_WORKERS),
    ]
    _forget_samples(url)
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://{HOST}:{port}"
    started = utcnow().replace(microsecond=0)
    try:
        _wait_healthy(server, base, log.name)
        _wait_first_sample(url, started)
        yield base
    finally:
        # The server runs in a session of its own: signal its process group so
        # the uvicorn worker processes stop with it.
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()
        os.unlink(log.name)


def _wait_healthy(server: subprocess.Popen[bytes], base: str, log_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as log:
                output = log.read()[-2000:]
            raise RuntimeError(
                f"posoutbox serve exited with {server.returncode}: {output}"
            )
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"posoutbox serve did not pass /health within {START_TIMEOUT} s")


def _forget_samples(url: str) -> None:
    """Remove the backlog samples, so that the next server samples on start:
    a server skips the sample when another one sampled shortly before."""
    db = open_database(url)
    try:
        with db.transaction() as conn:
            conn.execute(sa.delete(schema.backlog_samples))
    finally:
        db.close()


def _wait_first_sample(url: str, started: datetime.datetime) -> None:
    """Wait until the server took the backlog sample it takes on start.

    With millions of unconfirmed records the sample takes seconds of the
    database's time, which would otherwise land on the first measured calls.
    """
    db = open_database(url)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with db.reading() as conn:
                latest = conn.execute(
                    sa.select(sa.func.max(schema.backlog_samples.c.sampled_at))
                ).scalar_one()
            if latest is not None and latest >= started:
                return
            time.sleep(0.2)
    finally:
        db.close()
    raise RuntimeError(
        f"timed out: posoutbox serve took no backlog sample within {START_TIMEOUT} s"
    )


def add_users(db: Database, subscribers: list[str]) -> None:
    """Add the administrator and one user per subscriber, named after it.

    The schema is brought to the newest migration first, because the server
    refuses a database behind the code it runs.
    """
    from posoutbox import users

    migrate.upgrade(db)

    existing = {user.name for user in users.list_users(db)}
    if ADMIN not in existing:
        users.add_user(db, ADMIN, PASSWORD, admin=True)
    for sbs1 in subscribers:
        name = _user_name(sbs1)
        if name not in existing:
            users.add_user(db, name, PASSWORD, sbs1=sbs1)


def _user_name(sbs1: str) -> str:
    return f"pos{sbs1.lower()}"


def _check(response: httpx.Response) -> dict[str, Any]:
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    if "@type" in body:
        raise RuntimeError(f"{response.url} failed: {body.get('Message')}")
    return body


def drain_one(
    base: str, sbs1: str, record_limit: int, start_at: float
) -> dict[str, Any]:
    """Poll one subscriber like a POS: LstCus 1000, CnfCus up to the last TRNR.

    Returns the records drained, the seconds taken and the page latencies.
    """
    pages = Latencies()
    drained = 0
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    with httpx.Client(
        base_url=base,
        auth=(_user_name(sbs1), PASSWORD),
        headers=JSON_HEADERS,
        timeout=CALL_TIMEOUT,
    ) as client:
        started = time.perf_counter()
        while drained < record_limit:
            page: list[dict[str, Any]] = []

            def list_and_confirm(page: list[dict[str, Any]] = page) -> None:
                listing = _check(
                    client.get(
                        f"{EXECUTE}/OPS600MI/LstCus;maxrecs={MAXRECS}",
                        params={"SBS1": sbs1},
                    )
                )
                page.extend(listing.get("MIRecord", []))
                if page:
                    last = _trnr(page[-1])
                    _check(
                        client.get(
                            f"{EXECUTE}/OPS600MI/CnfCus",
                            params={"SBS1": sbs1, "TRNR": last},
                        )
                    )

            pages.time(list_and_confirm)
            if not page:
                break
            drained += len(page)
        seconds = time.perf_counter() - started
    return {"records": drained, "seconds": seconds, "pages": pages.samples}


def _call(
    client: httpx.Client, transaction: str, params: dict[str, str]
) -> dict[str, Any]:
    return _check(client.get(f"{EXECUTE}/{transaction}", params=params))


def _trnr(record: dict[str, Any]) -> str:
    for pair in record["NameValue"]:
        if pair["Name"] == "TRNR":
            return str(pair["Value"])
    raise RuntimeError("LstCus returned a record without TRNR")


def drain(db: Database, params: dict[str, Any]) -> dict[str, Any]:
    """Drain subscribers over HTTP, each in a process of its own, all at once."""
    subscribers: list[str] = params["subscribers"]
    add_users(db, subscribers)
    with running_server(params["url"]) as base:
        start_at = time.time() + 1.0
        # Forked pollers start fast. The pool's connections are closed first,
        # so that no child can close a socket that this process still uses.
        db.engine.dispose()
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=len(subscribers), mp_context=context
        ) as pool:
            futures = [
                pool.submit(drain_one, base, sbs1, params["records"], start_at)
                for sbs1 in subscribers
            ]
            outcomes = [future.result() for future in futures]

    total = sum(outcome["records"] for outcome in outcomes)
    # The pollers started together; the slowest one ends the measurement.
    seconds = max(outcome["seconds"] for outcome in outcomes)
    pages = Latencies([sample for outcome in outcomes for sample in outcome["pages"]])
    result: dict[str, Any] = {
        "subscribers": len(subscribers),
        "records": total,
        "seconds": round(seconds, 3),
        "records_per_second": round(total / seconds) if seconds else 0,
    }
    result.update({f"page_{key}": value for key, value in pages.summary().items()})
    return result


def latency(db: Database, params: dict[str, Any]) -> dict[str, Any]:
    """Time CrtCstRepl and ChgBasicData over HTTP, one call at a time."""
    add_users(db, [])
    rng = random.Random(params["seed"] + 1)
    exports = Latencies()
    changes = Latencies()
    with (
        running_server(params["url"]) as base,
        httpx.Client(
            base_url=base,
            auth=(ADMIN, PASSWORD),
            headers=JSON_HEADERS,
            timeout=CALL_TIMEOUT,
        ) as client,
    ):
        for _ in range(params["calls"]):
            cuno = customer_number(rng.randrange(params["customers"]))
            exports.time(
                functools.partial(_call, client, "OPS600MI/CrtCstRepl", {"CUNO": cuno})
            )
        for number in range(params["calls"]):
            cuno = customer_number(rng.randrange(params["customers"]))
            phone = f"+46 31 {number:08d}"
            changes.time(
                functools.partial(
                    _call,
                    client,
                    "CRS610MI/ChgBasicData",
                    {"CUNO": cuno, "PHNO": phone},
                )
            )
    result: dict[str, Any] = {}
    result.update({f"export_{key}": value for key, value in exports.summary().items()})
    result.update({f"change_{key}": value for key, value in changes.summary().items()})
    return result


SCENARIOS = {"http_drain": drain, "http_latency": latency}

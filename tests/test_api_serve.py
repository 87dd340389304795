"""``posoutbox serve`` as a subprocess with two workers, and the health check."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api_server import (
    ADMIN,
    CHEAP_HASHER,
    PASSWORD,
    POS1,
    add_customers,
    prepare_database,
    serve,
)
from posoutbox import users
from posoutbox.api.app import create_app_from_environment
from posoutbox.api.settings import DATABASE_URL_VARIABLE
from posoutbox.cli.server import TcpConfig

# Bounds on waiting for the server to start and stop; neither is a measurement.
STARTUP_LIMIT_SECONDS = 120.0
STOP_LIMIT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_command(database_url: str, port: int, *options: str) -> list[str]:
    """Return the command line of ``posoutbox serve`` on ``port``."""
    return [
        sys.executable,
        "-m",
        "posoutbox",
        "--database-url",
        database_url,
        "serve",
        "--port",
        str(port),
        *options,
    ]


def wait_until_healthy(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited during start-up"
        try:
            if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become healthy")


@pytest.mark.slow
def test_serve_with_two_workers(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(users, "PASSWORD_HASHER", CHEAP_HASHER)
    db = prepare_database(sqlite_url)
    add_customers(db, 5)
    db.close()
    port = free_port()
    log_path = tmp_path / "serve.log"
    command = serve_command(sqlite_url, port, "--workers", "2", "--max-records", "3")
    base_url = f"http://127.0.0.1:{port}"

    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
        try:
            wait_until_healthy(base_url, process)
            pages = []
            for _ in range(4):
                # A new connection per call, so that both workers get calls.
                response = httpx.get(
                    f"{base_url}/m3api-rest/execute/OPS600MI/LstCus;maxrecs=0",
                    params={"SBS1": "S1"},
                    headers={"Accept": "application/json"},
                    auth=(POS1, PASSWORD),
                    timeout=60,
                )
                pages.append(len(response.json()["MIRecord"]))
            refused = httpx.get(
                f"{base_url}/m3api-rest/metadata", auth=(ADMIN, "bad"), timeout=60
            )
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=STOP_LIMIT_SECONDS)

    output = log_path.read_text()
    assert pages == [3, 3, 3, 3]
    assert refused.status_code == 401
    worker_pids = set(re.findall(r"Started server process \[(\d+)\]", output))
    assert len(worker_pids) == 2, output
    assert output.count("method=GET") >= 5
    assert "path=/m3api-rest/execute/OPS600MI/LstCus;maxrecs=0" in output
    assert PASSWORD not in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_paused_worker_is_not_replaced(sqlite_url: str, tmp_path: Path) -> None:
    """A worker that cannot respond to the supervisor's health check for 8 s,
    as under heavy load, keeps running: uvicorn's default kills it after 5 s."""
    db = prepare_database(sqlite_url)
    db.close()
    port = free_port()
    log_path = tmp_path / "serve.log"
    command = serve_command(sqlite_url, port, "--workers", "2")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", process)
            output = log_path.read_text()
            worker = int(re.findall(r"Started server process \[(\d+)\]", output)[-1])
            os.kill(worker, signal.SIGSTOP)
            try:
                time.sleep(8)
            finally:
                os.kill(worker, signal.SIGCONT)
            time.sleep(1)
            os.kill(worker, 0)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=STOP_LIMIT_SECONDS)

    output = log_path.read_text()
    assert f"Child process [{worker}] died" not in output
    assert len(re.findall(r"Started server process", output)) == 2, output


def test_serve_requires_current_schema(sqlite_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "posoutbox", "--database-url", sqlite_url, "serve"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "posoutbox db upgrade" in result.stderr


def test_health_reports_database_state(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(database_url) as base_url:
        missing_schema = httpx.get(f"{base_url}/health", timeout=60)
    monkeypatch.setattr(users, "PASSWORD_HASHER", CHEAP_HASHER)
    prepare_database(database_url).close()
    with serve(database_url) as base_url:
        healthy = httpx.get(f"{base_url}/health", timeout=60)

    assert missing_schema.status_code == 503
    assert missing_schema.json()["status"] == "unavailable"
    assert "db upgrade" in missing_schema.json()["reason"]
    assert healthy.status_code == 200
    assert healthy.json() == {"status": "ok"}


def test_health_with_unreachable_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no such directory' / 'posoutbox.db'}"
    with serve(url) as base_url:
        unreachable = httpx.get(f"{base_url}/health", timeout=60)
        call = httpx.get(
            f"{base_url}/m3api-rest/metadata",
            auth=(ADMIN, PASSWORD),
            headers={"Accept": "application/json"},
            timeout=60,
        )

    assert unreachable.status_code == 503
    assert "unreachable" in unreachable.json()["reason"]
    assert call.status_code == 503
    assert call.json()["@code"] == "WSTORAGE"


def test_shared_socket_of_several_workers_disables_nagle() -> None:
    config = TcpConfig("posoutbox.api.app:app", host="127.0.0.1", port=0, workers=2)
    listening = config.bind_socket()
    listening.listen()
    accepted: list[int] = []

    async def accept_one() -> None:
        def remember(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            connection = writer.get_extra_info("socket")
            accepted.append(
                connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            )
            writer.close()

        server = await asyncio.start_server(remember, sock=listening)
        async with server:
            reader, writer = await asyncio.open_connection(*listening.getsockname()[:2])
            await reader.read()
            writer.close()

    asyncio.run(accept_one())
    assert listening.proto == socket.IPPROTO_TCP
    assert accepted and accepted[0] != 0


def test_worker_factory_freezes_startup_objects(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_URL_VARIABLE, sqlite_url)
    gc.unfreeze()
    try:
        app = create_app_from_environment()
        frozen = gc.get_freeze_count()
        app.state.db.close()
    finally:
        gc.unfreeze()

    assert frozen > 0

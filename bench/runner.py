"""Running the scenarios in order, each in a process of its own, on a database
the run creates and drops."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import baseline, http, machine, report, scenarios
from bench.generate import POOL_SIZE
from bench.sizes import FEW_SHOPS, POLLERS, Size
from posoutbox.db import migrate
from posoutbox.db.storage import normalise_url, open_database, redact_url

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE_NAME = "posoutbox_bench"

Scenario = Callable[[Any, dict[str, Any]], dict[str, Any]]

SCENARIOS: dict[str, Scenario] = {
    **scenarios.SCENARIOS,
    **baseline.SCENARIOS,
    **http.SCENARIOS,
}


@dataclass
class Step:
    """One scenario call: the key its result is stored under, and its input."""

    key: str
    scenario: str
    params: dict[str, Any] = field(default_factory=dict)
    http: bool = False


def plan(size: Size, seed: int, url: str) -> list[Step]:
    """Return the steps of a run in order: loads and initial loads, the
    database's own figures, latency, cleanup, and the HTTP drains last."""
    first, second = size.customers_first, size.customers_second
    pollers = [f"P{number:02d}" for number in range(1, POLLERS + 1)]
    # Smaller pools for small runs: building them costs seconds, not the test.
    pool_size = min(POOL_SIZE, max(50, second // 10))
    generated = {"seed": seed, "pool_size": pool_size}
    return [
        Step("load_first", "load", {**generated, "start": 0, "stop": first}),
        Step("a_first", "initial_load", {"sbs1": "A1", "shops": FEW_SHOPS}),
        Step("load_second", "load", {**generated, "start": first, "stop": second}),
        Step("a_second", "initial_load", {"sbs1": "A2", "shops": FEW_SHOPS}),
        Step("b_second", "initial_load", {"sbs1": "B", "shops": size.many_shops}),
        Step("vacuum", "vacuum"),
        Step("f_insert", "baseline_insert", {"sbs1": "A2"}),
        Step("f_drain", "baseline_drain", {"sbs1": "A2", "records": size.drain_one}),
        Step("f_drop", "baseline_drop"),
        Step(
            "c_service_one",
            "drain_service",
            {"sbs1": "A2", "records": size.drain_one},
        ),
        Step(
            "d_service",
            "latency",
            {"seed": seed, "customers": second, "calls": size.latency_calls},
        ),
        Step(
            "d_http",
            "http_latency",
            {
                "seed": seed,
                "customers": second,
                "calls": size.latency_calls,
                "url": url,
            },
            http=True,
        ),
        Step(
            "e_cleanup",
            "cleanup",
            {"records": size.cleanup_records, "poll_sbs1": "A1"},
        ),
        # Cleanup leaves millions of dead rows, which autovacuum would be
        # removing during the drains.
        Step("vacuum_after_cleanup", "vacuum"),
        Step(
            "c_prepare",
            "prepare_pollers",
            {"subscribers": pollers, "source_sbs1": "A2", "records": size.drain_each},
        ),
        Step(
            "c_http_one",
            "http_drain",
            {"subscribers": ["A2"], "records": size.drain_one, "url": url},
            http=True,
        ),
        Step(
            "c_http_ten",
            "http_drain",
            {"subscribers": pollers, "records": size.drain_each, "url": url},
            http=True,
        ),
    ]


def run_worker(
    url: str, scenario: str, params: dict[str, Any], profile: Path | None = None
) -> dict[str, Any]:
    """Run one scenario in this process; called by ``python -m bench worker``.

    With ``profile``, pyinstrument (the bench extra) samples the scenario and
    writes its call tree there. Sampling slows the scenario, so a profiled
    run's figures are not comparable with an unprofiled one's.
    """
    db = open_database(url)
    try:
        if profile is None:
            return SCENARIOS[scenario](db, params)
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
        try:
            return SCENARIOS[scenario](db, params)
        finally:
            profiler.stop()
            profile.write_text(profiler.output_text(unicode=False, color=False))
    finally:
        db.close()


def _run_step(url: str, step: Step, profile_directory: Path | None) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench",
        "worker",
        "--url",
        url,
        "--scenario",
        step.scenario,
        "--params",
        json.dumps(step.params),
    ]
    if profile_directory is not None:
        command.extend(["--profile", str(profile_directory / f"{step.key}.txt")])
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"scenario {step.key} failed with exit code {completed.returncode}:\n"
            f"{completed.stderr[-4000:]}"
        )
    lines = completed.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class BenchDatabase:
    """A database made for one run: a PostgreSQL database or a SQLite file."""

    def __init__(self, dialect: str, server_url: str, name: str) -> None:
        self.dialect = dialect
        self.server_url = server_url
        self.name = name
        self.directory: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""

    def create(self) -> str:
        if self.dialect == "sqlite":
            self.directory = tempfile.TemporaryDirectory(prefix="posoutbox-bench-")
            self.url = f"sqlite:///{self.directory.name}/bench.db"
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}"')
            self._admin(f'CREATE DATABASE "{self.name}"')
            base = sa.engine.make_url(normalise_url(self.server_url))
            self.url = base.set(database=self.name).render_as_string(
                hide_password=False
            )
        db = open_database(self.url)
        try:
            migrate.upgrade(db)
        finally:
            db.close()
        return self.url

    def drop(self) -> None:
        if self.dialect == "sqlite":
            if self.directory is not None:
                self.directory.cleanup()
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}"')

    def _admin(self, statement: str) -> None:
        engine = sa.create_engine(
            normalise_url(self.server_url), isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(statement))
        finally:
            engine.dispose()


def run(
    *,
    size: Size,
    dialect: str,
    server_url: str,
    database_name: str,
    seed: int,
    keep: bool,
    command_line: str,
    progress: Callable[[str], None],
    profile_directory: Path | None = None,
) -> dict[str, Any]:
    """Run every scenario and return the full results."""
    database = BenchDatabase(dialect, server_url, database_name)
    url = database.create()
    progress(f"database {redact_url(url)} created")
    started = datetime.datetime.now(datetime.UTC)
    db = open_database(url)
    try:
        environment = machine.describe(db)
    finally:
        db.close()
    load_before = machine.load_average()

    http_problem = http.server_available()
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    try:
        for step in plan(size, seed, url):
            if step.http and http_problem:
                skipped[step.key] = http_problem
                progress(f"{step.key}: skipped, {http_problem}")
                continue
            progress(f"{step.key}: {step.scenario} ...")
            try:
                results[step.key] = _run_step(url, step, profile_directory)
            except RuntimeError as error:
                # The other scenarios still run, and the failure is reported
                # with the results: a full run takes too long to lose to one.
                failed[step.key] = str(error)
                progress(f"{step.key}: failed, {error}")
                continue
            progress(f"{step.key}: {json.dumps(results[step.key])}")
    finally:
        if not keep:
            database.drop()
            progress("database dropped")

    finished = datetime.datetime.now(datetime.UTC)
    return {
        "command": command_line,
        "size": size.as_dict(),
        "seed": seed,
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round((finished - started).total_seconds(), 1),
        "load_average_before": load_before,
        "load_average_after": machine.load_average(),
        "cpu_count": os.cpu_count(),
        **environment,
        "results": results,
        "skipped": skipped,
        "failed": failed,
        "targets": report.evaluate(dialect, results),
    }

"""The machine and software versions a benchmark ran on, for its report."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from posoutbox.db.storage import Database


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} with uncommitted changes" if dirty else commit


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def describe(db: Database) -> dict[str, Any]:
    """Return the machine, the versions and the database server's settings."""
    database: dict[str, Any] = {"dialect": db.dialect}
    with db.reading() as conn:
        if db.dialect == "postgresql":
            for setting in (
                "server_version",
                "shared_buffers",
                "synchronous_commit",
                "max_wal_size",
                "work_mem",
            ):
                database[setting] = conn.execute(sa.text(f"SHOW {setting}")).scalar()
        else:
            database["journal_mode"] = conn.execute(
                sa.text("PRAGMA journal_mode")
            ).scalar()
            database["synchronous"] = conn.execute(
                sa.text("PRAGMA synchronous")
            ).scalar()
    return {
        "machine": {
            "nproc": os.cpu_count(),
            "memory_bytes": _memory_bytes(),
            "cpu_model": _cpu_model(),
            "kernel": platform.release(),
        },
        "versions": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "sqlalchemy": metadata.version("sqlalchemy"),
            "psycopg": metadata.version("psycopg"),
            "posoutbox": _git_commit(),
        },
        "database": database,
    }

"""Tests of the demo: the real command as a subprocess, and run_demo in-process."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from posoutbox.demo import EXIT_USAGE, run_demo

CHECKED = "checked: every shop holds exactly its target"


@pytest.mark.slow
def test_demo_command_passes_its_check(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"

    completed = subprocess.run(
        [sys.executable, "-m", "posoutbox", "demo", "--database", str(database)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    output = completed.stdout
    assert completed.returncode == 0, completed.stderr + output
    assert "SUPRD" in output
    assert "(071) 23 67 22 20" in output
    assert "(071) 23 67 22 21" in output
    assert "PHNO" in output
    assert "TFNO" in output
    assert CHECKED in output
    assert "differences found" not in output
    assert database.exists()


def test_run_demo_without_path_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    code = run_demo(None)

    output = capsys.readouterr().out
    assert code == 0
    assert CHECKED in output
    assert "SUPRD" in output
    assert list(tmp_path.iterdir()) == []


def test_run_demo_rejects_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "existing.db"
    database.write_bytes(b"not to be touched")

    code = run_demo(database)

    assert code == EXIT_USAGE
    assert database.read_bytes() == b"not to be touched"
    error = capsys.readouterr().err
    assert "existing.db" in error
    assert "a path where no file exists yet" in error

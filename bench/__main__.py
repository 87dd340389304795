"""Command line of the benchmarks: ``python -m bench run``.

``run`` prints progress to stderr, the table to stdout and, with ``--json``,
writes the full results. ``worker`` runs a single scenario and is what ``run``
starts once per scenario.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from bench import report, runner
from bench.sizes import SIZES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="Run every scenario and print the table.")
    run.add_argument("--size", choices=sorted(SIZES), default="small")
    run.add_argument(
        "--database", choices=("postgresql", "sqlite"), default="postgresql"
    )
    run.add_argument(
        "--server-url",
        default=runner.DEFAULT_SERVER_URL,
        help="PostgreSQL server to create the benchmark database on "
        "(default: %(default)s).",
    )
    run.add_argument(
        "--database-name",
        default=runner.DEFAULT_DATABASE_NAME,
        help="Name of the PostgreSQL database the run creates and drops; an "
        "existing one of that name is dropped first (default: %(default)s).",
    )
    run.add_argument("--seed", type=int, default=1, help="Seed of the generator.")
    run.add_argument("--json", type=Path, help="Write the full results to this file.")
    run.add_argument(
        "--keep", action="store_true", help="Keep the database after the run."
    )
    run.add_argument(
        "--profile",
        type=Path,
        metavar="DIRECTORY",
        help="Profile each scenario with pyinstrument into DIRECTORY/KEY.txt; "
        "profiling slows the scenarios down.",
    )

    worker = commands.add_parser("worker", help="Run one scenario (used by run).")
    worker.add_argument("--url", required=True)
    worker.add_argument("--scenario", required=True, choices=sorted(runner.SCENARIOS))
    worker.add_argument("--params", default="{}", help="Scenario input as JSON.")
    worker.add_argument("--profile", type=Path, help="Write a pyinstrument profile.")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s"
    )

    if arguments.command == "worker":
        result = runner.run_worker(
            arguments.url,
            arguments.scenario,
            json.loads(arguments.params),
            arguments.profile,
        )
        print(json.dumps(result))
        return 0

    if arguments.profile is not None:
        arguments.profile.mkdir(parents=True, exist_ok=True)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    command_line = "python -m bench " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    results = runner.run(
        size=SIZES[arguments.size],
        dialect=arguments.database,
        server_url=arguments.server_url,
        database_name=arguments.database_name,
        seed=arguments.seed,
        keep=arguments.keep,
        command_line=command_line,
        progress=progress,
        profile_directory=arguments.profile,
    )
    print(report.table(results))
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n")
    for key, error in results["failed"].items():
        print(f"scenario {key} failed: {error}", file=sys.stderr)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

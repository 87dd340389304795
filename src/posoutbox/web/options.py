"""The console's options of ``posoutbox serve``, one line each in that command.

Each option's callback writes its environment variable, which the worker
processes read with `ConsoleSettings.from_environment`; the variable also sets
the option when it is not given.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from posoutbox.web.settings import (
    DEFAULT_SAMPLE_SECONDS,
    METRICS_PUBLIC_VARIABLE,
    SAMPLE_SECONDS_VARIABLE,
)


def _export_metrics_public(value: bool) -> bool:
    os.environ[METRICS_PUBLIC_VARIABLE] = "1" if value else "0"
    return value


def _export_sample_seconds(value: float) -> float:
    os.environ[SAMPLE_SECONDS_VARIABLE] = repr(value)
    return value


MetricsPublicOption = Annotated[
    bool,
    typer.Option(
        "--metrics-public",
        envvar=METRICS_PUBLIC_VARIABLE,
        help="Serve /metrics without signing in, for a Prometheus server; "
        "without it, /metrics needs an administrator's credentials.",
        callback=_export_metrics_public,
    ),
]

SampleSecondsOption = Annotated[
    float,
    typer.Option(
        "--backlog-sample-seconds",
        envvar=SAMPLE_SECONDS_VARIABLE,
        min=1.0,
        metavar="SECONDS",
        help="Seconds between two samples of the backlog for the console's chart.",
        callback=_export_sample_seconds,
    ),
]

__all__ = ["DEFAULT_SAMPLE_SECONDS", "MetricsPublicOption", "SampleSecondsOption"]

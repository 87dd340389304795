"""The console's settings and the environment variables that carry them.

``posoutbox serve`` starts its worker processes from an import string, so it
passes settings through the environment. This module imports nothing heavy,
so that the command line can read the defaults without loading the web stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from posoutbox.errors import InvalidValue

METRICS_PUBLIC_VARIABLE = "POSOUTBOX_METRICS_PUBLIC"
SAMPLE_SECONDS_VARIABLE = "POSOUTBOX_BACKLOG_SAMPLE_SECONDS"
STALE_SECONDS_VARIABLE = "POSOUTBOX_STALE_RUN_SECONDS"
RETENTION_DAYS_VARIABLE = "POSOUTBOX_BACKLOG_RETENTION_DAYS"

DEFAULT_SAMPLE_SECONDS = 60.0
DEFAULT_RETENTION_DAYS = 30
#: A run writes its heartbeat after every batch of customers, which takes
#: seconds; five minutes without one means its process is gone.
DEFAULT_STALE_SECONDS = 300


@dataclass(frozen=True)
class ConsoleSettings:
    """The console's settings in one server process."""

    #: Serve /metrics without signing in, for a Prometheus server.
    metrics_public: bool = False
    #: Seconds between two backlog samples for the chart.
    sample_seconds: float = DEFAULT_SAMPLE_SECONDS
    #: A running run whose heartbeat is older than this is shown as interrupted.
    stale_seconds: int = DEFAULT_STALE_SECONDS
    #: Days that backlog samples are kept.
    retention_days: int = DEFAULT_RETENTION_DAYS

    @classmethod
    def from_environment(cls) -> ConsoleSettings:
        """Read the settings; raise InvalidValue for a variable that is set but
        is not a positive number."""
        public = os.environ.get(METRICS_PUBLIC_VARIABLE, "").strip().lower()
        return cls(
            metrics_public=public in ("1", "true", "yes", "on"),
            sample_seconds=_positive(SAMPLE_SECONDS_VARIABLE, DEFAULT_SAMPLE_SECONDS),
            stale_seconds=int(_positive(STALE_SECONDS_VARIABLE, DEFAULT_STALE_SECONDS)),
            retention_days=int(
                _positive(RETENTION_DAYS_VARIABLE, DEFAULT_RETENTION_DAYS)
            ),
        )


def _positive(variable: str, default: float) -> float:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise InvalidValue(variable, text, "a positive number")
    return value

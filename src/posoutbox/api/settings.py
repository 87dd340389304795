"""The settings of one API server, and the environment variables that pass them
to the worker processes that ``posoutbox serve`` starts.

This module imports nothing heavy, so that the command line can read the
defaults without loading the web framework.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from posoutbox.errors import InvalidValue

#: Default server-wide ceiling on the records one list call returns.
DEFAULT_MAX_RECORDS = 10_000
DEFAULT_COMPANY = 1

DATABASE_URL_VARIABLE = "POSOUTBOX_DATABASE_URL"
MAX_RECORDS_VARIABLE = "POSOUTBOX_MAX_RECORDS"
COMPANY_VARIABLE = "POSOUTBOX_COMPANY"


@dataclass(frozen=True)
class Settings:
    """A database, the ceiling on records per list call, and the company."""

    database_url: str
    max_records: int = DEFAULT_MAX_RECORDS
    company: int = DEFAULT_COMPANY

    def __post_init__(self) -> None:
        if self.max_records < 1:
            raise InvalidValue("max_records", self.max_records, "a number from 1 on")
        if not 1 <= self.company <= 999:
            raise InvalidValue("company", self.company, "a company from 1 to 999")

    def to_environment(self) -> dict[str, str]:
        """Return the environment variables that `from_environment` reads."""
        return {
            DATABASE_URL_VARIABLE: self.database_url,
            MAX_RECORDS_VARIABLE: str(self.max_records),
            COMPANY_VARIABLE: str(self.company),
        }

    @classmethod
    def from_environment(cls) -> Settings:
        """Read the settings from the environment; raise InvalidValue for a
        missing database URL or a value that is not a number."""
        url = os.environ.get(DATABASE_URL_VARIABLE, "")
        if not url:
            raise InvalidValue(DATABASE_URL_VARIABLE, url, "a database URL")
        return cls(
            url,
            max_records=_number(MAX_RECORDS_VARIABLE, DEFAULT_MAX_RECORDS),
            company=_number(COMPANY_VARIABLE, DEFAULT_COMPANY),
        )


def _number(variable: str, default: int) -> int:
    text = os.environ.get(variable, "")
    if not text:
        return default
    if not text.isascii() or not text.isdigit():
        raise InvalidValue(variable, text, "a whole number")
    return int(text)

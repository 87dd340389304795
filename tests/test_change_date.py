"""LMDT: the change date of a customer, in UTC unless a time zone is configured."""

from __future__ import annotations

import datetime

import pytest

from posoutbox import customers
from posoutbox.errors import InvalidValue

LATE_EVENING_UTC = datetime.datetime(2026, 12, 4, 23, 30)


def test_change_date_defaults_to_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(customers.TIMEZONE_VARIABLE, raising=False)
    assert customers.change_date(LATE_EVENING_UTC) == 20261204


def test_change_date_follows_configured_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(customers.TIMEZONE_VARIABLE, "Europe/Berlin")
    assert customers.change_date(LATE_EVENING_UTC) == 20261205


def test_change_date_rejects_unknown_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(customers.TIMEZONE_VARIABLE, "Mars/Olympus")
    with pytest.raises(InvalidValue, match="POSOUTBOX_TIMEZONE"):
        customers.change_date(LATE_EVENING_UTC)

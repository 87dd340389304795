"""LstCus and CnfCus record the user who listed and confirmed each record."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from api_server import POS1, RunningServer, add_customers, running_api
from posoutbox.db import schema


@pytest.fixture
def api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    with running_api(database_url, monkeypatch) as server:
        yield server


def _states_by_user(api: RunningServer) -> list[tuple[str, str, str]]:
    records = schema.records
    with api.db.reading() as conn:
        rows = conn.execute(
            sa.select(records.c.state, records.c.listed_by, records.c.confirmed_by)
            .where(records.c.sbs1 == "S1")
            .distinct()
        ).all()
    return sorted((row.state, row.listed_by, row.confirmed_by) for row in rows)


def test_list_and_confirm_record_user(api: RunningServer) -> None:
    add_customers(api.db, 3)
    path = "/m3api-rest/execute/OPS600MI"

    with api.client(POS1) as client:
        listed = client.get(f"{path}/LstCus", params={"SBS1": "S1"})
        assert listed.status_code == 200
        assert _states_by_user(api) == [("listed", POS1, "")]

        confirmed = client.get(f"{path}/CnfCus", params={"SBS1": "S1"})
        assert confirmed.status_code == 200
    assert _states_by_user(api) == [("confirmed", POS1, POS1)]

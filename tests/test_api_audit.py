"""LstCus and CnfCus record the user who listed and who confirmed records."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from api_server import POS1, RunningServer, add_customers, running_api
from outbox_states import record_states
from posoutbox.db import schema


@pytest.fixture
def api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    with running_api(database_url, monkeypatch) as server:
        yield server


def _moves(api: RunningServer) -> list[tuple[str, str]]:
    moves = schema.outbox_moves
    with api.db.reading() as conn:
        rows = conn.execute(
            sa.select(moves.c.kind, moves.c.moved_by)
            .where(moves.c.sbs1 == "S1")
            .order_by(moves.c.move_id)
        ).all()
    return [(row.kind, row.moved_by) for row in rows]


def test_list_and_confirm_record_user(api: RunningServer) -> None:
    add_customers(api.db, 3)
    path = "/m3api-rest/execute/OPS600MI"

    with api.client(POS1) as client:
        listed = client.get(f"{path}/LstCus", params={"SBS1": "S1"})
        assert listed.status_code == 200
        assert _moves(api) == [("listed", POS1)]
        assert set(record_states(api.db, "S1").values()) == {"listed"}

        confirmed = client.get(f"{path}/CnfCus", params={"SBS1": "S1"})
        assert confirmed.status_code == 200
    assert _moves(api) == [("listed", POS1), ("confirmed", POS1)]
    assert set(record_states(api.db, "S1").values()) == {"confirmed"}

"""Tests of the POS agent's local store: applying records, idempotence, the
OCUSMA *DEL cascade, the last TRNR and the file checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posoutbox.agent.client import DELETE, UPDATE, AgentError, TransferRecord
from posoutbox.agent.store import ALL_SHOPS, SCHEMA_VERSION, Store, open_store
from posoutbox.fields import Value
from posoutbox.layouts import KEY_FIELDS, decode, encode

Snapshot = dict[str, list[dict[str, object]]]


def make_record(
    trtp: str,
    acct: str,
    values: dict[str, Value],
    shops: tuple[str, ...] | None = ("A01",),
    trnr: int | None = None,
) -> TransferRecord:
    """Build a record as the client parses it: encoded, then decoded."""
    if acct == DELETE:
        values = {name: values[name] for name in KEY_FIELDS[trtp]}
    data = encode(trtp, values)
    return TransferRecord(
        trnr=trnr,
        trtp=trtp,
        acct=acct,
        cuno=str(values["CUNO"]),
        shops=shops,
        values=decode(trtp, data),
    )


def customer(cuno: str, name: str = "Alfreds", **values: Value) -> dict[str, Value]:
    return {"CUNO": cuno, "CUNM": name, "STAT": "20", **values}


def address(cuno: str, adid: str, town: str = "Berlin") -> dict[str, Value]:
    return {"CUNO": cuno, "ADRT": 1, "ADID": adid, "TOWN": town}


def card(cuno: str, ccnr: int, blocked: int = 0) -> dict[str, Value]:
    return {"CUNO": cuno, "CCNR": ccnr, "CTP1": 1, "BLCD": blocked}


def message(cuno: str, msid: str, text: str = "Hello") -> dict[str, Value]:
    return {"CUNO": cuno, "MSID": msid, "PRIO": 5, "MSTX": text}


def snapshot(store: Store) -> Snapshot:
    """Return every shop's customers as --json shows them."""
    return {
        summary.whlo: [
            stored.as_fields() for stored in store.iter_customers(summary.whlo)
        ]
        for summary in store.shops()
    }


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(tmp_path / "agent.db")
    opened.bind_subscriber("S1")
    return opened


def child_values(stored: dict[str, object], child: str, name: str) -> list[object]:
    """Return field ``name`` of every ADDRESSES, CARDS or MESSAGES entry."""
    rows = stored[child]
    assert isinstance(rows, list)
    return [row[name] for row in rows]


def full_customer_records(
    cuno: str, shops: tuple[str, ...] | None
) -> list[TransferRecord]:
    return [
        make_record("OCUSMA", UPDATE, customer(cuno, TOWN="Berlin"), shops),
        make_record("OCUSAD", UPDATE, address(cuno, "D1"), shops),
        make_record("OPCARD", UPDATE, card(cuno, 4711), shops),
        make_record("OPCARD", UPDATE, card(cuno, 4712), shops),
        make_record("OOEMSG", UPDATE, message(cuno, "M1"), shops),
    ]


def test_apply_update_to_every_listed_shop(store: Store) -> None:
    store.apply(full_customer_records("C1", ("A01", "A02")))

    shops = snapshot(store)
    assert sorted(shops) == ["A01", "A02"]
    assert shops["A01"] == shops["A02"]
    stored = shops["A01"][0]
    assert stored["CUNO"] == "C1"
    assert stored["CUNM"] == "Alfreds"
    assert stored["TOWN"] == "Berlin"
    assert stored["CUTP"] == "0"
    assert stored["LMDT"] == "0"
    assert stored["ADDRESSES"] == [
        {
            "CUNO": "C1",
            "ADRT": "1",
            "ADID": "D1",
            "CUNM": "",
            "CUA1": "",
            "CUA2": "",
            "CUA3": "",
            "CUA4": "",
            "PONO": "",
            "TOWN": "Berlin",
            "ECAR": "",
            "CSCD": "",
            "PHNO": "",
        }
    ]
    assert child_values(stored, "CARDS", "CCNR") == ["4711", "4712"]
    assert stored["MESSAGES"] == [
        {"CUNO": "C1", "MSID": "M1", "PRIO": "5", "MSTX": "Hello"}
    ]


def test_apply_update_replaces_every_field(store: Store) -> None:
    store.apply([make_record("OCUSMA", UPDATE, customer("C1", TOWN="Berlin", CUTP=1))])
    store.apply([make_record("OCUSMA", UPDATE, customer("C1", "Renamed"))])

    (stored,) = snapshot(store)["A01"]
    assert stored["CUNM"] == "Renamed"
    assert stored["TOWN"] == ""
    assert stored["CUTP"] == "0"


def test_apply_blocked_card_is_an_update(store: Store) -> None:
    store.apply(full_customer_records("C1", ("A01",)))
    store.apply([make_record("OPCARD", UPDATE, card("C1", 4711, blocked=1))])

    (stored,) = snapshot(store)["A01"]
    assert child_values(stored, "CARDS", "CCNR") == ["4711", "4712"]
    assert child_values(stored, "CARDS", "BLCD") == ["1", "0"]


def test_apply_child_delete_removes_one_record(store: Store) -> None:
    store.apply(full_customer_records("C1", ("A01",)))
    store.apply(
        [
            make_record("OPCARD", DELETE, card("C1", 4711)),
            make_record("OOEMSG", DELETE, message("C1", "M1")),
            make_record("OCUSAD", DELETE, address("C1", "D1")),
        ]
    )

    (stored,) = snapshot(store)["A01"]
    assert stored["ADDRESSES"] == []
    assert child_values(stored, "CARDS", "CCNR") == ["4712"]
    assert stored["MESSAGES"] == []


def test_customer_delete_cascades_at_listed_shops_only(store: Store) -> None:
    store.apply(full_customer_records("C1", ("A01", "A02")))
    store.apply(full_customer_records("C2", ("A01",)))

    store.apply([make_record("OCUSMA", DELETE, customer("C1"), ("A01",))])

    shops = snapshot(store)
    assert [stored["CUNO"] for stored in shops["A01"]] == ["C2"]
    assert [stored["CUNO"] for stored in shops["A02"]] == ["C1"]
    summary = {row.whlo: row for row in store.shops()}
    assert summary["A01"].addresses == 1
    assert summary["A01"].cards == 2
    assert summary["A01"].messages == 1
    assert summary["A02"].cards == 2


def test_customer_delete_of_unknown_customer_is_harmless(store: Store) -> None:
    store.apply([make_record("OCUSMA", DELETE, customer("C9"))])

    assert snapshot(store) == {}


def test_records_without_shop_go_to_all_shops(store: Store) -> None:
    store.apply(full_customer_records("C1", shops=None))

    assert list(snapshot(store)) == [ALL_SHOPS]


def test_record_with_empty_mailing_list_changes_nothing(store: Store) -> None:
    store.apply([make_record("OCUSMA", UPDATE, customer("C1"), shops=())])

    assert snapshot(store) == {}


def test_card_key_includes_customer(store: Store) -> None:
    # A card moved to another customer may arrive as *UPD for the new owner
    # before the *DEL for the old one. That *DEL must not remove the new card.
    store.apply(
        [
            make_record("OCUSMA", UPDATE, customer("C1")),
            make_record("OCUSMA", UPDATE, customer("C2")),
            make_record("OPCARD", UPDATE, card("C1", 4711)),
            make_record("OPCARD", UPDATE, card("C2", 4711)),
            make_record("OPCARD", DELETE, card("C1", 4711)),
        ]
    )

    by_cuno = {stored["CUNO"]: stored for stored in snapshot(store)["A01"]}
    assert by_cuno["C1"]["CARDS"] == []
    assert child_values(by_cuno["C2"], "CARDS", "CCNR") == ["4711"]


def test_last_trnr_committed_with_data(store: Store) -> None:
    assert store.last_trnr() is None

    store.apply(full_customer_records("C1", ("A01",)), last_trnr=17)

    assert store.last_trnr() == 17
    assert len(snapshot(store)["A01"]) == 1


def test_failed_apply_rolls_back_data_and_trnr(store: Store) -> None:
    store.apply([make_record("OCUSMA", UPDATE, customer("C0"))], last_trnr=5)

    def fail_after_two(count: int) -> None:
        if count == 2:
            raise RuntimeError("crash in the middle of a batch")

    with pytest.raises(RuntimeError):
        store.apply(
            full_customer_records("C1", ("A01",)),
            last_trnr=10,
            after_record=fail_after_two,
        )

    assert store.last_trnr() == 5
    assert [stored["CUNO"] for stored in snapshot(store)["A01"]] == ["C0"]


def test_killed_transaction_leaves_no_trace(tmp_path: Path) -> None:
    # A process killed inside the transaction leaves a WAL without a commit;
    # the next connection must not see any of its rows.
    path = tmp_path / "agent.db"
    store = open_store(path)
    store.bind_subscriber("S1")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute(
        "INSERT INTO customers (whlo, cuno, cunm, cua1, cua2, cua3, cua4, pono, "
        "town, ecar, cscd, phno, phn2, tfno, mail, yref, lncd, cucd, cutp, cucl, "
        "sdst, stat, lmdt) VALUES ('A01', 'C1', '', '', '', '', '', '', '', '', '', "
        "'', '', '', '', '', '', '', 0, '', '', '20', 0)"
    )
    raw.close()  # closing without COMMIT rolls back, as a kill does

    assert snapshot(store) == {}
    store.close()


def test_iter_customers_pages_through_large_shop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("posoutbox.agent.store.PAGE_SIZE", 3)
    records = []
    for number in range(10):
        cuno = f"C{number:02d}"
        records.append(make_record("OCUSMA", UPDATE, customer(cuno)))
        records.append(make_record("OOEMSG", UPDATE, message(cuno, "M1")))
    store.apply(records)

    stored = list(store.iter_customers("A01"))

    assert [item.customer["CUNO"] for item in stored] == [
        f"C{number:02d}" for number in range(10)
    ]
    assert all(len(item.messages) == 1 for item in stored)


def test_iter_customers_of_one_customer(store: Store) -> None:
    store.apply(full_customer_records("C1", ("A01",)))
    store.apply(full_customer_records("C2", ("A01",)))

    (stored,) = store.iter_customers("A01", "C2")

    assert stored.customer["CUNO"] == "C2"
    assert len(stored.cards) == 2


# Idempotence: the crash-safety argument of the agent rests on these.

CUNOS = ("C1", "C2")
SHOPS = ("A01", "A02")


@st.composite
def records(draw: st.DrawFn) -> TransferRecord:
    cuno = draw(st.sampled_from(CUNOS))
    trtp = draw(st.sampled_from(("OCUSMA", "OCUSAD", "OPCARD", "OOEMSG")))
    acct = draw(st.sampled_from((UPDATE, DELETE)))
    shops = tuple(draw(st.lists(st.sampled_from(SHOPS), min_size=1, unique=True)))
    text = draw(st.sampled_from(("a", "b", "c")))
    values: dict[str, Value]
    if trtp == "OCUSMA":
        values = customer(cuno, text)
    elif trtp == "OCUSAD":
        values = address(cuno, draw(st.sampled_from(("D1", "D2"))), text)
    elif trtp == "OPCARD":
        values = card(
            cuno, draw(st.sampled_from((11, 12))), draw(st.sampled_from((0, 1)))
        )
    else:
        values = message(cuno, draw(st.sampled_from(("M1", "M2"))), text)
    return make_record(trtp, acct, values, shops)


def fresh_store(directory: Path, name: str) -> Store:
    path = directory / name
    path.unlink(missing_ok=True)
    opened = open_store(path)
    opened.bind_subscriber("S1")
    return opened


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    sequence=st.lists(records(), max_size=12),
    restart_at=st.integers(min_value=0, max_value=12),
)
def test_applying_again_from_any_point_is_harmless(
    tmp_path: Path, sequence: list[TransferRecord], restart_at: int
) -> None:
    # After a crash between the local commit and CnfCus, the records from some
    # point on are listed and applied a second time.
    once = fresh_store(tmp_path, "once.db")
    replayed = fresh_store(tmp_path, "replayed.db")
    try:
        once.apply(sequence)
        replayed.apply(sequence)
        replayed.apply(sequence[min(restart_at, len(sequence)) :])

        assert snapshot(replayed) == snapshot(once)
    finally:
        once.close()
        replayed.close()


# The store file itself


def test_open_without_create_needs_existing_file(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="not found"):
        open_store(tmp_path / "missing.db", create=False)

    assert not (tmp_path / "missing.db").exists()


def test_open_rejects_foreign_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE things (id INTEGER)")

    with pytest.raises(AgentError, match="not a pos-agent store"):
        open_store(path)


def test_open_rejects_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(AgentError, match="newer"):
        open_store(path)


def test_open_uses_wal(store: Store) -> None:
    with sqlite3.connect(store.path) as conn:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()

    assert mode == "wal"


def test_store_serves_one_subscriber(store: Store) -> None:
    store.bind_subscriber("S1")

    with pytest.raises(AgentError, match="serves subscriber S1"):
        store.bind_subscriber("S2")
    assert store.subscriber() == "S1"


def test_exclusive_rejects_second_agent(store: Store) -> None:
    second = open_store(store.path)
    with (
        store.exclusive(),
        pytest.raises(AgentError, match="in use by another"),
        second.exclusive(),
    ):
        pass
    with second.exclusive():
        pass
    second.close()

"""API users: the users module, the ``user`` commands, Basic authentication and
its credential cache."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from api_server import (
    ADMIN,
    CHEAP_HASHER,
    PASSWORD,
    POS1,
    RunningServer,
    running_api,
)
from posoutbox import shops, users
from posoutbox.api.auth import Authenticator, CredentialCache, parse_basic
from posoutbox.api.errors import Unauthenticated
from posoutbox.db.storage import Database, utcnow
from posoutbox.errors import AlreadyExists, InvalidValue, NotFound, RuleViolation

EXECUTE = "/m3api-rest/execute"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "PASSWORD_HASHER", CHEAP_HASHER)


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


# The users module


def test_add_and_list_users(db: Database) -> None:
    shops.add_subscriber(db, "S1")

    users.add_user(db, "pos", PASSWORD, sbs1="S1", user="tester")
    users.add_user(db, "boss", PASSWORD, admin=True)

    listed = users.list_users(db)
    assert [(user.name, user.role, user.sbs1) for user in listed] == [
        ("boss", "admin", ""),
        ("pos", "subscriber", "S1"),
    ]
    assert listed[1].changed_by == "tester"
    stored = users.find_stored_user(db, "pos")
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


def test_add_user_errors(db: Database) -> None:
    shops.add_subscriber(db, "S1")
    users.add_user(db, "pos", PASSWORD, sbs1="S1")

    with pytest.raises(AlreadyExists):
        users.add_user(db, "pos", PASSWORD, admin=True)
    with pytest.raises(NotFound):
        users.add_user(db, "other", PASSWORD, sbs1="S9")
    with pytest.raises(RuleViolation):
        users.add_user(db, "both", PASSWORD, sbs1="S1", admin=True)
    with pytest.raises(RuleViolation):
        users.add_user(db, "neither", PASSWORD)
    for name in ("", "a:b", " lead", "x" * 65, "tab\there"):
        with pytest.raises(InvalidValue):
            users.add_user(db, name, PASSWORD, admin=True)
    for password in ("short", "x" * 1025, "with\x00nul!"):
        with pytest.raises(InvalidValue) as raised:
            users.add_user(db, "fine", password, admin=True)
        assert password not in raised.value.message


def test_set_password_and_delete(db: Database) -> None:
    users.add_user(db, "boss", PASSWORD, admin=True)
    before = users.find_stored_user(db, "boss")

    users.set_password(db, "boss", "new password", user="tester")

    after = users.find_stored_user(db, "boss")
    assert before is not None and after is not None
    assert after.password_hash != before.password_hash
    assert after.user.changed_at >= before.user.changed_at
    assert users.authenticate(db, "boss", PASSWORD) is None
    assert users.authenticate(db, "boss", "new password") is not None
    users.delete_user(db, "boss")
    assert users.authenticate(db, "boss", "new password") is None
    with pytest.raises(NotFound):
        users.delete_user(db, "boss")
    with pytest.raises(NotFound):
        users.set_password(db, "boss", PASSWORD)


def test_authenticate_rejects_odd_input(db: Database) -> None:
    users.add_user(db, "boss", PASSWORD, admin=True)

    assert users.authenticate(db, "nobody", PASSWORD) is None
    assert users.authenticate(db, "boss", "") is None
    assert users.authenticate(db, "boss", "\ud800") is None
    assert users.authenticate(db, "bo\x00ss", PASSWORD) is None
    assert users.authenticate(db, "x" * 1000, PASSWORD) is None
    assert users.authenticate(db, "boss", PASSWORD + "x" * 2000) is None


# Authentication and its cache


def test_parse_basic() -> None:
    assert parse_basic(basic("pos", "a:b c")) == ("pos", "a:b c")
    latin1 = "Basic " + base64.b64encode("jörg:pw".encode("latin-1")).decode()
    assert parse_basic(latin1) == ("jörg", "pw")
    for header in ("Bearer x", "Basic", "Basic ###", "Basic " + "QUJD"):
        with pytest.raises(Unauthenticated):
            parse_basic(header)


def test_cache_keys_are_digests_and_expire() -> None:
    now = [1000.0]
    cache = CredentialCache(ttl=60, clock=lambda: now[0])
    header = basic("pos", PASSWORD)
    stored = users.StoredUser(
        users.User("pos", "S1", False, utcnow(), ""), "$argon2id$hash"
    )

    cache.put(header, stored)

    assert cache.get(header) is not None
    (key,) = cache._entries
    assert len(key) == 32
    assert PASSWORD.encode() not in key
    assert PASSWORD not in repr(cache._entries)
    now[0] += 59
    assert cache.get(header) is not None
    now[0] += 2
    assert cache.get(header) is None
    assert len(cache) == 0


def test_cache_skips_verification_until_user_changes(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    users.add_user(db, "boss", PASSWORD, admin=True)
    verified: list[str] = []
    real_authenticate = users.authenticate

    def counting_authenticate(
        database: Database, name: str, password: str
    ) -> users.StoredUser | None:
        verified.append(name)
        return real_authenticate(database, name, password)

    monkeypatch.setattr(users, "authenticate", counting_authenticate)
    authenticator = Authenticator(db)

    for _ in range(3):
        assert authenticator.authenticate(basic("boss", PASSWORD)).name == "boss"
    assert verified == ["boss"]

    users.set_password(db, "boss", "new password")
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(basic("boss", PASSWORD))
    assert authenticator.authenticate(basic("boss", "new password")).is_admin
    users.delete_user(db, "boss")
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(basic("boss", "new password"))


# The user commands and the server together


def run_cli(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``posoutbox`` command line without a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "posoutbox", "--database-url", database_url, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture
def api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    with running_api(database_url, monkeypatch) as server:
        yield server


def test_password_change_drops_cached_credentials(
    api: RunningServer, database_url: str
) -> None:
    url = f"{EXECUTE}/OPS600MI/LstCus?SBS1=S1"
    with api.client(POS1) as client:
        assert client.get(url).status_code == 200

        changed = run_cli(
            database_url,
            "user",
            "password",
            POS1,
            "--password-env",
            "NEW_PASSWORD",
            env={"NEW_PASSWORD": "brand new secret"},
        )
        assert changed.returncode == 0, changed.stderr

        assert client.get(url).status_code == 401
        assert client.get(url, auth=(POS1, "brand new secret")).status_code == 200

        deleted = run_cli(database_url, "user", "delete", POS1)
        assert deleted.returncode == 0, deleted.stderr
        assert client.get(url, auth=(POS1, "brand new secret")).status_code == 401


def test_user_commands(api: RunningServer, database_url: str) -> None:
    env = {"API_PASSWORD": "pos three secret"}

    added = run_cli(
        database_url,
        "user",
        "add",
        "pos3",
        "--subscriber",
        "S2",
        "--password-env",
        "API_PASSWORD",
        env=env,
    )
    listed = run_cli(database_url, "user", "list", "--json")
    both = run_cli(database_url, "user", "add", "x", "--admin", "--subscriber", "S1")
    no_terminal = run_cli(database_url, "user", "add", "pos4", "--admin")
    unset = run_cli(
        database_url, "user", "add", "pos4", "--admin", "--password-env", "UNSET_VAR"
    )

    assert added.returncode == 0, added.stderr
    assert "pos3" in added.stdout
    assert "pos three secret" not in added.stdout + added.stderr
    entries = {entry["name"]: entry for entry in json.loads(listed.stdout)}
    assert entries["pos3"]["role"] == "subscriber"
    assert entries["pos3"]["SBS1"] == "S2"
    assert entries[ADMIN]["role"] == "admin"
    assert "password" not in listed.stdout
    assert both.returncode == 2
    assert no_terminal.returncode == 1
    assert "--password-env" in no_terminal.stderr
    assert unset.returncode == 1
    assert "UNSET_VAR" in unset.stderr
    with api.client("pos3", "pos three secret") as client:
        allowed = client.get(f"{EXECUTE}/OPS600MI/LstCus?SBS1=S2")
        refused = client.get(f"{EXECUTE}/OPS600MI/LstCus?SBS1=S1")
    assert allowed.status_code == 200
    assert refused.status_code == 403

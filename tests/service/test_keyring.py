"""The master key, tenant keys (wrapped, unwrapped, raced), tokens and vault sealing."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select

from spine.adapters.sql.tables import tenant_keys
from spine.domain.privacy import TOKEN
from spine.ports import Database, UnitOfWork
from spine.service.bootstrap import bootstrap, open_database
from spine.service.container import utc_now
from spine.service.keyring import (
    MASTER_KEY_FILE,
    Keyring,
    MasterKey,
    MasterKeyMismatch,
    load_master_key,
)
from spine.settings import Settings
from support.rows import unscoped

REPO_ROOT = Path(__file__).resolve().parents[2]


def key_text(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def stored_rows(db: Database) -> list[Any]:
    with db.read() as uow:
        conn = unscoped(uow)
        return list(conn.execute(select(tenant_keys)).all())


# -- The master key -------------------------------------------------------------------


def test_generated_master_key_is_written_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_master_key(None, tmp_path)
    path = tmp_path / MASTER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text())) == 32
    again = load_master_key(None, tmp_path)
    assert again.key == first.key
    assert again.key_id == first.key_id


def test_configured_master_key_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    raw = os.urandom(32)
    master = load_master_key(key_text(raw), tmp_path)
    assert master.key == raw
    assert not (tmp_path / MASTER_KEY_FILE).exists()


@pytest.mark.parametrize(
    ("configured", "reason"),
    [
        ("not base64 at all!", "not valid base64"),
        (key_text(b"\x01" * 16), "32 bytes, not 16"),
        (key_text(b"\x02" * 33), "32 bytes, not 33"),
    ],
)
def test_a_malformed_master_key_stops_the_start_with_a_clear_error(
    tmp_path: Path, configured: str, reason: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data", master_key=configured, jwt_secret="s" * 40)
    with pytest.raises(ValueError, match=reason) as caught:
        bootstrap(settings)
    assert "SPINE_MASTER_KEY" in str(caught.value)


def test_the_key_id_names_the_key_without_revealing_it() -> None:
    raw = os.urandom(32)
    master = MasterKey.of(raw)
    assert master.key_id == MasterKey.of(raw).key_id
    assert master.key_id != MasterKey.of(os.urandom(32)).key_id
    assert raw.hex()[:16] not in master.key_id
    assert raw.hex() not in repr(master)


# -- Tenant keys ----------------------------------------------------------------------


def test_tenant_keys_are_stored_wrapped_and_unwrap_in_another_process(db: Database) -> None:
    master = MasterKey.of(os.urandom(32))
    first = Keyring(master, db, utc_now).for_tenant("acme")
    [row] = stored_rows(db)
    assert row.tenant_id == "acme"
    assert row.master_key_id == master.key_id
    # Wrapped: a nonce and a GCM tag around the key, never the key itself.
    assert first.data_key not in bytes(row.wrapped_data_key)
    assert first.token_key not in bytes(row.wrapped_token_key)
    assert len(row.wrapped_data_key) == 12 + 32 + 16
    assert first.data_key != first.token_key
    # A fresh keyring (another process: empty cache) unwraps the same keys.
    second = Keyring(master, db, utc_now).for_tenant("acme")
    assert second.data_key == first.data_key
    assert second.token_key == first.token_key


def test_a_wrong_master_key_is_a_clear_error_not_garbage(db: Database) -> None:
    Keyring(MasterKey.of(os.urandom(32)), db, utc_now).for_tenant("acme")
    with pytest.raises(MasterKeyMismatch, match="another master key"):
        Keyring(MasterKey.of(os.urandom(32)), db, utc_now).for_tenant("acme")


def test_wrapped_keys_are_bound_to_their_tenant(db: Database) -> None:
    """A row copied onto another tenant (same master key) does not unwrap: the AAD names
    the tenant."""
    master = MasterKey.of(os.urandom(32))
    Keyring(master, db, utc_now).for_tenant("acme")
    with db.write() as uow:
        conn = unscoped(uow)
        row = conn.execute(select(tenant_keys)).one()
        conn.execute(tenant_keys.insert().values(**{**row._asdict(), "tenant_id": "rival"}))
    with pytest.raises(MasterKeyMismatch, match="do not decrypt"):
        Keyring(master, db, utc_now).for_tenant("rival")


class InterleavingDatabase:
    """Fault-injection double: runs ``before_write`` once, just before the first write
    transaction, to put another process's work between this one's read and its write."""

    def __init__(self, inner: Database, before_write: Callable[[], object]) -> None:
        self._inner = inner
        self._before_write: Callable[[], object] | None = before_write

    def read(self) -> AbstractContextManager[UnitOfWork]:
        return self._inner.read()

    def write(self) -> AbstractContextManager[UnitOfWork]:
        if self._before_write is not None:
            hook, self._before_write = self._before_write, None
            hook()
        return self._inner.write()

    def ping(self) -> None:
        self._inner.ping()

    def compact(self) -> None:
        self._inner.compact()

    def on_jobs_queued(self, callback: Callable[[], None]) -> None:
        self._inner.on_jobs_queued(callback)

    def close(self) -> None:
        self._inner.close()


def test_the_loser_of_a_creation_race_uses_the_winners_keys(db: Database, tmp_path: Path) -> None:
    master = MasterKey.of(os.urandom(32))
    # Another process: its own engine on the same file.
    other_db = open_database(db.url)
    try:
        winner = Keyring(master, other_db, utc_now)
        loser = Keyring(
            master, InterleavingDatabase(db, lambda: winner.for_tenant("acme")), utc_now
        )
        lost = loser.for_tenant("acme")  # read: no keys; then the winner writes; then this
        won = winner.for_tenant("acme")
    finally:
        other_db.close()
    assert lost.data_key == won.data_key
    assert lost.token_key == won.token_key
    assert len(stored_rows(db)) == 1


def test_threads_racing_on_separate_connections_end_with_one_set(
    db: Database, tmp_path: Path
) -> None:
    master = MasterKey.of(os.urandom(32))
    databases = [open_database(db.url) for _ in range(4)]
    tenants = [f"tenant-{i}" for i in range(10)]
    barrier = threading.Barrier(len(databases))
    results: list[dict[str, str]] = [{} for _ in databases]

    def run(index: int) -> None:
        keyring = Keyring(master, databases[index], utc_now)
        barrier.wait()
        for tenant in tenants:
            results[index][tenant] = keyring.for_tenant(tenant).token_for("EMAIL", "a@b.example")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(databases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for database in databases:
        database.close()
    assert all(result == results[0] for result in results)
    assert len(results[0]) == len(tenants)
    assert sorted(row.tenant_id for row in stored_rows(db)) == sorted(tenants)


CHILD = """
import base64, json, sys, time
from pathlib import Path
from spine.service.bootstrap import open_database
from spine.service.container import utc_now
from spine.service.keyring import Keyring, MasterKey

db = open_database(sys.argv[1])
keyring = Keyring(MasterKey.of(base64.b64decode(sys.argv[2])), db, utc_now)
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
print(json.dumps({t: keyring.for_tenant(t).token_for("EMAIL", "a@b.example")
                  for t in sys.argv[4:]}))
"""


def test_two_processes_creating_keys_at_once_agree(db: Database, tmp_path: Path) -> None:
    url = db.url
    master = key_text(os.urandom(32))
    go = tmp_path / "go"
    tenants = [f"tenant-{i}" for i in range(20)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, master, str(go), *tenants],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for _ in range(2)
    ]
    go.touch()
    outputs = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    assert all(child.returncode == 0 for child in children)
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == len(tenants)
    assert len(stored_rows(db)) == len(tenants)


def test_unwrapped_keys_are_cached_within_bounds(db: Database) -> None:
    """Observable through the database: a cached tenant keeps its keys even when its row
    is gone; an evicted one is read (here: made) again."""
    keyring = Keyring(MasterKey.of(os.urandom(32)), db, utc_now, cache_size=2)
    first = {t: keyring.for_tenant(t).token_for("EMAIL", "x@y.example") for t in "abc"}
    with db.write() as uow:
        unscoped(uow).execute(tenant_keys.delete())
    again = {t: keyring.for_tenant(t).token_for("EMAIL", "x@y.example") for t in "bca"}
    assert again["b"] == first["b"]
    assert again["c"] == first["c"]
    assert again["a"] != first["a"]  # evicted by b and c, then made anew


# -- Tokens and the vault -------------------------------------------------------------


@contextmanager
def keyring_on(db: Database) -> Iterator[Keyring]:
    yield Keyring(MasterKey.of(os.urandom(32)), db, utc_now)


def test_tokens_are_deterministic_per_tenant_and_differ_across_tenants(db: Database) -> None:
    with keyring_on(db) as keyring:
        acme, rival = keyring.for_tenant("acme"), keyring.for_tenant("rival")
        token = acme.token_for("EMAIL", "jane@example.com")
        assert TOKEN.fullmatch(token)
        assert token.startswith("<EMAIL:")
        assert acme.token_for("EMAIL", "jane@example.com") == token
        assert rival.token_for("EMAIL", "jane@example.com") != token
        assert acme.token_for("EMAIL", "john@example.com") != token
        # The kind is part of the MAC: one string of two kinds makes two tokens.
        assert acme.token_for("CUSTOM_ID", "jane@example.com")[-13:] != token[-13:]


def test_a_sealed_value_opens_only_for_its_tenant_document_and_token(db: Database) -> None:
    with keyring_on(db) as keyring:
        acme = keyring.for_tenant("acme")
        token = acme.token_for("EMAIL", "jane@example.com")
        entry = acme.seal("doc_1", token, "EMAIL", "jane@example.com")
        assert b"jane" not in entry.ciphertext
        assert acme.open("doc_1", entry) == "jane@example.com"
        assert acme.seal("doc_1", token, "EMAIL", "jane@example.com").nonce != entry.nonce
        with pytest.raises(InvalidTag):
            acme.open("doc_2", entry)
        with pytest.raises(InvalidTag):
            keyring.for_tenant("rival").open("doc_1", entry)

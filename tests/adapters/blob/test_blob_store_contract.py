"""The BlobStore port's contract, run against every store: a local folder and S3.

S3 is a fresh bucket per test on a real server (see ``support.s3``: the one at
``SPINE_TEST_S3_ENDPOINT``, else ``weed mini``). What ``list_blobs`` does not list is
not there: that is how the sweeper sees a store, temporary leftovers included.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spine.adapters.blob.local import LocalBlobStore
from spine.adapters.blob.s3 import S3BlobStore
from spine.errors import NotFound, PayloadTooLarge
from spine.ports import BlobEntry, BlobStore, Database
from spine.service.bootstrap import open_database
from spine.service.gc import sweep_blobs
from support.rows import document_row
from support.s3 import S3Server, fresh_bucket

DATA = b"%PDF-1.7\n" + bytes(range(256)) * 64
NEVER_STORED = hashlib.sha256(b"never stored").hexdigest()


class ExplodingStreamFake(io.RawIOBase):
    """An upload that delivers ``good`` bytes, then fails (the client went away)."""

    def __init__(self, good: bytes, chunk: int = 1000) -> None:
        self._good = good
        self._chunk = chunk
        self._sent = 0
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self._sent >= len(self._good):
            raise ConnectionResetError("client disconnected mid-upload")
        block = self._good[self._sent : self._sent + min(self._chunk, size)]
        self._sent += len(block)
        return block


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    with fresh_bucket(server) as url:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        # The server's one client: making one per test would cost 0.1-0.9 s each.
        # test_s3_blob_store.py covers from_url and the AWS variables.
        yield S3BlobStore(server.client(), bucket, prefix)


def entries(store: BlobStore) -> list[BlobEntry]:
    return sorted(store.list_blobs(), key=lambda entry: (entry.tenant_key, entry.name))


def test_put_returns_the_sha256_and_size_of_the_bytes(store: BlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    assert stored.sha256 == hashlib.sha256(DATA).hexdigest()
    assert stored.size_bytes == len(DATA)
    assert store.get("acme", stored.sha256) == DATA


def test_put_of_an_empty_stream_stores_the_empty_blob(store: BlobStore) -> None:
    stored = store.put("acme", io.BytesIO(b""))

    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert stored.size_bytes == 0
    assert store.get("acme", stored.sha256) == b""


def test_put_of_a_stream_larger_than_the_copy_buffer_keeps_every_byte(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)

    stored = store.put("acme", io.BytesIO(data))

    assert stored.size_bytes == len(data)
    assert store.get("acme", stored.sha256) == data


def test_same_bytes_twice_give_the_same_sha_and_one_blob(store: BlobStore) -> None:
    first = store.put("acme", io.BytesIO(DATA))
    second = store.put("acme", io.BytesIO(DATA))

    assert first == second
    assert [(e.tenant_key, e.name) for e in entries(store)] == [
        (store.tenant_key("acme"), first.sha256)
    ]


def test_tenant_key_is_a_digest_of_the_tenant_the_same_in_every_store(store: BlobStore) -> None:
    key = store.tenant_key("acme")

    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert key == hashlib.sha256(b"acme").hexdigest()[:32]
    assert store.tenant_key("globex") != key


def test_tenants_get_separate_copies_of_the_same_bytes(store: BlobStore) -> None:
    a = store.put("acme", io.BytesIO(DATA))
    b = store.put("globex", io.BytesIO(DATA))

    assert a.sha256 == b.sha256
    assert {(e.tenant_key, e.name) for e in entries(store)} == {
        (store.tenant_key("acme"), a.sha256),
        (store.tenant_key("globex"), a.sha256),
    }


def test_another_tenant_cannot_get_a_blob_even_knowing_its_sha(store: BlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    with pytest.raises(NotFound):
        store.get("globex", stored.sha256)


def test_deleting_one_tenants_copy_leaves_the_other_tenants_copy(store: BlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA))
    store.put("globex", io.BytesIO(DATA))

    assert store.delete("acme", stored.sha256)

    with pytest.raises(NotFound):
        store.get("acme", stored.sha256)
    assert store.get("globex", stored.sha256) == DATA


def test_tenant_ids_never_appear_in_what_the_store_lists(store: BlobStore) -> None:
    store.put("../../escape", io.BytesIO(DATA))

    [entry] = entries(store)
    assert entry.tenant_key == store.tenant_key("../../escape")
    assert "escape" not in entry.tenant_key + entry.name
    assert store.get("../../escape", entry.name) == DATA


def test_delete_removes_the_blob(store: BlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    assert store.delete("acme", stored.sha256) is True

    with pytest.raises(NotFound):
        store.get("acme", stored.sha256)
    assert entries(store) == []


def test_delete_of_a_missing_blob_is_a_no_op(store: BlobStore) -> None:
    assert store.delete("acme", NEVER_STORED) is False
    assert store.delete("acme", NEVER_STORED, unless_newer_than=60) is False


def test_get_of_an_unknown_sha_raises_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.get("acme", NEVER_STORED)


@pytest.mark.parametrize("sha", ["../../etc/passwd", "ABC", "0" * 63, "g" * 64, "0" * 64 + "/"])
def test_anything_but_a_sha256_hex_digest_is_refused_as_a_name(store: BlobStore, sha: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        store.get("acme", sha)
    with pytest.raises(ValueError, match="sha256"):
        store.delete("acme", sha)


def test_delete_keeps_a_blob_written_within_the_grace_period(store: BlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    assert store.delete("acme", stored.sha256, unless_newer_than=60) is False

    assert store.get("acme", stored.sha256) == DATA


def test_delete_removes_a_blob_written_before_the_grace_period(store: BlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA))
    time.sleep(0.3)

    assert store.delete("acme", stored.sha256, unless_newer_than=0.2) is True

    with pytest.raises(NotFound):
        store.get("acme", stored.sha256)


def test_putting_the_same_bytes_again_restarts_the_grace_period(store: BlobStore) -> None:
    """The race the grace closes: a delete that saw no row must keep bytes that an
    upload in flight has just written again, though they were there already."""
    stored = store.put("acme", io.BytesIO(DATA))
    time.sleep(1.5)  # the first write is now past the grace, so only the second counts
    store.put("acme", io.BytesIO(DATA))

    # A second of grace: the rewrite's own round trips (0.25 s seen on weed) fit in it.
    assert store.delete("acme", stored.sha256, unless_newer_than=1.0) is False

    assert store.get("acme", stored.sha256) == DATA


def test_put_over_max_bytes_is_refused_and_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(PayloadTooLarge):
        store.put("acme", io.BytesIO(DATA), max_bytes=len(DATA) - 1)

    assert entries(store) == []
    with pytest.raises(NotFound):
        store.get("acme", hashlib.sha256(DATA).hexdigest())


def test_put_of_exactly_max_bytes_is_accepted(store: BlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA), max_bytes=len(DATA))

    assert store.get("acme", stored.sha256) == DATA


def test_put_leaves_no_temporary_entries_behind(store: BlobStore) -> None:
    store.put("acme", io.BytesIO(DATA))
    store.put("acme", io.BytesIO(DATA))
    store.put("globex", io.BytesIO(b"other"))

    assert [entry for entry in entries(store) if entry.temporary] == []
    assert len(entries(store)) == 2


def test_failing_stream_raises_its_own_error_and_leaves_nothing(store: BlobStore) -> None:
    stream = ExplodingStreamFake(DATA[:5000])

    with pytest.raises(ConnectionResetError):
        store.put("acme", stream)  # type: ignore[arg-type]

    assert stream.reads > 1  # it did deliver bytes before it failed
    assert entries(store) == []


def test_stream_failing_on_the_first_read_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(ConnectionResetError):
        store.put("acme", ExplodingStreamFake(b""))  # type: ignore[arg-type]

    assert entries(store) == []


def test_failed_put_does_not_disturb_a_blob_already_stored(store: BlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    with pytest.raises(ConnectionResetError):
        store.put("acme", ExplodingStreamFake(DATA))  # type: ignore[arg-type]

    assert store.get("acme", stored.sha256) == DATA
    assert len(entries(store)) == 1


def test_listed_entries_can_be_removed_one_by_one(store: BlobStore) -> None:
    a = store.put("acme", io.BytesIO(b"first")).sha256
    b = store.put("acme", io.BytesIO(b"second")).sha256
    store.put("globex", io.BytesIO(b"first"))
    before = time.time()

    listed = entries(store)
    assert len(listed) == 3
    for entry in listed:
        assert not entry.temporary
        assert before - 60 < entry.modified_at <= time.time() + 1
    [target] = [e for e in listed if (e.tenant_key, e.name) == (store.tenant_key("acme"), a)]

    store.remove(target)

    with pytest.raises(NotFound):
        store.get("acme", a)
    assert store.get("acme", b) == b"second"
    assert store.get("globex", a) == b"first"
    assert len(entries(store)) == 2


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'spine.db'}")
    yield database
    database.close()


def test_gc_sweep_removes_only_unreferenced_blobs_past_the_grace_period(
    store: BlobStore, sqlite_db: Database
) -> None:
    """``spine gc`` works on any store: it needs the BlobStore port and the references."""
    db = sqlite_db
    kept = store.put("acme", io.BytesIO(b"acme keeps this")).sha256
    orphan = store.put("acme", io.BytesIO(b"nobody references me")).sha256
    # Another tenant's reference to the same bytes does not keep acme's copy alive.
    shared = store.put("acme", io.BytesIO(b"globex has these bytes too")).sha256
    store.put("globex", io.BytesIO(b"globex has these bytes too"))
    with db.write() as uow:
        uow.documents.add("acme", document_row("acme", sha256=kept))
        uow.documents.add("globex", document_row("globex", sha256=shared))

    early = sweep_blobs(db, store, grace_seconds=3600)
    assert (early.examined, early.removed, early.kept_recent) == (4, 0, 2)

    late = sweep_blobs(db, store, grace_seconds=0)
    assert (late.examined, late.removed, late.kept_recent) == (4, 2, 0)
    assert store.get("acme", kept) == b"acme keeps this"
    assert store.get("globex", shared) == b"globex has these bytes too"
    for gone in (orphan, shared):
        with pytest.raises(NotFound):
            store.get("acme", gone)


def test_ping_passes_on_a_working_store(store: BlobStore) -> None:
    store.ping()

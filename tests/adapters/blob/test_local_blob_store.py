"""LocalBlobStore on a real folder: content addressing, tenant separation, atomic writes."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from spine.adapters.blob.local import LocalBlobStore
from spine.errors import NotFound, Unavailable

DATA = b"%PDF-1.7\n" + bytes(range(256)) * 64


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


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def store(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root)


def blob_files(root: Path) -> list[Path]:
    """Every file under the root, the staging folder included."""
    return sorted(path for path in root.rglob("*") if path.is_file())


def staging_files(root: Path) -> list[Path]:
    staging = root / ".staging"
    return sorted(staging.iterdir()) if staging.exists() else []


def test_put_returns_the_sha256_and_size_of_the_bytes(store: LocalBlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    assert stored.sha256 == hashlib.sha256(DATA).hexdigest()
    assert stored.size_bytes == len(DATA)


def test_put_of_an_empty_stream_stores_the_empty_blob(store: LocalBlobStore) -> None:
    stored = store.put("acme", io.BytesIO(b""))

    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert stored.size_bytes == 0
    assert store.get("acme", stored.sha256) == b""


def test_put_of_a_stream_larger_than_the_copy_buffer_keeps_every_byte(
    store: LocalBlobStore,
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)

    stored = store.put("acme", io.BytesIO(data))

    assert stored.size_bytes == len(data)
    assert store.get("acme", stored.sha256) == data


def test_blob_lies_at_a_content_addressed_path_under_a_tenant_folder(
    store: LocalBlobStore, root: Path
) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    [path] = [p for p in blob_files(root) if ".staging" not in p.parts]
    assert path.name == stored.sha256
    assert path.parent.name == stored.sha256[:2]
    assert path.parent.parent.parent == root
    assert path.read_bytes() == DATA
    assert store.get("acme", stored.sha256) == DATA


def test_same_bytes_twice_give_the_same_sha_and_one_file(store: LocalBlobStore, root: Path) -> None:
    first = store.put("acme", io.BytesIO(DATA))
    second = store.put("acme", io.BytesIO(DATA))

    assert first == second
    assert len([p for p in blob_files(root) if p.name == first.sha256]) == 1


def test_tenants_are_kept_in_separate_folders(store: LocalBlobStore, root: Path) -> None:
    a = store.put("acme", io.BytesIO(DATA))
    b = store.put("globex", io.BytesIO(DATA))

    assert a.sha256 == b.sha256
    copies = [p for p in blob_files(root) if p.name == a.sha256]
    assert len(copies) == 2
    assert copies[0].parent.parent != copies[1].parent.parent


def test_another_tenant_cannot_get_a_blob_even_knowing_its_sha(store: LocalBlobStore) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    with pytest.raises(NotFound):
        store.get("globex", stored.sha256)


def test_deleting_one_tenants_copy_leaves_the_other_tenants_copy(
    store: LocalBlobStore,
) -> None:
    stored = store.put("acme", io.BytesIO(DATA))
    store.put("globex", io.BytesIO(DATA))

    store.delete("acme", stored.sha256)

    with pytest.raises(NotFound):
        store.get("acme", stored.sha256)
    assert store.get("globex", stored.sha256) == DATA


def test_tenant_names_never_become_paths(store: LocalBlobStore, root: Path) -> None:
    stored = store.put("../../escape", io.BytesIO(DATA))

    assert store.get("../../escape", stored.sha256) == DATA
    [path] = [p for p in blob_files(root) if p.name == stored.sha256]
    assert path.resolve().is_relative_to(root.resolve())
    assert "escape" not in str(path)


def test_delete_removes_the_blob(store: LocalBlobStore, root: Path) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    store.delete("acme", stored.sha256)

    with pytest.raises(NotFound):
        store.get("acme", stored.sha256)
    assert [p for p in blob_files(root) if p.name == stored.sha256] == []


def test_delete_of_a_missing_blob_is_a_no_op(store: LocalBlobStore) -> None:
    store.delete("acme", hashlib.sha256(b"never stored").hexdigest())


def test_get_of_an_unknown_sha_raises_not_found(store: LocalBlobStore) -> None:
    with pytest.raises(NotFound):
        store.get("acme", hashlib.sha256(b"never stored").hexdigest())


@pytest.mark.parametrize("sha", ["../../etc/passwd", "ABC", "0" * 63, "g" * 64, "0" * 64 + "/"])
def test_anything_but_a_sha256_hex_digest_is_refused_as_a_name(
    store: LocalBlobStore, sha: str
) -> None:
    with pytest.raises(ValueError, match="sha256"):
        store.get("acme", sha)
    with pytest.raises(ValueError, match="sha256"):
        store.delete("acme", sha)


def test_put_leaves_no_temporary_file_behind(store: LocalBlobStore, root: Path) -> None:
    store.put("acme", io.BytesIO(DATA))
    store.put("acme", io.BytesIO(DATA))
    store.put("globex", io.BytesIO(b"other"))

    assert staging_files(root) == []


def test_failing_stream_leaves_no_partial_blob_and_no_temporary_file(
    store: LocalBlobStore, root: Path
) -> None:
    stream = ExplodingStreamFake(DATA[:5000])

    with pytest.raises(ConnectionResetError):
        store.put("acme", stream)  # type: ignore[arg-type]

    assert stream.reads > 1  # it did deliver bytes before it failed
    assert blob_files(root) == []
    assert staging_files(root) == []


def test_stream_failing_on_the_first_read_leaves_nothing(store: LocalBlobStore, root: Path) -> None:
    with pytest.raises(ConnectionResetError):
        store.put("acme", ExplodingStreamFake(b""))  # type: ignore[arg-type]

    assert blob_files(root) == []


def test_failed_put_does_not_disturb_a_blob_already_stored(
    store: LocalBlobStore, root: Path
) -> None:
    stored = store.put("acme", io.BytesIO(DATA))

    with pytest.raises(ConnectionResetError):
        store.put("acme", ExplodingStreamFake(DATA))  # type: ignore[arg-type]

    assert store.get("acme", stored.sha256) == DATA
    assert staging_files(root) == []


def test_store_creates_its_root_folder(root: Path) -> None:
    LocalBlobStore(root / "nested" / "deeper")

    assert (root / "nested" / "deeper").is_dir()


def test_ping_passes_on_a_writable_root(store: LocalBlobStore) -> None:
    store.ping()


def test_ping_raises_unavailable_when_the_root_is_gone(store: LocalBlobStore, root: Path) -> None:
    root.rmdir()

    with pytest.raises(Unavailable):
        store.ping()


def test_ping_raises_unavailable_when_the_root_is_not_a_folder(
    store: LocalBlobStore, root: Path
) -> None:
    root.rmdir()
    root.write_bytes(b"not a folder")

    with pytest.raises(Unavailable):
        store.ping()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root may write anywhere, so a read-only folder cannot be made",
)
def test_ping_raises_unavailable_when_the_root_is_read_only(
    store: LocalBlobStore, root: Path
) -> None:
    root.chmod(0o500)
    try:
        with pytest.raises(Unavailable):
            store.ping()
    finally:
        root.chmod(0o700)


def test_put_into_a_vanished_folder_is_unavailable_not_a_crash(
    store: LocalBlobStore, root: Path
) -> None:
    """An unmounted volume: the store is down (503, retry), the upload was not wrong."""
    root.rename(root.with_name("elsewhere"))
    with pytest.raises(Unavailable) as raised:
        store.put("acme", io.BytesIO(b"bytes"))
    assert raised.value.retry_after
    assert str(root) not in raised.value.message

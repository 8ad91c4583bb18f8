"""LocalBlobStore on a real folder: what only a folder has (paths, the staging folder,
permissions, a vanished volume). The port's behaviour, shared with S3, is specified in
test_blob_store_contract.py."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from spine.adapters.blob.local import LocalBlobStore
from spine.errors import Unavailable

DATA = b"%PDF-1.7\n" + bytes(range(256)) * 64


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


def test_tenant_names_never_become_paths(store: LocalBlobStore, root: Path) -> None:
    stored = store.put("../../escape", io.BytesIO(DATA))

    assert store.get("../../escape", stored.sha256) == DATA
    [path] = [p for p in blob_files(root) if p.name == stored.sha256]
    assert path.resolve().is_relative_to(root.resolve())
    assert "escape" not in str(path)


def test_puts_leave_the_staging_folder_empty_even_when_the_stream_breaks(
    store: LocalBlobStore, root: Path
) -> None:
    class BrokenAfterOneBlock(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell():
                raise ConnectionResetError("client disconnected mid-upload")
            return super().read(1000)

    store.put("acme", io.BytesIO(DATA))
    store.put("acme", io.BytesIO(DATA))
    with pytest.raises(ConnectionResetError):
        store.put("acme", BrokenAfterOneBlock(DATA))

    assert staging_files(root) == []
    assert len(blob_files(root)) == 1


def test_a_crash_leftover_in_staging_is_listed_as_temporary_and_removable(
    store: LocalBlobStore, root: Path
) -> None:
    (root / ".staging").mkdir()
    leftover = root / ".staging" / "tmpabc123"
    leftover.write_bytes(DATA[:100])

    [entry] = store.list_blobs()
    assert entry.temporary
    assert entry.name == "tmpabc123"

    store.remove(entry)

    assert not leftover.exists()


def test_store_creates_its_root_folder(root: Path) -> None:
    LocalBlobStore(root / "nested" / "deeper")

    assert (root / "nested" / "deeper").is_dir()


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

"""Blobs in a local folder: ``<root>/<tenant>/<sha[:2]>/<sha>``, written atomically."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from spine.adapters.blob.streams import StreamFailed, read_block
from spine.errors import NotFound, PayloadTooLarge, Unavailable
from spine.ports import BlobEntry, StoredBlob

#: What a 503 from an unwritable store asks clients to wait.
RETRY_AFTER_SECONDS = 5
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LocalBlobStore:
    """Content-addressed, per-tenant folders, so deleting a tenant's data is one ``rm``.

    A write goes to a temporary file in the same folder, is fsynced, renamed over its
    final name and the folder fsynced: a crash leaves either no blob or the whole blob.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def tenant_key(self, tenant_id: str) -> str:
        # The tenant comes from a verified token, but a path must never depend on that.
        return hashlib.sha256(tenant_id.encode()).hexdigest()[:32]

    def _path(self, tenant_id: str, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / self.tenant_key(tenant_id) / sha256[:2] / sha256

    def list_blobs(self) -> Iterator[BlobEntry]:
        """Every stored blob, and every leftover temporary file (``sha256`` None)."""
        for path in self.root.glob("*/*/*"):
            if path.is_file() and _SHA256.match(path.name):
                yield BlobEntry(path.parent.parent.name, path.name, path.stat().st_mtime)
        staging = self.root / ".staging"
        if staging.is_dir():
            for path in staging.iterdir():
                yield BlobEntry(".staging", path.name, path.stat().st_mtime, temporary=True)

    def remove(self, entry: BlobEntry) -> None:
        path = self.root / entry.tenant_key
        path = path / entry.name if entry.temporary else path / entry.name[:2] / entry.name
        path.unlink(missing_ok=True)

    def put(self, tenant_id: str, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredBlob:
        try:
            return self._put(tenant_id, stream, max_bytes)
        except StreamFailed as failed:
            # The caller's stream broke (a client gone mid-upload): its error, as it was.
            raise failed.error from None
        except OSError as exc:
            # The folder is gone (an unmounted volume), read-only or full: the store is
            # down, not the request wrong. 503, so clients retry; the path stays in logs.
            raise Unavailable(
                f"the blob store cannot be written ({type(exc).__name__})",
                retry_after=RETRY_AFTER_SECONDS,
            ) from exc

    def _put(self, tenant_id: str, stream: BinaryIO, max_bytes: int | None) -> StoredBlob:
        staging = self.root / ".staging"
        staging.mkdir(exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=staging)
        try:
            with os.fdopen(fd, "wb") as out:
                while block := read_block(stream):
                    digest.update(block)
                    size += len(block)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLarge(f"the file exceeds the limit of {max_bytes} bytes")
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            final = self._path(tenant_id, sha256)
            self._make_dirs(final.parent)
            os.replace(tmp_name, final)
            _fsync_dir(final.parent)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return StoredBlob(sha256=sha256, size_bytes=size)

    def _make_dirs(self, folder: Path) -> None:
        """mkdir -p, fsyncing each new folder's parent so the new entry survives a crash."""
        missing = []
        while not folder.exists() and folder != self.root:
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
            _fsync_dir(new.parent)

    def get(self, tenant_id: str, sha256: str) -> bytes:
        try:
            return self._path(tenant_id, sha256).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"blob {sha256} not found") from exc

    def delete(self, tenant_id: str, sha256: str, *, unless_newer_than: float = 0.0) -> bool:
        """Remove a blob; with ``unless_newer_than`` seconds, keep one written that recently.

        The grace period closes a race with uploads: an upload writes its blob before its
        row commits, so a delete that saw no row may still be followed by a row that needs
        these bytes. Such a blob was just (re)written, so it is kept for the sweeper.
        """
        path = self._path(tenant_id, sha256)
        try:
            if unless_newer_than and time.time() - path.stat().st_mtime < unless_newer_than:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def ping(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK)):
            # The path stays in the logs; callers without a token must not learn it.
            raise Unavailable("the blob store is not writable")


def _fsync_dir(path: Path) -> None:
    if not path.exists():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

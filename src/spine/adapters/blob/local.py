"""Blobs in a local folder: ``<root>/<tenant>/<sha[:2]>/<sha>``, written atomically."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from spine.errors import NotFound, Unavailable
from spine.ports import StoredBlob

_COPY_BUFFER = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LocalBlobStore:
    """Content-addressed, per-tenant folders, so deleting a tenant's data is one ``rm``.

    A write goes to a temporary file in the same folder, is fsynced, renamed over its
    final name and the folder fsynced: a crash leaves either no blob or the whole blob.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, tenant_id: str, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256 hex digest")
        # The tenant comes from a verified token, but a path must never depend on that.
        tenant_dir = hashlib.sha256(tenant_id.encode()).hexdigest()[:32]
        return self.root / tenant_dir / sha256[:2] / sha256

    def put(self, tenant_id: str, stream: BinaryIO) -> StoredBlob:
        staging = self.root / ".staging"
        staging.mkdir(exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=staging)
        try:
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(_COPY_BUFFER):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            final = self._path(tenant_id, sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
            _fsync_dir(final.parent)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return StoredBlob(sha256=sha256, size_bytes=size)

    def get(self, tenant_id: str, sha256: str) -> bytes:
        try:
            return self._path(tenant_id, sha256).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"blob {sha256} not found") from exc

    def delete(self, tenant_id: str, sha256: str) -> None:
        path = self._path(tenant_id, sha256)
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def ping(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK)):
            raise Unavailable(f"blob folder {self.root} is not writable")


def _fsync_dir(path: Path) -> None:
    if not path.exists():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Secrets Spine generates for itself once, into the data dir (mode 0600)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, generate: Callable[[], bytes]) -> bytes:
    """The file's bytes; on first use ``generate()`` is written there, mode 0600.

    The file is written whole under a temporary name, fsynced, then linked into place:
    two processes starting together agree on one secret, and a crash never leaves an
    empty one behind.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, generate())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process linked its secret first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()

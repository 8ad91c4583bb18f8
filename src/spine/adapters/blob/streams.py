"""Reading an upload's stream, with its errors told apart from the store's."""

from __future__ import annotations

from typing import BinaryIO

COPY_BUFFER = 1024 * 1024


class StreamFailed(Exception):
    """The caller's stream broke (a client gone mid-upload): its error, to re-raise as
    it was, rather than as the store being unavailable."""

    def __init__(self, error: OSError) -> None:
        self.error = error


def read_block(stream: BinaryIO) -> bytes:
    """A block of the upload; its OSErrors are the stream's, not the store's."""
    try:
        return stream.read(COPY_BUFFER)
    except OSError as exc:
        raise StreamFailed(exc) from exc

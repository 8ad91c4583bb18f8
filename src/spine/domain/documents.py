"""Documents and their chunks."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spine.domain.jobs import JobState


def new_id(prefix: str) -> str:
    """An unguessable id that sorts by creation time, with a readable prefix (``doc_...``).

    48 bits of milliseconds then 80 random bits, like a ULID: ordering and cursors by id
    follow creation order, and ids of one tenant give no hint about another's.
    """
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{millis:012x}{secrets.token_hex(10)}"


@dataclass(frozen=True)
class Document:
    id: str
    tenant_id: str
    title: str
    filename: str | None
    content_type: str
    size_bytes: int
    sha256: str
    metadata: dict[str, Any]
    chunk_count: int
    created_at: datetime
    updated_at: datetime
    status: JobState | None = None
    latest_job_id: str | None = None


@dataclass(frozen=True)
class Chunk:
    """A piece of a document's text, with its place in the extracted text."""

    id: str
    document_id: str
    ordinal: int
    text: str
    start_char: int
    end_char: int
    embedding: list[float] = field(repr=False, default_factory=list)

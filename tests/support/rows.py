"""Domain rows for tests below the services, with defaults for what a test does not name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from spine.domain.documents import Document, new_id
from spine.domain.jobs import Job, JobState

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def document_row(
    tenant: str,
    document_id: str | None = None,
    *,
    title: str = "t",
    filename: str | None = None,
    sha256: str = "0" * 64,
    chunk_count: int = 0,
    at: datetime = T0,
    content_type: str = "text/plain",
    metadata: dict[str, Any] | None = None,
) -> Document:
    """``at`` is when the document was created and last updated."""
    return Document(
        id=document_id or new_id("doc"),
        tenant_id=tenant,
        title=title,
        filename=filename,
        content_type=content_type,
        size_bytes=1,
        sha256=sha256,
        metadata=metadata or {},
        chunk_count=chunk_count,
        created_at=at,
        updated_at=at,
    )


def job_row(
    tenant: str = "acme",
    *,
    document_id: str | None = None,
    created_at: datetime = T0,
    max_attempts: int = 3,
    created_by: str | None = None,
) -> Job:
    """A PENDING job as ``enqueue`` takes it."""
    return Job(
        id=new_id("job"),
        tenant_id=tenant,
        document_id=document_id or new_id("doc"),
        state=JobState.PENDING,
        attempts=0,
        max_attempts=max_attempts,
        error=None,
        created_at=created_at,
        started_at=None,
        finished_at=None,
        next_run_at=None,
        created_by=created_by,
    )


def unscoped(uow: Any) -> Connection:
    """The unit of work's connection, for a test that reads or changes the tables behind
    the repositories: on PostgreSQL lifted above row-level security first, which would
    otherwise show it no row at all (no tenant is set outside a repository call)."""
    scope = getattr(uow, "scope", None)
    if scope is not None:
        scope.all_tenants()
    conn: Connection = uow.documents._conn
    return conn

"""Uploading, reading, listing and deleting documents."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any, BinaryIO

from spine.domain.documents import Document, new_id
from spine.domain.jobs import Job, JobState
from spine.errors import InvalidRequest, TooManyRequests
from spine.pipeline.detect import detect_content_type
from spine.service.container import Services

SNIFF_BYTES = 8192
#: A blob written this recently may belong to an upload whose row is not committed yet.
BLOB_GRACE_SECONDS = 600.0
MAX_TITLE_CHARS = 500


@dataclass(frozen=True)
class Upload:
    stream: BinaryIO
    filename: str | None
    declared_type: str | None
    title: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Accepted:
    document: Document
    job: Job | None
    duplicate: bool = False
    """The tenant already had these bytes: no new document was made."""


UNFINISHED = (JobState.PENDING, JobState.RUNNING, JobState.RETRYING)


def default_title(filename: str | None) -> str:
    return PurePath(filename).name if filename else "untitled"


def upload(
    services: Services, tenant_id: str, upload: Upload, *, reprocess: bool = False
) -> Accepted:
    """Store the bytes, then the document row and its PENDING job in one transaction.

    The blob goes first: if the database write fails the caller gets an error and an
    orphan blob is left (content-addressed, swept later); the reverse order could
    acknowledge a document whose bytes are missing. Only after the commit does the API
    answer 202. Bytes the tenant already has make no new document, and no new job unless
    ``reprocess`` asks for one.
    """
    if upload.title is not None and len(upload.title) > MAX_TITLE_CHARS:
        raise InvalidRequest(f"title is longer than {MAX_TITLE_CHARS} characters")
    head = upload.stream.read(SNIFF_BYTES)
    content_type = detect_content_type(
        head, declared=upload.declared_type, filename=upload.filename
    )
    upload.stream.seek(0)
    _refuse_when_overloaded(services, tenant_id)
    blob = services.blobs.put(
        tenant_id, upload.stream, max_bytes=services.settings.max_upload_bytes
    )
    now = services.clock()
    with services.db.write() as uow:
        existing = uow.documents.find_by_sha256(tenant_id, blob.sha256)
        if existing is not None and not reprocess:
            latest = (
                uow.jobs.get(tenant_id, existing.latest_job_id) if existing.latest_job_id else None
            )
            return Accepted(existing, latest, duplicate=True)
        document = existing or Document(
            id=new_id("doc"),
            tenant_id=tenant_id,
            title=upload.title or default_title(upload.filename),
            filename=upload.filename,
            content_type=content_type,
            size_bytes=blob.size_bytes,
            sha256=blob.sha256,
            metadata=upload.metadata,
            chunk_count=0,
            created_at=now,
            updated_at=now,
        )
        job = new_job(services, tenant_id, document.id)
        if existing is None:
            uow.documents.add(tenant_id, replace(document, latest_job_id=job.id))
        else:
            uow.documents.set_latest_job(tenant_id, document.id, job.id)
        uow.jobs.enqueue(tenant_id, job)
        return Accepted(
            uow.documents.get(tenant_id, document.id),
            uow.jobs.get(tenant_id, job.id),
            duplicate=existing is not None,
        )


def new_job(services: Services, tenant_id: str, document_id: str) -> Job:
    now = services.clock()
    return Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        document_id=document_id,
        state=JobState.PENDING,
        attempts=0,
        max_attempts=services.settings.job_max_attempts,
        error=None,
        created_at=now,
        started_at=None,
        finished_at=None,
        next_run_at=now,
    )


def _refuse_when_overloaded(services: Services, tenant_id: str) -> None:
    limit = services.settings.tenant_max_unfinished_jobs
    with services.db.read() as uow:
        counts = uow.jobs.count_by_state(tenant_id)
    unfinished = sum(counts[state] for state in UNFINISHED)
    if unfinished >= limit:
        raise TooManyRequests(
            f"{unfinished} documents are still being processed (limit {limit}); retry later",
            retry_after=services.settings.overload_retry_after_seconds,
        )


def get(services: Services, tenant_id: str, document_id: str) -> Document:
    with services.db.read() as uow:
        return uow.documents.get(tenant_id, document_id)


def page(
    services: Services, tenant_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Document], str | None]:
    with services.db.read() as uow:
        items = uow.documents.list(tenant_id, limit=limit + 1, after=cursor)
    next_cursor = items[limit - 1].id if len(items) > limit else None
    return items[:limit], next_cursor


def delete(services: Services, tenant_id: str, document_id: str) -> None:
    """Remove the document, its chunks, index entries and jobs in one transaction.

    The blob goes after the commit, and only when no other document of the tenant
    holds the same bytes. A worker still running this document's job loses its lease
    (the job row is gone), so its result can never bring the chunks back.
    """
    with services.db.write() as uow:
        document = uow.documents.get(tenant_id, document_id)
        uow.index.delete_document(tenant_id, document_id)
        uow.jobs.delete_for_document(tenant_id, document_id)
        uow.documents.delete(tenant_id, document_id)
        still_used = uow.documents.count_with_sha256(tenant_id, document.sha256) > 0
    if not still_used:
        services.blobs.delete(tenant_id, document.sha256, unless_newer_than=BLOB_GRACE_SECONDS)

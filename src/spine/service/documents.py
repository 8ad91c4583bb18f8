"""Uploading, reading, listing and deleting documents."""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any, BinaryIO

import structlog

from spine.domain.documents import Document, new_id
from spine.domain.jobs import Job, JobState
from spine.errors import InvalidRequest, TooManyRequests
from spine.observability.logging import current_request_id
from spine.observability.tracing import current_traceparent
from spine.pipeline.detect import detect_content_type
from spine.service import privacy
from spine.service.container import Services

log = structlog.get_logger("spine.documents")

SNIFF_BYTES = 8192
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


#: What is left of a file name after ``clean_filename``; a common file system's limit.
MAX_FILENAME_CHARS = 255
#: Bidirectional overrides, embeddings, isolates and marks: they make "exe.txt" display
#: what is really "txt.exe".
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
#: Longest suffix kept when a name is cut: detection uses it to break ties.
_MAX_KEPT_SUFFIX = 16


def clean_filename(filename: str | None) -> str | None:
    """The uploader's file name as data: never a path (blobs are named by their hash),
    but shown in titles, logs and terminals. Control, line-separator and bidi characters
    go; the rest is kept as sent, cut to ``MAX_FILENAME_CHARS`` with its suffix kept."""
    if filename is None:
        return None
    kept = "".join(
        ch
        for ch in filename
        if unicodedata.category(ch) not in ("Cc", "Zl", "Zp") and ch not in _BIDI_CONTROLS
    )
    if len(kept) > MAX_FILENAME_CHARS:
        suffix = PurePath(kept).suffix
        suffix = suffix if len(suffix) <= _MAX_KEPT_SUFFIX else ""
        kept = kept[: MAX_FILENAME_CHARS - len(suffix)] + suffix
    return kept or None


def default_title(filename: str | None) -> str:
    """The base name, whichever separator the uploader's system used."""
    base = PurePath(filename.replace("\\", "/")).name if filename else ""
    return base if base.strip(". ") else "untitled"


def upload(
    services: Services,
    tenant_id: str,
    upload: Upload,
    *,
    subject: str | None = None,
    sees_all_jobs: bool = False,
    reprocess: bool = False,
) -> Accepted:
    """Store the bytes, then the document row and its PENDING job in one transaction.

    The blob goes first: if the database write fails the caller gets an error and an
    orphan blob is left (content-addressed, swept later); the reverse order could
    acknowledge a document whose bytes are missing. Only after the commit does the API
    answer 202. Bytes the tenant already has make no new document, and no new job unless
    ``reprocess`` asks for one.

    ``subject`` is recorded as the new job's ``created_by``. For a duplicate, the latest
    job is returned only when the caller may read it (theirs, or ``sees_all_jobs``).
    """
    if upload.title is not None and len(upload.title) > MAX_TITLE_CHARS:
        raise InvalidRequest(f"title is longer than {MAX_TITLE_CHARS} characters")
    upload = replace(upload, filename=clean_filename(upload.filename))
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
    document_id = new_id("doc")
    # Read before the write transaction: it may load the tenant's policy and keys.
    fields = privacy.scrub_fields(services, tenant_id, document_id, upload.title, upload.metadata)
    with services.db.write() as uow:
        existing = uow.documents.find_by_sha256(tenant_id, blob.sha256)
        if existing is not None and not reprocess:
            latest = (
                uow.jobs.get(tenant_id, existing.latest_job_id) if existing.latest_job_id else None
            )
            if latest is not None and not sees_all_jobs and latest.created_by != subject:
                latest = None  # another subject's job: not the caller's to read
            return Accepted(existing, latest, duplicate=True)
        document = existing or Document(
            id=document_id,
            tenant_id=tenant_id,
            title=fields.title or default_title(upload.filename),
            filename=upload.filename,
            content_type=content_type,
            size_bytes=blob.size_bytes,
            sha256=blob.sha256,
            metadata=fields.metadata,
            chunk_count=0,
            created_at=now,
            updated_at=now,
        )
        job = new_job(services, tenant_id, document.id, created_by=subject)
        if existing is None:
            uow.documents.add(tenant_id, replace(document, latest_job_id=job.id))
            uow.privacy.replace_vault(tenant_id, document.id, fields.vault, now=now)
        else:
            uow.documents.set_latest_job(tenant_id, document.id, job.id)
        uow.jobs.enqueue(tenant_id, job)
        accepted = Accepted(
            uow.documents.get(tenant_id, document.id),
            uow.jobs.get(tenant_id, job.id),
            duplicate=existing is not None,
        )
    # Once committed: a rolled-back upload queued nothing.
    services.radar.observe("jobs", tenant_id)
    return accepted


def new_job(services: Services, tenant_id: str, document_id: str, *, created_by: str | None) -> Job:
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
        created_by=created_by,
        # The request queueing it: the worker's log lines and spans join that request's.
        request_id=current_request_id(),
        traceparent=current_traceparent(),
    )


def _refuse_when_overloaded(services: Services, tenant_id: str) -> None:
    limit = services.settings.tenant_max_unfinished_jobs
    with services.db.read() as uow:
        # Only the unfinished states: an index range, however many jobs the tenant has done.
        counts = uow.jobs.count_by_state(tenant_id, states=UNFINISHED)
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


def delete(services: Services, tenant_id: str, document_id: str, *, compact: bool = True) -> None:
    """Remove the document and every copy of what it said, in one transaction: chunks,
    full-text and vector entries, its PII vault entries, jobs, and stored idempotency
    responses that quote it (an upload's response holds its title and file name). No
    result cache exists yet; one must be purged here when it comes.

    The blob goes after the commit, unless another document of the tenant holds the same
    bytes or they were written again after this document was made: that is an upload in
    flight whose row is not committed yet, and ``spine gc`` sweeps the bytes if nothing
    claims them. A worker still running this document's job loses its lease (the job row
    is gone), so its result can never bring the chunks back. Then ``compact`` empties the
    database's write-ahead log, which still holds the pages from before the delete.
    """
    with services.db.write() as uow:
        document = uow.documents.get(tenant_id, document_id)
        uow.index.delete_document(tenant_id, document_id)
        uow.privacy.delete_vault(tenant_id, document_id)
        uow.privacy.forget_responses_mentioning(tenant_id, document_id)
        uow.jobs.delete_for_document(tenant_id, document_id)
        uow.documents.delete(tenant_id, document_id)
        still_used = uow.documents.count_with_sha256(tenant_id, document.sha256) > 0
    if not still_used:
        age = time.time() - document.created_at.timestamp()
        services.blobs.delete(tenant_id, document.sha256, unless_newer_than=max(age, 1e-3))
    if compact:
        compact_storage(services)


def compact_storage(services: Services) -> None:
    """Best effort: a delete has committed whether or not the log could be emptied now;
    the next compaction finishes the job."""
    try:
        services.db.compact()
    except Exception as exc:
        log.warning("db.compact_failed", error_type=type(exc).__name__)

"""The public shapes of the API's resources: one family per resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from spine.domain.documents import Document
from spine.domain.jobs import Job, JobState
from spine.domain.search import SearchMode
from spine.service.search import SearchResult


class DocumentPublic(BaseModel):
    id: str
    title: str
    content_type: str
    size_bytes: int
    sha256: str
    metadata: dict[str, Any]
    status: JobState | None = Field(description="State of the document's latest job.")
    chunk_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, document: Document) -> DocumentPublic:
        return cls(
            id=document.id,
            title=document.title,
            content_type=document.content_type,
            size_bytes=document.size_bytes,
            sha256=document.sha256,
            metadata=document.metadata,
            status=document.status,
            chunk_count=document.chunk_count,
            created_at=document.created_at,
            updated_at=document.updated_at,
        )


class DocumentPage(BaseModel):
    items: list[DocumentPublic]
    next_cursor: str | None


class JobErrorPublic(BaseModel):
    type: str
    message: str
    transient: bool = Field(description="True: the job is retried; false: it is permanent.")


class JobEventPublic(BaseModel):
    from_state: JobState | None = Field(serialization_alias="from")
    to_state: JobState = Field(serialization_alias="to")
    at: datetime
    detail: str


class JobPublic(BaseModel):
    id: str
    document_id: str
    state: JobState
    attempts: int
    max_attempts: int
    error: JobErrorPublic | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_run_at: datetime | None
    events: list[JobEventPublic]

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        return cls(
            id=job.id,
            document_id=job.document_id,
            state=job.state,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            error=JobErrorPublic(
                type=job.error.type, message=job.error.message, transient=job.error.transient
            )
            if job.error
            else None,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            next_run_at=job.next_run_at,
            events=[
                JobEventPublic(
                    from_state=event.from_state,
                    to_state=event.to_state,
                    at=event.at,
                    detail=event.detail,
                )
                for event in job.events
            ],
        )


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None


class UploadAccepted(BaseModel):
    document: DocumentPublic
    job: JobPublic | None = Field(description="The new job; for a duplicate, the latest one.")
    duplicate: bool = Field(description="The tenant already had these bytes.")


class RetryRequest(BaseModel):
    error_type: str | None = Field(None, description="Only dead letters with this error.type.")
    limit: int = Field(100, ge=1, le=1000, description="At most this many jobs.")


class RetryResult(BaseModel):
    retried: list[str]
    count: int


class JobStats(BaseModel):
    states: dict[JobState, int]
    dlq_depth: int = Field(description="Jobs in FAILED: the dead-letter queue's depth.")


class SearchHitPublic(BaseModel):
    document_id: str
    chunk_id: str
    title: str
    score: float
    snippet: str = Field(description="HTML-escaped text; matched terms wrapped in <mark>.")


class SearchResponse(BaseModel):
    query: str
    mode: SearchMode
    took_ms: float
    results: list[SearchHitPublic]
    degraded: list[str] = Field(
        default_factory=list,
        description='Legs that could not run: ["vector"] while the embedder is down.',
    )

    @classmethod
    def of(cls, result: SearchResult) -> SearchResponse:
        return cls(
            query=result.query,
            mode=result.mode,
            took_ms=result.took_ms,
            degraded=result.degraded,
            results=[
                SearchHitPublic(
                    document_id=hit.document_id,
                    chunk_id=hit.chunk_id,
                    title=hit.title,
                    score=hit.score,
                    snippet=hit.snippet,
                )
                for hit in result.hits
            ],
        )

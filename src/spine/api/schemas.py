"""The public shapes of the API's resources: one family per resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spine.domain.documents import Document
from spine.domain.jobs import Job, JobState
from spine.domain.privacy import BUILTIN_KINDS, CustomPattern, PiiAction, PiiPolicy
from spine.domain.search import SearchMode
from spine.ports import AuditEntry, StoredPolicy
from spine.service.privacy import DocumentText, ForgetReceipt
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
    created_by: str | None = Field(
        description="The subject (token sub) who queued the job: uploaded, reprocessed or "
        "retried it. Non-admins see only their own jobs."
    )
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
            created_by=job.created_by,
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


class AuditEntryPublic(BaseModel):
    seq: int = Field(description="Position in the log; ascending, shared by all tenants.")
    at: datetime
    actor: str = Field(description='The token\'s sub; "anonymous" before authentication.')
    action: str = Field(description="A stable dotted name, e.g. document.delete.")
    resource: str = Field(description='Ids or a route template only; "-" when none.')
    request_id: str
    outcome: str = Field(description='"success", or the problem type, e.g. "not-found".')
    prev_hash: str = Field(description="SHA-256 of the tenant's entry before this one.")
    hash: str = Field(description="SHA-256 of this entry's canonical bytes.")

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryPublic:
        return cls(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            resource=entry.resource,
            request_id=entry.request_id,
            outcome=entry.outcome,
            prev_hash=entry.prev_hash,
            hash=entry.hash,
        )


class AuditPage(BaseModel):
    items: list[AuditEntryPublic] = Field(description="Newest first.")
    next_cursor: str | None


class CustomPatternPublic(BaseModel):
    kind: str = Field(
        pattern=r"^[A-Z][A-Z0-9_]{1,31}$",
        description="The kind's name, e.g. EMPLOYEE_ID; it appears in tokens.",
    )
    pattern: str = Field(
        min_length=1, max_length=1000, description="An RE2 regular expression (linear time)."
    )


class PiiPolicyUpdate(BaseModel):
    """A tenant's whole PII policy; it applies to documents processed from then on."""

    model_config = ConfigDict(extra="forbid")

    actions: dict[str, PiiAction] = Field(
        default_factory=dict,
        description="Kind -> tokenise | redact | keep. A kind not named is tokenised.",
    )
    custom: list[CustomPatternPublic] = Field(
        default_factory=list, max_length=50, description="The tenant's own kinds."
    )

    def to_policy(self) -> PiiPolicy:
        return PiiPolicy(
            actions=dict(self.actions),
            custom=tuple(CustomPattern(c.kind, c.pattern) for c in self.custom),
        )


class PiiPolicyPublic(PiiPolicyUpdate):
    default_action: PiiAction = Field(
        PiiAction.TOKENISE, description="What happens to a kind the policy does not name."
    )
    builtin_kinds: list[str] = Field(description="Kinds Spine detects without a pattern.")
    updated_at: datetime | None = Field(description="None: the tenant never set a policy.")
    updated_by: str | None

    @classmethod
    def of(cls, stored: StoredPolicy) -> PiiPolicyPublic:
        return cls(
            actions=dict(stored.policy.actions),
            custom=[
                CustomPatternPublic(kind=c.kind, pattern=c.pattern) for c in stored.policy.custom
            ],
            builtin_kinds=list(BUILTIN_KINDS),
            updated_at=stored.updated_at,
            updated_by=stored.updated_by,
        )


class ForgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(
        min_length=1,
        max_length=1000,
        description="The value to forget, e.g. an e-mail address; its kind is detected.",
    )
    delete_documents: bool = Field(
        False, description="Also delete every affected document entirely."
    )
    delete_originals: bool = Field(
        False,
        description="Also delete the affected documents' uploaded bytes (they stay "
        "searchable, but can no longer be processed again).",
    )


class ForgetReceiptPublic(BaseModel):
    kinds: list[str] = Field(description="Kinds detected in the value.")
    tokens: list[str] = Field(description="The tenant's tokens for the value.")
    documents_affected: list[str] = Field(description="Documents that held the value.")
    vault_entries_removed: int
    clear_text_documents: list[str] = Field(
        description="Documents holding the value in clear text (a keep policy, or their file name)."
    )
    documents_deleted: list[str]
    originals_deleted: int = Field(description="Uploaded files deleted (delete_originals).")
    note: str = Field(description="What remains, if anything, and where.")

    @classmethod
    def of(cls, receipt: ForgetReceipt) -> ForgetReceiptPublic:
        return cls(
            kinds=receipt.kinds,
            tokens=receipt.tokens,
            documents_affected=receipt.documents_affected,
            vault_entries_removed=receipt.vault_entries_removed,
            clear_text_documents=receipt.clear_text_documents,
            documents_deleted=receipt.documents_deleted,
            originals_deleted=receipt.originals_deleted,
            note=receipt.note,
        )


class DocumentTextPublic(BaseModel):
    document_id: str
    title: str
    text: str = Field(
        description="The stored text, personal data as tokens (<EMAIL:3f9a1c2b04d1>) "
        "or redactions ([EMAIL]) unless revealed."
    )
    revealed: bool = Field(description="Tokens were replaced by their values (pii:read).")
    unrevealed_tokens: int = Field(
        description="Distinct tokens left as they are on reveal: their values were forgotten."
    )

    @classmethod
    def of(cls, text: DocumentText) -> DocumentTextPublic:
        return cls(
            document_id=text.document_id,
            title=text.title,
            text=text.text,
            revealed=text.revealed,
            unrevealed_tokens=text.unrevealed_tokens,
        )

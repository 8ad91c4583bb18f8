"""The public shapes of the API's resources: one family per resource."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from spine.domain.documents import Document
from spine.domain.jobs import Job, JobState
from spine.domain.privacy import BUILTIN_KINDS, CustomPattern, PiiAction, PiiPolicy
from spine.domain.search import (
    Fusion,
    FusionMethod,
    GroupBy,
    Leg,
    LegRank,
    SearchFilter,
    SearchMode,
)
from spine.ports import AuditEntry, StoredPolicy
from spine.service.privacy import DocumentText, ForgetReceipt
from spine.service.search import MAX_CANDIDATES, MAX_K, MAX_QUERY_CHARS, SearchResult


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


MAX_FILTER_DOCUMENT_IDS = 1000
MAX_FILTER_METADATA_KEYS = 20
MAX_FILTER_METADATA_VALUES = 100
MAX_FILTER_CONTENT_TYPES = 50
#: A cursor is a short token (an offset and a digest); anything far longer is not one.
MAX_CURSOR_CHARS = 200
#: Metadata numbers are compared in the database, which holds 64-bit integers at most.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _fractional(value: object) -> object:
    # Without this, an integer too large for the int branch would pass as an inexact float.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("integers must fit in 64 bits")
    return value


#: No NUL: PostgreSQL text and jsonb cannot hold one, so no stored value has it.
_NO_NUL = r"^[^\x00]*$"

MetadataScalar = (
    Annotated[str, Field(max_length=1000, pattern=_NO_NUL)]
    | Annotated[int, Field(ge=_INT64_MIN, le=_INT64_MAX)]
    | Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_fractional)]
    | bool
)
FilterString = Annotated[str, Field(min_length=1, max_length=255, pattern=_NO_NUL)]


class MetadataAnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    any_of: list[MetadataScalar] = Field(
        alias="in",
        min_length=1,
        max_length=MAX_FILTER_METADATA_VALUES,
        description=f"The key's value must be one of these (1 to {MAX_FILTER_METADATA_VALUES}).",
    )


class CreatedAtRange(BaseModel):
    """A half-open range, so consecutive ranges neither overlap nor leave a gap."""

    model_config = ConfigDict(extra="forbid")

    gte: datetime | None = Field(
        None,
        description="Created at or after this instant (inclusive). RFC 3339 with a time "
        "zone offset (Z or +hh:mm); a time without one is refused.",
    )
    lt: datetime | None = Field(
        None,
        description="Created before this instant (exclusive). RFC 3339 with a time zone "
        "offset (Z or +hh:mm); a time without one is refused.",
    )

    @field_validator("gte", "lt")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # Refused rather than taken as UTC: a local time read as UTC would silently shift
        # the range by the caller's offset.
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a time zone offset, e.g. 2024-05-01T00:00:00Z")
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("is out of range once converted to UTC") from exc

    @model_validator(mode="after")
    def _not_empty(self) -> CreatedAtRange:
        if self.gte is not None and self.lt is not None and self.gte >= self.lt:
            raise ValueError("gte must be before lt")
        return self


class SearchFilters(BaseModel):
    """Which documents may be returned; every filter given must hold."""

    model_config = ConfigDict(extra="forbid")

    document_ids: list[FilterString] | None = Field(
        None,
        min_length=1,
        max_length=MAX_FILTER_DOCUMENT_IDS,
        description=f"Only these documents (1 to {MAX_FILTER_DOCUMENT_IDS} ids). An id of "
        "another tenant, or of no document, matches nothing.",
    )
    metadata: dict[
        Annotated[str, Field(min_length=1, max_length=200, pattern=_NO_NUL)],
        MetadataScalar | MetadataAnyOf,
    ] = Field(
        default_factory=dict,
        max_length=MAX_FILTER_METADATA_KEYS,
        description="Metadata key -> a value it must equal (string, number or boolean), "
        'or {"in": [values]} for any of several. Up to '
        f"{MAX_FILTER_METADATA_KEYS} keys; a document without the key never matches.",
    )
    content_types: list[FilterString] | None = Field(
        None,
        min_length=1,
        max_length=MAX_FILTER_CONTENT_TYPES,
        description="Only documents of these detected types, e.g. application/pdf.",
    )
    created_at: CreatedAtRange | None = Field(
        None, description="Only documents uploaded in this range."
    )

    def to_filter(self) -> SearchFilter:
        return SearchFilter(
            document_ids=None if self.document_ids is None else tuple(self.document_ids),
            metadata=tuple(
                (key, tuple(value.any_of) if isinstance(value, MetadataAnyOf) else (value,))
                for key, value in self.metadata.items()
            ),
            content_types=None if self.content_types is None else tuple(self.content_types),
            created_from=self.created_at.gte if self.created_at else None,
            created_before=self.created_at.lt if self.created_at else None,
        )


class FusionOverride(BaseModel):
    """Any part left out is the service's configured value."""

    model_config = ConfigDict(extra="forbid")

    method: FusionMethod | None = Field(
        None,
        description="rrf: each leg adds weight / (rrf_k + rank); weighted: each leg's scores "
        "are min-max normalised over its candidates, then weighted and summed.",
    )
    rrf_k: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="The RRF constant: larger values flatten the difference between ranks.",
    )
    keyword_weight: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="The keyword leg's share; the vector leg gets 1 - keyword_weight.",
    )

    def over(self, configured: Fusion) -> Fusion:
        return Fusion(
            method=configured.method if self.method is None else self.method,
            rrf_k=configured.rrf_k if self.rrf_k is None else self.rrf_k,
            keyword_weight=(
                configured.keyword_weight if self.keyword_weight is None else self.keyword_weight
            ),
        )


class SearchRequestBody(BaseModel):
    """A search with filters, grouping, paging and ranking options."""

    model_config = ConfigDict(extra="forbid")

    q: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to search for.")
    k: int = Field(10, ge=1, le=MAX_K, description="Results per page.")
    mode: SearchMode = Field(
        SearchMode.HYBRID,
        description="keyword (BM25), semantic (vector KNN) or hybrid (both, fused).",
    )
    offset: int = Field(
        0,
        ge=0,
        description="Results to skip; the page must start inside the candidates ranked. "
        "Not with cursor.",
    )
    cursor: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        description="A previous answer's next_cursor: the next page of that search. The "
        "request must otherwise be the same (explain may differ). Not with offset.",
    )
    candidates: int | None = Field(
        None,
        ge=1,
        le=MAX_CANDIDATES,
        description="How many chunks each leg ranks (documents, with group_by=document): "
        "every page of this search is cut from that one ranking, so walking the pages never "
        "repeats or skips a result, and ends there. Ask for more to page deeper. Default: "
        "the configured SPINE_SEARCH_KEYWORD_CANDIDATES and SPINE_SEARCH_VECTOR_CANDIDATES.",
    )
    filters: SearchFilters | None = Field(None, description="Restrict the documents searched.")
    group_by: GroupBy = Field(
        GroupBy.CHUNK,
        description="chunk: every matching chunk; document: each document once, by its best chunk.",
    )
    explain: bool = Field(
        False,
        description="Add each result's explain: how each leg ranked it and what it added.",
    )
    fusion: FusionOverride | None = Field(
        None, description="Override how hybrid mode fuses its legs, for this request only."
    )


class LegRankPublic(BaseModel):
    rank: int = Field(description="1-based rank in this leg's own list of candidates.")
    score: float = Field(
        description="The leg's raw score: BM25 for keyword, cosine similarity for vector. "
        "Higher is better."
    )
    weight: float = Field(description="The leg's weight in the fusion; 1 when it ran alone.")
    contribution: float = Field(description="What this leg added to the result's score.")

    @classmethod
    def of(cls, leg: LegRank) -> LegRankPublic:
        return cls(rank=leg.rank, score=leg.score, weight=leg.weight, contribution=leg.contribution)


class ExplainPublic(BaseModel):
    keyword: LegRankPublic | None = Field(
        description="Where the keyword leg put this chunk; null: it did not find it, or did "
        "not run."
    )
    vector: LegRankPublic | None = Field(
        description="Where the vector leg put this chunk; null: it did not find it, or did not run."
    )

    @classmethod
    def of(cls, legs: Mapping[Leg, LegRank]) -> ExplainPublic:
        keyword, vector = legs.get(Leg.KEYWORD), legs.get(Leg.VECTOR)
        return cls(
            keyword=LegRankPublic.of(keyword) if keyword else None,
            vector=LegRankPublic.of(vector) if vector else None,
        )


class FusionPublic(BaseModel):
    method: FusionMethod = Field(description="rrf or weighted.")
    rrf_k: int = Field(description="The RRF constant (used by rrf only).")
    keyword_weight: float = Field(description="The keyword leg's share.")
    vector_weight: float = Field(description="The vector leg's share: 1 - keyword_weight.")

    @classmethod
    def of(cls, fusion: Fusion) -> FusionPublic:
        return cls(
            method=fusion.method,
            rrf_k=fusion.rrf_k,
            keyword_weight=fusion.keyword_weight,
            vector_weight=fusion.weight(Leg.VECTOR),
        )


class SearchHitPublic(BaseModel):
    document_id: str = Field(description="The document the chunk belongs to.")
    chunk_id: str = Field(description="The matching chunk (with group_by=document: its best).")
    title: str = Field(description="The document's title.")
    score: float = Field(description="Higher is better; comparable within one answer only.")
    snippet: str = Field(description="HTML-escaped text; matched terms wrapped in <mark>.")
    explain: ExplainPublic | None = Field(
        description="How the result got its score; null unless explain was asked."
    )


class SearchResponse(BaseModel):
    query: str = Field(description="The query as searched (surrounding whitespace removed).")
    mode: SearchMode = Field(description="The mode asked for.")
    took_ms: float = Field(description="Time spent answering, in milliseconds.")
    results: list[SearchHitPublic] = Field(description="Best first.")
    degraded: list[str] = Field(
        default_factory=list,
        description='Legs that could not run: ["vector"] while the embedder is down.',
    )
    offset: int = Field(description="Where this page starts in the ranking (0: the top).")
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null: there are no more results."
    )
    fusion: FusionPublic | None = Field(
        description="How the legs were fused (hybrid mode); null in the other modes."
    )

    @classmethod
    def of(cls, result: SearchResult) -> SearchResponse:
        return cls(
            query=result.query,
            mode=result.mode,
            took_ms=result.took_ms,
            degraded=result.degraded,
            offset=result.offset,
            next_cursor=result.next_cursor,
            fusion=FusionPublic.of(result.fusion) if result.fusion else None,
            results=[
                SearchHitPublic(
                    document_id=hit.document_id,
                    chunk_id=hit.chunk_id,
                    title=hit.title,
                    score=hit.score,
                    snippet=hit.snippet,
                    explain=ExplainPublic.of(hit.legs) if hit.legs else None,
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

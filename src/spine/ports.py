"""The small interfaces the service layer talks to. Adapters implement them.

Every repository call takes the tenant as its first argument: there is no way to read or
write a tenant's rows without naming the tenant. The one exception is the queue's claim
and lease reaping, which serve all tenants by design; the claimed job then carries its
tenant into every later call.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Protocol

from spine.domain.documents import Chunk, Document
from spine.domain.jobs import Job, JobError, JobState, RetryDecision, RetryPolicy
from spine.domain.search import Candidate
from spine.pipeline.extract import Extracted


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class StoredResponse:
    """A response kept under an idempotency key: replayed as it was."""

    status: int
    body: str | None  # JSON text
    headers: dict[str, str]


@dataclass(frozen=True)
class BlobEntry:
    """A stored object as the sweeper sees it: the tenant only as the store's key for it."""

    tenant_key: str
    name: str
    modified_at: float  # seconds since the epoch
    temporary: bool = False


class BlobStore(Protocol):
    """Content-addressed bytes, namespaced per tenant."""

    def tenant_key(self, tenant_id: str) -> str: ...

    def list_blobs(self) -> Iterator[BlobEntry]: ...

    def remove(self, entry: BlobEntry) -> None: ...

    def put(
        self, tenant_id: str, stream: BinaryIO, *, max_bytes: int | None = None
    ) -> StoredBlob: ...

    def get(self, tenant_id: str, sha256: str) -> bytes: ...

    def delete(self, tenant_id: str, sha256: str, *, unless_newer_than: float = 0.0) -> bool: ...

    def ping(self) -> None: ...


class Extractor(Protocol):
    """Bytes of a known type to text; may run the parser in another process."""

    def extract(self, data: bytes, content_type: str) -> Extracted: ...

    def close(self) -> None: ...


class Embedder(Protocol):
    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class DocumentRepository(Protocol):
    def add(self, tenant_id: str, document: Document) -> None: ...

    def get(self, tenant_id: str, document_id: str) -> Document: ...

    def list(self, tenant_id: str, *, limit: int, after: str | None) -> list[Document]: ...

    def delete(self, tenant_id: str, document_id: str) -> Document: ...

    def find_by_sha256(self, tenant_id: str, sha256: str) -> Document | None: ...

    def count_with_sha256(self, tenant_id: str, sha256: str) -> int: ...

    def all_blob_refs(self) -> builtins.set[tuple[str, str]]:
        """(tenant, sha256) of every document of every tenant: for the blob sweeper only."""
        ...

    def set_latest_job(self, tenant_id: str, document_id: str, job_id: str) -> None: ...

    def mark_processed(
        self, tenant_id: str, document_id: str, *, chunk_count: int, title: str, now: datetime
    ) -> None: ...


class JobRepository(Protocol):
    def enqueue(self, tenant_id: str, job: Job) -> None: ...

    def get(self, tenant_id: str, job_id: str) -> Job: ...

    def list(
        self, tenant_id: str, *, state: JobState | None, limit: int, after: str | None
    ) -> list[Job]: ...

    def claim(self, *, worker_id: str, now: datetime, lease_seconds: float) -> Job | None: ...

    def reap_expired(self, *, now: datetime, policy: RetryPolicy) -> int: ...

    def heartbeat(
        self, tenant_id: str, job_id: str, *, lease_token: str, now: datetime, lease_seconds: float
    ) -> None: ...

    def succeed(self, tenant_id: str, job_id: str, *, lease_token: str, now: datetime) -> None: ...

    def fail(
        self,
        tenant_id: str,
        job_id: str,
        *,
        lease_token: str,
        decision: RetryDecision,
        error: JobError,
        now: datetime,
        refund_attempt: bool = False,
    ) -> None: ...

    def delete_for_document(self, tenant_id: str, document_id: str) -> None: ...

    def count_by_state(self, tenant_id: str) -> dict[JobState, int]: ...

    def failed_ids(
        self, tenant_id: str, *, error_type: str | None, limit: int
    ) -> builtins.list[str]: ...

    def requeue(self, tenant_id: str, job_id: str, *, now: datetime, detail: str) -> None: ...


class IdempotencyRepository(Protocol):
    def begin(
        self,
        tenant_id: str,
        key: str,
        *,
        fingerprint: str,
        now: datetime,
        ttl: timedelta,
        lock: timedelta,
    ) -> StoredResponse | None: ...

    def complete(self, tenant_id: str, key: str, response: StoredResponse) -> None: ...

    def release(self, tenant_id: str, key: str) -> None: ...

    def purge_expired(self, *, now: datetime, limit: int) -> int: ...


class SearchIndex(Protocol):
    """Full-text and vector entries of chunks; keys are the index's own integer row keys."""

    def replace(
        self, tenant_id: str, document_id: str, title: str, chunks: Sequence[Chunk]
    ) -> None: ...

    def delete_document(self, tenant_id: str, document_id: str) -> None: ...

    def keyword(self, tenant_id: str, query: str, limit: int) -> list[Candidate]: ...

    def semantic(self, tenant_id: str, vector: Sequence[float], limit: int) -> list[Candidate]: ...

    def describe(self, tenant_id: str, keys: Sequence[int], query: str) -> dict[int, HitInfo]: ...


@dataclass(frozen=True)
class HitInfo:
    document_id: str
    chunk_id: str
    title: str
    snippet: str


# -- Audit log (issue 4) ------------------------------------------------------------


class AuditRepository(Protocol):
    """The append-only audit log; every method names its tenant."""


# -- Personal data: tenant keys, the vault, policies (issue 4) -------------------------


class PrivacyRepository(Protocol):
    """Tenant keys (wrapped), vault entries and PII policies; every method names its tenant."""


class UnitOfWork(Protocol):
    """Repositories sharing one transaction: committed on a clean exit, rolled back else."""

    @property
    def documents(self) -> DocumentRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def index(self) -> SearchIndex: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    @property
    def privacy(self) -> PrivacyRepository: ...


class Database(Protocol):
    def write(self) -> AbstractContextManager[UnitOfWork]: ...

    def read(self) -> AbstractContextManager[UnitOfWork]: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

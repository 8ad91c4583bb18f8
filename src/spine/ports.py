"""The small interfaces the service layer talks to. Adapters implement them.

Tenant scoping lives here, in the repository layer: every method of a tenant repository
(documents, jobs, idempotency keys, the search index, audit, privacy) takes the tenant as
its first argument, and every statement behind it filters on that tenant, so there is no
way to read or write a tenant's rows without naming the tenant
(tests/adapters/sql/test_tenant_scoping.py holds every such Protocol to that).

A little machinery serves every tenant by design, and has ports of its own so that it
never hides among the tenant methods: :class:`JobDispatcher` (the workers' claim and
lease reaping; a claimed job then carries its tenant into every later call) and
:class:`Housekeeping` (the blob sweeper's references, the purge of expired idempotency
keys). The API layer never calls them: only the worker loop and ``spine gc`` do.
:class:`SloRepository` holds SLO event counts, which belong to no tenant; the API reads
them only for callers with the ``ops:read`` scope (``GET /v1/admin/slo``).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Protocol

from spine.domain.documents import Chunk, Document
from spine.domain.jobs import Job, JobError, JobState, RetryDecision, RetryPolicy
from spine.domain.privacy import PiiPolicy
from spine.domain.ratelimit import BucketRequest, Decision
from spine.domain.search import NO_FILTER, Candidate, SearchFilter
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


class Breaker(Protocol):
    """A circuit breaker in front of a downstream, as health checks and metrics read it."""

    @property
    def state(self) -> str:
        """``closed``, ``half-open`` or ``open``."""
        ...


class DocumentRepository(Protocol):
    def add(self, tenant_id: str, document: Document) -> None: ...

    def get(self, tenant_id: str, document_id: str) -> Document: ...

    def list(self, tenant_id: str, *, limit: int, after: str | None) -> list[Document]: ...

    def delete(self, tenant_id: str, document_id: str) -> Document: ...

    def find_by_sha256(self, tenant_id: str, sha256: str) -> Document | None: ...

    def count_with_sha256(self, tenant_id: str, sha256: str) -> int: ...

    def set_latest_job(self, tenant_id: str, document_id: str, job_id: str) -> None: ...

    def mark_processed(
        self, tenant_id: str, document_id: str, *, chunk_count: int, title: str, now: datetime
    ) -> None: ...


class JobRepository(Protocol):
    """A tenant's jobs. ``created_by``, where a read takes it, narrows to the jobs one
    subject queued (None: all of the tenant's); it is an authorization filter, applied in
    the query like the tenant."""

    def enqueue(self, tenant_id: str, job: Job) -> None: ...

    def get(self, tenant_id: str, job_id: str, *, created_by: str | None = None) -> Job: ...

    def list(
        self,
        tenant_id: str,
        *,
        state: JobState | None,
        created_by: str | None = None,
        limit: int,
        after: str | None,
    ) -> list[Job]: ...

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

    def count_by_state(
        self,
        tenant_id: str,
        *,
        created_by: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> dict[JobState, int]:
        """Jobs of the tenant per state (0 for a state with none); with ``states``, only
        those are counted, so the count reads no more rows than they have."""
        ...

    def failed_ids(
        self,
        tenant_id: str,
        *,
        error_type: str | None,
        created_by: str | None = None,
        limit: int,
    ) -> builtins.list[str]: ...

    def requeue(
        self,
        tenant_id: str,
        job_id: str,
        *,
        now: datetime,
        detail: str,
        queued_by: str | None,
        request_id: str | None = None,
        traceparent: str | None = None,
    ) -> None: ...

    def restore(self, tenant_id: str, job: Job) -> None:
        """Insert a finished job (SUCCEEDED or FAILED) as it was, with its events and
        their original times: what ``spine import`` brings from another store. Any other
        state is refused: an unfinished job would need a lease and a turn in the queue."""
        ...


@dataclass(frozen=True)
class QueueSnapshot:
    """The whole queue at one moment, for metrics: no tenant in it."""

    counts: dict[JobState, int]
    oldest_runnable_at: datetime | None
    """When the longest-waiting runnable job became runnable; None: nothing is runnable."""


class JobDispatcher(Protocol):
    """The queue as the workers see it: jobs of every tenant, by design. Not for the API."""

    def claim(self, *, worker_id: str, now: datetime, lease_seconds: float) -> Job | None: ...

    def reap_expired(self, *, now: datetime, policy: RetryPolicy) -> int: ...

    def snapshot(self, *, now: datetime) -> QueueSnapshot: ...


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


class Housekeeping(Protocol):
    """Sweeps over every tenant's rows, by design: for ``spine gc``, never for the API."""

    def all_blob_refs(self) -> builtins.set[tuple[str, str]]:
        """(tenant, sha256) of every document of every tenant: what the blob sweeper keeps."""
        ...

    def purge_expired_idempotency_keys(self, *, now: datetime, limit: int) -> int:
        """Drop up to ``limit`` expired idempotency keys of any tenant; returns how many."""
        ...

    def audited_tenants(self) -> builtins.set[str]:
        """Every tenant that has an audit chain: what ``spine audit verify`` walks."""
        ...

    def tenants_with_data(self) -> builtins.set[str]:
        """Every tenant with documents, jobs, an audit chain, keys or a PII policy: what
        ``spine export`` without ``--tenant`` moves."""
        ...


class SloRepository(Protocol):
    """SLO event counts per (slo, minute), summed over every process: not tenant data,
    and cross-tenant by design (one row counts the events of every tenant). For the SLO
    recorder, the SLO report and ``spine slo``; never for a tenant's request."""

    def add(self, counts: Mapping[tuple[str, datetime], tuple[int, int]]) -> None:
        """Add (good, total) to the stored counts of each (slo, minute), atomically in
        the database, so every process's flushes sum up."""
        ...

    def series(self, slo: str, since: datetime) -> builtins.list[tuple[datetime, int, int]]:
        """(minute, good, total) of the minutes after ``since``, oldest first."""
        ...

    def totals(self, slo: str, since: datetime) -> tuple[int, int]:
        """(good, total) summed over the minutes after ``since``."""
        ...

    def purge_older_than(self, cutoff: datetime) -> int:
        """Drop the minutes before ``cutoff``; returns how many rows went."""
        ...

    def overdue_jobs(self, now: datetime, older_than_seconds: float) -> int:
        """Unfinished jobs of any tenant queued more than ``older_than_seconds`` before
        ``now``: uploads that are late already, though nothing has finished them yet."""
        ...


class SearchIndex(Protocol):
    """Full-text and vector entries of chunks; keys are the index's own integer row keys."""

    def replace(
        self, tenant_id: str, document_id: str, title: str, chunks: Sequence[Chunk]
    ) -> None: ...

    def delete_document(self, tenant_id: str, document_id: str) -> None: ...

    def chunks(self, tenant_id: str, document_id: str) -> list[Chunk]:
        """The document's stored chunks in order, without their vectors."""
        ...

    def chunks_with_vectors(self, tenant_id: str, document_id: str) -> list[Chunk]:
        """The document's stored chunks in order, each with its vector as the index holds
        it (float32): what ``spine export`` copies, so a move needs no model run."""
        ...

    def keyword(
        self,
        tenant_id: str,
        query: str,
        limit: int,
        *,
        filters: SearchFilter = NO_FILTER,
        title_weight: float = 1.0,
    ) -> list[Candidate]:
        """Up to ``limit`` chunks matching any of the query's words (every personal-data
        token, as a phrase; stop words only when nothing else is left), best first, of
        documents that pass ``filters``. A word in the document's title counts
        ``title_weight`` times one in the chunk's text."""
        ...

    def semantic(
        self,
        tenant_id: str,
        vector: Sequence[float],
        limit: int,
        *,
        filters: SearchFilter = NO_FILTER,
    ) -> list[Candidate]:
        """The ``limit`` chunks nearest ``vector`` (cosine) of documents that pass
        ``filters``: the filter is applied during the search, so a selective filter still
        gets ``limit`` chunks when it has that many."""
        ...

    def describe(self, tenant_id: str, keys: Sequence[int], query: str) -> dict[int, HitInfo]: ...

    def generation(self, tenant_id: str) -> int:
        """A number that grows with every change to the tenant's entries (0 before the
        first). ``replace`` and ``delete_document`` raise it in their own transaction, so
        a reader that sees a change also sees the generation after it: the search result
        cache keys answers by it, and an answer from before the change is never found."""
        ...


@dataclass(frozen=True)
class HitInfo:
    document_id: str
    chunk_id: str
    title: str
    snippet: str


# -- Rate limits (issue 6) ------------------------------------------------------------


class RateLimiter(Protocol):
    """Token buckets shared by every API process that uses the same store.

    ``acquire`` takes one token from every bucket or, if any is short, from none, as one
    atomic step (a lock in-process; one script on a shared store). ``now`` is seconds on
    the caller's clock, so tests and the store agree on time.
    """

    def acquire(self, buckets: Sequence[BucketRequest], now: float) -> Decision: ...


# -- Audit log (issue 4) ------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    """One link of a tenant's chain, as stored. ``seq`` is global across tenants (it
    orders every chain); ``hash`` covers every other field (see ``service.audit``)."""

    seq: int
    tenant_id: str
    at: datetime
    actor: str
    action: str
    resource: str
    request_id: str
    outcome: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditHead:
    """A tenant's newest entry and how many it has: what a cut-off tail cannot fake."""

    tenant_id: str
    seq: int
    hash: str
    count: int


class AuditRepository(Protocol):
    """The append-only audit log; every method names its tenant. Nothing updates or
    deletes an entry: the chain logic lives in ``service.audit``, the storage here."""

    def head(self, tenant_id: str) -> AuditHead | None: ...

    def append(self, tenant_id: str, entry: AuditEntry, *, expected: AuditHead | None) -> None:
        """Store ``entry`` and move the head to it, only if the head is still ``expected``
        (else :class:`~spine.errors.Conflict`): the compare-and-set that keeps one chain."""
        ...

    def page(self, tenant_id: str, *, limit: int, before: int | None) -> builtins.list[AuditEntry]:
        """Newest first, entries with seq below ``before`` when given."""
        ...

    def chain(self, tenant_id: str) -> Iterator[AuditEntry]:
        """Oldest first, streamed: consume it inside the unit of work."""
        ...


# -- Personal data: tenant keys, the vault, policies (issue 4) -------------------------


@dataclass(frozen=True)
class WrappedTenantKeys:
    """A tenant's data and token keys, each AES-GCM-wrapped (nonce + ciphertext) by the
    master key whose fingerprint is ``master_key_id``."""

    master_key_id: str
    wrapped_data_key: bytes
    wrapped_token_key: bytes
    created_at: datetime


@dataclass(frozen=True)
class VaultEntry:
    """One document's original value behind ``token``, AES-GCM under the tenant data key."""

    token: str
    kind: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class StoredPolicy:
    policy: PiiPolicy
    updated_at: datetime | None = None
    updated_by: str | None = None


class PrivacyRepository(Protocol):
    """Tenant keys (wrapped), vault entries and PII policies; every method names its tenant."""

    def tenant_keys(self, tenant_id: str) -> WrappedTenantKeys | None: ...

    def add_tenant_keys(self, tenant_id: str, keys: WrappedTenantKeys) -> None:
        """Insert unless the tenant has keys already: the first writer wins, and every
        caller reads back the one set that was kept."""
        ...

    def policy(self, tenant_id: str) -> StoredPolicy | None: ...

    def set_policy(
        self, tenant_id: str, policy: PiiPolicy, *, now: datetime, updated_by: str
    ) -> None: ...

    def replace_vault(
        self, tenant_id: str, document_id: str, entries: Sequence[VaultEntry], *, now: datetime
    ) -> None: ...

    def vault(self, tenant_id: str, document_id: str) -> builtins.list[VaultEntry]: ...

    def delete_vault(self, tenant_id: str, document_id: str) -> int: ...

    def documents_with_tokens(self, tenant_id: str, tokens: Sequence[str]) -> dict[str, int]:
        """Document id -> how many of ``tokens`` its vault holds."""
        ...

    def forget_tokens(self, tenant_id: str, tokens: Sequence[str]) -> int:
        """Delete every vault entry of ``tokens`` in the tenant; returns how many."""
        ...

    def documents_containing(self, tenant_id: str, literals: Sequence[str]) -> builtins.list[str]:
        """Ids of documents whose stored text, title or file name holds any literal
        (case-insensitive for ASCII): values a ``keep`` policy (or the uploader's file
        name, which is never scrubbed) left in clear."""
        ...

    def forget_responses_mentioning(self, tenant_id: str, needle: str) -> int:
        """Drop stored idempotency responses whose body contains ``needle`` (they quote
        titles and file names); returns how many."""
        ...


class UnitOfWork(Protocol):
    """Repositories sharing one transaction: committed on a clean exit, rolled back else."""

    @property
    def documents(self) -> DocumentRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def dispatch(self) -> JobDispatcher: ...

    @property
    def housekeeping(self) -> Housekeeping: ...

    @property
    def slo(self) -> SloRepository: ...

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

    def compact(self) -> None:
        """Best effort, outside any transaction: make the store stop holding old copies of
        pages (SQLite: truncate the WAL), so deleted data leaves the disk now rather than
        whenever the space is reused. Called after deletions."""
        ...

    def on_jobs_queued(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from another thread) whenever any process queues a runnable
        job, where the database can tell (PostgreSQL: LISTEN/NOTIFY); elsewhere never,
        and idle workers find new jobs by polling."""
        ...

    def close(self) -> None: ...


# -- Cache (issue 6) -------------------------------------------------------------------


class Cache(Protocol):
    """Bytes under string keys, each kept for a while: this process's own (in-process) or
    shared by every process that uses the same store (Redis).

    A cache is never the source of truth: a store that cannot be reached acts like an
    empty one (``get`` finds nothing, ``set`` keeps nothing, the fill lock is granted),
    so nothing fails because of it, it only gets slower.

    The fill lock lets one caller of all the processes compute a missing value while the
    others poll ``get`` for it. It expires by itself after ``ttl_seconds``, so a caller
    that dies holding it delays the others only that long.
    """

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    def acquire_fill_lock(self, key: str, ttl_seconds: float) -> str | None:
        """A token if the caller is to compute ``key`` now (it holds the lock, or the
        store cannot be reached); None while another caller holds the lock."""
        ...

    def release_fill_lock(self, key: str, token: str) -> None:
        """Release the lock if ``token`` still holds it (not once it has expired and
        another caller has taken it)."""
        ...

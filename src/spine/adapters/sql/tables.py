"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; keep them in step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        # SQLite compares datetimes as text: keep one offset-free format for all rows.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


metadata = MetaData()

documents = Table(
    "documents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("title", Text, nullable=False),
    Column("filename", Text),
    Column("content_type", String(128), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("chunk_count", Integer, nullable=False, default=0),
    Column("latest_job_id", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_documents_tenant_id_id", "tenant_id", "id"),
    Index("ix_documents_tenant_sha256", "tenant_id", "sha256"),
)

chunks = Table(
    "chunks",
    metadata,
    # The integer key is the row key of the full-text and vector indexes.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(128), nullable=False),
    Column(
        "document_id", String(64), ForeignKey("documents.id", ondelete="CASCADE"), nullable=False
    ),
    Column("ordinal", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("start_char", Integer, nullable=False),
    Column("end_char", Integer, nullable=False),
    Index("ix_chunks_tenant_document", "tenant_id", "document_id", "ordinal"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("document_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("error_type", String(64)),
    Column("error_message", Text),
    Column("lease_owner", String(128)),
    Column("lease_token", String(64)),
    Column("lease_expires_at", UtcDateTime),
    Column("next_run_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("created_by", String(256)),
    # The request that queued the job, so its logs and trace follow it into the worker.
    Column("request_id", String(128)),
    Column("traceparent", String(64)),
    Index("ix_jobs_state_next_run_at", "state", "next_run_at"),
    Index("ix_jobs_tenant_state_next_run_at", "tenant_id", "state", "next_run_at"),
    Index("ix_jobs_state_lease_expires_at", "state", "lease_expires_at"),
    Index("ix_jobs_tenant_id_id", "tenant_id", "id"),
    Index("ix_jobs_tenant_document", "tenant_id", "document_id"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(128), nullable=False),
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_job_events_tenant_job", "tenant_id", "job_id", "id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("status_code", Integer),
    Column("response_body", Text),
    Column("response_headers", JSON),
    Column("locked_until", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)

# -- Security and privacy (migration 0003) -------------------------------------------

audit_log = Table(
    "audit_log",
    metadata,
    # "-" holds what happened before anyone was authenticated (rejected tokens).
    Column("tenant_id", String(128), primary_key=True),
    # Position in the tenant's own chain (1, 2, ...): a global counter would tell one
    # tenant how busy the others are.
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource", String(256), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# The newest entry of each tenant's chain: the lock that orders appends, and the anchor
# that makes a cut-off tail detectable.
audit_heads = Table(
    "audit_heads",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("count", Integer, nullable=False),
)

# Per-tenant keys, each wrapped (AES-GCM) by the master key.
tenant_keys = Table(
    "tenant_keys",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("master_key_id", String(64), nullable=False),
    Column("wrapped_data_key", LargeBinary, nullable=False),
    Column("wrapped_token_key", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Original PII values, encrypted under the tenant's data key; one row per token per document.
pii_vault = Table(
    "pii_vault",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(128), nullable=False),
    Column(
        "document_id", String(64), ForeignKey("documents.id", ondelete="CASCADE"), nullable=False
    ),
    Column("token", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "document_id", "token", name="uq_pii_vault_document_token"),
    Index("ix_pii_vault_tenant_token", "tenant_id", "token"),
)

pii_policies = Table(
    "pii_policies",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("policy", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(256), nullable=False),
)

# -- Observability (migration 0004) ---------------------------------------------------

# Good and total events per SLO per minute, added to by every process: the SLIs, error
# budgets and burn rates are computed from these rows.
slo_minutes = Table(
    "slo_minutes",
    metadata,
    Column("slo", String(32), primary_key=True),
    Column("minute", UtcDateTime, primary_key=True),
    Column("good", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
)

# Every tenant that ever queued work, and when a worker last took one of its jobs: the
# claim serves the tenant it served longest ago (round-robin), not the oldest job.
queue_tenants = Table(
    "queue_tenants",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("last_claimed_at", UtcDateTime),
)

# -- Scale-out (migration 0005) --------------------------------------------------------

# Bumped in the transaction of every change to a tenant's search index: the search cache
# keys its entries by it, so a committed upload or delete is never answered from before.
index_generations = Table(
    "index_generations",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("generation", BigInteger, nullable=False),
)

"""Documents, chunks, jobs, job events; FTS5 and vec0 indexes on SQLite.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from spine.adapters.sql.tables import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: all-MiniLM-L6-v2's output size; a model of another size needs a migration.
EMBEDDING_DIMENSION = 384


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("filename", sa.Text),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("chunk_count", sa.Integer, nullable=False),
        sa.Column("latest_job_id", sa.String(64)),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_documents_tenant_id_id", "documents", ["tenant_id", "id"])
    op.create_index("ix_documents_tenant_sha256", "documents", ["tenant_id", "sha256"])

    op.create_table(
        "chunks",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column(
            "document_id",
            sa.String(64),
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("start_char", sa.Integer, nullable=False),
        sa.Column("end_char", sa.Integer, nullable=False),
    )
    op.create_index("ix_chunks_tenant_document", "chunks", ["tenant_id", "document_id", "ordinal"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("document_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("error_type", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_expires_at", UtcDateTime),
        sa.Column("next_run_at", UtcDateTime),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("started_at", UtcDateTime),
        sa.Column("finished_at", UtcDateTime),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_jobs_state_next_run_at", "jobs", ["state", "next_run_at"])
    op.create_index("ix_jobs_state_lease_expires_at", "jobs", ["state", "lease_expires_at"])
    op.create_index("ix_jobs_tenant_id_id", "jobs", ["tenant_id", "id"])
    op.create_index("ix_jobs_tenant_document", "jobs", ["tenant_id", "document_id"])

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column(
            "job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_job_events_tenant_job", "job_events", ["tenant_id", "job_id", "id"])

    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE chunks_fts USING fts5("
            "title, text, tenant_id UNINDEXED, "
            "tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        op.execute(
            "CREATE VIRTUAL TABLE chunks_vec USING vec0("
            "tenant_id text partition key, "
            f"embedding float[{EMBEDDING_DIMENSION}] distance_metric=cosine)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS chunks_vec")
        op.execute("DROP TABLE IF EXISTS chunks_fts")
    op.drop_table("job_events")
    op.drop_table("jobs")
    op.drop_table("chunks")
    op.drop_table("documents")

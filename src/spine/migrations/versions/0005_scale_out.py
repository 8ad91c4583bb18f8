"""Scale-out: each tenant's index generation (the search cache's invalidation key); on
PostgreSQL, the vector and full-text columns of chunks with their indexes, and row-level
security on every tenant table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: all-MiniLM-L6-v2's output size, as in revision 0001.
EMBEDDING_DIMENSION = 384

# Frozen here, as this revision made them: a later change needs a migration of its own.
TENANT_TABLES = (
    "documents",
    "chunks",
    "jobs",
    "job_events",
    "idempotency_keys",
    "audit_log",
    "audit_heads",
    "tenant_keys",
    "pii_vault",
    "pii_policies",
    "queue_tenants",
    "index_generations",
)
POLICY = "tenant_isolation"
IN_SCOPE = (
    "tenant_id = current_setting('app.tenant_id', true) "
    "OR current_setting('app.all_tenants', true) = 'on'"
)


def upgrade() -> None:
    # Expand only: a new table, which the previous release never reads.
    op.create_table(
        "index_generations",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_indexes()
        _row_level_security()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            if table != "index_generations":
                op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
                op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
                op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute("DROP INDEX IF EXISTS ix_chunks_search_vector")
        op.execute("DROP INDEX IF EXISTS ix_chunks_embedding_hnsw")
        op.drop_column("chunks", "search_vector")
        op.drop_column("chunks", "embedding")
    op.drop_table("index_generations")


def _postgres_indexes() -> None:
    """pgvector's HNSW index (cosine) and a GIN index on a weighted tsvector.

    CREATE EXTENSION needs a superuser (pgvector is not a trusted extension): where Spine's
    role is not one, an administrator runs it once and this statement finds it there.
    """
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(f"ALTER TABLE chunks ADD COLUMN embedding vector({EMBEDDING_DIMENSION})")
    # Title (weight A) and text (weight B), stemmed by the 'english' configuration, which
    # also drops stop words; written with the chunk, since the title is the document's.
    op.execute("ALTER TABLE chunks ADD COLUMN search_vector tsvector")
    op.execute(
        "CREATE INDEX ix_chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)"
    )
    op.execute("CREATE INDEX ix_chunks_search_vector ON chunks USING gin (search_vector)")


def _row_level_security() -> None:
    """A policy per tenant table, FORCEd so that it binds the tables' owner too (Spine's
    own role); only a superuser or a BYPASSRLS role passes it, so Spine must not run as
    one (``spine doctor`` warns)."""
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({IN_SCOPE}) WITH CHECK ({IN_SCOPE})")

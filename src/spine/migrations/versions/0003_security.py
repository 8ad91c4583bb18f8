"""Audit log with per-tenant hash chains, tenant keys, the PII vault and PII policies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from spine.adapters.sql.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Who queued a job: writers see their own jobs, admins all of the tenant's.
    op.add_column("jobs", sa.Column("created_by", sa.String(256)))
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_tenant_seq", "audit_log", ["tenant_id", "seq"])
    op.create_table(
        "audit_heads",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "tenant_keys",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("wrapped_data_key", sa.LargeBinary, nullable=False),
        sa.Column("wrapped_token_key", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "pii_vault",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column(
            "document_id",
            sa.String(64),
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint(
            "tenant_id", "document_id", "token", name="uq_pii_vault_document_token"
        ),
    )
    op.create_index("ix_pii_vault_tenant_token", "pii_vault", ["tenant_id", "token"])
    op.create_table(
        "pii_policies",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        # Deleted text leaves no trace in the full-text index's pages: FTS5 removes a
        # row's entries at once instead of leaving them until a merge (SQLite 3.42+).
        op.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES('secure-delete', 1)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES('secure-delete', 0)")
    op.drop_table("pii_policies")
    op.drop_index("ix_pii_vault_tenant_token", table_name="pii_vault")
    op.drop_table("pii_vault")
    op.drop_table("tenant_keys")
    op.drop_table("audit_heads")
    op.drop_index("ix_audit_log_tenant_seq", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_column("jobs", "created_by")

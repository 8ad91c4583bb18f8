"""Audit log with per-tenant hash chains, tenant keys, the PII vault and PII policies;
one full-text table per tenant.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

from spine.adapters.sql.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of spine.adapters.sqlite.search_index's naming, as this revision made the
# tables: a later change there must come with its own migration, not rewrite this one.
FTS_TABLE_PREFIX = "chunks_fts_t_"
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"


def _fts_table(tenant_id: str) -> str:
    return FTS_TABLE_PREFIX + hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


def _tenant_fts_tables(conn: sa.Connection) -> list[str]:
    """Every per-tenant FTS5 table, without FTS5's shadow tables (``<name>_data``, ...),
    which share the prefix but are plain tables that FTS5 drops with their owner."""
    rows = conn.execute(
        sa.text(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND substr(name, 1, :length) = :prefix AND sql LIKE 'CREATE VIRTUAL TABLE%'"
        ),
        {"length": len(FTS_TABLE_PREFIX), "prefix": FTS_TABLE_PREFIX},
    )
    return [row[0] for row in rows]


def _split_fts_by_tenant() -> None:
    """Move the shared ``chunks_fts`` rows into one table per tenant, since BM25's corpus
    statistics (document frequency, average length) are per table: shared, one tenant's
    uploads moved the others' scores."""
    conn = op.get_bind()
    tenants = [
        row[0]
        for row in conn.execute(
            sa.text("SELECT tenant_id FROM chunks_fts UNION SELECT tenant_id FROM chunks")
        )
    ]
    for tenant_id in tenants:
        fts = _fts_table(tenant_id)
        op.execute(
            f"CREATE VIRTUAL TABLE {fts} USING fts5(title, text, tokenize = '{FTS_TOKENIZER}')"
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {fts}(rowid, title, text) "  # noqa: S608 -- a hex digest
                "SELECT rowid, title, text FROM chunks_fts WHERE tenant_id = :tenant"
            ),
            {"tenant": tenant_id},
        )
        # Deleted text leaves no trace in the full-text index's pages: FTS5 removes a
        # row's entries at once instead of leaving them until a merge (SQLite 3.42+).
        op.execute(f"INSERT INTO {fts}({fts}, rank) VALUES('secure-delete', 1)")
    op.execute("DROP TABLE chunks_fts")


def _merge_fts_tenants() -> None:
    """Back to the one ``chunks_fts`` of revision 0001; each row's tenant is its chunk's."""
    conn = op.get_bind()
    op.execute(
        "CREATE VIRTUAL TABLE chunks_fts USING fts5("
        "title, text, tenant_id UNINDEXED, "
        "tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    for fts in _tenant_fts_tables(conn):
        op.execute(
            "INSERT INTO chunks_fts(rowid, title, text, tenant_id) "  # noqa: S608 -- from sqlite_master
            f"SELECT f.rowid, f.title, f.text, c.tenant_id FROM {fts} AS f "
            "JOIN chunks AS c ON c.seq = f.rowid"
        )
        op.execute(f"DROP TABLE {fts}")


def upgrade() -> None:
    # Who queued a job: writers see their own jobs, admins all of the tenant's.
    op.add_column("jobs", sa.Column("created_by", sa.String(256)))
    op.create_table(
        "audit_log",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
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
        _split_fts_by_tenant()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _merge_fts_tenants()
    op.drop_table("pii_policies")
    op.drop_index("ix_pii_vault_tenant_token", table_name="pii_vault")
    op.drop_table("pii_vault")
    op.drop_table("tenant_keys")
    op.drop_table("audit_heads")
    op.drop_table("audit_log")
    op.drop_column("jobs", "created_by")

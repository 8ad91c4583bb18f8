"""BM25 on PostgreSQL: an inverted index of the chunks' words (``chunk_terms``, one posting
per chunk and lexeme, filled from each chunk's tsvector) and each tenant's chunk and term
totals, beside its index generation. SQLite's FTS5 keeps the same statistics itself.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# As revision 0005 wrote them.
POLICY = "tenant_isolation"
IN_SCOPE = (
    "tenant_id = current_setting('app.tenant_id', true) "
    "OR current_setting('app.all_tenants', true) = 'on'"
)
#: The tenant tables this revision adds, each with 0005's policy.
TENANT_TABLES = ("chunk_terms",)
#: Chunk ``c``'s length for BM25: the last position in its tsvector, stop words counted.
CHUNK_LENGTH = (
    "SELECT coalesce(max(positions[cardinality(positions)]), 0) AS length "
    "FROM unnest(c.search_vector)"
)


def upgrade() -> None:
    # Expand only, and PostgreSQL only: a new table and defaulted columns, which the
    # previous release never reads.
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE TABLE chunk_terms ("
        "tenant_id varchar(128) NOT NULL, "
        "lexeme text NOT NULL, "
        "seq integer NOT NULL REFERENCES chunks (seq) ON DELETE CASCADE, "
        "chunk_length integer NOT NULL, "
        "tf_title smallint NOT NULL, "
        "tf_text smallint NOT NULL, "
        # The posting list of a lexeme is one range of this index, and it holds every
        # column a search reads: an index-only scan, once VACUUM has marked the pages.
        "PRIMARY KEY (tenant_id, lexeme, seq) INCLUDE (chunk_length, tf_title, tf_text))"
    )
    # For the cascade: without it, deleting a chunk would scan every posting.
    op.execute("CREATE INDEX ix_chunk_terms_seq ON chunk_terms (seq)")
    op.execute("ALTER TABLE index_generations ADD COLUMN chunks bigint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE index_generations ADD COLUMN terms bigint NOT NULL DEFAULT 0")
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({IN_SCOPE}) WITH CHECK ({IN_SCOPE})")
    _backfill()


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE index_generations DROP COLUMN terms")
    op.execute("ALTER TABLE index_generations DROP COLUMN chunks")
    op.execute("DROP TABLE chunk_terms")


def _backfill() -> None:
    """Postings of the chunks already written, from their tsvectors, as the search index
    writes them (see spine.adapters.postgres.search_index); then each tenant's totals. A
    tenant with chunks has a generation row (every index write makes or bumps it); the
    upsert would make a missing one at generation 0, which it keeps."""
    # The length is a lateral subquery, computed once per chunk: in the select list it
    # would be computed again for each of the chunk's postings.
    op.execute(
        "INSERT INTO chunk_terms (tenant_id, lexeme, seq, chunk_length, tf_title, tf_text) "  # noqa: S608 -- constants only
        "SELECT c.tenant_id, word.lexeme, c.seq, chunk.length, "
        "cardinality(array_positions(word.weights, 'A')), "
        "cardinality(array_positions(word.weights, 'B')) "
        f"FROM chunks AS c CROSS JOIN LATERAL ({CHUNK_LENGTH}) AS chunk "
        "CROSS JOIN LATERAL unnest(c.search_vector) AS word"
    )
    op.execute(
        "INSERT INTO index_generations (tenant_id, generation, chunks, terms) "  # noqa: S608 -- constants only
        "SELECT c.tenant_id, 0, count(*), sum(chunk.length) "
        f"FROM chunks AS c CROSS JOIN LATERAL ({CHUNK_LENGTH}) AS chunk GROUP BY c.tenant_id "
        "ON CONFLICT (tenant_id) DO UPDATE SET chunks = excluded.chunks, terms = excluded.terms"
    )

"""Full-text (FTS5, BM25) and vector (sqlite-vec, cosine) entries of chunks.

Every virtual table uses ``chunks.seq`` as its rowid. The vector table is partitioned by
tenant, so a KNN query only ever visits the caller's tenant's vectors. The full-text index
is one FTS5 table per tenant (see ``fts_table``): bm25() weighs a term by how many rows of
the whole table hold it and by the table's average row length, so in a shared table one
tenant's uploads moved another tenant's scores, and the scores told who wrote what, how
much. Cosine distance has no corpus statistics, so the vectors can stay in one table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnClause,
    Connection,
    bindparam,
    column,
    delete,
    func,
    literal_column,
    select,
    table,
    text,
)

from spine.adapters.sql.chunk_rows import (
    SNIPPET_TOKENS,
    document_chunks,
    hit_infos,
    hit_rows,
)
from spine.adapters.sql.generations import bump_generation, read_generation
from spine.adapters.sql.search_filters import filtered, passing_chunk_keys
from spine.adapters.sql.tables import chunks
from spine.domain.documents import Chunk
from spine.domain.search import NO_FILTER, Candidate, QueryTerms, SearchFilter
from spine.ports import HitInfo

#: Every tenant's full-text table starts with this; migrations find the tables by it.
FTS_TABLE_PREFIX = "chunks_fts_t_"
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"
# The vec0 table's columns as a KNN query names them (``k`` and ``distance`` are hidden).
_vectors = table(
    "chunks_vec",
    column("rowid"),
    column("tenant_id"),
    column("embedding"),
    column("k"),
    column("distance"),
)


def fts_table(tenant_id: str) -> str:
    """The name of the tenant's FTS5 table: a digest, so any tenant id is a safe identifier.

    The full SHA-256 would do as well; 128 bits keep the names (and FTS5's five shadow
    tables' names) short while an id colliding with another tenant's, which would share
    its statistics again, needs about 2**128 tries to aim at a given tenant and about
    2**64 ids for any two to meet.
    """
    return FTS_TABLE_PREFIX + hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


def fts_query(query: str) -> str | None:
    """The user's words as an FTS5 query of quoted terms: no operator can be injected.

    The terms are :class:`QueryTerms`'s: words are OR-ed, and every personal-data token
    is a required phrase.
    """
    terms = QueryTerms.parse(query)
    loose = " OR ".join(f'"{word}"' for word in terms.words)
    if not terms.phrases:
        return loose or None
    required = " AND ".join(f'"{phrase}"' for phrase in terms.phrases)
    if not terms.words:
        return required
    # The words still rank the matches, but only documents with every token match.
    return f'{required} AND ("{terms.phrases[0]}" OR {loose})'


class SqliteSearchIndex:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def replace(
        self, tenant_id: str, document_id: str, title: str, new_chunks: Sequence[Chunk]
    ) -> None:
        removed = self._remove(tenant_id, document_id)
        if new_chunks:
            self._insert(tenant_id, document_id, title, new_chunks)
        if removed or new_chunks:
            bump_generation(self._conn, tenant_id)

    def delete_document(self, tenant_id: str, document_id: str) -> None:
        # Only a change bumps: a delete that finds nothing (no chunks yet, or another
        # tenant's document) writes nothing, and another tenant's id cannot touch a
        # tenant's generation.
        if self._remove(tenant_id, document_id):
            bump_generation(self._conn, tenant_id)

    def generation(self, tenant_id: str) -> int:
        return read_generation(self._conn, tenant_id)

    def chunks(self, tenant_id: str, document_id: str) -> list[Chunk]:
        return document_chunks(self._conn, tenant_id, document_id)

    def chunks_with_vectors(self, tenant_id: str, document_id: str) -> list[Chunk]:
        rows = self._conn.execute(
            select(
                chunks.c.seq,
                chunks.c.id,
                chunks.c.ordinal,
                chunks.c.text,
                chunks.c.start_char,
                chunks.c.end_char,
            )
            .where((chunks.c.tenant_id == tenant_id) & (chunks.c.document_id == document_id))
            .order_by(chunks.c.ordinal)
        ).all()
        found = []
        for row in rows:
            # One point lookup per chunk: vec0 answers ``rowid = ?`` from its rowid index,
            # where ``rowid IN (...)`` scans the whole table.
            embedding = self._conn.execute(
                text("SELECT embedding FROM chunks_vec WHERE rowid = :seq AND tenant_id = :tenant"),
                {"seq": row.seq, "tenant": tenant_id},
            ).scalar_one_or_none()
            vector = [] if embedding is None else np.frombuffer(embedding, dtype="<f4").tolist()
            found.append(
                Chunk(
                    row.id, document_id, row.ordinal, row.text, row.start_char, row.end_char, vector
                )
            )
        return found

    def keyword(
        self,
        tenant_id: str,
        query: str,
        limit: int,
        *,
        filters: SearchFilter = NO_FILTER,
        title_weight: float = 1.0,
    ) -> list[Candidate]:
        match = fts_query(query)
        fts = fts_table(tenant_id)
        if match is None or not self._has_table(fts):
            return []
        entries = table(fts, column("rowid"))
        # FTS5's hidden column named after its table: what MATCH and bm25() take.
        whole_row: ColumnClause[Any] = literal_column(fts)
        rank = func.bm25(whole_row, title_weight, 1.0).label("rank")
        if filters.empty:
            # Rank and cut inside FTS5 first, then join only the ``limit`` survivors: the
            # join below would otherwise run for every match (thousands for common words).
            ranked = (
                select(entries.c.rowid, rank)
                .where(whole_row.op("MATCH")(match))
                .order_by(rank)
                .limit(limit)
                .subquery()
            )
            statement = (
                select(ranked.c.rowid, ranked.c.rank, chunks.c.document_id)
                .select_from(ranked.join(chunks, chunks.c.seq == ranked.c.rowid))
                .order_by(ranked.c.rank)
            )
        else:
            best = (
                select(entries.c.rowid, rank, chunks.c.document_id)
                .select_from(entries.join(chunks, chunks.c.seq == entries.c.rowid))
                .where(whole_row.op("MATCH")(match))
            )
            statement = filtered(best, chunks, filters, self._conn.dialect.name)
            statement = statement.order_by(rank).limit(limit)
        rows = self._conn.execute(statement)
        # FTS5's bm25() is negated so that ascending order is best-first; flip it back.
        return [Candidate(int(row[0]), str(row[2]), -float(row[1])) for row in rows]

    def semantic(
        self,
        tenant_id: str,
        vector: Sequence[float],
        limit: int,
        *,
        filters: SearchFilter = NO_FILTER,
    ) -> list[Candidate]:
        nearest = (
            select(_vectors.c.rowid, _vectors.c.distance, chunks.c.document_id)
            .select_from(_vectors.join(chunks, chunks.c.seq == _vectors.c.rowid))
            .where(
                _vectors.c.embedding.op("MATCH")(np.asarray(vector, dtype=np.float32).tobytes()),
                _vectors.c.k == limit,
                _vectors.c.tenant_id == tenant_id,
            )
            .order_by(_vectors.c.distance)
        )
        if not filters.empty:
            # vec0 cannot see a join's conditions, but takes a set of rowids to search in:
            # the KNN then returns the k nearest of those, not k nearest then filtered.
            allowed = passing_chunk_keys(tenant_id, filters, self._conn.dialect.name)
            nearest = nearest.where(_vectors.c.rowid.in_(allowed))
        rows = self._conn.execute(nearest)
        return [Candidate(int(row[0]), str(row[2]), 1.0 - float(row[1])) for row in rows]

    def describe(self, tenant_id: str, keys: Sequence[int], query: str) -> dict[int, HitInfo]:
        if not keys:
            return {}
        rows = hit_rows(self._conn, tenant_id, keys)
        return hit_infos(rows, self._snippets(tenant_id, [row.seq for row in rows], query))

    def _insert(
        self, tenant_id: str, document_id: str, title: str, new_chunks: Sequence[Chunk]
    ) -> None:
        fts = self._ensure_fts_table(tenant_id)
        for chunk in new_chunks:
            seq = self._conn.execute(
                chunks.insert()
                .values(
                    id=chunk.id,
                    tenant_id=tenant_id,
                    document_id=document_id,
                    ordinal=chunk.ordinal,
                    text=chunk.text,
                    start_char=chunk.start_char,
                    end_char=chunk.end_char,
                )
                .returning(chunks.c.seq)
            ).scalar_one()
            self._conn.execute(
                text(f"INSERT INTO {fts}(rowid, title, text) VALUES (:seq, :title, :text)"),  # noqa: S608 -- a hex digest, see fts_table
                {"seq": seq, "title": title, "text": chunk.text},
            )
            self._conn.execute(
                text(
                    "INSERT INTO chunks_vec(rowid, tenant_id, embedding) "
                    "VALUES (:seq, :tenant, :embedding)"
                ),
                {
                    "seq": seq,
                    "tenant": tenant_id,
                    "embedding": np.asarray(chunk.embedding, dtype=np.float32).tobytes(),
                },
            )

    def _remove(self, tenant_id: str, document_id: str) -> bool:
        """Drop the document's entries; False when it had none."""
        seqs = [
            row[0]
            for row in self._conn.execute(
                select(chunks.c.seq).where(
                    (chunks.c.tenant_id == tenant_id) & (chunks.c.document_id == document_id)
                )
            )
        ]
        if not seqs:
            return False
        # sqlite-vec 0.1.9 zeroes a deleted vector in its chunk blob; older versions only
        # cleared its validity bit and left the bytes. Zero them first either way (one row
        # per statement: vec0 refuses a multi-row UPDATE).
        for seq in seqs:
            self._conn.execute(
                text(
                    "UPDATE chunks_vec SET embedding = zeroblob(length(embedding)) "
                    "WHERE rowid = :seq"
                ),
                {"seq": seq},
            )
        tables = ["chunks_vec"]
        fts = fts_table(tenant_id)
        if self._has_table(fts):
            tables.append(fts)
        for name in tables:
            self._conn.execute(
                text(f"DELETE FROM {name} WHERE rowid IN :seqs").bindparams(  # noqa: S608 -- a fixed name or a hex digest
                    bindparam("seqs", expanding=True)
                ),
                {"seqs": seqs},
            )
        self._conn.execute(
            delete(chunks).where(
                (chunks.c.tenant_id == tenant_id) & (chunks.c.document_id == document_id)
            )
        )
        return True

    def _snippets(self, tenant_id: str, seqs: Sequence[int], query: str) -> dict[int, str]:
        match = fts_query(query)
        fts = fts_table(tenant_id)
        if match is None or not seqs or not self._has_table(fts):
            return {}
        rows = self._conn.execute(
            text(
                f"SELECT rowid, snippet({fts}, 1, char(2), char(3), '…', :tokens) "  # noqa: S608 -- a hex digest
                f"FROM {fts} WHERE {fts} MATCH :match AND rowid IN :seqs"
            ).bindparams(bindparam("seqs", expanding=True)),
            {"match": match, "seqs": list(seqs), "tokens": SNIPPET_TOKENS},
        )
        return {int(row[0]): str(row[1]) for row in rows}

    def _has_table(self, name: str) -> bool:
        # table_xinfo finds the table through the schema's hash, where a lookup in
        # sqlite_master scans it: with 1,000 tenants (6,000 schema rows) that took ~1 ms
        # per search.
        found = self._conn.execute(
            text("SELECT 1 FROM pragma_table_xinfo(:name) LIMIT 1"), {"name": name}
        ).first()
        return found is not None

    def _ensure_fts_table(self, tenant_id: str) -> str:
        """The tenant's FTS5 table, made on its first write, in the caller's transaction:
        a failed write leaves no table behind, and search treats a missing one as empty."""
        fts = fts_table(tenant_id)
        if not self._has_table(fts):
            self._conn.execute(
                text(
                    f"CREATE VIRTUAL TABLE {fts} USING fts5("
                    f"title, text, tokenize = '{FTS_TOKENIZER}')"
                )
            )
            # Deleted text leaves no trace in the index's pages: FTS5 removes a row's
            # entries at once instead of leaving them until a merge (SQLite 3.42+). The
            # option is stored in the table's own config, so each new table needs it.
            self._conn.execute(text(f"INSERT INTO {fts}({fts}, rank) VALUES('secure-delete', 1)"))
        return fts

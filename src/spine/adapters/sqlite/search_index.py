"""Full-text (FTS5, BM25) and vector (sqlite-vec, cosine) entries of chunks.

Both virtual tables use ``chunks.seq`` as their rowid. The vector table is partitioned
by tenant, so a KNN query only ever visits the caller's tenant's vectors.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, bindparam, delete, select, text

from spine.adapters.sql.tables import chunks, documents
from spine.domain.documents import Chunk
from spine.domain.search import Candidate
from spine.ports import HitInfo

_MARK_OPEN, _MARK_CLOSE = "\x02", "\x03"
_TERM = re.compile(r"\w+", re.UNICODE)
SNIPPET_TOKENS = 24
FALLBACK_SNIPPET_CHARS = 200


def fts_query(query: str) -> str | None:
    """The user's words as an FTS5 OR-query of quoted terms: no operator can be injected."""
    terms = list(dict.fromkeys(t.lower() for t in _TERM.findall(query)))
    if not terms:
        return None
    return " OR ".join(f'"{term}"' for term in terms)


def render_snippet(raw: str) -> str:
    """HTML-escape a snippet, then turn the sentinel marks into ``<mark>`` tags."""
    escaped = html.escape(raw, quote=False)
    return escaped.replace(_MARK_OPEN, "<mark>").replace(_MARK_CLOSE, "</mark>")


class SqliteSearchIndex:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def replace(
        self, tenant_id: str, document_id: str, title: str, new_chunks: Sequence[Chunk]
    ) -> None:
        self.delete_document(tenant_id, document_id)
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
                text(
                    "INSERT INTO chunks_fts(rowid, title, text, tenant_id) "
                    "VALUES (:seq, :title, :text, :tenant)"
                ),
                {"seq": seq, "title": title, "text": chunk.text, "tenant": tenant_id},
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

    def delete_document(self, tenant_id: str, document_id: str) -> None:
        seqs = [
            row[0]
            for row in self._conn.execute(
                select(chunks.c.seq).where(
                    (chunks.c.tenant_id == tenant_id) & (chunks.c.document_id == document_id)
                )
            )
        ]
        if not seqs:
            return
        for table in ("chunks_fts", "chunks_vec"):
            self._conn.execute(
                text(f"DELETE FROM {table} WHERE rowid IN :seqs").bindparams(  # noqa: S608 -- fixed table names
                    bindparam("seqs", expanding=True)
                ),
                {"seqs": seqs},
            )
        self._conn.execute(
            delete(chunks).where(
                (chunks.c.tenant_id == tenant_id) & (chunks.c.document_id == document_id)
            )
        )

    def keyword(self, tenant_id: str, query: str, limit: int) -> list[Candidate]:
        match = fts_query(query)
        if match is None:
            return []
        rows = self._conn.execute(
            text(
                "SELECT rowid, bm25(chunks_fts) AS rank FROM chunks_fts "
                "WHERE chunks_fts MATCH :match AND tenant_id = :tenant "
                "ORDER BY rank LIMIT :limit"
            ),
            {"match": match, "tenant": tenant_id, "limit": limit},
        )
        # FTS5's bm25() is negated so that ascending order is best-first; flip it back.
        return [Candidate(int(row[0]), -float(row[1])) for row in rows]

    def semantic(self, tenant_id: str, vector: Sequence[float], limit: int) -> list[Candidate]:
        rows = self._conn.execute(
            text(
                "SELECT rowid, distance FROM chunks_vec "
                "WHERE embedding MATCH :vector AND k = :k AND tenant_id = :tenant "
                "ORDER BY distance"
            ),
            {
                "vector": np.asarray(vector, dtype=np.float32).tobytes(),
                "k": limit,
                "tenant": tenant_id,
            },
        )
        return [Candidate(int(row[0]), 1.0 - float(row[1])) for row in rows]

    def describe(self, tenant_id: str, keys: Sequence[int], query: str) -> dict[int, HitInfo]:
        if not keys:
            return {}
        rows = self._conn.execute(
            select(
                chunks.c.seq, chunks.c.id, chunks.c.document_id, chunks.c.text, documents.c.title
            )
            .select_from(
                chunks.join(
                    documents,
                    (documents.c.id == chunks.c.document_id)
                    & (documents.c.tenant_id == chunks.c.tenant_id),
                )
            )
            .where((chunks.c.tenant_id == tenant_id) & chunks.c.seq.in_(list(keys)))
        ).all()
        snippets = self._snippets(tenant_id, [row.seq for row in rows], query)
        infos: dict[int, HitInfo] = {}
        for row in rows:
            snippet = snippets.get(row.seq)
            if snippet is None or _MARK_OPEN not in snippet:
                snippet = row.text[:FALLBACK_SNIPPET_CHARS]
                if len(row.text) > FALLBACK_SNIPPET_CHARS:
                    snippet += "…"
            infos[row.seq] = HitInfo(row.document_id, row.id, row.title, render_snippet(snippet))
        return infos

    def _snippets(self, tenant_id: str, seqs: Sequence[int], query: str) -> dict[int, str]:
        match = fts_query(query)
        if match is None or not seqs:
            return {}
        rows = self._conn.execute(
            text(
                "SELECT rowid, snippet(chunks_fts, 1, char(2), char(3), '…', :tokens) "
                "FROM chunks_fts WHERE chunks_fts MATCH :match AND tenant_id = :tenant "
                "AND rowid IN :seqs"
            ).bindparams(bindparam("seqs", expanding=True)),
            {"match": match, "tenant": tenant_id, "seqs": list(seqs), "tokens": SNIPPET_TOKENS},
        )
        return {int(row[0]): str(row[1]) for row in rows}

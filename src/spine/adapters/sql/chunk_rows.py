"""What both search indexes read back the same way: a document's chunks, and hits with
their snippets (marked with sentinels by each database's own snippet function, then
HTML-escaped and given ``<mark>`` tags here)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, select

from spine.adapters.sql.tables import chunks, documents
from spine.domain.documents import Chunk
from spine.ports import HitInfo

#: Sentinels around matched terms, which no extracted text holds; see render_snippet.
MARK_OPEN, MARK_CLOSE = "\x02", "\x03"
SNIPPET_TOKENS = 24
FALLBACK_SNIPPET_CHARS = 200


def render_snippet(raw: str) -> str:
    """HTML-escape a snippet, then turn the sentinel marks into ``<mark>`` tags."""
    escaped = html.escape(raw, quote=False)
    return escaped.replace(MARK_OPEN, "<mark>").replace(MARK_CLOSE, "</mark>")


def document_chunks(conn: Connection, tenant_id: str, document_id: str) -> list[Chunk]:
    """The document's stored chunks in order, without their vectors."""
    rows = conn.execute(
        select(chunks.c.id, chunks.c.ordinal, chunks.c.text, chunks.c.start_char, chunks.c.end_char)
        .where((chunks.c.tenant_id == tenant_id) & (chunks.c.document_id == document_id))
        .order_by(chunks.c.ordinal)
    )
    return [
        Chunk(row.id, document_id, row.ordinal, row.text, row.start_char, row.end_char)
        for row in rows
    ]


def hit_rows(conn: Connection, tenant_id: str, keys: Sequence[int]) -> list[Row[Any]]:
    """Each hit's chunk (seq, id, document id, text) with its document's title."""
    result: list[Row[Any]] = list(
        conn.execute(
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
            # ``tenant_id || ''`` keeps the tenant check but out of the planner's index
            # choice: a handful of primary-key lookups, where SQLite without statistics
            # would scan the tenant's index (14 ms at 100k chunks, against 0.4 ms).
            .where(((chunks.c.tenant_id + "") == tenant_id) & chunks.c.seq.in_(list(keys)))
        )
    )
    return result


def hit_infos(rows: Sequence[Row[Any]], snippets: Mapping[int, str]) -> dict[int, HitInfo]:
    """HitInfo per chunk key; a chunk whose snippet marks nothing shows its start."""
    infos: dict[int, HitInfo] = {}
    for row in rows:
        snippet = snippets.get(row.seq)
        if snippet is None or MARK_OPEN not in snippet:
            snippet = row.text[:FALLBACK_SNIPPET_CHARS]
            if len(row.text) > FALLBACK_SNIPPET_CHARS:
                snippet += "…"
        infos[row.seq] = HitInfo(row.document_id, row.id, row.title, render_snippet(snippet))
    return infos

"""Full-text (tsvector, ``ts_rank_cd``) and vector (pgvector HNSW, cosine) search of chunks.

Both live on the ``chunks`` row itself (migration 0005), so a chunk, its vector and its
words are written and deleted in one statement. Tenants share the indexes: row-level
security and the ``tenant_id`` filter keep each query in its tenant, and neither ranking
depends on other rows (``ts_rank_cd`` has no corpus statistics, unlike SQLite's BM25,
and cosine distance has none), so no tenant's uploads move another tenant's scores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    Table,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

from spine.adapters.sql.chunk_rows import (
    MARK_CLOSE,
    MARK_OPEN,
    SNIPPET_TOKENS,
    document_chunks,
    hit_infos,
    hit_rows,
)
from spine.adapters.sql.generations import bump_generation, read_generation
from spine.adapters.sql.tables import chunks
from spine.domain.documents import Chunk
from spine.domain.privacy import TOKEN
from spine.domain.search import Candidate, QueryTerms
from spine.ports import HitInfo

#: The text search configuration: English stemming and stop words.
TEXT_CONFIG = "english"
EMBEDDING_DIMENSION = 384
# The columns only PostgreSQL has (migration 0005), beside the shared ones of tables.py.
_search_columns = Table(
    "chunks",
    MetaData(),
    Column("seq", primary_key=True),
    Column("tenant_id"),
    Column("embedding", Vector(EMBEDDING_DIMENSION)),
    Column("search_vector", TSVECTOR),
)
_HEADLINE_OPTIONS = (
    f'StartSel="{MARK_OPEN}", StopSel="{MARK_CLOSE}", '
    f"MaxWords={SNIPPET_TOKENS}, MinWords={SNIPPET_TOKENS // 2}, ShortWord=2"
)


#: Brackets a personal-data token's two words in the text the parser reads: a separator
#: to the parser, and a sign in a headline of where a token was, to put it back.
_TOKEN_EDGE = "\x01"  # noqa: S105 -- a separator, not a secret
_MARKS = f"{MARK_OPEN}{MARK_CLOSE}"
_ENCODED_TOKEN = re.compile(
    # A headline that starts at a token has dropped its leading edge. The parser may read
    # either half as several words (``EMPLOYEE_ID``; ``12e456789abc`` is a number in
    # exponent notation, then ``abc``), each marked on its own: marks may be anywhere
    # (found by the SearchIndex contract tests: such tokens came back without brackets).
    f"{_TOKEN_EDGE}?([A-Z0-9_{_MARKS}]+) {_TOKEN_EDGE}([0-9a-f{_MARKS}]+){_TOKEN_EDGE}"
)
_MARKED = re.compile(f"{MARK_OPEN}[^{_MARKS}]*{MARK_CLOSE}")
_UNMARK = str.maketrans("", "", _MARKS)


#: Stands in for every other ``<`` in the text the parser reads, restored in a headline.
#: The default parser reads ``<`` up to a later ``>`` as an XML tag, which to_tsvector
#: drops and ts_headline replaces with a space: the words of ``width<height and
#: height>depth`` or ``<script>`` were neither searchable nor shown in a snippet (found by
#: the SearchIndex contract tests; SQLite indexes and shows them).
_LESS_THAN = "\x04"


def indexed_text(value: str) -> str:
    """``value`` as the full-text parser should see it. The default parser reads a
    personal-data token (``<EMAIL:3f9a1c2b04d1>``) as an XML tag and drops it, so the
    token goes in as its two words, which a phrase query finds in order; any other ``<``
    goes in as a separator, so that no text is read as a tag."""
    value = value.replace(_TOKEN_EDGE, " ").replace(_LESS_THAN, " ")
    value = TOKEN.sub(
        lambda m: f"{_TOKEN_EDGE}{m.group(1)} {_TOKEN_EDGE}{m.group(2)}{_TOKEN_EDGE}", value
    )
    return value.replace("<", _LESS_THAN)


def shown_text(headline: str) -> str:
    """A headline of :func:`indexed_text` with each token as it was stored, its matched
    words still marked; a token cut by the headline's edge loses its brackets."""
    restored = _ENCODED_TOKEN.sub(_restore_token, headline).replace(_TOKEN_EDGE, "")
    return restored.replace(_LESS_THAN, "<")


def _restore_token(match: re.Match[str]) -> str:
    parts = match.groups()
    kind, digits = (part.translate(_UNMARK) for part in parts)
    if TOKEN.fullmatch(f"<{kind}:{digits}>") is None:
        return match.group(0)
    if all(MARK_OPEN in part and not _MARKED.sub("", part).strip("_") for part in parts):
        # Every word matched: one mark around the token, as SQLite's phrase match shows.
        return f"<{MARK_OPEN}{kind}:{digits}{MARK_CLOSE}>"
    return f"<{parts[0]}:{parts[1]}>"


def tsquery(terms: QueryTerms) -> tuple[str, dict[str, str]] | None:
    """A tsquery expression over bound parameters (no user text in the SQL), with the
    same meaning as SQLite's: any word may match; every token must, as a phrase."""
    params: dict[str, str] = {}

    def bind(function: str, value: str) -> str:
        name = f"q{len(params)}"
        params[name] = value
        return f"{function}('{TEXT_CONFIG}', :{name})"

    words = [bind("plainto_tsquery", word) for word in terms.words]
    phrases = [bind("phraseto_tsquery", phrase) for phrase in terms.phrases]
    if not words and not phrases:
        return None
    if not phrases:
        return " || ".join(words), params
    required = " && ".join(phrases)
    if not words:
        return required, params
    # The words still rank the matches, but only chunks with every token match.
    return f"({required}) && ({' || '.join([phrases[0], *words])})", params


class PostgresSearchIndex:
    def __init__(self, conn: Connection, *, iterative_scan: bool = True) -> None:
        self._conn = conn
        # pgvector 0.8's iterative index scans: without them a filtered HNSW search reads
        # ef_search candidates of every tenant and may keep fewer than k of this one.
        self._iterative_scan = iterative_scan

    def generation(self, tenant_id: str) -> int:
        return read_generation(self._conn, tenant_id)

    def replace(
        self, tenant_id: str, document_id: str, title: str, new_chunks: Sequence[Chunk]
    ) -> None:
        removed = self._delete_chunks(tenant_id, document_id)
        if new_chunks:
            rows = [
                {
                    "id": chunk.id,
                    "tenant_id": tenant_id,
                    "document_id": document_id,
                    "ordinal": chunk.ordinal,
                    "text": chunk.text,
                    "start_char": chunk.start_char,
                    "end_char": chunk.end_char,
                }
                for chunk in new_chunks
            ]
            seqs = self._conn.execute(
                chunks.insert().returning(chunks.c.seq, sort_by_parameter_order=True), rows
            ).scalars()
            # Weights as literals: setweight takes a "char", which a bound text is not.
            title_vector = func.setweight(
                func.to_tsvector(TEXT_CONFIG, bindparam("title")), literal_column("'A'")
            )
            text_vector = func.setweight(
                func.to_tsvector(TEXT_CONFIG, bindparam("words")), literal_column("'B'")
            )
            self._conn.execute(
                _search_columns.update()
                .where(_search_columns.c.seq == bindparam("key"))
                .values(
                    embedding=bindparam("vector", type_=Vector(EMBEDDING_DIMENSION)),
                    search_vector=title_vector.op("||")(text_vector),
                ),
                [
                    {
                        "key": seq,
                        "vector": list(chunk.embedding),
                        "title": indexed_text(title),
                        "words": indexed_text(chunk.text),
                    }
                    for seq, chunk in zip(seqs, new_chunks, strict=True)
                ],
            )
        # Only a change bumps, as in SQLite: a document without text, processed, has no
        # chunks before or after, and the tenant's cached answers stay good (found by the
        # SearchIndex contract tests: this bumped on every such replace).
        if removed or new_chunks:
            bump_generation(self._conn, tenant_id)

    def delete_document(self, tenant_id: str, document_id: str) -> None:
        if self._delete_chunks(tenant_id, document_id):
            bump_generation(self._conn, tenant_id)

    def _delete_chunks(self, tenant_id: str, document_id: str) -> int:
        result = self._conn.execute(
            delete(chunks).where(
                (chunks.c.tenant_id == tenant_id) & (chunks.c.document_id == document_id)
            )
        )
        return int(result.rowcount)

    def chunks(self, tenant_id: str, document_id: str) -> list[Chunk]:
        return document_chunks(self._conn, tenant_id, document_id)

    def chunks_with_vectors(self, tenant_id: str, document_id: str) -> list[Chunk]:
        rows = self._conn.execute(
            select(
                chunks.c.id,
                chunks.c.ordinal,
                chunks.c.text,
                chunks.c.start_char,
                chunks.c.end_char,
                literal_column("chunks.embedding", Vector(EMBEDDING_DIMENSION)).label("embedding"),
            )
            .where((chunks.c.tenant_id == tenant_id) & (chunks.c.document_id == document_id))
            .order_by(chunks.c.ordinal)
        )
        return [
            Chunk(
                row.id,
                document_id,
                row.ordinal,
                row.text,
                row.start_char,
                row.end_char,
                [] if row.embedding is None else np.asarray(row.embedding, "<f4").tolist(),
            )
            for row in rows
        ]

    def keyword(self, tenant_id: str, query: str, limit: int) -> list[Candidate]:
        built = tsquery(QueryTerms.parse(query))
        if built is None:
            return []
        expression, params = built
        rows = self._conn.execute(
            text(
                "SELECT seq, ts_rank_cd(search_vector, query) AS rank "  # noqa: S608 -- bound parameters only
                f"FROM chunks, (SELECT {expression} AS query) AS q "
                "WHERE tenant_id = :tenant AND search_vector @@ query "
                "ORDER BY rank DESC, seq LIMIT :limit"
            ),
            {**params, "tenant": tenant_id, "limit": limit},
        )
        return [Candidate(int(row[0]), float(row[1])) for row in rows]

    def semantic(self, tenant_id: str, vector: Sequence[float], limit: int) -> list[Candidate]:
        if self._iterative_scan:
            # Keep reading the graph until `limit` rows of this tenant are found; relaxed
            # order may return them slightly out of order, hence the outer ORDER BY.
            self._conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        self._conn.execute(
            text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(max(40, limit))}
        )
        distance = _search_columns.c.embedding.cosine_distance(
            bindparam("vector", type_=Vector(EMBEDDING_DIMENSION))
        )
        nearest = (
            select(_search_columns.c.seq, distance.label("distance"))
            .where(_search_columns.c.tenant_id == tenant_id)
            .order_by(distance)
            .limit(limit)
            .cte("nearest")
            .prefix_with("MATERIALIZED")
        )
        rows = self._conn.execute(
            select(nearest.c.seq, nearest.c.distance).order_by(nearest.c.distance, nearest.c.seq),
            {"vector": list(vector)},
        )
        return [Candidate(int(row[0]), 1.0 - float(row[1])) for row in rows]

    def describe(self, tenant_id: str, keys: Sequence[int], query: str) -> dict[int, HitInfo]:
        if not keys:
            return {}
        rows = hit_rows(self._conn, tenant_id, keys)
        snippets = self._headlines(
            {row.seq: row.text for row in rows}, tsquery(QueryTerms.parse(query))
        )
        return hit_infos(rows, snippets)

    def _headlines(
        self, texts: dict[int, str], built: tuple[str, dict[str, str]] | None
    ) -> dict[int, str]:
        """ts_headline over each chunk's text as it was indexed (tokens as two words), so
        that a token the query names is found and marked; then shown as stored."""
        if built is None or not texts:
            return {}
        expression, params = built
        rows = self._conn.execute(
            text(
                f"SELECT key, ts_headline('{TEXT_CONFIG}', body, {expression}, :options) "  # noqa: S608 -- bound parameters only
                "FROM unnest(CAST(:keys AS bigint[]), CAST(:bodies AS text[])) AS t(key, body)"
            ),
            {
                **params,
                "keys": list(texts),
                "bodies": [indexed_text(body) for body in texts.values()],
                "options": _HEADLINE_OPTIONS,
            },
        )
        return {int(row[0]): shown_text(str(row[1])) for row in rows}

"""Full-text (tsvector, BM25 over an inverted index) and vector (pgvector HNSW, cosine)
search of chunks.

A chunk's vector and tsvector live on its ``chunks`` row (migration 0005). Keyword search
ranks by BM25 as SQLite's FTS5 computes it, so both databases rank alike. ``ts_rank_cd``,
used before, knows nothing of how rare a word is and ranked chunks that repeat a common
word above the one that holds a rare word (nDCG@10 0.37 on BEIR SciFact, where FTS5 gets
0.69). BM25 needs each word's document frequency, each chunk's length and the tenant's
totals; counting them by unnesting every matched chunk's tsvector took 600 ms a query on
6,600 chunks. So each chunk's words are also written out as postings (``chunk_terms``,
migration 0006): a row per chunk and lexeme with its counts in the title and in the text
and the chunk's length, read by one index range scan per query word. The tenant's chunk
and term totals sit on its generation row, which every index write updates in its
transaction anyway.

Tenants share the tables, never the statistics: a word's document frequency counts the
tenant's postings and the totals are the tenant's, so no tenant's uploads move another
tenant's scores (cosine distance has no corpus statistics at all). Row-level security and
the ``tenant_id`` filter keep each query in its tenant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    Table,
    bindparam,
    column,
    delete,
    func,
    literal_column,
    select,
    text,
    update,
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
from spine.adapters.sql.search_filters import filtered
from spine.adapters.sql.tables import chunks
from spine.domain.documents import Chunk
from spine.domain.privacy import TOKEN
from spine.domain.search import NO_FILTER, Candidate, QueryTerms, SearchFilter
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
    Column("document_id"),
    Column("embedding", Vector(EMBEDDING_DIMENSION)),
    Column("search_vector", TSVECTOR),
)
# And migration 0006's: the tenant's totals for BM25, beside its generation.
_totals = Table(
    "index_generations",
    MetaData(),
    Column("tenant_id"),
    Column("chunks", BigInteger),
    Column("terms", BigInteger),
)
#: BM25's parameters, FTS5's: how fast a word's repeats stop adding to a chunk's score
#: (k1), and how much a long chunk's score is lowered (b).
BM25_K1, BM25_B = 1.2, 0.75
#: A chunk's length in BM25's sense: how many words its title and text have, stop words
#: included, as FTS5 counts them. A tsvector leaves stop words out but counts them in its
#: positions, and each lexeme's positions are in order, so the last position of any
#: lexeme is the length (the text's positions follow the title's). Counting only the
#: lexemes' positions (no stop words) agreed less with FTS5 on SciFact: the same top 10
#: in the same order for 4% of the queries rather than 13%, at the same nDCG@10 (0.690
#: and 0.687).
_CHUNK_LENGTH = (
    "(SELECT coalesce(max(positions[cardinality(positions)]), 0) FROM unnest(search_vector))"
)
#: The chunks' postings, from their tsvectors (the title's words weighted A, the text's
#: B; a tsvector keeps at most 256 positions of a lexeme, so a count fits a smallint).
#: Returns the chunks' total length.
_WRITE_POSTINGS = text(
    "WITH written AS ("  # noqa: S608 -- constants only
    f" SELECT tenant_id, seq, search_vector, {_CHUNK_LENGTH} AS length"
    " FROM chunks WHERE seq = ANY(CAST(:seqs AS integer[]))"
    "), postings AS ("
    " INSERT INTO chunk_terms (tenant_id, lexeme, seq, chunk_length, tf_title, tf_text)"
    " SELECT c.tenant_id, word.lexeme, c.seq, c.length,"
    " cardinality(array_positions(word.weights, 'A')),"
    " cardinality(array_positions(word.weights, 'B'))"
    " FROM written AS c CROSS JOIN LATERAL unnest(c.search_vector) AS word"
    ") SELECT coalesce(sum(length), 0) FROM written"
)
#: Each matched chunk's BM25 score, as FTS5's bm25() computes it (ext/fts5/fts5_aux.c):
#: the sum of idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length)) over
#: the query's words the chunk holds, where tf is title_weight * the word's count in the
#: title + its count in the text, and idf is ln((N - n + 0.5) / (n + 0.5)) for N chunks,
#: n of which hold the word (1e-6 when that is not positive, as FTS5 has it: a word in
#: more than half the chunks still counts a little). Lucene's ln(1 + ...), never negative,
#: agreed less with FTS5 on SciFact (the same top 10 for 9% of the queries, not 13%).
#:
#: A query word is what PostgreSQL's parser and stemmer make of it, once per query: most
#: words are one lexeme; one the parser splits (``employee_id``, ``12e456789abc``) needs
#: all of its lexemes, as ``plainto_tsquery`` would, and a personal-data token's words
#: are a word of this kind too (the phrase itself is checked on the chunk's tsvector).
#: Each lexeme's postings are one range of the primary key, where ``n`` is counted too.
_BM25_SCORES = text(
    "WITH query_words AS ("  # noqa: S608 -- a constant; the query's words are bound
    " SELECT given.word, stemmed.lexeme,"
    " count(*) OVER (PARTITION BY given.word) AS lexemes"
    " FROM unnest(CAST(:words AS text[])) WITH ORDINALITY AS given(body, word)"
    " CROSS JOIN LATERAL"
    f" unnest(tsvector_to_array(to_tsvector('{TEXT_CONFIG}', given.body))) AS stemmed(lexeme)"
    "), matched AS ("
    " SELECT q.word, q.lexemes, p.seq, p.chunk_length,"
    " :title_weight * p.tf_title + p.tf_text AS tf,"
    " count(*) OVER (PARTITION BY q.word, q.lexeme) AS holders"
    " FROM query_words AS q"
    " JOIN chunk_terms AS p ON p.tenant_id = :tenant AND p.lexeme = q.lexeme"
    "), totals AS ("
    # A tenant whose every chunk is gone keeps its row, with nothing to divide by.
    " SELECT CAST(chunks AS float8) AS n,"
    " CAST(terms AS float8) / nullif(chunks, 0) AS average_length"
    " FROM index_generations WHERE tenant_id = :tenant"
    "), word_scores AS ("
    " SELECT m.seq, sum("
    "  greatest(ln((t.n - m.holders + 0.5) / (m.holders + 0.5)), 1e-6)"
    "  * m.tf * (:k1 + 1)"
    "  / (m.tf + :k1 * (1 - :b + :b * m.chunk_length / t.average_length))"
    " ) AS score"
    " FROM matched AS m CROSS JOIN totals AS t"
    " GROUP BY m.seq, m.word"
    " HAVING count(*) = max(m.lexemes)"
    ") SELECT seq, sum(score) AS score FROM word_scores GROUP BY seq"
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
        removed_chunks, removed_terms = self._delete_chunks(tenant_id, document_id)
        added_terms = 0
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
            seqs = list(
                self._conn.execute(
                    chunks.insert().returning(chunks.c.seq, sort_by_parameter_order=True), rows
                ).scalars()
            )
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
            added_terms = int(self._conn.execute(_WRITE_POSTINGS, {"seqs": seqs}).scalar_one())
        # Only a change bumps, as in SQLite: a document without text, processed, has no
        # chunks before or after, and the tenant's cached answers stay good (found by the
        # SearchIndex contract tests: this bumped on every such replace).
        if removed_chunks or new_chunks:
            bump_generation(self._conn, tenant_id)
            self._add_to_totals(
                tenant_id, len(new_chunks) - removed_chunks, added_terms - removed_terms
            )

    def delete_document(self, tenant_id: str, document_id: str) -> None:
        removed_chunks, removed_terms = self._delete_chunks(tenant_id, document_id)
        if removed_chunks:
            bump_generation(self._conn, tenant_id)
            self._add_to_totals(tenant_id, -removed_chunks, -removed_terms)

    def _delete_chunks(self, tenant_id: str, document_id: str) -> tuple[int, int]:
        """Delete the document's chunks, and with them (ON DELETE CASCADE) their postings;
        how many chunks, and their total length."""
        lengths = self._conn.execute(
            delete(chunks)
            .where((chunks.c.tenant_id == tenant_id) & (chunks.c.document_id == document_id))
            .returning(literal_column(_CHUNK_LENGTH, BigInteger))
        ).scalars()
        removed = list(lengths)
        return len(removed), sum(removed)

    def _add_to_totals(self, tenant_id: str, chunks: int, terms: int) -> None:
        """Add to the tenant's BM25 totals, on the row bump_generation has just written:
        it is there, and this transaction holds its lock until the commit."""
        self._conn.execute(
            update(_totals)
            .where(_totals.c.tenant_id == tenant_id)
            .values(chunks=_totals.c.chunks + chunks, terms=_totals.c.terms + terms)
        )

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

    def keyword(
        self,
        tenant_id: str,
        query: str,
        limit: int,
        *,
        filters: SearchFilter = NO_FILTER,
        title_weight: float = 1.0,
    ) -> list[Candidate]:
        terms = QueryTerms.parse(query)
        if terms.empty:
            return []
        scored = (
            _BM25_SCORES.bindparams(
                words=[*terms.words, *terms.phrases],
                tenant=tenant_id,
                title_weight=title_weight,
                k1=BM25_K1,
                b=BM25_B,
            )
            .columns(column("seq", Integer), column("score", Float))
            .subquery("scored")
        )
        chunk = _search_columns
        # Every token is required, as a phrase: its words in order.
        conditions = [
            chunk.c.search_vector.op("@@")(func.phraseto_tsquery(TEXT_CONFIG, phrase))
            for phrase in terms.phrases
        ]
        if filters.empty and not conditions:
            # Nothing on a chunk's row can drop it: the best `limit` scores are the answer,
            # and only their rows are read (for their documents), not every match's.
            scored = (
                select(scored.c.seq, scored.c.score)
                .order_by(scored.c.score.desc(), scored.c.seq)
                .limit(limit)
                .subquery("best")
            )
        best = (
            select(chunk.c.seq, scored.c.score, chunk.c.document_id)
            .select_from(scored.join(chunk, chunk.c.seq == scored.c.seq))
            .where(chunk.c.tenant_id == tenant_id, *conditions)
        )
        rows = self._conn.execute(
            filtered(best, chunk, filters, self._conn.dialect.name)
            .order_by(scored.c.score.desc(), chunk.c.seq)
            .limit(limit)
        )
        return [Candidate(int(row[0]), str(row[2]), float(row[1])) for row in rows]

    def semantic(
        self,
        tenant_id: str,
        vector: Sequence[float],
        limit: int,
        *,
        filters: SearchFilter = NO_FILTER,
    ) -> list[Candidate]:
        if self._iterative_scan:
            # Keep reading the graph until `limit` rows of this tenant that pass the filters
            # are found (not ef_search candidates of every tenant, filtered after); relaxed
            # order may return them slightly out of order, hence the outer ORDER BY.
            self._conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        self._conn.execute(
            text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(max(40, limit))}
        )
        distance = _search_columns.c.embedding.cosine_distance(
            bindparam("vector", type_=Vector(EMBEDDING_DIMENSION))
        )
        candidates = select(
            _search_columns.c.seq, _search_columns.c.document_id, distance.label("distance")
        ).where(_search_columns.c.tenant_id == tenant_id)
        nearest = (
            filtered(candidates, _search_columns, filters, self._conn.dialect.name)
            .order_by(distance)
            .limit(limit)
            .cte("nearest")
            .prefix_with("MATERIALIZED")
        )
        rows = self._conn.execute(
            select(nearest.c.seq, nearest.c.document_id, nearest.c.distance).order_by(
                nearest.c.distance, nearest.c.seq
            ),
            {"vector": list(vector)},
        )
        return [Candidate(int(row[0]), str(row[1]), 1.0 - float(row[2])) for row in rows]

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

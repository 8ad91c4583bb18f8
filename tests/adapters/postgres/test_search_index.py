"""PostgreSQL's own search mechanics: pgvector's HNSW index and its iterative scan, the GIN
index, the keyword postings' primary key, and the encoding of personal-data tokens for the
full-text parser and headlines. What the port promises on every database is in
tests/adapters/search/test_search_index_contract.py; BM25 itself is in test_keyword_bm25.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, event, text

from spine.adapters.postgres.database import PostgresDatabase, PostgresUnitOfWork
from spine.adapters.postgres.search_index import (
    EMBEDDING_DIMENSION,
    TEXT_CONFIG,
    PostgresSearchIndex,
    indexed_text,
    shown_text,
)
from spine.domain.documents import Chunk, new_id
from spine.domain.search import SearchFilter
from support.rows import document_row, unscoped

TENANT, OTHER = "tenant-b", "tenant-a"
TOKEN = "<EMAIL:3f9a1c2b04d1>"
# The adapters' sentinel marks, which describe() turns into <mark> and </mark>.
OPEN, CLOSE = "\x02", "\x03"


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(postgres_url)
    yield database
    database.close()


def random_vectors(count: int, seed: int) -> list[list[float]]:
    generator = np.random.default_rng(seed)
    return [[float(x) for x in row] for row in generator.normal(size=(count, EMBEDDING_DIMENSION))]


def index(
    uow: PostgresUnitOfWork,
    tenant: str,
    texts: Sequence[str],
    vectors: Sequence[list[float]],
    *,
    metadata: dict[str, Any] | None = None,
) -> list[Chunk]:
    document_id = new_id("doc")
    uow.documents.add(
        tenant, document_row(tenant, document_id, chunk_count=len(texts), metadata=metadata)
    )
    made = [
        Chunk(new_id("chk"), document_id, n, body, 0, len(body), vectors[n])
        for n, body in enumerate(texts)
    ]
    uow.index.replace(tenant, document_id, "Title", made)
    return made


def analyze(pg: PostgresDatabase) -> None:
    """What autovacuum does soon after a bulk load: the planner's row counts per tenant."""
    with pg.write() as uow:
        unscoped(uow).execute(text("ANALYZE chunks"))
        unscoped(uow).execute(text("ANALYZE chunk_terms"))


def plan_of_last_statement(conn: Connection, call: Callable[[], Any]) -> str:
    """EXPLAIN of the last statement ``call`` runs on ``conn``, in the same transaction
    (so under the same settings the adapter made), with the same parameters."""
    statements: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        statements.append((args[2], args[3]))

    event.listen(conn, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(conn, "before_cursor_execute", record)
    statement, parameters = statements[-1]
    return "\n".join(conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars())


# -- Indexes and plans -----------------------------------------------------------------------


def test_the_chunks_table_has_an_hnsw_cosine_index_and_a_gin_full_text_index(
    pg: PostgresDatabase,
) -> None:
    with pg.read() as uow:
        rows = unscoped(uow).execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'")
        )
        definitions = {row.indexname: row.indexdef for row in rows}

    assert "USING hnsw (embedding vector_cosine_ops)" in definitions["ix_chunks_embedding_hnsw"]
    assert "USING gin (search_vector)" in definitions["ix_chunks_search_vector"]


def test_the_planner_answers_a_semantic_query_from_the_hnsw_index(pg: PostgresDatabase) -> None:
    """The query as the adapter sends it (the cosine operator of the index's opclass,
    ORDER BY distance, LIMIT, a tenant filter) is answered from the HNSW index.

    ``enable_seqscan = off`` makes that deterministic. At two thousand rows the planner
    prefers the index by itself, but the runner-up, a sequential scan that computes every
    distance and keeps the nearest, is only about a quarter dearer by its estimate, and
    the index's estimate moves with its graph (levels are drawn at random as rows go in)
    and with pgvector's cost model. The setting only adds a penalty to the sequential
    scan: a query the index cannot serve (a cast on the column, another operator) still
    plans one, and this fails. ANALYZE, as autovacuum does after a bulk load, tells the
    planner the tenant holds every row; its guess without statistics (a few rows) would
    send it to the (tenant, document) b-tree and a sort instead."""
    with pg.write() as uow:
        index(uow, TENANT, ["words"] * 2000, random_vectors(2000, seed=1))
    analyze(pg)

    with pg.read() as uow:
        conn = unscoped(uow)
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        query = random_vectors(1, seed=2)[0]
        plan = plan_of_last_statement(conn, lambda: uow.index.semantic(TENANT, query, 10))

    assert "Index Scan using ix_chunks_embedding_hnsw on chunks" in plan


@pytest.mark.parametrize(
    "filters",
    [SearchFilter(), SearchFilter(metadata=(("team", ("blue",)),))],
    ids=["unfiltered", "filtered"],
)
def test_the_planner_reads_each_query_words_postings_from_the_primary_key(
    pg: PostgresDatabase, filters: SearchFilter
) -> None:
    """A range of chunk_terms' (tenant_id, lexeme, seq) per query word, not a scan of
    every posting: here 24,000 postings of two tenants, 1,002 of them the query's words'.
    (With a quarter of that the planner reads the whole table, rightly: it estimates ten
    lexemes a query word.)"""
    for tenant in (TENANT, OTHER):
        texts = [" ".join(f"w{n * k % 211}" for k in range(1, 12)) for n in range(1000)]
        with pg.write() as uow:
            index(
                uow,
                tenant,
                [*texts, "the rare nightingale"],
                [[1.0] * EMBEDDING_DIMENSION] * 1001,
            )
    analyze(pg)

    with pg.read() as uow:
        conn = unscoped(uow)
        plan = plan_of_last_statement(
            conn, lambda: uow.index.keyword(TENANT, "nightingale title", 10, filters=filters)
        )

    # An index scan, an index-only scan or a bitmap of the index, as the planner likes.
    assert "chunk_terms_pkey" in plan
    assert "Seq Scan on chunk_terms" not in plan


def test_the_iterative_scan_reads_the_hnsw_index_until_it_has_limit_rows_of_the_tenant(
    pg: PostgresDatabase,
) -> None:
    """The filter on the tenant applies to what the index returns: a plain HNSW scan
    yields hnsw.ef_search (40) candidates of every tenant and keeps this tenant's, of
    which there are rarely any when it holds 1% of the rows.

    The planner would answer so small a tenant from the (tenant, document) b-tree and a
    sort, which is exact, and the contract suite's same case takes that path; here
    ``enable_sort = off`` takes the sort away, so the HNSW index (which returns rows in
    order) is the only plan left, as it is for a tenant too big for the b-tree path."""
    with pg.write() as uow:
        index(uow, OTHER, ["big"] * 1000, random_vectors(1000, seed=3))
        small = {chunk.id for chunk in index(uow, TENANT, ["small"] * 10, random_vectors(10, 4))}
    analyze(pg)
    query = random_vectors(1, seed=5)[0]

    def found(*, iterative_scan: bool) -> list[int]:
        with pg.read() as uow:
            conn = unscoped(uow)
            conn.execute(text("SET LOCAL enable_sort = off"))
            uow.scope.tenant(TENANT)
            search = PostgresSearchIndex(conn, iterative_scan=iterative_scan)
            plan = plan_of_last_statement(conn, lambda: search.semantic(TENANT, query, 10))
            assert "Index Scan using ix_chunks_embedding_hnsw" in plan
            hits = search.semantic(TENANT, query, 10)
            infos = search.describe(TENANT, [hit.chunk_key for hit in hits], "")
            assert {info.chunk_id for info in infos.values()} <= small
            return [hit.chunk_key for hit in hits]

    assert len(found(iterative_scan=True)) == 10
    assert len(found(iterative_scan=False)) < 10  # what the setting is for


def test_a_filtered_search_reads_the_hnsw_index_until_it_has_limit_rows_that_pass(
    pg: PostgresDatabase,
) -> None:
    """The filter on the chunks' documents applies to what the index returns, like the
    tenant's: here 10 chunks of 1,010 pass, and the iterative scan reads on until it has
    them all. ``enable_sort = off`` leaves the HNSW index as the only plan, as for a
    tenant and a filter too big for the planner to sort the passing chunks instead."""
    with pg.write() as uow:
        index(uow, TENANT, ["crowd"] * 1000, random_vectors(1000, seed=6))
        tagged = index(uow, TENANT, ["tagged"] * 10, random_vectors(10, 7), metadata={"team": 1})
    analyze(pg)
    query = random_vectors(1, seed=8)[0]
    filters = SearchFilter(metadata=(("team", (1,)),))

    def found(*, iterative_scan: bool) -> set[str]:
        with pg.read() as uow:
            conn = unscoped(uow)
            conn.execute(text("SET LOCAL enable_sort = off"))
            uow.scope.tenant(TENANT)
            search = PostgresSearchIndex(conn, iterative_scan=iterative_scan)
            plan = plan_of_last_statement(
                conn, lambda: search.semantic(TENANT, query, 10, filters=filters)
            )
            assert "Index Scan using ix_chunks_embedding_hnsw" in plan
            hits = search.semantic(TENANT, query, 10, filters=filters)
            infos = search.describe(TENANT, [hit.chunk_key for hit in hits], "")
            return {info.chunk_id for info in infos.values()}

    assert found(iterative_scan=True) == {chunk.id for chunk in tagged}
    assert len(found(iterative_scan=False)) < 10  # what the setting is for


# -- Personal-data tokens in the parser and in headlines ---------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        TOKEN,
        f"Write to {TOKEN}",
        f"{TOKEN}, {TOKEN} and <PHONE:3f9a1c2b04d1><EMPLOYEE_ID:12e456789abc>.",
        "a<b and c>d, <script>x</script>, <!-- note -->, <EMAIL:3f9a1c2b04d1",
        "<EMAIL:3F9A1C2B04D1> is not a token: the digits are upper case.",
    ],
)
def test_indexed_text_shows_as_it_was_stored(pg: PostgresDatabase, body: str) -> None:
    """ts_headline of the whole text (HighlightAll), then shown_text: the stored text."""
    with pg.read() as uow:
        headline = (
            unscoped(uow)
            .execute(
                text(
                    "SELECT ts_headline(CAST(:config AS regconfig), :body, "
                    "plainto_tsquery(CAST(:config AS regconfig), 'nothing'), 'HighlightAll=true')"
                ),
                {"config": TEXT_CONFIG, "body": indexed_text(body)},
            )
            .scalar_one()
        )

    assert shown_text(headline) == body


@pytest.mark.parametrize(
    "token",
    [TOKEN, "<EMPLOYEE_ID:0123456789ab>", "<EMAIL:12e456789abc>", "<IPV6:000000000000>"],
)
def test_a_token_query_marks_the_whole_token_in_the_headline(
    pg: PostgresDatabase, token: str
) -> None:
    body = f"Write to {token}, about the <b>invoice</b>."
    kind, digits = token[1:-1].split(":")
    with pg.read() as uow:
        headline = (
            unscoped(uow)
            .execute(
                text(
                    "SELECT ts_headline(CAST(:config AS regconfig), :body, "
                    "phraseto_tsquery(CAST(:config AS regconfig), :phrase), "
                    '\'HighlightAll=true, StartSel="\x02", StopSel="\x03"\')'
                ),
                {"config": TEXT_CONFIG, "body": indexed_text(body), "phrase": f"{kind} {digits}"},
            )
            .scalar_one()
        )

    assert shown_text(headline) == body.replace(token, f"<{OPEN}{token[1:-1]}{CLOSE}>")


def test_a_word_of_a_token_alone_is_marked_alone(pg: PostgresDatabase) -> None:
    """A query for ``email`` matches the token's first word only: that word is marked."""
    with pg.write() as uow:
        (chunk,) = index(uow, TENANT, [f"Write to {TOKEN} today."], [[1.0] * EMBEDDING_DIMENSION])
    with pg.read() as uow:
        (hit,) = uow.index.keyword(TENANT, "email", 10)
        info = uow.index.describe(TENANT, [hit.chunk_key], "email")[hit.chunk_key]

    assert info.chunk_id == chunk.id
    assert info.snippet == "Write to &lt;<mark>EMAIL</mark>:3f9a1c2b04d1&gt; today."


@pytest.mark.parametrize(
    "forged",
    [
        "\x01EMAIL \x013f9a1c2b04d1\x01",  # a token as indexed_text writes it
        "\x01\x02EMAIL\x03 \x01\x023f9a1c2b04d1\x03\x01",  # and as a headline marks it
        "\x04EMAIL:3f9a1c2b04d1>",  # the stand-in for "<"
    ],
)
def test_a_chunk_text_with_the_encodings_characters_cannot_forge_a_token(
    pg: PostgresDatabase, forged: str
) -> None:
    """indexed_text turns the characters it uses for its own encoding into spaces first:
    text that holds them is words, never a token (which a client may offer to reveal)."""
    body = f"Reach {forged} now."
    assert "<" not in shown_text(indexed_text(body))
    with pg.write() as uow:
        (chunk,) = index(uow, TENANT, [body], [[1.0] * EMBEDDING_DIMENSION])

    with pg.read() as uow:
        assert uow.index.chunks(TENANT, chunk.document_id)[0].text == body
        hits = uow.index.keyword(TENANT, f"{TOKEN} reach", 10)
        keys = [hit.chunk_key for hit in uow.index.semantic(TENANT, [1.0] * EMBEDDING_DIMENSION, 1)]
        infos = uow.index.describe(TENANT, keys, TOKEN)

    (info,) = infos.values()
    assert "&lt;" not in info.snippet
    assert "EMAIL:" not in info.snippet
    # As loose words in order they are a phrase, as they are in SQLite: found, not a token.
    assert [hit.chunk_key for hit in hits] in ([], keys)

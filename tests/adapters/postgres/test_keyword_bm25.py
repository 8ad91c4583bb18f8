"""PostgreSQL's keyword ranking: BM25 from the postings of ``chunk_terms`` and the tenant's
totals (migration 0006), computed as SQLite's FTS5 computes it. What the port promises on
every database is in tests/adapters/search/test_search_index_contract.py.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from spine.adapters.postgres.database import PostgresDatabase
from spine.adapters.postgres.search_index import BM25_B, BM25_K1, EMBEDDING_DIMENSION
from spine.domain.documents import Chunk, new_id
from spine.ports import Database, UnitOfWork
from spine.service.bootstrap import open_database
from support.rows import document_row, unscoped

TENANT, OTHER = "tenant-b", "tenant-a"
VECTOR = [1.0] * EMBEDDING_DIMENSION


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(postgres_url)
    yield database
    database.close()


def index(uow: UnitOfWork, tenant: str, title: str, *texts: str) -> list[Chunk]:
    """A document with one chunk per text, indexed as the processing step does."""
    document_id = new_id("doc")
    uow.documents.add(tenant, document_row(tenant, document_id, title=title))
    made = [
        Chunk(new_id("chk"), document_id, n, body, 0, len(body), VECTOR)
        for n, body in enumerate(texts)
    ]
    uow.index.replace(tenant, document_id, title, made)
    return made


def ranked(
    db: Database, tenant: str, query: str, *, title_weight: float = 1.0
) -> list[tuple[str, float]]:
    """(chunk id, score) of a keyword search, best first."""
    with db.read() as uow:
        hits = uow.index.keyword(tenant, query, 50, title_weight=title_weight)
        infos = uow.index.describe(tenant, [hit.chunk_key for hit in hits], query)
    return [(infos[hit.chunk_key].chunk_id, hit.score) for hit in hits]


def order(db: Database, tenant: str, query: str) -> list[str]:
    return [chunk_id for chunk_id, _ in ranked(db, tenant, query)]


def rows(pg: PostgresDatabase, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    with pg.read() as uow:
        return [tuple(row) for row in unscoped(uow).execute(text(statement), params)]


# -- The ranking -----------------------------------------------------------------------------


def test_a_rare_word_outranks_a_common_one_repeated(pg: PostgresDatabase) -> None:
    """What ts_rank_cd got wrong: it counts matches and knows nothing of how many chunks
    hold a word, so a chunk that repeats a word most chunks have beat the only chunk with
    the rare word. BM25 gives the common word almost nothing (idf 1e-6)."""
    with pg.write() as uow:
        (repeats,) = index(uow, TENANT, "Assay", "protein protein protein binding")
        (rare,) = index(uow, TENANT, "Assay", "kinase binding results")
        for n in range(6):
            index(uow, TENANT, "Assay", f"protein structure analysis {n}")

    assert order(pg, TENANT, "protein kinase")[:2] == [rare.id, repeats.id]
    ts_rank_cd = rows(
        pg,
        "SELECT id FROM chunks WHERE id = ANY(:ids) ORDER BY ts_rank_cd(search_vector, "
        "plainto_tsquery('english', 'protein') || plainto_tsquery('english', 'kinase')) DESC",
        ids=[repeats.id, rare.id],
    )
    assert ts_rank_cd == [(repeats.id,), (rare.id,)]


def test_a_longer_chunk_with_the_word_as_often_ranks_lower(pg: PostgresDatabase) -> None:
    with pg.write() as uow:
        # The long one first: a ranking blind to length would keep it first (by seq).
        (long,) = index(uow, TENANT, "Notes", "nightingale sang over quiet northern meadows")
        (short,) = index(uow, TENANT, "Notes", "nightingale sang")
        for _ in range(3):
            index(uow, TENANT, "Notes", "quarterly budget report")

    assert order(pg, TENANT, "nightingale") == [short.id, long.id]


def test_scores_are_fts5s_bm25_with_the_title_count_weighted(pg: PostgresDatabase) -> None:
    """Lengths count every word of title and text, stop words too; "Notes" is one word.

    nightingale: N = 10 chunks, n = 3 hold it; one holds it in its title (tf =
    title_weight), one twice in its text, one once. Total length 3 + 5 + 3 + 7 * 4 = 39.
    """
    with pg.write() as uow:
        (once,) = index(uow, TENANT, "Notes", "nightingale sang")
        (twice,) = index(uow, TENANT, "Notes", "the nightingale sang, nightingale")
        (titled,) = index(uow, TENANT, "Nightingale", "lark sang")
        for _ in range(7):
            index(uow, TENANT, "Notes", "quarterly budget report")
    idf = math.log((10 - 3 + 0.5) / (3 + 0.5))
    average_length = 39 / 10

    def bm25(tf: float, length: int) -> float:
        norm = 1 - BM25_B + BM25_B * length / average_length
        return idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * norm)

    for title_weight in (1.0, 4.0):
        expected = {
            once.id: bm25(1, 3),
            twice.id: bm25(2, 5),
            titled.id: bm25(title_weight, 3),
        }
        found = ranked(pg, TENANT, "nightingale", title_weight=title_weight)
        assert dict(found) == pytest.approx(expected, rel=1e-9)
        assert [score for _, score in found] == sorted(expected.values(), reverse=True)


def test_a_word_in_more_than_half_the_chunks_still_counts_a_little(pg: PostgresDatabase) -> None:
    """FTS5 gives such a word an idf of 1e-6 rather than a negative one."""
    with pg.write() as uow:
        (often,) = index(uow, TENANT, "Notes", "garden garden garden")
        (once,) = index(uow, TENANT, "Notes", "garden")

    found = ranked(pg, TENANT, "garden")
    assert [chunk_id for chunk_id, _ in found] == [often.id, once.id]
    assert all(0 < score < 1e-5 for _, score in found)


def test_a_word_the_parser_splits_needs_all_of_its_parts(pg: PostgresDatabase) -> None:
    """``employee_id`` is two lexemes to PostgreSQL's parser (and a phrase to FTS5): as
    before this ranking, a chunk must hold both, as plainto_tsquery asked."""
    with pg.write() as uow:
        (both,) = index(uow, TENANT, "Notes", "every employee has an id")
        index(uow, TENANT, "Notes", "the employee left")
        index(uow, TENANT, "Notes", "an id card")

    assert order(pg, TENANT, "employee_id") == [both.id]


# -- Postings and totals ---------------------------------------------------------------------


def postings(pg: PostgresDatabase, tenant: str) -> dict[str, set[tuple[str, int, int, int]]]:
    """chunk id -> (lexeme, count in the title, count in the text, chunk length)."""
    found: dict[str, set[tuple[str, int, int, int]]] = {}
    for chunk_id, lexeme, tf_title, tf_text, length in rows(
        pg,
        "SELECT c.id, t.lexeme, t.tf_title, t.tf_text, t.chunk_length FROM chunk_terms t "
        "JOIN chunks c ON c.seq = t.seq WHERE t.tenant_id = :tenant",
        tenant=tenant,
    ):
        found.setdefault(chunk_id, set()).add((lexeme, tf_title, tf_text, length))
    return found


def totals(pg: PostgresDatabase, tenant: str) -> tuple[int, int]:
    """The tenant's chunks and their total length, as its generation row holds them."""
    ((chunks, terms),) = rows(
        pg, "SELECT chunks, terms FROM index_generations WHERE tenant_id = :tenant", tenant=tenant
    )
    return int(chunks), int(terms)


def orphans(pg: PostgresDatabase) -> int:
    ((count,),) = rows(
        pg,
        "SELECT count(*) FROM chunk_terms t "
        "WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.seq = t.seq)",
    )
    return int(count)


def test_postings_and_totals_follow_every_replace_and_delete(pg: PostgresDatabase) -> None:
    with pg.write() as uow:
        sang, answered = index(uow, TENANT, "Birds", "nightingale sang", "lark answered")
        (ledger,) = index(uow, TENANT, "Ledger", "quarterly report")
        (theirs,) = index(uow, OTHER, "Birds", "heron")

    assert postings(pg, TENANT) == {
        sang.id: {("bird", 1, 0, 3), ("nightingal", 0, 1, 3), ("sang", 0, 1, 3)},
        answered.id: {("bird", 1, 0, 3), ("lark", 0, 1, 3), ("answer", 0, 1, 3)},
        ledger.id: {("ledger", 1, 0, 3), ("quarter", 0, 1, 3), ("report", 0, 1, 3)},
    }
    assert totals(pg, TENANT) == (3, 9)
    assert totals(pg, OTHER) == (1, 2)

    with pg.write() as uow:  # processed again: one chunk where there were two
        body = "the nightingale sang loudly"
        again = Chunk(new_id("chk"), sang.document_id, 0, body, 0, len(body), VECTOR)
        uow.index.replace(TENANT, sang.document_id, "Birds", [again])

    # "the" is no lexeme, but a word of the chunk's length.
    assert postings(pg, TENANT)[again.id] == {
        ("bird", 1, 0, 5),
        ("nightingal", 0, 1, 5),
        ("sang", 0, 1, 5),
        ("loud", 0, 1, 5),
    }
    assert postings(pg, TENANT).keys() == {again.id, ledger.id}
    assert totals(pg, TENANT) == (2, 8)

    with pg.write() as uow:
        uow.index.delete_document(TENANT, sang.document_id)
        uow.index.delete_document(TENANT, ledger.document_id)

    assert postings(pg, TENANT) == {}
    assert totals(pg, TENANT) == (0, 0)
    assert ranked(pg, TENANT, "nightingale") == []
    assert postings(pg, OTHER).keys() == {theirs.id}
    assert totals(pg, OTHER) == (1, 2)
    assert orphans(pg) == 0


def test_a_chunk_deleted_with_its_document_takes_its_postings_along(pg: PostgresDatabase) -> None:
    """The foreign key cascades: a chunk that goes without the search index (its document
    row deleted first) leaves no posting behind to match."""
    with pg.write() as uow:
        (chunk,) = index(uow, TENANT, "Birds", "nightingale sang")
        uow.documents.delete(TENANT, chunk.document_id)

    assert orphans(pg) == 0
    assert postings(pg, TENANT) == {}


def test_another_tenants_postings_are_neither_visible_nor_writable(pg: PostgresDatabase) -> None:
    """Row-level security on chunk_terms, under the statements' own tenant filter."""
    with pg.write() as uow:
        index(uow, TENANT, "Birds", "nightingale sang")
        (theirs,) = index(uow, OTHER, "Birds", "nightingale sang")

    ((their_seq,),) = rows(pg, "SELECT seq FROM chunks WHERE id = :id", id=theirs.id)

    with pg.read() as uow:
        conn = uow.documents._conn
        uow.scope.tenant(TENANT)
        seen = conn.execute(text("SELECT DISTINCT tenant_id FROM chunk_terms")).scalars()
        assert list(seen) == [TENANT]
        uow.scope.tenant("nobody")
        assert conn.execute(text("SELECT count(*) FROM chunk_terms")).scalar_one() == 0

    with pg.write() as uow:
        conn = uow.documents._conn
        uow.scope.tenant(TENANT)
        with pytest.raises(ProgrammingError, match="row-level security"):
            conn.execute(
                text(
                    "INSERT INTO chunk_terms (tenant_id, lexeme, seq, chunk_length, tf_title, "
                    "tf_text) VALUES (:tenant, 'forged', :seq, 1, 0, 1)"
                ),
                {"tenant": OTHER, "seq": their_seq},
            )


# -- Agreement with SQLite -------------------------------------------------------------------

#: Words both stemmers (FTS5's porter, PostgreSQL's snowball english) leave alone or cut
#: alike, none a stop word of either; each appears in one form only, so that no stemmer
#: can join two of them.
VOCABULARY = (
    "river", "garden", "heron", "falcon", "meadow", "harbor", "signal", "winter", "orchard",
    "marble", "canyon", "violet", "timber", "beacon", "salmon", "thunder", "pepper", "lantern",
    "copper", "willow",
)  # fmt: skip
#: Stop words inside the texts (never last, where the tsvector would not count them): the
#: lengths count them on both databases.
STOP_WORDS = ("the", "and", "of", "in")
QUERIES = ["heron", "river falcon", "winter orchard marble", "copper", "lantern willow heron"]


def agreement_corpus() -> list[tuple[str, list[str]]]:
    """Ten documents of one to five chunks (30 in all) of 3 to 30 words each."""
    rng = random.Random(7)
    documents = []
    sizes = [1, 2, 3, 4, 5, 5, 4, 3, 2, 1]
    for size in sizes:
        title = " ".join(rng.sample(VOCABULARY, rng.randint(1, 3)))
        texts = []
        for _ in range(size):
            words = [rng.choice(VOCABULARY) for _ in range(rng.randint(3, 30))]
            for _ in range(rng.randint(0, 4)):
                words.insert(rng.randrange(len(words)), rng.choice(STOP_WORDS))
            texts.append(" ".join(words))
        documents.append((title, texts))
    return documents


def test_postgresql_ranks_like_sqlite(pg: PostgresDatabase, tmp_path: Path) -> None:
    """Same corpus, same queries: the same top 10, in the same order, with the same
    scores. Where the stemmers differ, or a word is a stop word to PostgreSQL only, the
    two part (on BEIR SciFact 92% of the queries still have the same best document)."""
    sqlite = open_database(f"sqlite:///{tmp_path / 'spine.db'}")
    try:
        ids: dict[str, list[str]] = {"postgresql": [], "sqlite": []}
        for name, db in (("postgresql", pg), ("sqlite", sqlite)):
            with db.write() as uow:
                for title, texts in agreement_corpus():
                    ids[name] += [chunk.id for chunk in index(uow, TENANT, title, *texts)]
        same = dict(zip(ids["sqlite"], ids["postgresql"], strict=True))
        assert len(same) == 30

        for query in QUERIES:
            for title_weight in (1.0, 2.5):
                theirs = ranked(sqlite, TENANT, query, title_weight=title_weight)[:10]
                ours = ranked(pg, TENANT, query, title_weight=title_weight)[:10]
                assert len(ours) == 10, query
                assert [chunk_id for chunk_id, _ in ours] == [same[c] for c, _ in theirs], query
                assert [score for _, score in ours] == pytest.approx(
                    [score for _, score in theirs], rel=1e-9
                )
    finally:
        sqlite.close()

"""The SearchIndex port's contract, run against every database: SQLite and PostgreSQL.

What the service layer relies on, whichever database holds the index: keyword search
with stemming and ranking (and a weight for the title), nearest vectors by cosine, filters
on the chunks' documents applied during either search, a tenant's entries apart from
every other tenant's (in results and in scores), personal-data tokens matched as phrases,
snippets that are safe HTML, and a generation that moves with every change. Each
database's own mechanics (FTS5 tables, pgvector's indexes) are tested beside its adapter.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from spine.domain.documents import Chunk, new_id
from spine.domain.search import Candidate, SearchFilter
from spine.ports import Database, UnitOfWork
from support.rows import T0, document_row

EMBEDDING_DIMENSION = 384  # the vector columns of the migrations
TENANT, OTHER = "tenant-b", "tenant-a"
WORD = "nightingale"
FILLER = (
    "The quarterly report covers budgets, staffing, the weather in the northern "
    "offices and a long list of other ordinary matters that make this text longer."
)
TOKEN = "<EMAIL:3f9a1c2b04d1>"


def vector(*weights: float) -> list[float]:
    """A vector with ``weights`` in its first dimensions and zeros after them."""
    return [*weights, *[0.0] * (EMBEDDING_DIMENSION - len(weights))]


def seeded(seed: int) -> list[float]:
    """A vector of its own for each ``seed`` below the dimension."""
    values = [0.0] * EMBEDDING_DIMENSION
    values[seed % EMBEDDING_DIMENSION] = 1.0
    values[(seed + 1) % EMBEDDING_DIMENSION] = 0.5
    return values


def index(
    uow: UnitOfWork,
    tenant: str,
    title: str,
    *texts: str,
    vectors: Sequence[list[float]] | None = None,
    content_type: str = "text/plain",
    metadata: dict[str, Any] | None = None,
    at: datetime = T0,
) -> list[Chunk]:
    """Add a document with one chunk per text, as the processing step does."""
    document_id = new_id("doc")
    uow.documents.add(
        tenant,
        document_row(
            tenant,
            document_id,
            title=title,
            sha256="a" * 64,
            chunk_count=len(texts),
            content_type=content_type,
            metadata=metadata,
            at=at,
        ),
    )
    made = [
        Chunk(
            new_id("chk"),
            document_id,
            n,
            body,
            0,
            len(body),
            seeded(n) if vectors is None else vectors[n],
        )
        for n, body in enumerate(texts)
    ]
    uow.index.replace(tenant, document_id, title, made)
    return made


def keyword(db: Database, tenant: str, query: str, limit: int = 10) -> list[Candidate]:
    with db.read() as uow:
        return uow.index.keyword(tenant, query, limit)


def found(db: Database, tenant: str, query: str) -> list[str]:
    """The ids of the chunks a keyword search finds, best first."""
    with db.read() as uow:
        keys = [hit.chunk_key for hit in uow.index.keyword(tenant, query, 50)]
        infos = uow.index.describe(tenant, keys, query)
    return [infos[key].chunk_id for key in keys]


def nearest(db: Database, tenant: str, query: list[float], limit: int) -> list[tuple[str, float]]:
    """(chunk id, score) of a semantic search, best first."""
    with db.read() as uow:
        hits = uow.index.semantic(tenant, query, limit)
        infos = uow.index.describe(tenant, [hit.chunk_key for hit in hits], "")
    return [(infos[hit.chunk_key].chunk_id, hit.score) for hit in hits]


def ids(chunks: Sequence[Chunk]) -> list[str]:
    return [chunk.id for chunk in chunks]


# -- Keyword search ------------------------------------------------------------------------


def test_keyword_finds_a_chunk_by_a_word_and_by_an_inflected_form(db: Database) -> None:
    with db.write() as uow:
        runs = index(uow, TENANT, "Training log", "She runs along the river every morning.")
        ran = index(uow, TENANT, "Training plan", "Run the last mile faster.")
        index(uow, TENANT, "Other", FILLER)

    assert found(db, TENANT, "river") == ids(runs)
    assert set(found(db, TENANT, "running")) == {*ids(runs), *ids(ran)}
    assert set(found(db, TENANT, "RUNS")) == {*ids(runs), *ids(ran)}


def test_keyword_ranks_a_chunk_with_the_word_in_its_title_above_one_without(
    db: Database,
) -> None:
    body = f"A {WORD} sang in the garden late at night."
    with db.write() as uow:
        plain = index(uow, TENANT, "Garden notes", body)
        titled = index(uow, TENANT, f"{WORD.title()} notes", body)
        for _ in range(3):  # rows without the word, so that it weighs something in BM25
            index(uow, TENANT, "Report", FILLER)

    assert found(db, TENANT, WORD) == [*ids(titled), *ids(plain)]


def test_title_weight_decides_between_the_word_in_a_title_and_the_word_in_a_text(
    db: Database,
) -> None:
    with db.write() as uow:
        (titled,) = index(uow, TENANT, WORD.title(), "Notes from the garden late at night.")
        (told,) = index(uow, TENANT, "Garden notes", f"A {WORD} sang in the garden at night.")
        for _ in range(3):
            index(uow, TENANT, "Report", FILLER)

    def ranked(title_weight: float) -> list[str]:
        with db.read() as uow:
            hits = uow.index.keyword(TENANT, WORD, 10, title_weight=title_weight)
        return [hit.document_id for hit in hits]

    assert ranked(10.0) == [titled.document_id, told.document_id]
    assert ranked(0.1) == [told.document_id, titled.document_id]


def test_keyword_ranks_a_chunk_with_the_word_more_often_above_one_with_it_once(
    db: Database,
) -> None:
    with db.write() as uow:
        once = index(uow, TENANT, "Notes", f"The {WORD} sang, and a lark answered it at dawn.")
        often = index(uow, TENANT, "Notes", f"The {WORD} sang, a {WORD} answered a {WORD}.")
        for _ in range(3):
            index(uow, TENANT, "Report", FILLER)

    assert found(db, TENANT, WORD) == [*ids(often), *ids(once)]


def test_keyword_scores_are_positive_and_best_first(db: Database) -> None:
    with db.write() as uow:
        index(uow, TENANT, "Notes", f"{WORD} {WORD} garden", f"{WORD} once", f"garden {FILLER}")

    hits = keyword(db, TENANT, f"{WORD} garden")
    assert len(hits) == 3
    assert all(hit.score > 0 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_keyword_returns_at_most_limit_hits(db: Database) -> None:
    with db.write() as uow:
        index(uow, TENANT, "Notes", *[f"The {WORD} number {n}." for n in range(8)])

    assert len(keyword(db, TENANT, WORD, limit=5)) == 5
    assert len(keyword(db, TENANT, WORD, limit=50)) == 8


def test_another_tenants_uploads_leave_a_tenants_keyword_scores_exactly_as_they_were(
    db: Database,
) -> None:
    """BM25 weighs a word by the statistics of the rows it is ranked among: if those were
    every tenant's, the scores would tell a tenant about another tenant's words and how
    much it has. Both databases keep the statistics per tenant (SQLite one FTS5 table per
    tenant, PostgreSQL postings and totals keyed by tenant)."""
    with db.write() as uow:
        # Enough rows without the word that it weighs something in BM25.
        index(uow, TENANT, "Birds", f"A {WORD} sang in the garden at night.", *[FILLER] * 6)
    before = [(c.chunk_key, c.score) for c in keyword(db, TENANT, f"{WORD} garden")]
    assert len(before) == 1
    assert before[0][1] > 0

    with db.write() as uow:
        for n in range(20):
            index(uow, OTHER, f"Notes {n}", f"{WORD} {WORD} garden {n}", FILLER * (n % 3 + 1))

    assert [(c.chunk_key, c.score) for c in keyword(db, TENANT, f"{WORD} garden")] == before
    # The other tenant's documents are there and match: they just do not count for TENANT.
    assert len(keyword(db, OTHER, WORD)) == 10


def test_a_query_without_words_finds_nothing(db: Database) -> None:
    with db.write() as uow:
        index(uow, TENANT, "Notes", f"A {WORD} sang.")

    for query in ("", "   ", "!?", "[EMAIL]"):
        assert keyword(db, TENANT, query) == []


def test_words_in_text_that_looks_like_markup_are_found(db: Database) -> None:
    with db.write() as uow:
        compared = index(uow, TENANT, "Maths", "Where width<height and height>depth holds.")
        scripted = index(uow, TENANT, "Page", "Use <script>alert(1)</script> sparingly.")

    assert found(db, TENANT, "height") == ids(compared)
    assert found(db, TENANT, "script") == ids(scripted)
    assert found(db, TENANT, "alert") == ids(scripted)


# -- Personal-data tokens --------------------------------------------------------------------


def test_a_token_in_the_query_matches_only_chunks_holding_that_token(db: Database) -> None:
    with db.write() as uow:
        holder = index(uow, TENANT, "Mail", f"Write to {TOKEN} about the invoice.")
        index(uow, TENANT, "Mail", "Write to <EMAIL:0123456789ab> about the invoice.")
        index(uow, TENANT, "Phone", "Call <PHONE:3f9a1c2b04d1> about the invoice.")
        index(uow, TENANT, "Redacted", "Write to [EMAIL] about the invoice.")
        index(uow, TENANT, "Apart", "The email went to 0123 and 3f9a1c2b04d1 separately.")

    assert found(db, TENANT, TOKEN) == ids(holder)
    # Other words rank the matches, but do not widen them.
    assert found(db, TENANT, f"invoice {TOKEN}") == ids(holder)
    assert found(db, TENANT, f"{TOKEN} invoice <EMAIL:ffffffffffff>") == []
    # Every chunk that holds any e-mail address would match this, were it searched.
    assert keyword(db, TENANT, "[EMAIL]") == []


def test_a_token_in_the_title_matches_like_one_in_the_text(db: Database) -> None:
    with db.write() as uow:
        titled = index(uow, TENANT, f"Letter to {TOKEN}", "Nothing personal in here.")
        index(uow, TENANT, "Letter to <EMAIL:0123456789ab>", "Nothing personal in here.")

    assert found(db, TENANT, TOKEN) == ids(titled)


# -- Semantic search -------------------------------------------------------------------------


def test_semantic_returns_the_nearest_vectors_first_scored_one_minus_cosine_distance(
    db: Database,
) -> None:
    with db.write() as uow:
        chunks = index(
            uow,
            TENANT,
            "Vectors",
            "opposite",
            "orthogonal",
            "same",
            "diagonal",
            vectors=[vector(-1.0), vector(0.0, 1.0), vector(2.0), vector(1.0, 1.0)],
        )
    opposite, orthogonal, same, diagonal = ids(chunks)

    hits = nearest(db, TENANT, vector(1.0), 10)

    assert [chunk_id for chunk_id, _ in hits] == [same, diagonal, orthogonal, opposite]
    assert [score for _, score in hits] == pytest.approx([1.0, math.sqrt(0.5), 0.0, -1.0], abs=1e-5)
    assert [chunk_id for chunk_id, _ in nearest(db, TENANT, vector(1.0), 2)] == [same, diagonal]


def small_tenant_vector(n: int) -> list[float]:
    """Ever farther from ``vector(1.0)`` as ``n`` grows, and farther than any big one."""
    return vector(1.0, 2.0 + n)


def big_tenant_vector(n: int) -> list[float]:
    """Close to ``vector(1.0)``: all of these come before every one of the small tenant's."""
    values = vector(1.0)
    values[2 + n % 300] = 0.2
    values[2 + (7 * n) % 300] += 0.1
    return values


def test_semantic_returns_up_to_limit_for_a_small_tenant_beside_a_big_one(db: Database) -> None:
    """A filtered approximate search that reads the graph's nearest candidates of every
    tenant and keeps this one's would return none here: every vector of the big tenant
    is nearer the query than the small tenant's.

    On PostgreSQL the planner answers a tenant this small from the (tenant, document)
    b-tree and a sort, which is exact; the big tenant's own search reads the HNSW index.
    tests/adapters/postgres/test_search_index.py forces the HNSW path for a small tenant
    and shows that pgvector's iterative scan is what keeps it returning ``limit`` rows.
    """
    with db.write() as uow:
        index(
            uow,
            OTHER,
            "Big",
            *["big"] * 2000,
            vectors=[big_tenant_vector(n) for n in range(2000)],
        )
        small = index(
            uow,
            TENANT,
            "Small",
            *["small"] * 12,
            vectors=[small_tenant_vector(n) for n in range(12)],
        )

    hits = nearest(db, TENANT, vector(1.0), 10)
    assert [chunk_id for chunk_id, _ in hits] == ids(small)[:10]
    assert [chunk_id for chunk_id, _ in nearest(db, TENANT, vector(1.0), 50)] == ids(small)
    assert len(nearest(db, OTHER, vector(1.0), 10)) == 10


# -- Filters ---------------------------------------------------------------------------------

LEGS = pytest.mark.parametrize("leg", ["keyword", "semantic"])
DAY = timedelta(days=1)
#: (name, content type, metadata) of the documents ``library`` adds, the n-th created on
#: day n after T0.
LIBRARY: list[tuple[str, str, dict[str, Any]]] = [
    ("blue", "text/plain", {"team": "blue", "level": 1, "public": True}),
    ("blue-as-text", "text/markdown", {"team": "blue", "level": "1", "public": 1}),
    ("red", "application/pdf", {"team": "red", "level": 2.5, "public": False}),
    ("nested", "text/plain", {"team": ["blue"], "level": {"value": 1}, "a": {"b": "x"}}),
    ("odd-keys", "text/markdown", {"a.b": "x", 'quo"te': "x", "$.team": "blue", "level": 1.0}),
    ("bare", "text/plain", {}),
]


def library(db: Database) -> dict[str, str]:
    """The tenant's document id by name, each document a chunk that both legs find. The
    other tenant has a twin of each, which no filter of the tenant's may return."""
    documents = {}
    with db.write() as uow:
        for n, (name, content_type, metadata) in enumerate(LIBRARY):
            body = f"A {WORD} sang for {name}."
            document: dict[str, Any] = {
                "vectors": [seeded(n)],
                "content_type": content_type,
                "metadata": metadata,
                "at": T0 + n * DAY,
            }
            index(uow, OTHER, "Notes", body, **document)
            (chunk,) = index(uow, TENANT, "Notes", body, **document)
            documents[name] = chunk.document_id
    return documents


def search(
    db: Database, leg: str, filters: SearchFilter, *, tenant: str = TENANT, limit: int = 50
) -> list[Candidate]:
    with db.read() as uow:
        if leg == "keyword":
            return uow.index.keyword(tenant, WORD, limit, filters=filters)
        return uow.index.semantic(tenant, vector(1.0), limit, filters=filters)


def passing(db: Database, leg: str, documents: dict[str, str], **filters: Any) -> set[str]:
    """The names of the documents a search with ``SearchFilter(**filters)`` finds; the
    id itself for any document not in ``documents``."""
    names = {document_id: name for name, document_id in documents.items()}
    found = search(db, leg, SearchFilter(**filters))
    return {names.get(hit.document_id, hit.document_id) for hit in found}


def meta(key: str, *values: str | float | bool) -> dict[str, Any]:
    return {"metadata": ((key, values),)}


@LEGS
def test_without_a_filter_every_document_passes(db: Database, leg: str) -> None:
    documents = library(db)
    assert passing(db, leg, documents) == set(documents)


@LEGS
def test_document_ids_keep_those_documents_only(db: Database, leg: str) -> None:
    documents = library(db)
    chosen = (documents["red"], documents["bare"])
    assert passing(db, leg, documents, document_ids=chosen) == {"red", "bare"}


@LEGS
def test_content_types_keep_documents_of_those_types_only(db: Database, leg: str) -> None:
    documents = library(db)
    assert passing(db, leg, documents, content_types=("text/markdown",)) == {
        "blue-as-text",
        "odd-keys",
    }
    assert passing(db, leg, documents, content_types=("text/markdown", "application/pdf")) == {
        "blue-as-text",
        "odd-keys",
        "red",
    }


@LEGS
def test_one_metadata_value_must_equal_and_several_are_alternatives(db: Database, leg: str) -> None:
    documents = library(db)
    # Not "nested", whose team is a list holding "blue".
    assert passing(db, leg, documents, **meta("team", "blue")) == {"blue", "blue-as-text"}
    assert passing(db, leg, documents, **meta("team", "blue", "red")) == {
        "blue",
        "blue-as-text",
        "red",
    }
    assert passing(db, leg, documents, **meta("team", "red", "green")) == {"red"}


@LEGS
def test_a_metadata_value_matches_only_a_stored_value_of_its_json_type(
    db: Database, leg: str
) -> None:
    documents = library(db)
    assert passing(db, leg, documents, **meta("level", "1")) == {"blue-as-text"}
    # A number is one JSON type however it was written: 1 is 1.0.
    assert passing(db, leg, documents, **meta("level", 1)) == {"blue", "odd-keys"}
    assert passing(db, leg, documents, **meta("level", 2.5)) == {"red"}
    assert passing(db, leg, documents, **meta("level", "1", 2.5)) == {"blue-as-text", "red"}
    assert passing(db, leg, documents, **meta("public", True)) == {"blue"}
    assert passing(db, leg, documents, **meta("public", 1)) == {"blue-as-text"}
    assert passing(db, leg, documents, **meta("public", False)) == {"red"}
    assert passing(db, leg, documents, **meta("public", 0)) == set()
    assert passing(db, leg, documents, **meta("public", "true")) == set()


@LEGS
def test_a_metadata_key_is_one_top_level_key_never_a_path(db: Database, leg: str) -> None:
    documents = library(db)
    # Not "nested", whose "a" holds {"b": "x"}.
    assert passing(db, leg, documents, **meta("a.b", "x")) == {"odd-keys"}
    assert passing(db, leg, documents, **meta('quo"te', "x")) == {"odd-keys"}
    assert passing(db, leg, documents, **meta("$.team", "blue")) == {"odd-keys"}
    assert passing(db, leg, documents, **meta("$", "blue")) == set()
    assert passing(db, leg, documents, **meta("x'); DROP TABLE documents; --", "x")) == set()
    assert passing(db, leg, documents) == set(documents)


@LEGS
def test_created_from_is_inclusive_and_created_before_exclusive(db: Database, leg: str) -> None:
    documents = library(db)
    day = [T0 + n * DAY for n in range(len(LIBRARY))]

    assert passing(db, leg, documents, created_from=day[2]) == {
        "red",
        "nested",
        "odd-keys",
        "bare",
    }
    assert passing(db, leg, documents, created_before=day[2]) == {"blue", "blue-as-text"}
    assert passing(db, leg, documents, created_from=day[1], created_before=day[2]) == {
        "blue-as-text"
    }
    just_after = day[1] + timedelta(microseconds=1)
    assert passing(db, leg, documents, created_from=just_after, created_before=day[3]) == {"red"}
    assert passing(db, leg, documents, created_from=day[2], created_before=day[2]) == set()


@LEGS
def test_every_condition_given_must_hold(db: Database, leg: str) -> None:
    documents = library(db)
    assert passing(db, leg, documents, content_types=("text/plain",), **meta("team", "blue")) == {
        "blue"
    }
    two_keys = (("team", ("blue",)), ("level", ("1",)))
    assert passing(db, leg, documents, metadata=two_keys) == {"blue-as-text"}
    assert passing(
        db,
        leg,
        documents,
        document_ids=(documents["blue"], documents["red"], documents["odd-keys"]),
        created_from=T0 + DAY,
        **meta("level", 1, 2.5),
    ) == {"red", "odd-keys"}


@LEGS
def test_an_empty_tuple_lets_nothing_pass(db: Database, leg: str) -> None:
    library(db)
    assert search(db, leg, SearchFilter(document_ids=())) == []
    assert search(db, leg, SearchFilter(content_types=())) == []
    assert search(db, leg, SearchFilter(metadata=(("team", ()),))) == []


@LEGS
def test_a_filter_that_no_document_passes_finds_nothing(db: Database, leg: str) -> None:
    library(db)
    for filters in (
        SearchFilter(document_ids=("doc_missing",)),
        SearchFilter(content_types=("image/png",)),
        SearchFilter(metadata=(("team", ("green",)),)),
        SearchFilter(metadata=(("missing", ("blue",)),)),
        SearchFilter(created_from=T0 + 100 * DAY),
        SearchFilter(created_before=T0),
    ):
        assert search(db, leg, filters) == []


@LEGS
def test_a_filter_never_lets_another_tenants_documents_through(db: Database, leg: str) -> None:
    documents = library(db)
    theirs = tuple(hit.document_id for hit in search(db, leg, SearchFilter(), tenant=OTHER))
    assert len(theirs) == len(LIBRARY)

    assert passing(db, leg, documents, document_ids=theirs) == set()
    assert passing(db, leg, documents, document_ids=(*theirs, documents["red"])) == {"red"}
    assert passing(db, leg, documents, **meta("team", "blue")) == {"blue", "blue-as-text"}
    assert passing(db, leg, documents, created_from=T0) == set(documents)


@LEGS
def test_a_selective_filter_still_finds_limit_chunks_best_first(db: Database, leg: str) -> None:
    """295 chunks that fail the filter are nearer the query, and hold the word more
    often, than the 5 that pass: a filter applied to the best ``limit`` (or to any pool
    smaller than the whole tenant) after the search would find none of them."""
    with db.write() as uow:
        index(
            uow,
            TENANT,
            "Notes",
            *[f"{WORD} " * 12] * 295,
            vectors=[big_tenant_vector(n) for n in range(295)],
        )
        tagged = [
            index(
                uow,
                TENANT,
                "Notes",
                f"{WORD} " * (6 - n) + "sang.",
                vectors=[small_tenant_vector(n)],
                metadata={"team": "blue"},
            )[0]
            for n in range(5)
        ]

    hits = search(db, leg, SearchFilter(metadata=(("team", ("blue",)),)), limit=5)

    assert [hit.document_id for hit in hits] == [chunk.document_id for chunk in tagged]
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert len(search(db, leg, SearchFilter(metadata=(("team", ("blue",)),)), limit=3)) == 3


# -- Tenants ---------------------------------------------------------------------------------


def test_keyword_and_semantic_never_return_another_tenants_chunks(db: Database) -> None:
    with db.write() as uow:
        mine = index(uow, TENANT, f"{WORD} notes", f"A {WORD} sang.", vectors=[vector(1.0)])
        theirs = index(
            uow,
            OTHER,
            f"{WORD} notes",
            *[f"A {WORD} sang {n}." for n in range(5)],
            vectors=[vector(1.0, 0.01 * n) for n in range(5)],
        )

    with db.read() as uow:
        keys = {hit.chunk_key for hit in uow.index.keyword(TENANT, WORD, 10)}
        keys |= {hit.chunk_key for hit in uow.index.semantic(TENANT, vector(1.0), 10)}
        assert len(keys) == 1
        assert [
            info.chunk_id for info in uow.index.describe(TENANT, list(keys), WORD).values()
        ] == ids(mine)
        # Their keys describe nothing for the tenant, nor the tenant's for them.
        their_keys = [hit.chunk_key for hit in uow.index.keyword(OTHER, WORD, 10)]
        assert len(their_keys) == len(theirs)
        assert uow.index.describe(TENANT, their_keys, WORD) == {}
        assert uow.index.describe(OTHER, list(keys), WORD) == {}
        assert uow.index.chunks(TENANT, theirs[0].document_id) == []


def test_a_tenant_without_documents_searches_without_error(db: Database) -> None:
    with db.write() as uow:
        index(uow, OTHER, "Birds", f"A {WORD} sang.")

    with db.read() as uow:
        assert uow.index.keyword("new-tenant", WORD, 10) == []
        assert uow.index.semantic("new-tenant", vector(1.0), 10) == []
        assert uow.index.describe("new-tenant", [1, 2], WORD) == {}
        assert uow.index.chunks("new-tenant", "doc_missing") == []
        assert uow.index.generation("new-tenant") == 0
    with db.write() as uow:
        uow.index.delete_document("new-tenant", "doc_missing")
        uow.index.replace("new-tenant", "doc_missing", "t", [])
    assert len(keyword(db, OTHER, WORD)) == 1


def test_delete_removes_the_document_from_its_tenant_only(db: Database) -> None:
    with db.write() as uow:
        gone = index(uow, TENANT, "Gone", f"The {WORD} ledger.", FILLER)
        kept = index(uow, TENANT, "Kept", f"Another {WORD} ledger.")
        other = index(uow, OTHER, "Other", f"The {WORD} ledger of the other tenant.")
    gone_id = gone[0].document_id

    with db.write() as uow:
        uow.index.delete_document(OTHER, gone_id)  # the wrong tenant: nothing happens
    assert set(found(db, TENANT, WORD)) == {*ids(kept), gone[0].id}

    with db.write() as uow:
        uow.index.delete_document(TENANT, gone_id)
    assert found(db, TENANT, WORD) == ids(kept)
    assert found(db, TENANT, "quarterly") == []
    assert {chunk_id for chunk_id, _ in nearest(db, TENANT, seeded(0), 10)} == set(ids(kept))
    assert found(db, OTHER, WORD) == ids(other)
    with db.read() as uow:
        assert uow.index.chunks(TENANT, gone_id) == []
        assert ids(uow.index.chunks(OTHER, other[0].document_id)) == ids(other)


# -- Stored chunks and replacing them ---------------------------------------------------------


def test_chunks_come_back_in_order_without_their_vectors(db: Database) -> None:
    document_id = new_id("doc")
    made = [
        Chunk(
            new_id("chk"),
            document_id,
            ordinal,
            f"part {ordinal}",
            10 * ordinal,
            10 * ordinal + 6,
            seeded(ordinal),
        )
        for ordinal in (2, 0, 3, 1)
    ]
    with db.write() as uow:
        uow.documents.add(TENANT, document_row(TENANT, document_id, chunk_count=len(made)))
        uow.index.replace(TENANT, document_id, "Parts", made)

    with db.read() as uow:
        stored = uow.index.chunks(TENANT, document_id)

    expected = sorted(made, key=lambda chunk: chunk.ordinal)
    assert [chunk.ordinal for chunk in stored] == [0, 1, 2, 3]
    assert [(c.id, c.document_id, c.ordinal, c.text, c.start_char, c.end_char) for c in stored] == [
        (c.id, c.document_id, c.ordinal, c.text, c.start_char, c.end_char) for c in expected
    ]
    assert all(chunk.embedding == [] for chunk in stored)


def test_replace_replaces_a_documents_chunks(db: Database) -> None:
    with db.write() as uow:
        first = index(uow, TENANT, "Draft", f"The old {WORD} text.", "More old words.")
    document_id = first[0].document_id
    body = f"The new {WORD} text."
    second = [Chunk(new_id("chk"), document_id, 0, body, 0, len(body), vector(0.0, 1.0))]
    with db.write() as uow:
        uow.index.replace(TENANT, document_id, "Final", second)
    with db.write() as uow:  # processed again with the same chunks: still once each
        uow.index.replace(TENANT, document_id, "Final", second)

    with db.read() as uow:
        assert ids(uow.index.chunks(TENANT, document_id)) == ids(second)
    assert found(db, TENANT, WORD) == ids(second)
    assert found(db, TENANT, "old") == []
    assert found(db, TENANT, "draft") == []
    assert found(db, TENANT, "final") == ids(second)
    assert [chunk_id for chunk_id, _ in nearest(db, TENANT, vector(1.0), 10)] == ids(second)


# -- Snippets --------------------------------------------------------------------------------


def test_describe_names_the_chunk_and_marks_the_matched_words_in_escaped_html(
    db: Database,
) -> None:
    body = f"Use <script>alert('x')</script> & watch the {WORD} run."
    with db.write() as uow:
        (chunk,) = index(uow, TENANT, "Birds & <b>bees</b>", body)

    with db.read() as uow:
        (hit,) = uow.index.keyword(TENANT, f"{WORD} running", 10)
        infos = uow.index.describe(TENANT, [hit.chunk_key], f"{WORD} running")

    info = infos[hit.chunk_key]
    assert (info.document_id, info.chunk_id, info.title) == (
        chunk.document_id,
        chunk.id,
        "Birds & <b>bees</b>",
    )
    assert f"<mark>{WORD}</mark>" in info.snippet
    assert "<mark>run</mark>" in info.snippet
    assert "&lt;script&gt;" in info.snippet
    assert "&amp;" in info.snippet
    # Nothing but the marks is markup.
    assert html.unescape(info.snippet.replace("<mark>", "").replace("</mark>", "")) == body


def test_a_snippet_is_the_best_matching_passage_not_the_start(db: Database) -> None:
    # One query word alone early on, then a passage holding both: the snippet is that
    # passage, with both words marked, whatever the chunk's first words are.
    opening = "Budget minutes of the autumn meeting, "
    body = (
        opening
        + "the heron was mentioned once. "
        + FILLER * 3
        + f" At dawn the {WORD} sang while the heron waited by the reeds. "
        + FILLER * 3
    )
    with db.write() as uow:
        (chunk,) = index(uow, TENANT, "Minutes", body)

    with db.read() as uow:
        (hit,) = uow.index.keyword(TENANT, f"{WORD} heron", 10)
        info = uow.index.describe(TENANT, [hit.chunk_key], f"{WORD} heron")[hit.chunk_key]

    assert info.chunk_id == chunk.id
    assert f"<mark>{WORD}</mark>" in info.snippet
    assert "<mark>heron</mark> waited" in info.snippet
    assert not info.snippet.startswith(opening[:20])
    assert len(html.unescape(info.snippet)) < len(body) / 2


def test_a_snippet_without_a_match_is_the_escaped_start_of_the_chunk(db: Database) -> None:
    body = "<b>bold</b> " + "word " * 60
    with db.write() as uow:
        (chunk,) = index(uow, TENANT, "Words", body, vectors=[vector(1.0)])

    with db.read() as uow:
        (hit,) = uow.index.semantic(TENANT, vector(1.0), 1)
        info = uow.index.describe(TENANT, [hit.chunk_key], "unrelated")[hit.chunk_key]

    assert info.chunk_id == chunk.id
    assert "<mark>" not in info.snippet
    assert info.snippet.startswith("&lt;b&gt;bold&lt;/b&gt; word word")
    assert body.startswith(html.unescape(info.snippet).removesuffix("…"))


@pytest.mark.parametrize(
    "token",
    [
        TOKEN,
        "<EMPLOYEE_ID:0123456789ab>",  # a tenant's own kind, of two words
        "<EMAIL:12e456789abc>",  # digits that begin like a number with an exponent
        "<IPV4:000000000000>",
        "<EMAIL:deadbeefface>",
    ],
)
@pytest.mark.parametrize(
    "template",
    ["{}", "{} wrote this.", "Write to {}", "Write to {}, about the <b>invoice</b>."],
)
def test_a_snippet_for_a_token_query_marks_the_token(
    db: Database, token: str, template: str
) -> None:
    body = template.format(token)
    with db.write() as uow:
        (chunk,) = index(uow, TENANT, "Mail", body)

    with db.read() as uow:
        (hit,) = uow.index.keyword(TENANT, token, 10)
        info = uow.index.describe(TENANT, [hit.chunk_key], token)[hit.chunk_key]

    assert info.chunk_id == chunk.id
    marked = html.escape(body, quote=False).replace(
        html.escape(token), f"&lt;<mark>{token[1:-1]}</mark>&gt;"
    )
    assert info.snippet == marked


# -- Hostile queries -------------------------------------------------------------------------

# Each query with the chunks it must find: those holding its words, no more and no fewer,
# whatever FTS5 or tsquery would make of it as syntax.
HOSTILE_QUERIES = [
    ('"alpha" OR brav*', {"alpha bravo"}),
    ("alpha & !bravo", {"alpha bravo"}),
    ("!bravo", {"alpha bravo"}),
    ("NEAR(alpha delta)", {"alpha bravo", "delta echo"}),
    ("NEAR(", set()),
    ("'", set()),
    ("''", set()),
    ("del:*", set()),
    ("delta:*", {"delta echo"}),
    ("delta:A", {"delta echo"}),
    ("nigh*", set()),
    ("nigh* OR *", set()),
    ('"unterminated', set()),
    ('alpha"', {"alpha bravo"}),
    ("alpha AND", {"alpha bravo"}),
    ("(alpha", {"alpha bravo"}),
    ("alpha <-> bravo", {"alpha bravo"}),
    ("alpha <2> delta", {"alpha bravo", "delta echo"}),
    ("text : bravo", {"alpha bravo"}),
    ("title : bravo", {"alpha bravo"}),
    ("{title text}: echo", {"delta echo"}),
    ("^delta", {"delta echo"}),
    ("-delta", {"delta echo"}),
    ("alpha'); DROP TABLE chunks; --", {"alpha bravo"}),
    ("alpha\\", {"alpha bravo"}),
    ("alpha\x00bravo", {"alpha bravo"}),
    ("<EMAIL:3f9a1c2b04d1", set()),
    ("<EMAIL:3f9a1c2b04d1> OR *", set()),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [pytest.param(query, expected, id=repr(query)) for query, expected in HOSTILE_QUERIES],
)
def test_query_syntax_is_never_interpreted(db: Database, query: str, expected: set[str]) -> None:
    texts = ["alpha bravo", "bravado charlie", "delta echo", f"{WORD} song"]
    with db.write() as uow:
        chunks = {chunk.text: chunk.id for chunk in index(uow, TENANT, "Notes", *texts)}

    with db.read() as uow:
        keys = [hit.chunk_key for hit in uow.index.keyword(TENANT, query, 10)]
        infos = uow.index.describe(TENANT, keys, query)
        everything = uow.index.describe(
            TENANT, [c.chunk_key for c in uow.index.semantic(TENANT, seeded(0), 10)], query
        )

    assert {info.chunk_id for info in infos.values()} == {chunks[body] for body in expected}
    assert len(everything) == len(texts)
    assert len(found(db, TENANT, "alpha")) == 1  # the table is still there


# -- The generation: the search result cache's key --------------------------------------------


def generation(db: Database, tenant: str) -> int:
    with db.read() as uow:
        return uow.index.generation(tenant)


def test_replace_and_delete_each_raise_the_tenants_generation_by_one(db: Database) -> None:
    assert generation(db, TENANT) == 0
    with db.write() as uow:
        (chunk,) = index(uow, TENANT, "Birds", f"A {WORD} sang.")
    assert generation(db, TENANT) == 1

    with db.write() as uow:  # processed again
        body = f"The {WORD} sang again."
        again = Chunk(new_id("chk"), chunk.document_id, 0, body, 0, len(body), seeded(0))
        uow.index.replace(TENANT, chunk.document_id, "Birds", [again])
    assert generation(db, TENANT) == 2

    with db.write() as uow:
        uow.index.delete_document(TENANT, chunk.document_id)
    assert generation(db, TENANT) == 3
    assert generation(db, OTHER) == 0


def test_a_reader_sees_the_new_generation_exactly_when_it_sees_the_change(db: Database) -> None:
    """The bump is in the index write's own transaction: no reader can see the new
    document under the old generation, which a cached answer would then hide."""
    with db.write() as uow:
        index(uow, TENANT, "Birds", f"A {WORD} sang.")
        with db.read() as other:
            assert other.index.generation(TENANT) == 0
            assert other.index.keyword(TENANT, WORD, 10) == []
    with db.read() as uow:
        assert uow.index.generation(TENANT) == 1
        assert len(uow.index.keyword(TENANT, WORD, 10)) == 1


def test_a_rolled_back_write_leaves_the_generation_as_it_was(db: Database) -> None:
    def index_then_fail() -> None:
        with db.write() as uow:
            index(uow, TENANT, "Birds", f"A {WORD} sang.")
            raise RuntimeError("the job failed after indexing")

    with pytest.raises(RuntimeError):
        index_then_fail()
    assert generation(db, TENANT) == 0


def test_a_delete_that_removes_nothing_raises_no_generation(db: Database) -> None:
    with db.write() as uow:
        (chunk,) = index(uow, TENANT, "Birds", f"A {WORD} sang.")
    with db.write() as uow:
        uow.index.delete_document(OTHER, chunk.document_id)  # the wrong tenant
        uow.index.delete_document(TENANT, "doc_missing")
    assert generation(db, TENANT) == 1
    assert generation(db, OTHER) == 0


def test_a_replace_that_changes_nothing_raises_no_generation(db: Database) -> None:
    """A document without text, processed: no chunks before, none after, nothing a
    cached answer could miss, so the tenant's cached answers stay good."""
    with db.write() as uow:
        index(uow, TENANT, "Birds", f"A {WORD} sang.")
        empty = new_id("doc")
        uow.documents.add(TENANT, document_row(TENANT, empty))
    with db.write() as uow:
        uow.index.replace(TENANT, empty, "Empty", [])
        uow.index.replace(OTHER, empty, "Empty", [])  # the wrong tenant, too
    assert generation(db, TENANT) == 1
    assert generation(db, OTHER) == 0

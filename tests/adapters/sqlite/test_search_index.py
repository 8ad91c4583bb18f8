"""The full-text index keeps one FTS5 table per tenant, on a real migrated SQLite file.

BM25 weighs a term by the statistics of the table it is in (how many rows hold it, the
average row length). In one shared table another tenant's uploads moved a tenant's scores,
so the scores told the tenant about the other tenant's words and volume.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from spine.adapters.sqlite.database import SqliteDatabase, SqliteUnitOfWork
from spine.adapters.sqlite.search_index import FTS_TABLE_PREFIX, fts_table
from spine.domain.documents import Chunk, new_id
from support.rows import document_row

T0 = datetime(2030, 1, 1, tzinfo=UTC)
EMBEDDING_DIMENSION = 384  # the vec0 column of migration 0001
VICTIM, OTHER = "tenant-b", "tenant-a"
WORD = "nightingale"
FILLER = (
    "The quarterly report covers budgets, staffing, the weather in the northern "
    "offices and a long list of other ordinary matters that make this text longer."
)


def vector(seed: int) -> list[float]:
    values = [0.0] * EMBEDDING_DIMENSION
    values[seed % EMBEDDING_DIMENSION] = 1.0
    values[(seed + 1) % EMBEDDING_DIMENSION] = 0.5
    return values


def index(uow: SqliteUnitOfWork, tenant: str, title: str, *texts: str) -> str:
    """Add a document with one chunk per text, as the processing step does."""
    document_id = new_id("doc")
    uow.documents.add(
        tenant,
        document_row(tenant, document_id, title=title, sha256="a" * 64, chunk_count=len(texts)),
    )
    uow.index.replace(
        tenant,
        document_id,
        title,
        [
            Chunk(new_id("chk"), document_id, n, body, 0, len(body), vector(n))
            for n, body in enumerate(texts)
        ],
    )
    return document_id


def scores(db: SqliteDatabase, tenant: str, query: str) -> list[tuple[int, float]]:
    with db.read() as uow:
        return [(c.chunk_key, c.score) for c in uow.index.keyword(tenant, query, 10)]


def fts_rowids(db: SqliteDatabase, table: str) -> set[int]:
    with db.read() as uow:
        conn = uow.documents._conn  # the test reads the table behind the index
        return {row[0] for row in conn.execute(text(f"SELECT rowid FROM {table}"))}  # noqa: S608


def test_another_tenants_uploads_leave_a_tenants_keyword_scores_exactly_as_they_were(
    db: SqliteDatabase,
) -> None:
    with db.write() as uow:
        # Enough rows without the word that its weight is well above BM25's floor.
        index(uow, VICTIM, "Birds", f"A {WORD} sang in the garden at night.", *[FILLER] * 6)
    before = scores(db, VICTIM, f"{WORD} garden")
    assert len(before) == 1
    assert before[0][1] > 0.5

    with db.write() as uow:
        for n in range(20):
            index(uow, OTHER, f"Notes {n}", f"{WORD} {WORD} garden {n}", FILLER * (n % 3 + 1))

    assert scores(db, VICTIM, f"{WORD} garden") == before
    # The other tenant's documents are there and match: they just do not count for B.
    assert len(scores(db, OTHER, WORD)) == 10


def test_a_tenant_without_documents_searches_without_error(db: SqliteDatabase) -> None:
    with db.write() as uow:
        index(uow, OTHER, "Birds", f"A {WORD} sang.")

    with db.read() as uow:
        assert uow.index.keyword("new-tenant", WORD, 10) == []
        assert uow.index.describe("new-tenant", [1, 2], WORD) == {}
    with db.write() as uow:
        uow.index.delete_document("new-tenant", "doc_missing")
        uow.index.replace("new-tenant", "doc_missing", "t", [])  # no chunks: no table needed
    assert fts_rowids(db, fts_table(OTHER)) != set()
    with db.read() as uow:
        conn = uow.documents._conn
        made = conn.execute(
            text("SELECT count(*) FROM sqlite_master WHERE name = :name"),
            {"name": fts_table("new-tenant")},
        ).scalar_one()
    assert made == 0


def test_delete_removes_the_document_from_its_tenants_table_only(db: SqliteDatabase) -> None:
    with db.write() as uow:
        gone = index(uow, VICTIM, "Gone", f"The {WORD} ledger.", FILLER)
        kept = index(uow, VICTIM, "Kept", f"Another {WORD} ledger.")
        other = index(uow, OTHER, "Other", f"The {WORD} ledger of the other tenant.")
    victim_rows, other_rows = fts_rowids(db, fts_table(VICTIM)), fts_rowids(db, fts_table(OTHER))
    assert len(victim_rows) == 3
    assert len(other_rows) == 1

    with db.write() as uow:
        uow.index.delete_document(OTHER, gone)  # the wrong tenant: nothing happens
    assert fts_rowids(db, fts_table(VICTIM)) == victim_rows

    with db.write() as uow:
        uow.index.delete_document(VICTIM, gone)
    assert len(fts_rowids(db, fts_table(VICTIM))) == 1
    assert fts_rowids(db, fts_table(OTHER)) == other_rows
    with db.read() as uow:
        hits = uow.index.keyword(VICTIM, WORD, 10)
        assert [
            info.document_id
            for info in uow.index.describe(VICTIM, [h.chunk_key for h in hits], WORD).values()
        ] == [kept]
        assert len(uow.index.keyword(OTHER, WORD, 10)) == 1
        assert uow.index.chunks(OTHER, other) != []


def test_a_new_tenant_table_has_secure_delete_on(db: SqliteDatabase) -> None:
    with db.write() as uow:
        index(uow, VICTIM, "t", "words")
    with db.read() as uow:
        conn = uow.documents._conn
        config = dict(
            conn.execute(text(f"SELECT k, v FROM {fts_table(VICTIM)}_config")).all()  # noqa: S608
        )
    assert config.get("secure-delete") == 1


@pytest.mark.parametrize(
    "tenant_id",
    [
        'quo"te',
        "it's",
        "with space",
        "ünïcødé-租户",
        "x; DROP TABLE chunks; --",
        "",
        "a" * 500,
        "chunks_vec",
    ],
)
def test_table_names_are_safe_identifiers_for_any_tenant_id(
    db: SqliteDatabase, tenant_id: str
) -> None:
    name = fts_table(tenant_id)
    assert re.fullmatch(re.escape(FTS_TABLE_PREFIX) + r"[0-9a-f]{32}", name)
    assert name == fts_table(tenant_id)

    with db.write() as uow:
        index(uow, tenant_id, "Title", f"The {WORD} of {tenant_id}.")
    with db.read() as uow:
        assert len(uow.index.keyword(tenant_id, WORD, 10)) == 1
        assert uow.index.keyword(VICTIM, WORD, 10) == []


def test_different_tenants_get_different_tables() -> None:
    ids = ["a", "A", "a ", "b", "tenant-1", "tenant-2", "ü", "u"]
    assert len({fts_table(tenant) for tenant in ids}) == len(ids)

"""SQLite's own full-text mechanics: one FTS5 table per tenant, on a real migrated file.

BM25 weighs a term by the statistics of the table it is in (how many rows hold it, the
average row length). In one shared table another tenant's uploads moved a tenant's scores,
so the scores told the tenant about the other tenant's words and volume. What the port
promises on every database is in tests/adapters/search/test_search_index_contract.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from spine.adapters.sqlite.database import SqliteDatabase
from spine.adapters.sqlite.search_index import FTS_TABLE_PREFIX, fts_table
from spine.domain.documents import Chunk, new_id
from spine.ports import UnitOfWork
from spine.service.bootstrap import open_database
from support.rows import document_row, unscoped

EMBEDDING_DIMENSION = 384  # the vec0 column of migration 0001
TENANT, OTHER = "tenant-b", "tenant-a"
WORD = "nightingale"
FILLER = (
    "The quarterly report covers budgets, staffing, the weather in the northern "
    "offices and a long list of other ordinary matters that make this text longer."
)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    database = open_database(f"sqlite:///{tmp_path / 'spine.db'}")
    assert isinstance(database, SqliteDatabase)
    yield database
    database.close()


def vector(seed: int) -> list[float]:
    values = [0.0] * EMBEDDING_DIMENSION
    values[seed % EMBEDDING_DIMENSION] = 1.0
    values[(seed + 1) % EMBEDDING_DIMENSION] = 0.5
    return values


def index(uow: UnitOfWork, tenant: str, title: str, *texts: str) -> str:
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


def fts_rowids(db: SqliteDatabase, table: str) -> set[int]:
    with db.read() as uow:
        rows = unscoped(uow).execute(text(f"SELECT rowid FROM {table}"))  # noqa: S608 -- a digest
        return {row[0] for row in rows}


def table_exists(db: SqliteDatabase, name: str) -> bool:
    with db.read() as uow:
        found = unscoped(uow).execute(
            text("SELECT count(*) FROM sqlite_master WHERE name = :name"), {"name": name}
        )
        return bool(found.scalar_one())


def test_each_tenants_entries_are_in_a_table_of_its_own(sqlite_db: SqliteDatabase) -> None:
    with sqlite_db.write() as uow:
        index(uow, TENANT, "Birds", f"A {WORD} sang in the garden at night.", FILLER)
        index(uow, OTHER, "Notes", f"{WORD} {WORD} garden")

    assert len(fts_rowids(sqlite_db, fts_table(TENANT))) == 2
    assert len(fts_rowids(sqlite_db, fts_table(OTHER))) == 1
    with sqlite_db.read() as uow:
        found = {hit.chunk_key for hit in uow.index.keyword(TENANT, WORD, 10)}
    assert found <= fts_rowids(sqlite_db, fts_table(TENANT))


def test_bm25_weighs_a_word_by_its_tenants_rows_only(sqlite_db: SqliteDatabase) -> None:
    """Well above BM25's floor for the tenant, where one row in seven holds the word: had
    the other tenant's rows (every one of which holds it) counted, its weight would be
    near nothing. The contract suite checks the scores do not move at all."""
    with sqlite_db.write() as uow:
        index(uow, TENANT, "Birds", f"A {WORD} sang in the garden at night.", *[FILLER] * 6)
        for n in range(20):
            index(uow, OTHER, f"Notes {n}", f"{WORD} {WORD} garden {n}")

    with sqlite_db.read() as uow:
        (hit,) = uow.index.keyword(TENANT, WORD, 10)
    assert hit.score > 0.5


def test_a_tenant_gets_its_table_with_its_first_chunk(sqlite_db: SqliteDatabase) -> None:
    with sqlite_db.write() as uow:
        index(uow, OTHER, "Birds", f"A {WORD} sang.")
    with sqlite_db.read() as uow:
        assert uow.index.keyword("new-tenant", WORD, 10) == []
    with sqlite_db.write() as uow:
        uow.index.delete_document("new-tenant", "doc_missing")
        uow.index.replace("new-tenant", "doc_missing", "t", [])  # no chunks: no table needed

    assert not table_exists(sqlite_db, fts_table("new-tenant"))
    assert table_exists(sqlite_db, fts_table(OTHER))


def test_a_write_that_rolls_back_leaves_no_table(sqlite_db: SqliteDatabase) -> None:
    def index_then_fail() -> None:
        with sqlite_db.write() as uow:
            index(uow, TENANT, "Birds", f"A {WORD} sang.")
            raise RuntimeError("the job failed after indexing")

    with pytest.raises(RuntimeError):
        index_then_fail()

    assert not table_exists(sqlite_db, fts_table(TENANT))
    with sqlite_db.read() as uow:
        assert uow.index.keyword(TENANT, WORD, 10) == []


def test_delete_removes_the_documents_rows_from_its_tenants_table_only(
    sqlite_db: SqliteDatabase,
) -> None:
    with sqlite_db.write() as uow:
        gone = index(uow, TENANT, "Gone", f"The {WORD} ledger.", FILLER)
        index(uow, TENANT, "Kept", f"Another {WORD} ledger.")
        index(uow, OTHER, "Other", f"The {WORD} ledger of the other tenant.")
    tenant_rows = fts_rowids(sqlite_db, fts_table(TENANT))
    other_rows = fts_rowids(sqlite_db, fts_table(OTHER))
    assert (len(tenant_rows), len(other_rows)) == (3, 1)

    with sqlite_db.write() as uow:
        uow.index.delete_document(OTHER, gone)  # the wrong tenant: nothing happens
    assert fts_rowids(sqlite_db, fts_table(TENANT)) == tenant_rows

    with sqlite_db.write() as uow:
        uow.index.delete_document(TENANT, gone)
    assert len(fts_rowids(sqlite_db, fts_table(TENANT))) == 1
    assert fts_rowids(sqlite_db, fts_table(OTHER)) == other_rows


def test_a_new_tenant_table_has_secure_delete_on(sqlite_db: SqliteDatabase) -> None:
    with sqlite_db.write() as uow:
        index(uow, TENANT, "t", "words")
    with sqlite_db.read() as uow:
        rows = unscoped(uow).execute(text(f"SELECT k, v FROM {fts_table(TENANT)}_config"))  # noqa: S608 -- a digest
        config = {row[0]: row[1] for row in rows}
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
    sqlite_db: SqliteDatabase, tenant_id: str
) -> None:
    name = fts_table(tenant_id)
    assert re.fullmatch(re.escape(FTS_TABLE_PREFIX) + r"[0-9a-f]{32}", name)
    assert name == fts_table(tenant_id)

    with sqlite_db.write() as uow:
        index(uow, tenant_id, "Title", f"The {WORD} of {tenant_id}.")
    with sqlite_db.read() as uow:
        assert len(uow.index.keyword(tenant_id, WORD, 10)) == 1
        assert uow.index.keyword(TENANT, WORD, 10) == []


def test_different_tenants_get_different_tables() -> None:
    ids = ["a", "A", "a ", "b", "tenant-1", "tenant-2", "ü", "u"]
    assert len({fts_table(tenant) for tenant in ids}) == len(ids)

"""The Alembic history on a real SQLite file: upgrade, downgrade, round trip, and that the
migrations build the same schema as ``tables.py`` (which the repositories query)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlean
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from spine.adapters.sql import migrate
from spine.adapters.sql.tables import metadata
from spine.adapters.sqlite.database import SqliteDatabase
from spine.adapters.sqlite.search_index import FTS_TABLE_PREFIX, fts_table

SPINE_TABLES = {
    "documents",
    "chunks",
    "jobs",
    "job_events",
    "chunks_vec",
    "idempotency_keys",
    "slo_minutes",
    "queue_tenants",
    "index_generations",
}
HEAD = "0006"
# SQLite's own bookkeeping tables, and Alembic's, survive a downgrade to base.
BOOKKEEPING = {"alembic_version", "sqlite_sequence"}


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "spine.db"


@pytest.fixture
def url(db_file: Path) -> str:
    return f"sqlite:///{db_file}"


@pytest.fixture
def connection(db_file: Path) -> Iterator[Any]:
    """A plain sqlean connection to read ``sqlite_master`` (no extension needed for that)."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlean.connect(str(db_file))
    yield conn
    conn.close()


def _tables(conn: Any) -> dict[str, str]:
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name: sql or "" for name, sql in rows}


def _indexes(conn: Any) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {name for (name,) in rows}


def test_upgrade_to_head_creates_every_table(url: str, connection: Any) -> None:
    migrate.upgrade(url)

    tables = _tables(connection)
    assert tables.keys() >= SPINE_TABLES
    assert "USING vec0" in tables["chunks_vec"]
    # Full-text tables are one per tenant, made by a tenant's first write: none yet, and
    # no shared one, whose BM25 statistics mixed every tenant's text.
    assert [name for name in tables if name.startswith("chunks_fts")] == []


def test_upgrade_to_head_creates_the_queue_and_tenant_indexes(url: str, connection: Any) -> None:
    migrate.upgrade(url)

    assert {
        "ix_jobs_state_next_run_at",
        "ix_jobs_state_lease_expires_at",
        "ix_jobs_tenant_id_id",
        "ix_jobs_tenant_document",
        "ix_job_events_tenant_job",
        "ix_documents_tenant_id_id",
        "ix_documents_tenant_sha256",
        "ix_chunks_tenant_document",
        "ix_idempotency_keys_expires_at",
        "ix_jobs_tenant_state_next_run_at",
    } <= _indexes(connection)


def test_each_step_down_and_up_is_reversible(url: str, connection: Any) -> None:
    migrate.upgrade(url)
    head = _tables(connection), _indexes(connection)
    migrate.downgrade(url, "0001")
    assert migrate.current(url) == "0001"
    assert "idempotency_keys" not in _tables(connection)
    migrate.upgrade(url)
    assert (_tables(connection), _indexes(connection)) == head


def test_0004_puts_every_tenant_with_jobs_in_the_claim_rotation(url: str, connection: Any) -> None:
    migrate.upgrade(url, "0003")
    for tenant, job in (("acme", "job_1"), ("acme", "job_2"), ("beta", "job_3")):
        connection.execute(
            "INSERT INTO jobs (id, tenant_id, document_id, state, attempts, max_attempts, "
            "created_at, updated_at) VALUES (?, ?, 'doc', 'PENDING', 0, 5, "
            "'2026-11-28 10:00:00', '2026-11-28 10:00:00')",
            (job, tenant),
        )
    connection.commit()
    migrate.upgrade(url)
    rows = connection.execute("SELECT tenant_id, last_claimed_at FROM queue_tenants").fetchall()
    assert sorted(rows) == [("acme", None), ("beta", None)]
    # The job rows keep everything; the new columns are empty for jobs queued before.
    assert connection.execute("SELECT count(*) FROM jobs WHERE request_id IS NULL").fetchone() == (
        3,
    )
    migrate.downgrade(url, "0003")
    columns = {row[1] for row in connection.execute("PRAGMA table_info(jobs)")}
    assert "request_id" not in columns
    assert "traceparent" not in columns
    assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (3,)


def test_0006_leaves_sqlite_as_it_was(url: str, connection: Any) -> None:
    """BM25's postings and totals are PostgreSQL's: FTS5 keeps its own."""
    migrate.upgrade(url, "0005")
    before = _tables(connection), _indexes(connection)

    migrate.upgrade(url, "0006")
    assert (_tables(connection), _indexes(connection)) == before

    migrate.downgrade(url, "0005")
    assert (_tables(connection), _indexes(connection)) == before


def test_current_revision_is_head_after_upgrade_and_none_after_downgrade(url: str) -> None:
    migrate.upgrade(url)
    assert migrate.current(url) == HEAD

    migrate.downgrade(url)
    assert migrate.current(url) is None


def test_upgrade_leaves_a_database_that_a_newer_release_migrated(url: str, connection: Any) -> None:
    """The rollback of the code after a deploy: the newer schema is kept (expand/contract
    keeps it good for this code) instead of Alembic stopping the start-up because it has
    no script for the newer revision."""
    migrate.upgrade(url)
    connection.execute("UPDATE alembic_version SET version_num = '0099'")
    connection.commit()
    schema = _tables(connection), _indexes(connection)

    migrate.upgrade(url)

    assert migrate.current(url) == "0099"
    assert (_tables(connection), _indexes(connection)) == schema


def test_current_revision_of_a_fresh_file_is_none(url: str) -> None:
    assert migrate.current(url) is None


def test_downgrade_to_base_removes_every_table_and_index(url: str, connection: Any) -> None:
    migrate.upgrade(url)

    migrate.downgrade(url)

    # Also the FTS5 and vec0 shadow tables (chunks_fts_data, chunks_vec_chunks, ...).
    assert set(_tables(connection)) <= BOOKKEEPING
    assert _indexes(connection) == set()


def test_upgrade_after_downgrade_rebuilds_the_same_schema(url: str, connection: Any) -> None:
    migrate.upgrade(url)
    first = _tables(connection), _indexes(connection)

    migrate.downgrade(url)
    migrate.upgrade(url)

    assert (_tables(connection), _indexes(connection)) == first
    assert migrate.current(url) == HEAD


def test_upgrade_twice_is_a_no_op(url: str, connection: Any) -> None:
    migrate.upgrade(url)
    first = _tables(connection)

    migrate.upgrade(url)

    assert _tables(connection) == first
    assert migrate.current(url) == HEAD


def test_migrated_schema_matches_the_tables_the_repositories_query(url: str) -> None:
    migrate.upgrade(url)

    engine = migrate.engine_for(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()

    # The search indexes are virtual tables made by raw SQL, outside SQLAlchemy's metadata.
    def is_search_index(op: Any) -> bool:
        return (
            isinstance(op, tuple)
            and op[0] == "remove_table"
            and op[1].name.startswith(("chunks_fts", "chunks_vec"))
        )

    assert [op for op in diff if not is_search_index(op)] == []


# -- the full-text index: one table per tenant since 0003 -----------------------------------

TENANTS = {"acme": ["acme owns the nightingale", "acme second"], "it's b": ["b's heron"]}
#: The shared table exactly as revision 0001 made it.
SHARED_FTS_SQL = (
    "CREATE VIRTUAL TABLE chunks_fts USING fts5("
    "title, text, tenant_id UNINDEXED, "
    "tokenize = 'porter unicode61 remove_diacritics 2')"
)


def _tenant_fts_tables(conn: Any) -> set[str]:
    return {
        name
        for name, sql in _tables(conn).items()
        if name.startswith(FTS_TABLE_PREFIX) and sql.startswith("CREATE VIRTUAL TABLE")
    }


def _seed_shared_index(conn: Any) -> dict[int, tuple[str, str]]:
    """Documents and chunks of two tenants in the shared ``chunks_fts`` of 0001/0002."""
    rows: dict[int, tuple[str, str]] = {}
    for tenant, texts in TENANTS.items():
        document_id = f"doc-{len(rows)}"
        conn.execute(
            "INSERT INTO documents (id, tenant_id, title, content_type, size_bytes, sha256, "
            "metadata, chunk_count, created_at, updated_at) "
            "VALUES (?, ?, 'Title', 'text/plain', 1, 'x', '{}', ?, '2030-01-01', '2030-01-01')",
            (document_id, tenant, len(texts)),
        )
        for ordinal, body in enumerate(texts):
            seq = conn.execute(
                "INSERT INTO chunks (id, tenant_id, document_id, ordinal, text, start_char, "
                "end_char) VALUES (?, ?, ?, ?, ?, 0, 1) RETURNING seq",
                (f"{document_id}-{ordinal}", tenant, document_id, ordinal, body),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO chunks_fts (rowid, title, text, tenant_id) VALUES (?, 'Title', ?, ?)",
                (seq, body, tenant),
            )
            rows[seq] = (tenant, body)
    conn.commit()
    return rows


def test_upgrade_moves_each_tenants_rows_into_its_own_table_and_downgrade_back(
    url: str, connection: Any
) -> None:
    migrate.upgrade(url, "0002")
    seeded = _seed_shared_index(connection)

    migrate.upgrade(url)

    assert "chunks_fts" not in _tables(connection)
    assert _tenant_fts_tables(connection) == {fts_table(tenant) for tenant in TENANTS}
    for tenant in TENANTS:
        table = fts_table(tenant)
        moved = dict(connection.execute(f"SELECT rowid, text FROM {table}").fetchall())  # noqa: S608
        assert moved == {seq: body for seq, (owner, body) in seeded.items() if owner == tenant}
        config = dict(connection.execute(f"SELECT k, v FROM {table}_config").fetchall())  # noqa: S608
        assert config.get("secure-delete") == 1
    # The adapter finds the migrated rows: the migration named the tables as it does.
    database = SqliteDatabase(url)
    try:
        with database.read() as uow:
            assert [c.chunk_key for c in uow.index.keyword("acme", "nightingale", 10)] == [1]
            assert uow.index.keyword("it's b", "nightingale", 10) == []
    finally:
        database.close()

    migrate.downgrade(url, "0002")

    tables = _tables(connection)
    assert tables["chunks_fts"] == SHARED_FTS_SQL
    assert not [name for name in tables if name.startswith(FTS_TABLE_PREFIX)]
    back = connection.execute("SELECT rowid, tenant_id, text FROM chunks_fts").fetchall()
    assert {seq: (tenant, body) for seq, tenant, body in back} == seeded


def test_downgrade_to_base_drops_the_tables_tenants_made(url: str, connection: Any) -> None:
    migrate.upgrade(url, "0002")
    _seed_shared_index(connection)
    migrate.upgrade(url)
    # And one made by the application after the upgrade, as a new tenant's first write does.
    connection.execute(f"CREATE VIRTUAL TABLE {fts_table('late')} USING fts5(title, text)")
    connection.commit()
    assert len(_tenant_fts_tables(connection)) == 3

    migrate.downgrade(url)

    assert set(_tables(connection)) <= BOOKKEEPING

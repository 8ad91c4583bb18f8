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

SPINE_TABLES = {
    "documents",
    "chunks",
    "jobs",
    "job_events",
    "chunks_fts",
    "chunks_vec",
    "idempotency_keys",
}
HEAD = "0003"
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
    assert "USING fts5" in tables["chunks_fts"]
    assert "USING vec0" in tables["chunks_vec"]


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
    } <= _indexes(connection)


def test_each_step_down_and_up_is_reversible(url: str, connection: Any) -> None:
    migrate.upgrade(url)
    head = _tables(connection), _indexes(connection)
    migrate.downgrade(url, "0001")
    assert migrate.current(url) == "0001"
    assert "idempotency_keys" not in _tables(connection)
    migrate.upgrade(url)
    assert (_tables(connection), _indexes(connection)) == head


def test_current_revision_is_head_after_upgrade_and_none_after_downgrade(url: str) -> None:
    migrate.upgrade(url)
    assert migrate.current(url) == HEAD

    migrate.downgrade(url)
    assert migrate.current(url) is None


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

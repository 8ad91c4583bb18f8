"""The Alembic history on PostgreSQL, as ``spine migrate`` runs it in a deploy: on an empty
database of Spine's own (unprivileged) role, up to head, down to base, up again, and down
one step with data in the tables; and that the migrated schema is the one ``tables.py``
describes, which the repositories query."""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from psycopg import sql
from sqlalchemy.engine import make_url

import support.postgres
from spine.adapters.postgres.database import PostgresDatabase
from spine.adapters.sql import migrate
from spine.adapters.sql.tables import metadata
from spine.devservices.postgres import APP_ROLE
from spine.domain.documents import Chunk
from support.rows import document_row, job_row

HEAD = "0006"
TENANTS = ("acme", "rival")


@pytest.fixture
def empty_url() -> Iterator[str]:
    """A database with nothing in it but pgvector, owned by Spine's role: what an
    administrator hands over before the first ``spine migrate up`` (CREATE EXTENSION
    vector needs a superuser, the rest is Spine's)."""
    support.postgres.require()
    admin = os.environ[support.postgres.ADMIN_URL_ENV]
    name = f"spine_migrations_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(APP_ROLE)
            )
        )
    try:
        database_admin = make_url(admin).set(database=name).render_as_string(hide_password=False)
        with psycopg.connect(database_admin, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
        yield support.postgres.app_url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``statement`` as Spine's role, above row-level security (an all-tenants
    session, as the migrations run)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT set_config('app.all_tenants', 'on', false)")
        return conn.execute(statement, params).fetchall()


def relations(url: str) -> set[tuple[str, str]]:
    """(kind, name) of every table, view, sequence and index in the public schema, and
    every enum or domain type not an extension's (pgvector's types live there too)."""
    rows = query(
        url,
        "SELECT c.relkind::text, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
        "UNION SELECT t.typtype::text, t.typname FROM pg_type t "
        "JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd') AND NOT EXISTS ("
        "  SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')",
    )
    return {(kind, name) for kind, name in rows}


def schema(url: str) -> dict[str, Any]:
    """What the migrations made: columns, indexes, constraints, row-level security."""
    return {
        "columns": sorted(
            query(
                url,
                "SELECT table_name, column_name, data_type, udt_name, is_nullable, "
                "column_default FROM information_schema.columns WHERE table_schema = 'public'",
            )
        ),
        "indexes": sorted(
            query(url, "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'")
        ),
        "constraints": sorted(
            query(
                url,
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
            )
        ),
        "policies": sorted(
            query(url, "SELECT tablename, policyname, qual, with_check FROM pg_policies")
        ),
        "row_security": sorted(
            query(
                url,
                "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'",
            )
        ),
    }


def test_upgrade_downgrade_to_base_and_upgrade_again_on_an_empty_database(
    empty_url: str,
) -> None:
    assert migrate.current(empty_url) is None

    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == HEAD
    first = schema(empty_url)
    assert {("r", "index_generations"), ("r", "chunk_terms")} <= relations(empty_url)
    assert any("USING hnsw" in definition for _, definition in first["indexes"])

    migrate.downgrade(empty_url)
    assert migrate.current(empty_url) is None
    # Only Alembic's bookkeeping is left (and pgvector, which an administrator made).
    assert relations(empty_url) == {("r", "alembic_version"), ("i", "alembic_version_pkc")}
    assert query(empty_url, "SELECT count(*) FROM pg_policies") == [(0,)]

    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == HEAD
    assert schema(empty_url) == first


def test_each_revision_steps_down_and_back_up(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    head = schema(empty_url)
    for revision in ("0005", "0004", "0003", "0002", "0001"):
        migrate.downgrade(empty_url, revision)
        assert migrate.current(empty_url) == revision
    migrate.upgrade(empty_url)
    assert schema(empty_url) == head


def test_0004_puts_every_tenant_with_jobs_in_the_claim_rotation(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0003")
    for tenant, job in (("acme", "job_1"), ("acme", "job_2"), ("beta", "job_3")):
        query(
            empty_url,
            "INSERT INTO jobs (id, tenant_id, document_id, state, attempts, max_attempts, "
            "created_at, updated_at) VALUES (%s, %s, 'doc', 'PENDING', 0, 5, now(), now()) "
            "RETURNING id",
            (job, tenant),
        )

    migrate.upgrade(empty_url, "0004")

    assert sorted(query(empty_url, "SELECT tenant_id, last_claimed_at FROM queue_tenants")) == [
        ("acme", None),
        ("beta", None),
    ]


def seed(url: str) -> None:
    """Two tenants' documents, jobs and chunks (with vectors), through the repositories."""
    database = PostgresDatabase(url)
    try:
        with database.write() as uow:
            for tenant in TENANTS:
                for n in range(2):
                    document = document_row(tenant, f"doc-{tenant}-{n}")
                    uow.documents.add(tenant, document)
                    uow.jobs.enqueue(tenant, job_row(tenant, document_id=document.id))
                    chunk = Chunk(
                        id=f"chunk-{tenant}-{n}",
                        document_id=document.id,
                        ordinal=0,
                        text=f"the {tenant} heron number {n}",
                        start_char=0,
                        end_char=20,
                        embedding=[0.0] * 383 + [1.0],
                    )
                    uow.index.replace(tenant, document.id, "t", [chunk])
    finally:
        database.close()


def counts(url: str) -> dict[str, int]:
    return {
        table: query(url, f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608 -- fixed names
        for table in ("documents", "jobs", "job_events", "chunks", "queue_tenants")
    }


def test_downgrade_to_0004_with_data_keeps_the_rows(postgres_url: str) -> None:
    seed(postgres_url)
    before = counts(postgres_url)
    assert before["documents"] == before["jobs"] == before["chunks"] == 4

    migrate.downgrade(postgres_url, "0004")

    assert migrate.current(postgres_url) == "0004"
    assert counts(postgres_url) == before
    chunk_columns = {
        name
        for (name,) in query(
            postgres_url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'chunks'",
        )
    }
    assert {"embedding", "search_vector"}.isdisjoint(chunk_columns)
    assert ("r", "index_generations") not in relations(postgres_url)
    # No policy left: at 0004 the rows are visible without any tenant setting.
    assert query(postgres_url, "SELECT count(*) FROM pg_policies") == [(0,)]
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone() == (4,)

    migrate.upgrade(postgres_url)

    assert counts(postgres_url) == before
    database = PostgresDatabase(postgres_url)
    try:
        with database.read() as uow:
            for tenant in TENANTS:
                listed = uow.documents.list(tenant, limit=10, after=None)
                assert {d.id for d in listed} == {f"doc-{tenant}-0", f"doc-{tenant}-1"}
    finally:
        database.close()


def keyword_index(url: str) -> dict[str, Any]:
    """Every posting (by chunk id, not seq), every tenant's totals, and what a keyword
    search finds."""
    database = PostgresDatabase(url)
    try:
        with database.read() as uow:
            found = {
                tenant: [(hit.document_id, hit.score) for hit in uow.index.keyword(tenant, q, 10)]
                for tenant in TENANTS
                for q in ("heron", "acme number")
            }
    finally:
        database.close()
    return {
        "postings": sorted(
            query(
                url,
                "SELECT c.id, t.tenant_id, t.lexeme, t.chunk_length, t.tf_title, t.tf_text "
                "FROM chunk_terms t JOIN chunks c ON c.seq = t.seq",
            )
        ),
        "totals": sorted(query(url, "SELECT tenant_id, chunks, terms FROM index_generations")),
        "found": found,
    }


def test_0006_backfills_the_postings_and_totals_of_chunks_written_before_it(
    postgres_url: str,
) -> None:
    """Chunks written at 0005 (which wrote chunks as this release does, without postings):
    the upgrade gives them the postings and totals the search index would have written,
    and keyword search finds them as it finds chunks written since."""
    seed(postgres_url)
    written = keyword_index(postgres_url)
    assert len(written["postings"]) > 0
    assert all(hits for hits in written["found"].values())

    migrate.downgrade(postgres_url, "0005")

    assert ("r", "chunk_terms") not in relations(postgres_url)
    columns = query(
        postgres_url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'index_generations'",
    )
    assert sorted(columns) == [("generation",), ("tenant_id",)]
    assert counts(postgres_url)["chunks"] == 4

    migrate.upgrade(postgres_url)

    assert keyword_index(postgres_url) == written


def test_migrated_schema_matches_the_tables_the_repositories_query(postgres_url: str) -> None:
    engine = migrate.engine_for(postgres_url)
    try:
        with warnings.catch_warnings():
            # SQLAlchemy does not know pgvector's type when it reflects chunks.embedding.
            warnings.filterwarnings("ignore", "Did not recognize type 'vector'")
            with engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()

    # Revision 0005's columns and indexes for PostgreSQL's search (pgvector's embedding
    # with its HNSW index, the tsvector with its GIN index) and 0006's keyword postings
    # with the totals BM25 needs are not in tables.py, which both databases share: on
    # SQLite the same data lives in the chunks_vec and FTS5 virtual tables. The PostgreSQL
    # search index reaches them through tables of its own
    # (spine.adapters.postgres.search_index).
    postgres_only_columns = {
        ("chunks", "embedding"),
        ("chunks", "search_vector"),
        ("index_generations", "chunks"),
        ("index_generations", "terms"),
    }
    postgres_only_indexes = {
        "ix_chunks_embedding_hnsw",
        "ix_chunks_search_vector",
        "ix_chunk_terms_seq",
    }

    def is_postgres_search(op: Any) -> bool:
        if not isinstance(op, tuple):
            return False
        if op[0] == "remove_table":
            return bool(op[1].name == "chunk_terms")
        if op[0] == "remove_column":
            return (op[2], op[3].name) in postgres_only_columns
        if op[0] == "remove_index":
            return bool(op[1].name in postgres_only_indexes)
        return False

    assert [op for op in diff if not is_postgres_search(op)] == []

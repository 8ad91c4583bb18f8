"""Row-level security on PostgreSQL: the second wall under the repositories' filters.

A statement that forgets its ``tenant_id`` filter still sees only the tenant the
transaction is scoped to, and nothing at all when the scope is another tenant's or unset.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
from sqlalchemy import Table, func, select, text
from sqlalchemy.exc import ProgrammingError

from spine.adapters.postgres.database import PostgresDatabase
from spine.adapters.sql import tables
from support.rows import document_row

scale_out = importlib.import_module("spine.migrations.versions.0005_scale_out")
keyword_bm25 = importlib.import_module("spine.migrations.versions.0006_keyword_bm25")
#: Every tenant table the migrations give a policy.
POLICED = {*scale_out.TENANT_TABLES, *keyword_bm25.TENANT_TABLES}


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(postgres_url)
    yield database
    database.close()


def seed(pg: PostgresDatabase) -> None:
    with pg.write() as uow:
        for tenant in ("acme", "rival"):
            for _ in range(3):
                uow.documents.add(tenant, document_row(tenant))


def tenants_seen(pg: PostgresDatabase, scope: str | None) -> list[str]:
    """The tenants of every document row, read with no tenant filter at all."""
    with pg.read() as uow:
        if scope is not None:
            uow.scope.tenant(scope)
        conn = uow.documents._conn
        return [row[0] for row in conn.execute(select(tables.documents.c.tenant_id))]


def test_a_query_without_its_tenant_filter_sees_only_the_scoped_tenant(
    pg: PostgresDatabase,
) -> None:
    seed(pg)

    assert tenants_seen(pg, "acme") == ["acme"] * 3
    assert tenants_seen(pg, "rival") == ["rival"] * 3


def test_a_query_with_a_wrong_or_missing_tenant_setting_returns_nothing(
    pg: PostgresDatabase,
) -> None:
    seed(pg)

    assert tenants_seen(pg, "nobody") == []
    assert tenants_seen(pg, None) == []


def test_a_repository_call_scopes_its_transaction_to_its_tenant(pg: PostgresDatabase) -> None:
    seed(pg)
    with pg.read() as uow:
        uow.documents.list("rival", limit=10, after=None)
        # The forgetful statement after the call runs under the call's tenant.
        rows = uow.documents._conn.execute(select(tables.documents.c.tenant_id)).scalars()
        assert set(rows) == {"rival"}


def test_a_write_into_another_tenant_is_refused(pg: PostgresDatabase) -> None:
    row = {
        "id": "doc_x",
        "tenant_id": "rival",
        "title": "t",
        "content_type": "text/plain",
        "size_bytes": 1,
        "sha256": "0" * 64,
        "metadata": {},
        "chunk_count": 0,
        "created_at": func.now(),
        "updated_at": func.now(),
    }
    with pg.write() as uow:
        uow.scope.tenant("acme")
        insert = tables.documents.insert().values(**row)
        with pytest.raises(ProgrammingError, match="row-level security"):
            uow.documents._conn.execute(insert)


def test_the_scope_ends_with_its_transaction(pg: PostgresDatabase) -> None:
    """The setting is transaction-local: a pooled connection carries no tenant into the
    next transaction."""
    seed(pg)
    with pg.read() as uow:
        uow.scope.tenant("acme")
    with pg.read() as uow:
        conn = uow.documents._conn
        assert conn.execute(text("SELECT current_setting('app.tenant_id', true)")).scalar() in (
            None,
            "",
        )
        assert conn.execute(select(func.count()).select_from(tables.documents)).scalar() == 0


def tenant_tables() -> list[Table]:
    return [table for table in tables.metadata.sorted_tables if "tenant_id" in table.c]


def test_every_table_with_a_tenant_column_has_a_forced_policy(pg: PostgresDatabase) -> None:
    """A new tenant table without a policy would pass every filter test and still have no
    second wall: the migrations' lists must name each one. The tables are the database's
    own, so a table only PostgreSQL has (not in tables.py) counts too."""
    assert {table.name for table in tenant_tables()} <= POLICED
    with pg.read() as uow:
        rows = uow.documents._conn.execute(
            text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                "count(p.polname) FROM pg_class c "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' "
                "LEFT JOIN pg_policy p ON p.polrelid = c.oid "
                "WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace "
                "GROUP BY 1, 2, 3"
            )
        ).all()
    expected = dict.fromkeys(POLICED, (True, True, 1))
    assert {row[0]: tuple(row[1:]) for row in rows} == expected


def test_spine_connects_as_a_role_the_policies_bind(pg: PostgresDatabase) -> None:
    with pg.read() as uow:
        row = uow.documents._conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
    assert tuple(row) == (False, False)

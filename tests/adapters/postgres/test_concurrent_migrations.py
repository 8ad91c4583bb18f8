"""Many processes starting at once on an empty PostgreSQL database each migrate it (every
``spine`` process upgrades at start): an advisory lock makes them take turns, so each
finds the schema made by the one before instead of failing on its tables."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from spine.adapters.sql import migrate
from support import postgres

PROCESSES = 4


@pytest.fixture
def empty_database() -> Iterator[str]:
    postgres.require()
    name = f"spine_empty_{secrets.token_hex(6)}"
    admin = os.environ[postgres.ADMIN_URL_ENV]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier("spine")
            )
        )
    as_admin = make_url(admin).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(as_admin, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    yield postgres.app_url(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_processes_upgrading_one_empty_database_at_once_all_succeed(empty_database: str) -> None:
    script = "import sys; from spine.adapters.sql import migrate; migrate.upgrade(sys.argv[1])"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_database],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [(run.wait(timeout=120), run.communicate()[0].decode()) for run in runs]

    assert [code for code, _ in outputs] == [0] * PROCESSES, outputs
    assert migrate.current(empty_database) == "0006"

"""SQLite engines through sqlean.py, with sqlite-vec loaded on every connection.

Why sqlean.py: the standard ``sqlite3`` module of many Python builds (pyenv's, Debian's
older ones, macOS system Python) is compiled without extension loading, so sqlite-vec
cannot load there. sqlean.py is a drop-in DB-API module with its own current SQLite
(FTS5 included) and extension loading enabled, published as wheels for Linux, macOS and
Windows, so ``pip install`` is all a user needs. pysqlite3-binary ships Linux wheels only
and APSW is not DB-API, which SQLAlchemy needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlean
import sqlite_vec
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

BUSY_TIMEOUT_MS = 30_000


def sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def create_sqlite_engine(
    url: str, *, immediate: bool, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> Engine:
    """An engine whose transactions start with BEGIN IMMEDIATE (writers) or BEGIN (readers).

    pysqlite's own transaction handling starts transactions lazily and cannot say
    IMMEDIATE, so autocommit is switched off at the driver and SQLAlchemy's begin event
    emits the statement. IMMEDIATE takes the write lock up front: a read-then-write
    transaction (the queue's claim) can never be overtaken between its read and its write.
    """
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        module=sqlean,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.enable_load_extension(True)
        sqlite_vec.load(dbapi_conn)
        dbapi_conn.enable_load_extension(False)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the API answers 202, even across a power cut.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, in their page and in freed pages, instead
        # of lingering until the space is reused: a deleted document must leave no trace.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine

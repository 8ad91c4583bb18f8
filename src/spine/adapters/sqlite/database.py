"""The embedded database: SQLite through sqlean.py, one writer at a time per process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from spine.adapters.sql.audit import SqlAuditRepository
from spine.adapters.sql.documents import SqlDocumentRepository
from spine.adapters.sql.housekeeping import SqlHousekeeping
from spine.adapters.sql.idempotency import SqlIdempotencyRepository
from spine.adapters.sql.jobs import SqlJobDispatcher, SqlJobRepository
from spine.adapters.sql.privacy import SqlPrivacyRepository
from spine.adapters.sql.slo import SqlSloRepository
from spine.adapters.sqlite.engine import BUSY_TIMEOUT_MS, create_sqlite_engine
from spine.adapters.sqlite.search_index import SqliteSearchIndex
from spine.errors import Unavailable
from spine.observability.tracing import trace_engine

log = structlog.get_logger("spine.db")
#: How long a compaction waits for other connections before it settles for less.
COMPACT_BUSY_TIMEOUT_MS = 2_000


@dataclass
class SqliteUnitOfWork:
    documents: SqlDocumentRepository
    jobs: SqlJobRepository
    index: SqliteSearchIndex
    idempotency: SqlIdempotencyRepository
    audit: SqlAuditRepository
    privacy: SqlPrivacyRepository
    # Tenant-blind by design, for the worker loop and `spine gc` only (see spine.ports).
    dispatch: SqlJobDispatcher
    housekeeping: SqlHousekeeping
    # SLO counts belong to no tenant: one row sums every tenant's events in a minute.
    slo: SqlSloRepository

    @classmethod
    def on(cls, conn: Connection) -> SqliteUnitOfWork:
        return cls(
            SqlDocumentRepository(conn),
            SqlJobRepository(conn),
            SqliteSearchIndex(conn),
            SqlIdempotencyRepository(conn),
            SqlAuditRepository(conn),
            SqlPrivacyRepository(conn),
            SqlJobDispatcher(conn),
            SqlHousekeeping(conn),
            SqlSloRepository(conn),
        )


class SqliteDatabase:
    """Write transactions are serialised by a lock inside the process (SQLite has one
    writer anyway, and a lock queues fairly where SQLite's busy handler sleeps and polls);
    across processes BEGIN IMMEDIATE and the busy timeout do the same job."""

    def __init__(self, url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.url = url
        self._writer = create_sqlite_engine(url, immediate=True, busy_timeout_ms=busy_timeout_ms)
        self._reader = create_sqlite_engine(url, immediate=False, busy_timeout_ms=busy_timeout_ms)
        trace_engine(self._writer, system="sqlite")
        trace_engine(self._reader, system="sqlite")
        self._write_lock = threading.Lock()
        self._busy_timeout_ms = busy_timeout_ms

    @contextmanager
    def write(self) -> Iterator[SqliteUnitOfWork]:
        with _translated_errors(), self._write_lock, self._writer.begin() as conn:
            yield SqliteUnitOfWork.on(conn)

    @contextmanager
    def read(self) -> Iterator[SqliteUnitOfWork]:
        with _translated_errors(), self._reader.begin() as conn:
            yield SqliteUnitOfWork.on(conn)

    def ping(self) -> None:
        with _translated_errors(), self._reader.connect() as conn:
            conn.execute(text("SELECT 1"))

    def compact(self) -> None:
        """Checkpoint the WAL into the database file and truncate it to zero bytes.

        In WAL mode every changed page is appended to the -wal file, so the page images
        from before a delete (with the deleted text) stay there until the WAL is reused,
        however long that takes; secure_delete only zeroes the database file's pages.
        TRUNCATE copies the current pages home and empties the WAL. It runs outside any
        transaction and holds this process's write lock. A reader (of any process) still
        on a snapshot from before the delete can make it partial: best effort, the next
        compaction, or the last connection closing, finishes the job.
        """
        with _translated_errors(), self._write_lock:
            raw = self._writer.raw_connection()
            try:
                cursor = raw.cursor()
                # TRUNCATE waits for readers on older snapshots; a delete's answer must
                # not wait the full busy timeout for them.
                cursor.execute(f"PRAGMA busy_timeout={COMPACT_BUSY_TIMEOUT_MS}")
                try:
                    cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    row = cursor.fetchone()  # (busy, WAL frames, frames copied)
                finally:
                    cursor.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
                    cursor.close()
            finally:
                raw.close()
        if row is not None and row[0]:
            log.info("db.checkpoint_partial")

    def on_jobs_queued(self, callback: Callable[[], None]) -> None:
        """SQLite cannot tell other processes' commits: idle workers poll instead."""

    def close(self) -> None:
        self._writer.dispose()
        self._reader.dispose()


#: SQLite's words for "the database is there but cannot serve you right now".
_UNAVAILABLE = ("database is locked", "unable to open", "disk i/o error", "disk is full", "busy")
RETRY_AFTER_SECONDS = 2


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Driver errors that mean "not now" become :class:`Unavailable` (503 + Retry-After);
    anything else is a bug and stays what it is."""
    try:
        yield
    except OperationalError as exc:
        message = str(exc.orig).lower()
        if any(word in message for word in _UNAVAILABLE):
            raise Unavailable(
                "the database is unavailable", retry_after=RETRY_AFTER_SECONDS
            ) from exc
        raise

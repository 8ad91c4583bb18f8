"""The scale-out database: PostgreSQL + pgvector, with row-level security under the
repositories' tenant filters, and LISTEN/NOTIFY to wake idle workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from spine.adapters.postgres.engine import create_postgres_engine
from spine.adapters.postgres.notify import JobListener
from spine.adapters.postgres.scope import TenantScope, all_tenants, tenant_scoped
from spine.adapters.postgres.search_index import PostgresSearchIndex
from spine.adapters.sql.audit import SqlAuditRepository
from spine.adapters.sql.documents import SqlDocumentRepository
from spine.adapters.sql.housekeeping import SqlHousekeeping
from spine.adapters.sql.idempotency import SqlIdempotencyRepository
from spine.adapters.sql.jobs import SqlJobDispatcher, SqlJobRepository
from spine.adapters.sql.privacy import SqlPrivacyRepository
from spine.adapters.sql.slo import SqlSloRepository
from spine.errors import Unavailable
from spine.observability.tracing import trace_engine

log = structlog.get_logger("spine.db")
RETRY_AFTER_SECONDS = 2


@dataclass
class PostgresUnitOfWork:
    documents: SqlDocumentRepository
    jobs: SqlJobRepository
    index: PostgresSearchIndex
    idempotency: SqlIdempotencyRepository
    audit: SqlAuditRepository
    privacy: SqlPrivacyRepository
    dispatch: SqlJobDispatcher
    housekeeping: SqlHousekeeping
    slo: SqlSloRepository
    scope: TenantScope
    """The transaction's row-level security scope, which the wrappers set per call."""

    @classmethod
    def on(cls, conn: Connection, *, iterative_scan: bool) -> PostgresUnitOfWork:
        scope = TenantScope(conn)
        return cls(
            tenant_scoped(SqlDocumentRepository(conn), scope),
            tenant_scoped(SqlJobRepository(conn), scope),
            tenant_scoped(PostgresSearchIndex(conn, iterative_scan=iterative_scan), scope),
            tenant_scoped(SqlIdempotencyRepository(conn), scope),
            tenant_scoped(SqlAuditRepository(conn), scope),
            tenant_scoped(SqlPrivacyRepository(conn), scope),
            all_tenants(SqlJobDispatcher(conn), scope),
            all_tenants(SqlHousekeeping(conn), scope),
            # SLO rows belong to no tenant (no policy); overdue_jobs counts every tenant's.
            all_tenants(SqlSloRepository(conn), scope),
            scope,
        )


class PostgresDatabase:
    """A pooled engine (psycopg 3), shared by every thread of the process."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        lock_timeout_ms: int = 30_000,
    ) -> None:
        self.url = url
        self._engine = create_postgres_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, lock_timeout_ms=lock_timeout_ms
        )
        # Reads run in READ ONLY transactions: a bug that writes on the read path fails.
        self._reader = self._engine.execution_options(postgresql_readonly=True)
        trace_engine(self._engine, system="postgresql")
        self._iterative_scan = True
        self._listeners: list[JobListener] = []
        with _translated_errors(), self._engine.connect() as conn:
            version = conn.execute(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            ).scalar()
            bypasses = conn.execute(
                text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
            ).scalar()
        self._iterative_scan = _at_least(version, (0, 8))
        self.warnings: list[str] = []
        if bypasses:
            # Everything works, but the second wall is down: say so at every start.
            self.warnings.append(
                "connected as a superuser or BYPASSRLS role: row-level security does not "
                "apply; connect as the role that owns Spine's tables instead"
            )
            log.warning("db.row_security_bypassed")

    @contextmanager
    def write(self) -> Iterator[PostgresUnitOfWork]:
        with _translated_errors(), self._engine.begin() as conn:
            yield PostgresUnitOfWork.on(conn, iterative_scan=self._iterative_scan)

    @contextmanager
    def read(self) -> Iterator[PostgresUnitOfWork]:
        with _translated_errors(), self._reader.begin() as conn:
            yield PostgresUnitOfWork.on(conn, iterative_scan=self._iterative_scan)

    def ping(self) -> None:
        with _translated_errors(), self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def compact(self) -> None:
        """Nothing to do at once: a deleted row's old version stays in its page until
        VACUUM (autovacuum, within minutes under load) reclaims it; PostgreSQL has no
        file like SQLite's WAL that keeps page copies until a checkpoint is forced."""

    def on_jobs_queued(self, callback: Callable[[], None]) -> None:
        listener = JobListener(self.url, callback).start()
        self._listeners.append(listener)

    def close(self) -> None:
        for listener in self._listeners:
            listener.stop()
        self._listeners.clear()
        self._engine.dispose()


def _at_least(version: str | None, minimum: tuple[int, ...]) -> bool:
    if version is None:
        return False
    parts = tuple(int(part) for part in version.split(".")[: len(minimum)] if part.isdigit())
    return parts >= minimum


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Every OperationalError of psycopg means "not now": the server is down or gone,
    a lock or statement timed out, a deadlock or serialization failure rolled the
    transaction back; so does a pool with no connection free in time. The caller gets
    :class:`Unavailable` (503 + Retry-After); any other error is a bug and stays what
    it is."""
    try:
        yield
    except (OperationalError, InterfaceError, PoolTimeout) as exc:
        raise Unavailable("the database is unavailable", retry_after=RETRY_AFTER_SECONDS) from exc

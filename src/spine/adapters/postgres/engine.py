"""SQLAlchemy engines on psycopg 3, with SQLAlchemy's connection pool in front."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

#: What ``application_name`` shows in pg_stat_activity for Spine's connections.
APPLICATION_NAME = "spine"


def psycopg_url(url: str) -> str:
    """``postgresql://...`` (the form users know) to the psycopg 3 driver's URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.get_backend_name()}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def create_postgres_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout_seconds: float = 10.0,
    lock_timeout_ms: int = 30_000,
    statement_timeout_ms: int = 60_000,
    connect_timeout_seconds: int = 5,
) -> Engine:
    """A pooled engine whose sessions give up instead of hanging.

    ``lock_timeout`` bounds a wait for a row lock (a claim racing a heartbeat, a hot
    tenant's generation row); ``statement_timeout`` bounds any statement; both surface as
    OperationalError, which the database maps to 503 + Retry-After. ``pool_pre_ping``
    replaces a connection the server dropped (a restart, a failover) before it is used.
    """
    options = (
        f"-c lock_timeout={int(lock_timeout_ms)} -c statement_timeout={int(statement_timeout_ms)}"
    )
    return create_engine(
        psycopg_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_seconds,
        pool_pre_ping=True,
        connect_args={
            "application_name": APPLICATION_NAME,
            "connect_timeout": connect_timeout_seconds,
            "options": options,
        },
    )

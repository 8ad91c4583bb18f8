"""Apply or roll back the Alembic history programmatically (``spine migrate``, start-up)."""

from __future__ import annotations

from importlib.resources import files

import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from spine.adapters.postgres.engine import create_postgres_engine
from spine.adapters.sqlite.engine import create_sqlite_engine

log = structlog.get_logger("spine.migrate")


def engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        return create_sqlite_engine(url, immediate=True)
    # One connection; no statement timeout, since an index build on a big table is slow.
    return create_postgres_engine(url, pool_size=1, max_overflow=0, statement_timeout_ms=0)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("spine") / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    config = alembic_config(url)
    if revision == "head":
        at = current(url)
        if at is not None and not _known(config, at):
            # A newer release migrated this database and this code is its rollback.
            # Expand/contract keeps the newer schema good for this code; Alembic, which
            # has no script for that revision, would refuse it and stop the start-up.
            log.warning("migrate.newer_schema_kept", revision=at)
            return
    command.upgrade(config, revision)


def _known(config: Config, revision: str) -> bool:
    try:
        ScriptDirectory.from_config(config).get_revision(revision)
    except CommandError:
        return False
    return True


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()

"""Apply or roll back the Alembic history programmatically (``spine migrate``, start-up)."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine

from spine.adapters.sqlite.engine import create_sqlite_engine


def engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        return create_sqlite_engine(url, immediate=True)
    return create_engine(url)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("spine") / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


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

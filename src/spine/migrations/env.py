"""Alembic's environment: runs on the connection Spine hands it, or opens one from the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from spine.adapters.sql.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from spine.adapters.sql.migrate import engine_for

    engine = engine_for(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


_main()

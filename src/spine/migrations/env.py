"""Alembic's environment: runs on the connection Spine hands it, or opens one from the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from spine.adapters.sql.tables import metadata

#: The advisory lock key that serialises migrations on PostgreSQL ("spine" in ASCII).
MIGRATION_LOCK = 0x7370696E65


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Data migrations move every tenant's rows: above row-level security's tenant
        # wall (see spine.adapters.postgres.scope), for this connection's session.
        connection.execute(text("SELECT set_config('app.all_tenants', 'on', false)"))
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Processes starting together (a deploy of many) would each upgrade: one at
            # a time, and each reads the version only once the one before committed.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
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

"""What SQLAlchemy Core leaves to each dialect: INSERT ... ON CONFLICT."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def conflict_insert(conn: Connection, table: Table) -> Any:
    """An INSERT with ``on_conflict_do_nothing``/``on_conflict_do_update`` for the
    connection's database: both supported databases spell them the same way, and the
    conflict is settled by the database, not by a read-then-write that two transactions
    could interleave."""
    try:
        return _INSERTS[conn.dialect.name](table)
    except KeyError:
        raise NotImplementedError(f"no INSERT ... ON CONFLICT for {conn.dialect.name}") from None

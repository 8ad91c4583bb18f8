"""What SQLAlchemy Core leaves to each dialect: INSERT ... ON CONFLICT, substring search."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Integer, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

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


class position_in(GenericFunction[int]):
    """``position_in(haystack, needle)``: the 1-based position of ``needle`` in ``haystack``,
    0 when absent. A plain substring test, unlike LIKE, for which ``%`` and ``_`` in a
    value are wildcards. SQLite spells it ``instr``, PostgreSQL ``strpos``."""

    type = Integer()
    inherit_cache = True


@compiles(position_in, "sqlite")
def _instr(element: position_in, compiler: SQLCompiler, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


@compiles(position_in, "postgresql")
def _strpos(element: position_in, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"

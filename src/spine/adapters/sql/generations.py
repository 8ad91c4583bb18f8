"""Each tenant's index generation: a counter every change to its search entries raises.

The search result cache keys an answer by the generation it was computed at, so a change
makes every earlier answer unreachable at once, in every process, with nothing to purge.

The counter lives in the database, raised by the index writes themselves in their own
transaction, rather than in the cache or after the commit: a bump after the commit would
leave a window in which a client that has seen its upload's job succeed (or its delete
answered) still gets the answer from before, and a bump in Redis could be lost while the
change was not. In one transaction the change and the new generation become visible
together, to every reader, or neither does.

Rows are never deleted: a generation that went back to 0 would find answers cached
before it again.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from spine.adapters.sql.dialects import conflict_insert
from spine.adapters.sql.tables import index_generations


def bump_generation(conn: Connection, tenant_id: str) -> None:
    """Raise the tenant's generation by one (to 1 from none), in the caller's transaction.

    One INSERT ... ON CONFLICT DO UPDATE: the database settles two writers of one tenant,
    and on PostgreSQL the row stays locked until the commit, so two transactions never
    both read n and write n + 1.
    """
    statement = conflict_insert(conn, index_generations).values(tenant_id=tenant_id, generation=1)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[index_generations.c.tenant_id],
            set_={"generation": index_generations.c.generation + 1},
        )
    )


def read_generation(conn: Connection, tenant_id: str) -> int:
    """The tenant's generation; 0 for a tenant whose index has never changed."""
    value = conn.execute(
        select(index_generations.c.generation).where(index_generations.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    return 0 if value is None else int(value)

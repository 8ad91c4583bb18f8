"""The audit log in SQL: appends chained by SHA-256, pages per tenant.

Only inserts into ``audit_log``; ``audit_heads`` is the one row per tenant that moves. The
head's update is a compare-and-set on the (seq, hash) the appender read, so two appenders
that read the same head cannot both link to it: on SQLite BEGIN IMMEDIATE already
serialises them, and on a database with weaker isolation the loser gets ``Conflict``
(and its transaction rolls back) instead of forking the chain.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Row, insert, select, union, update
from sqlalchemy.exc import IntegrityError

from spine.adapters.sql.tables import audit_heads, audit_log
from spine.errors import Conflict
from spine.ports import AuditEntry, AuditHead


def _entry(row: Row[Any]) -> AuditEntry:
    m = row._mapping
    return AuditEntry(
        seq=m["seq"],
        tenant_id=m["tenant_id"],
        at=m["at"],
        actor=m["actor"],
        action=m["action"],
        resource=m["resource"],
        request_id=m["request_id"],
        outcome=m["outcome"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


class SqlAuditRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def head(self, tenant_id: str) -> AuditHead | None:
        row = self._conn.execute(
            select(audit_heads).where(audit_heads.c.tenant_id == tenant_id)
        ).first()
        if row is None:
            return None
        m = row._mapping
        return AuditHead(tenant_id=tenant_id, seq=m["seq"], hash=m["hash"], count=m["count"])

    def append(self, tenant_id: str, entry: AuditEntry, *, expected: AuditHead | None) -> None:
        if entry.tenant_id != tenant_id:
            raise ValueError("audit entry of another tenant")
        if expected is not None and entry.seq <= expected.seq:
            raise ValueError("audit seq must grow along the chain")
        # Two appenders that read the same head pick the same seq: the loser's insert
        # fails on the (tenant, seq) key, which is the same lost race as a moved head.
        try:
            self._insert(tenant_id, entry)
        except IntegrityError as exc:
            raise Conflict("the audit chain moved while appending") from exc
        if expected is None:
            # The whole transaction rolls back on the Conflict: no savepoint needed.
            try:
                self._conn.execute(
                    insert(audit_heads).values(
                        tenant_id=tenant_id, seq=entry.seq, hash=entry.hash, count=1
                    )
                )
            except IntegrityError as exc:
                raise Conflict("the audit chain moved while appending") from exc
            return
        moved = self._conn.execute(
            update(audit_heads)
            .where(
                (audit_heads.c.tenant_id == tenant_id)
                & (audit_heads.c.seq == expected.seq)
                & (audit_heads.c.hash == expected.hash)
                & (audit_heads.c.count == expected.count)
            )
            .values(seq=entry.seq, hash=entry.hash, count=expected.count + 1)
        )
        if moved.rowcount != 1:
            raise Conflict("the audit chain moved while appending")

    def _insert(self, tenant_id: str, entry: AuditEntry) -> None:
        self._conn.execute(
            insert(audit_log).values(
                seq=entry.seq,
                tenant_id=tenant_id,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                resource=entry.resource,
                request_id=entry.request_id,
                outcome=entry.outcome,
                prev_hash=entry.prev_hash,
                hash=entry.hash,
            )
        )

    def page(self, tenant_id: str, *, limit: int, before: int | None) -> builtins.list[AuditEntry]:
        query = (
            select(audit_log)
            .where(audit_log.c.tenant_id == tenant_id)
            .order_by(audit_log.c.seq.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(audit_log.c.seq < before)
        return [_entry(row) for row in self._conn.execute(query)]

    def chain(self, tenant_id: str) -> Iterator[AuditEntry]:
        result = self._conn.execute(
            select(audit_log).where(audit_log.c.tenant_id == tenant_id).order_by(audit_log.c.seq)
        )
        for row in result:
            yield _entry(row)


def audited_tenants(conn: Connection) -> set[str]:
    """Every tenant with an audit chain or head: for ``spine audit verify`` only."""
    rows = conn.execute(union(select(audit_log.c.tenant_id), select(audit_heads.c.tenant_id)))
    return {tenant_id for (tenant_id,) in rows}

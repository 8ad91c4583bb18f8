"""The sweeps over every tenant's rows that ``spine gc``, ``spine audit verify`` and
``spine export`` run: by design tenant-blind, so kept out of the tenant repositories (see
:mod:`spine.ports`). Each statement lives in the module of its table (the one that spans
several tables, here); this class only gathers them behind the :class:`Housekeeping`
port."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, union

from spine.adapters.sql.audit import audited_tenants
from spine.adapters.sql.documents import blob_refs_of_every_tenant
from spine.adapters.sql.idempotency import purge_expired_keys
from spine.adapters.sql.tables import (
    audit_heads,
    audit_log,
    documents,
    jobs,
    pii_policies,
    tenant_keys,
)


class SqlHousekeeping:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def all_blob_refs(self) -> set[tuple[str, str]]:
        return blob_refs_of_every_tenant(self._conn)

    def purge_expired_idempotency_keys(self, *, now: datetime, limit: int) -> int:
        return purge_expired_keys(self._conn, now=now, limit=limit)

    def audited_tenants(self) -> set[str]:
        return audited_tenants(self._conn)

    def tenants_with_data(self) -> set[str]:
        rows = self._conn.execute(
            union(
                *(
                    select(table.c.tenant_id)
                    for table in (
                        documents,
                        jobs,
                        audit_log,
                        audit_heads,
                        tenant_keys,
                        pii_policies,
                    )
                )
            )
        )
        return {tenant_id for (tenant_id,) in rows}

"""The sweeps over every tenant's rows that ``spine gc`` and ``spine audit verify`` run:
by design tenant-blind, so kept out of the tenant repositories (see :mod:`spine.ports`).
Each statement lives in the module of its table; this class only gathers them behind the
:class:`Housekeeping` port."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from spine.adapters.sql.audit import audited_tenants
from spine.adapters.sql.documents import blob_refs_of_every_tenant
from spine.adapters.sql.idempotency import purge_expired_keys


class SqlHousekeeping:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def all_blob_refs(self) -> set[tuple[str, str]]:
        return blob_refs_of_every_tenant(self._conn)

    def purge_expired_idempotency_keys(self, *, now: datetime, limit: int) -> int:
        return purge_expired_keys(self._conn, now=now, limit=limit)

    def audited_tenants(self) -> set[str]:
        return audited_tenants(self._conn)

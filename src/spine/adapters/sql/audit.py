"""The audit log in SQL: appends chained by SHA-256, pages per tenant."""

from __future__ import annotations

from sqlalchemy import Connection


class SqlAuditRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

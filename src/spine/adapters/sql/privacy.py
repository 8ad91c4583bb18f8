"""Tenant keys, the PII vault and PII policies in SQL."""

from __future__ import annotations

from sqlalchemy import Connection


class SqlPrivacyRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

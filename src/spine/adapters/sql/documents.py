"""Documents, always read and written under a tenant; the one tenant-blind read, the blob
sweeper's, is a plain function that only :class:`SqlHousekeeping` calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select, update

from spine.adapters.sql.tables import documents, jobs
from spine.domain.documents import Document
from spine.domain.jobs import JobState
from spine.errors import NotFound

_columns = (*documents.c, jobs.c.state.label("status"))


def _from_row(row: Row[Any]) -> Document:
    m = row._mapping
    return Document(
        id=m["id"],
        tenant_id=m["tenant_id"],
        title=m["title"],
        filename=m["filename"],
        content_type=m["content_type"],
        size_bytes=m["size_bytes"],
        sha256=m["sha256"],
        metadata=dict(m["metadata"] or {}),
        chunk_count=m["chunk_count"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        status=JobState(m["status"]) if m["status"] else None,
        latest_job_id=m["latest_job_id"],
    )


class SqlDocumentRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _select(self, tenant_id: str) -> Any:
        return (
            select(*_columns)
            .select_from(
                documents.outerjoin(
                    jobs,
                    (jobs.c.id == documents.c.latest_job_id)
                    & (jobs.c.tenant_id == documents.c.tenant_id),
                )
            )
            .where(documents.c.tenant_id == tenant_id)
        )

    def add(self, tenant_id: str, document: Document) -> None:
        if document.tenant_id != tenant_id:
            raise ValueError("document of another tenant")
        self._conn.execute(
            documents.insert().values(
                id=document.id,
                tenant_id=tenant_id,
                title=document.title,
                filename=document.filename,
                content_type=document.content_type,
                size_bytes=document.size_bytes,
                sha256=document.sha256,
                metadata=document.metadata,
                chunk_count=document.chunk_count,
                latest_job_id=document.latest_job_id,
                created_at=document.created_at,
                updated_at=document.updated_at,
            )
        )

    def get(self, tenant_id: str, document_id: str) -> Document:
        row = self._conn.execute(
            self._select(tenant_id).where(documents.c.id == document_id)
        ).first()
        if row is None:
            raise NotFound(f"document {document_id} not found")
        return _from_row(row)

    def list(self, tenant_id: str, *, limit: int, after: str | None) -> list[Document]:
        query = self._select(tenant_id).order_by(documents.c.id.desc()).limit(limit)
        if after is not None:
            query = query.where(documents.c.id < after)
        return [_from_row(row) for row in self._conn.execute(query)]

    def delete(self, tenant_id: str, document_id: str) -> Document:
        document = self.get(tenant_id, document_id)
        self._conn.execute(
            delete(documents).where(
                (documents.c.tenant_id == tenant_id) & (documents.c.id == document_id)
            )
        )
        return document

    def find_by_sha256(self, tenant_id: str, sha256: str) -> Document | None:
        """The tenant's oldest document with these bytes, if any."""
        row = self._conn.execute(
            self._select(tenant_id)
            .where(documents.c.sha256 == sha256)
            .order_by(documents.c.id)
            .limit(1)
        ).first()
        return _from_row(row) if row is not None else None

    def count_with_sha256(self, tenant_id: str, sha256: str) -> int:
        return int(
            self._conn.execute(
                select(func.count())
                .select_from(documents)
                .where((documents.c.tenant_id == tenant_id) & (documents.c.sha256 == sha256))
            ).scalar_one()
        )

    def set_latest_job(self, tenant_id: str, document_id: str, job_id: str) -> None:
        self._update(tenant_id, document_id, latest_job_id=job_id)

    def mark_processed(
        self, tenant_id: str, document_id: str, *, chunk_count: int, title: str, now: datetime
    ) -> None:
        self._update(tenant_id, document_id, chunk_count=chunk_count, title=title, updated_at=now)

    def _update(self, tenant_id: str, document_id: str, **values: Any) -> None:
        result = self._conn.execute(
            update(documents)
            .where((documents.c.tenant_id == tenant_id) & (documents.c.id == document_id))
            .values(**values)
        )
        if result.rowcount == 0:
            raise NotFound(f"document {document_id} not found")


def blob_refs_of_every_tenant(conn: Connection) -> set[tuple[str, str]]:
    """(tenant, sha256) of every document of every tenant: what the blob sweeper keeps."""
    rows = conn.execute(select(documents.c.tenant_id, documents.c.sha256).distinct())
    return {(tenant_id, sha256) for tenant_id, sha256 in rows}

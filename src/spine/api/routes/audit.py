"""/v1/audit: the tenant's audit log, for its admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from spine.api.deps import Admin, ServicesDep
from spine.api.openapi import problem_responses
from spine.api.schemas import AuditEntryPublic, AuditPage
from spine.service import audit

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problem_responses())


@router.get("", response_model=AuditPage)
def list_audit_entries(
    principal: Admin,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=18, pattern=r"^[0-9]+$")] = None,
) -> AuditPage:
    """The caller's tenant's entries, newest first (as every list of this API); pass
    ``next_cursor`` back as ``cursor`` for older ones."""
    items, next_cursor = audit.page(services, principal.tenant_id, limit=limit, cursor=cursor)
    return AuditPage(items=[AuditEntryPublic.of(e) for e in items], next_cursor=next_cursor)

"""Reading jobs and their history."""

from __future__ import annotations

from spine.domain.jobs import Job, JobState
from spine.service.container import Services


def get(services: Services, tenant_id: str, job_id: str) -> Job:
    with services.db.read() as uow:
        return uow.jobs.get(tenant_id, job_id)


def page(
    services: Services,
    tenant_id: str,
    *,
    state: JobState | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    with services.db.read() as uow:
        items = uow.jobs.list(tenant_id, state=state, limit=limit + 1, after=cursor)
    next_cursor = items[limit - 1].id if len(items) > limit else None
    return items[:limit], next_cursor

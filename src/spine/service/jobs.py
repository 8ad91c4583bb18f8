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


def counts(services: Services, tenant_id: str) -> dict[JobState, int]:
    with services.db.read() as uow:
        return uow.jobs.count_by_state(tenant_id)


def retry(services: Services, tenant_id: str, job_id: str) -> Job:
    """Take a dead letter back to PENDING with its attempts reset."""
    with services.db.write() as uow:
        uow.jobs.requeue(tenant_id, job_id, now=services.clock(), detail="retried by request")
        return uow.jobs.get(tenant_id, job_id)


def retry_failed(
    services: Services, tenant_id: str, *, error_type: str | None, limit: int
) -> list[str]:
    """Retry up to ``limit`` dead letters, optionally only those of one error type."""
    with services.db.write() as uow:
        ids = uow.jobs.failed_ids(tenant_id, error_type=error_type, limit=limit)
        for job_id in ids:
            uow.jobs.requeue(
                tenant_id, job_id, now=services.clock(), detail="retried in bulk by request"
            )
    return ids

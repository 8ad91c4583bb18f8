"""Reading jobs and their history, and retrying dead letters.

Jobs are scoped twice: to the tenant, like everything, and to the subject who queued
them. Readers and writers see only their own jobs; admins see every job of the tenant.
Every function here takes ``created_by`` explicitly (the filter :func:`creator_filter`
works out for a caller), so no route can forget it. A job outside the caller's view is
answered exactly like one that does not exist.
"""

from __future__ import annotations

from spine.domain.auth import GRANTS, Permission, Principal
from spine.domain.jobs import Job, JobState
from spine.errors import Forbidden
from spine.observability.logging import current_request_id
from spine.observability.tracing import current_traceparent
from spine.service.container import Services


def sees_all_jobs(principal: Principal) -> bool:
    """Whether ``principal`` may read jobs that other subjects of the tenant queued."""
    return Permission.ADMIN in GRANTS[principal.role]


def creator_filter(principal: Principal, requested: str | None = None) -> str | None:
    """The ``created_by`` filter for ``principal``'s job reads: an admin's is the subject
    they ask for, or None (every job of the tenant); anyone else's is their own subject."""
    if sees_all_jobs(principal):
        return requested
    if requested is not None and requested != principal.subject:
        raise Forbidden("only an admin may read jobs that other subjects queued")
    return principal.subject


def get(services: Services, tenant_id: str, job_id: str, *, created_by: str | None) -> Job:
    with services.db.read() as uow:
        return uow.jobs.get(tenant_id, job_id, created_by=created_by)


def page(
    services: Services,
    tenant_id: str,
    *,
    created_by: str | None,
    state: JobState | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    with services.db.read() as uow:
        items = uow.jobs.list(
            tenant_id, state=state, created_by=created_by, limit=limit + 1, after=cursor
        )
    next_cursor = items[limit - 1].id if len(items) > limit else None
    return items[:limit], next_cursor


def counts(services: Services, tenant_id: str, *, created_by: str | None) -> dict[JobState, int]:
    with services.db.read() as uow:
        return uow.jobs.count_by_state(tenant_id, created_by=created_by)


def retry(
    services: Services, tenant_id: str, job_id: str, *, created_by: str | None, subject: str
) -> Job:
    """Take a dead letter back to PENDING with its attempts reset. ``subject`` queues it
    again and owns it from now on; ``created_by`` limits which jobs the caller may name."""
    with services.db.write() as uow:
        # Outside the caller's view, the job is not found, whatever its state.
        uow.jobs.get(tenant_id, job_id, created_by=created_by)
        uow.jobs.requeue(
            tenant_id,
            job_id,
            now=services.clock(),
            detail="retried by request",
            queued_by=subject,
            request_id=current_request_id(),
            traceparent=current_traceparent(),
        )
        retried = uow.jobs.get(tenant_id, job_id)
    services.radar.observe("jobs", tenant_id)
    return retried


def retry_failed(
    services: Services,
    tenant_id: str,
    *,
    created_by: str | None,
    subject: str,
    error_type: str | None,
    limit: int,
) -> list[str]:
    """Retry up to ``limit`` dead letters the caller may see, optionally only those of one
    error type."""
    with services.db.write() as uow:
        ids = uow.jobs.failed_ids(
            tenant_id, error_type=error_type, created_by=created_by, limit=limit
        )
        for job_id in ids:
            uow.jobs.requeue(
                tenant_id,
                job_id,
                now=services.clock(),
                detail="retried in bulk by request",
                queued_by=subject,
                request_id=current_request_id(),
                traceparent=current_traceparent(),
            )
    services.radar.observe("jobs", tenant_id, len(ids))
    return ids

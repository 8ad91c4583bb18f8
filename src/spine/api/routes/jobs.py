"""/v1/jobs: the processing queue as the tenant sees it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from spine.api.auditing import audited
from spine.api.deps import Reader, ServicesDep, Writer
from spine.api.idempotency import IdempotencyKey, json_outcome, respond
from spine.api.openapi import problem_responses
from spine.api.schemas import JobPage, JobPublic, JobStats, RetryRequest, RetryResult
from spine.domain.jobs import JobState
from spine.ports import StoredResponse
from spine.service import jobs
from spine.service.audit import Action

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(404, 409))


CreatedBy = Annotated[
    str | None,
    Query(
        max_length=256,
        description="Admins: only jobs this subject queued. Others see only their own jobs "
        "anyway, and may name only themselves.",
    ),
]


@router.get("", response_model=JobPage, response_model_by_alias=True)
def list_jobs(
    principal: Reader,
    services: ServicesDep,
    state: JobState | None = None,
    created_by: CreatedBy = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> JobPage:
    """The caller's jobs, newest first; an admin's are every job of the tenant."""
    items, next_cursor = jobs.page(
        services,
        principal.tenant_id,
        created_by=jobs.creator_filter(principal, created_by),
        state=state,
        limit=limit,
        cursor=cursor,
    )
    return JobPage(items=[JobPublic.of(j) for j in items], next_cursor=next_cursor)


@router.get("/stats", response_model=JobStats)
def job_stats(principal: Reader, services: ServicesDep, created_by: CreatedBy = None) -> JobStats:
    """The caller's jobs (an admin's: the tenant's) by state, and the dead-letter queue's
    depth."""
    counts = jobs.counts(
        services, principal.tenant_id, created_by=jobs.creator_filter(principal, created_by)
    )
    return JobStats(states=counts, dlq_depth=counts[JobState.FAILED])


@router.post("/retry", response_model=RetryResult)
def retry_dead_letters(
    request: Request,
    principal: Writer,
    services: ServicesDep,
    body: RetryRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Take FAILED jobs the caller may see (optionally of one ``error_type``) back to
    PENDING."""

    def operation() -> StoredResponse:
        # One entry per retried job, all with this request's id; "-" when none matched.
        with audited(request, principal, Action.DLQ_RETRY) as trail:
            retried = jobs.retry_failed(
                services,
                principal.tenant_id,
                created_by=jobs.creator_filter(principal),
                subject=principal.subject,
                error_type=body.error_type,
                limit=body.limit,
            )
            trail.resources = list(retried)
        return json_outcome(200, RetryResult(retried=retried, count=len(retried)))

    return respond(
        request,
        services,
        principal,
        idempotency_key,
        lambda: body.model_dump(),
        operation,
    )


@router.post("/{job_id}/retry", response_model=JobPublic, response_model_by_alias=True)
def retry_job(
    request: Request,
    principal: Writer,
    services: ServicesDep,
    job_id: str,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Take one FAILED job back to PENDING, attempts reset; 409 if it is not FAILED."""

    def operation() -> StoredResponse:
        with audited(request, principal, Action.JOB_RETRY, job_id):
            job = jobs.retry(
                services,
                principal.tenant_id,
                job_id,
                created_by=jobs.creator_filter(principal),
                subject=principal.subject,
            )
        return json_outcome(200, JobPublic.of(job))

    return respond(request, services, principal, idempotency_key, lambda: job_id, operation)


@router.get("/{job_id}", response_model=JobPublic, response_model_by_alias=True)
def get_job(principal: Reader, services: ServicesDep, job_id: str) -> JobPublic:
    """Another subject's job answers 404 to a non-admin, exactly like an unknown id."""
    return JobPublic.of(
        jobs.get(services, principal.tenant_id, job_id, created_by=jobs.creator_filter(principal))
    )

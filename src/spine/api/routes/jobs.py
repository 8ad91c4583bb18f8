"""/v1/jobs: the processing queue as the tenant sees it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from spine.api.deps import Reader, ServicesDep, Writer
from spine.api.idempotency import IdempotencyKey, json_outcome, respond
from spine.api.schemas import JobPage, JobPublic, JobStats, RetryRequest, RetryResult
from spine.domain.jobs import JobState
from spine.ports import StoredResponse
from spine.service import jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("", response_model=JobPage, response_model_by_alias=True)
def list_jobs(
    principal: Reader,
    services: ServicesDep,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> JobPage:
    items, next_cursor = jobs.page(
        services, principal.tenant_id, state=state, limit=limit, cursor=cursor
    )
    return JobPage(items=[JobPublic.of(j) for j in items], next_cursor=next_cursor)


@router.get("/stats", response_model=JobStats)
def job_stats(principal: Reader, services: ServicesDep) -> JobStats:
    """Jobs by state, and the dead-letter queue's depth."""
    counts = jobs.counts(services, principal.tenant_id)
    return JobStats(states=counts, dlq_depth=counts[JobState.FAILED])


@router.post("/retry", response_model=RetryResult)
def retry_dead_letters(
    request: Request,
    principal: Writer,
    services: ServicesDep,
    body: RetryRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Take FAILED jobs (optionally of one ``error_type``) back to PENDING."""

    def operation() -> StoredResponse:
        retried = jobs.retry_failed(
            services, principal.tenant_id, error_type=body.error_type, limit=body.limit
        )
        return json_outcome(200, RetryResult(retried=retried, count=len(retried)))

    return respond(
        request,
        services,
        principal.tenant_id,
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
        return json_outcome(200, JobPublic.of(jobs.retry(services, principal.tenant_id, job_id)))

    return respond(
        request, services, principal.tenant_id, idempotency_key, lambda: job_id, operation
    )


@router.get("/{job_id}", response_model=JobPublic, response_model_by_alias=True)
def get_job(principal: Reader, services: ServicesDep, job_id: str) -> JobPublic:
    return JobPublic.of(jobs.get(services, principal.tenant_id, job_id))

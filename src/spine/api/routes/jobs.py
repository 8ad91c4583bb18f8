"""/v1/jobs: the processing queue as the tenant sees it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from spine.api.deps import Reader, ServicesDep
from spine.api.schemas import JobPage, JobPublic
from spine.domain.jobs import JobState
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


@router.get("/{job_id}", response_model=JobPublic, response_model_by_alias=True)
def get_job(principal: Reader, services: ServicesDep, job_id: str) -> JobPublic:
    return JobPublic.of(jobs.get(services, principal.tenant_id, job_id))

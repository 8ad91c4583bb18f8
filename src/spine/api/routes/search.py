"""/v1/search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from spine.api.deps import Reader, ServicesDep
from spine.api.openapi import problem_responses
from spine.api.schemas import SearchResponse
from spine.domain.search import SearchMode
from spine.service import search as search_service

router = APIRouter(prefix="/v1/search", tags=["search"], responses=problem_responses())


@router.get("", response_model=SearchResponse)
def search(
    principal: Reader,
    services: ServicesDep,
    q: Annotated[str, Query(min_length=1, max_length=1000)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    mode: SearchMode = SearchMode.HYBRID,
) -> SearchResponse:
    """Chunks of the caller's tenant's documents, best first."""
    result = search_service.search(services, principal.tenant_id, q, mode=mode, k=k)
    return SearchResponse.of(result)

"""/v1/search: simple searches as GET, the full request (filters, grouping, explain,
fusion) as a JSON body in POST. Both answer the same shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from spine.api.deps import Reader, ServicesDep
from spine.api.openapi import problem_responses
from spine.api.schemas import MAX_CURSOR_CHARS, SearchRequestBody, SearchResponse
from spine.domain.search import NO_FILTER, SearchMode
from spine.service import search as search_service

router = APIRouter(prefix="/v1/search", tags=["search"], responses=problem_responses())


@router.get("", response_model=SearchResponse)
def search(
    principal: Reader,
    services: ServicesDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=search_service.MAX_QUERY_CHARS,
            description="What to search for.",
        ),
    ],
    k: Annotated[int, Query(ge=1, le=search_service.MAX_K, description="Results per page.")] = 10,
    mode: Annotated[
        SearchMode,
        Query(description="keyword (BM25), semantic (vector KNN) or hybrid (both, fused)."),
    ] = SearchMode.HYBRID,
    offset: Annotated[
        int,
        Query(
            ge=0,
            description="Results to skip; the page must start inside the candidates ranked. "
            "Not with cursor.",
        ),
    ] = 0,
    candidates: Annotated[
        int | None,
        Query(
            ge=1,
            le=search_service.MAX_CANDIDATES,
            description="How many chunks each leg ranks: every page of this search is cut "
            "from that one ranking. Ask for more to page deeper. Default: the configured "
            "SPINE_SEARCH_KEYWORD_CANDIDATES and SPINE_SEARCH_VECTOR_CANDIDATES.",
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_CHARS,
            description="A previous answer's next_cursor, with the same q, k, mode and "
            "candidates: the next page of that search. Not with offset.",
        ),
    ] = None,
) -> SearchResponse:
    """Chunks of the caller's tenant's documents, best first."""
    result = search_service.search(
        services,
        principal.tenant_id,
        q,
        mode=mode,
        k=k,
        offset=offset,
        cursor=cursor,
        candidates=candidates,
    )
    return SearchResponse.of(result)


@router.post("", response_model=SearchResponse)
def search_with_options(
    principal: Reader, services: ServicesDep, body: SearchRequestBody
) -> SearchResponse:
    """Chunks (or documents) of the caller's tenant, best first, with filters, grouping,
    per-leg explanations and a fusion of the request's own."""
    fusion = body.fusion.over(services.settings.fusion()) if body.fusion else None
    result = search_service.search(
        services,
        principal.tenant_id,
        body.q,
        mode=body.mode,
        k=body.k,
        offset=body.offset,
        cursor=body.cursor,
        filters=body.filters.to_filter() if body.filters else NO_FILTER,
        group_by=body.group_by,
        explain=body.explain,
        fusion=fusion,
        candidates=body.candidates,
    )
    return SearchResponse.of(result)

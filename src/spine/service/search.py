"""Search: keyword (BM25), semantic (vector KNN) or both fused by reciprocal rank."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog

from spine.domain.search import Candidate, SearchHit, SearchMode, reciprocal_rank_fusion
from spine.errors import InvalidRequest, TransientError
from spine.service import privacy
from spine.service.container import Services
from spine.service.search_cache import Answer, normalise

log = structlog.get_logger("spine.search")
MAX_QUERY_CHARS = 1000
MAX_K = 100


@dataclass(frozen=True)
class SearchResult:
    query: str
    mode: SearchMode
    took_ms: float
    hits: list[SearchHit]
    degraded: list[str] = field(default_factory=list)
    """Legs that could not run (``"vector"`` while the embedder is down)."""
    cached: bool = False
    """The answer was not computed by this call: it came from the result cache, or from
    an identical search running at the same time."""


def search(
    services: Services, tenant_id: str, query: str, *, mode: SearchMode, k: int
) -> SearchResult:
    started = time.perf_counter()
    query = query.strip()
    if not query:
        raise InvalidRequest("q must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"q is longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be between 1 and {MAX_K}")
    pool = max(k, services.settings.search_candidates)
    # The index holds scrubbed text: a value in the query becomes the tenant's token for
    # it, so both legs look for what was stored, and the model never sees the value.
    # Whitespace is collapsed first, so that every spelling of one query is one cache
    # entry and the answer stored under it is the one each of them would get.
    scrubbed = privacy.scrub_query(services, tenant_id, normalise(query))
    # The generation is read before the answer is computed, in a transaction of its own:
    # the answer then reflects this generation or a later one, never an earlier one, so
    # storing it under this generation can never serve a state older than the key says.
    with services.db.read() as uow:
        generation = uow.index.generation(tenant_id)
    key = services.search_cache.key(
        tenant_id,
        generation,
        query=scrubbed,
        mode=mode.value,
        k=k,
        model_id=services.embedder.model_id,
        candidates=pool,
        rrf_k=services.settings.rrf_k,
    )
    answer, cached = services.search_cache.answer(
        key, lambda: _compute(services, tenant_id, scrubbed, mode=mode, k=k, pool=pool)
    )
    took_ms = (time.perf_counter() - started) * 1000
    return SearchResult(
        query=query,
        mode=mode,
        took_ms=round(took_ms, 2),
        hits=answer.hits,
        degraded=answer.degraded,
        cached=cached,
    )


def _compute(
    services: Services, tenant_id: str, scrubbed: str, *, mode: SearchMode, k: int, pool: int
) -> Answer:
    # Embed before opening the read transaction: the model is the slow part.
    vector: list[float] | None = None
    degraded: list[str] = []
    if mode is not SearchMode.KEYWORD:
        try:
            vector = services.search_cache.embeddings.embed(services.embedder, tenant_id, scrubbed)
        except TransientError as exc:
            # The embedder is down or its breaker open: answer from the keyword index and
            # say so, rather than fail the search.
            log.warning("search.degraded", leg="vector", reason=exc.type)
            degraded.append("vector")
    mode_used = SearchMode.KEYWORD if degraded else mode
    with services.db.read() as uow:
        legs: list[list[Candidate]] = []
        if mode_used is not SearchMode.SEMANTIC:
            legs.append(uow.index.keyword(tenant_id, scrubbed, pool))
        if vector is not None:
            legs.append(uow.index.semantic(tenant_id, vector, pool))
        if mode_used is SearchMode.HYBRID:
            ranked = reciprocal_rank_fusion(legs, k=services.settings.rrf_k, limit=k)
        else:
            ranked = legs[0][:k]
        infos = uow.index.describe(tenant_id, [c.chunk_key for c in ranked], scrubbed)
    hits = [
        SearchHit(
            document_id=info.document_id,
            chunk_id=info.chunk_id,
            title=info.title,
            score=cand.score,
            snippet=info.snippet,
        )
        for cand in ranked
        if (info := infos.get(cand.chunk_key)) is not None
    ]
    return Answer(hits, degraded)

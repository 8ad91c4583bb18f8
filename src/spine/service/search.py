"""Search: keyword (BM25), semantic (vector KNN) or both fused, filtered and paged.

One request runs each leg over the tenant's chunks that pass its filters and takes its
best ``candidates`` (the window), fuses them (see ``spine.domain.search.fuse``),
optionally keeps the best chunk per document, and cuts the page. The window does not
depend on the page, so every page of one request is cut from one ranking: walking the
pages never repeats or skips a hit. A page must therefore start inside the window (and
ends at its end); a deeper reader asks for a larger window.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from spine.domain.search import (
    NO_FILTER,
    Candidate,
    Fusion,
    GroupBy,
    Leg,
    Ranked,
    SearchFilter,
    SearchHit,
    SearchMode,
    best_per_document,
    fuse,
    rank_single,
)
from spine.errors import InvalidRequest, TransientError
from spine.service import privacy
from spine.service.container import Services
from spine.service.search_cache import Answer, normalise

log = structlog.get_logger("spine.search")
MAX_QUERY_CHARS = 1000
MAX_K = 100
#: The largest window a request may ask for: deeper pools cost more than any reader of
#: page 50 gains.
MAX_CANDIDATES = 1000
#: The largest pool a leg is asked for when grouping by document needs more chunks to
#: fill its window with documents (sqlite-vec answers at most 4096 neighbours).
MAX_POOL = 4096


@dataclass(frozen=True)
class SearchRequest:
    query: str
    mode: SearchMode = SearchMode.HYBRID
    k: int = 10
    offset: int = 0
    filters: SearchFilter = NO_FILTER
    group_by: GroupBy = GroupBy.CHUNK
    explain: bool = False
    fusion: Fusion | None = None
    """None: the configured fusion (``SPINE_SEARCH_FUSION``, ``SPINE_RRF_K``, ...)."""
    candidates: int | None = None
    """The window: chunks each leg ranks (documents, when grouping by document). None:
    the configured pools (``SPINE_SEARCH_KEYWORD_CANDIDATES``, ...)."""

    def canonical(self, fusion: Fusion, pools: dict[Leg, int]) -> list[Any]:
        """Everything that decides the ranking, as JSON-able values (offset excluded)."""
        filters = self.filters
        return [
            normalise(self.query),
            self.mode.value,
            self.k,
            self.group_by.value,
            [fusion.method.value, fusion.rrf_k, fusion.keyword_weight],
            [pools[Leg.KEYWORD], pools[Leg.VECTOR]],
            None if filters.document_ids is None else sorted(set(filters.document_ids)),
            sorted([key, sorted(map(json.dumps, values))] for key, values in filters.metadata),
            None if filters.content_types is None else sorted(set(filters.content_types)),
            None if filters.created_from is None else filters.created_from.isoformat(),
            None if filters.created_before is None else filters.created_before.isoformat(),
        ]


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
    fusion: Fusion | None = None
    """The fusion used (hybrid mode only; None when a leg could not run)."""
    offset: int = 0
    """Where this page starts in the ranking (read from the cursor when one was given)."""
    next_cursor: str | None = None
    """Resumes the ranking after this page; None when it has no more hits."""


def search(
    services: Services,
    tenant_id: str,
    query: str,
    *,
    mode: SearchMode = SearchMode.HYBRID,
    k: int = 10,
    offset: int = 0,
    cursor: str | None = None,
    filters: SearchFilter = NO_FILTER,
    group_by: GroupBy = GroupBy.CHUNK,
    explain: bool = False,
    fusion: Fusion | None = None,
    candidates: int | None = None,
) -> SearchResult:
    """Run one search; ``cursor`` (from a previous page of the same request) or
    ``offset`` says where the page starts."""
    request = SearchRequest(
        query.strip(), mode, k, offset, filters, group_by, explain, fusion, candidates
    )
    return run(services, tenant_id, request, cursor=cursor)


def run(
    services: Services, tenant_id: str, request: SearchRequest, *, cursor: str | None = None
) -> SearchResult:
    started = time.perf_counter()
    settings = services.settings
    fusion = request.fusion or settings.fusion()
    pools = {
        Leg.KEYWORD: request.candidates or settings.search_keyword_candidates,
        Leg.VECTOR: request.candidates or settings.search_vector_candidates,
    }
    canonical = request.canonical(fusion, pools)
    fingerprint = _fingerprint(canonical)
    # A page answered without its vector leg (the embedder was down) hands out a cursor
    # of the keyword-only ranking: the pages after it stay in that one ranking even once
    # the embedder is back, rather than switch to another halfway through.
    keyword_only = _fingerprint([*canonical, "keyword-only"])
    without_vector = False
    if cursor is not None:
        if request.offset:
            raise InvalidRequest("give either offset or cursor, not both")
        offset, owner = read_cursor(cursor, (fingerprint, keyword_only))
        request = replace(request, offset=offset)
        without_vector = owner == keyword_only and request.mode is not SearchMode.KEYWORD
    _validate(request, window(request.mode, pools))
    # The index holds scrubbed text: a value in the query becomes the tenant's token for
    # it, so both legs look for what was stored, and the model never sees the value.
    # Whitespace is collapsed first, so that every spelling of one query is one cache
    # entry and the answer stored under it is the one each of them would get.
    scrubbed = privacy.scrub_query(services, tenant_id, normalise(request.query))
    filters = _scrub_filters(services, tenant_id, request.filters)
    # The generation is read before the answer is computed, in a transaction of its own:
    # the answer then reflects this generation or a later one, never an earlier one, so
    # storing it under this generation can never serve a state older than the key says.
    with services.db.read() as uow:
        generation = uow.index.generation(tenant_id)
    key = services.search_cache.key(
        tenant_id,
        generation,
        request=[
            scrubbed,
            request.offset,
            request.explain,
            without_vector,
            canonical[1:],
            settings.search_title_weight,
        ],
        model_id=services.embedder.model_id,
    )
    answer, cached = services.search_cache.answer(
        key,
        lambda: _compute(
            services,
            tenant_id,
            scrubbed,
            filters,
            request,
            fusion,
            pools,
            without_vector=without_vector,
        ),
    )
    took_ms = (time.perf_counter() - started) * 1000
    return SearchResult(
        query=request.query,
        mode=request.mode,
        took_ms=round(took_ms, 2),
        hits=answer.hits,
        degraded=answer.degraded,
        cached=cached,
        fusion=fusion if request.mode is SearchMode.HYBRID and not answer.degraded else None,
        offset=request.offset,
        next_cursor=(
            make_cursor(
                keyword_only if answer.degraded else fingerprint, request.offset + request.k
            )
            if answer.more
            else None
        ),
    )


def legs_of(mode: SearchMode) -> tuple[Leg, ...]:
    if mode is SearchMode.KEYWORD:
        return (Leg.KEYWORD,)
    if mode is SearchMode.SEMANTIC:
        return (Leg.VECTOR,)
    return (Leg.KEYWORD, Leg.VECTOR)


def window(mode: SearchMode, pools: Mapping[Leg, int]) -> int:
    """How many hits a search in ``mode`` ranks: the deepest of its legs' pools."""
    return max(pools[leg] for leg in legs_of(mode))


def gather(
    fetch: Callable[[Leg, int], list[Candidate]],
    legs: Sequence[Leg],
    pools: Mapping[Leg, int],
    *,
    documents: int | None = None,
) -> dict[Leg, list[Candidate]]:
    """Each leg's candidates, ``fetch(leg, limit)`` asked for its pool.

    With ``documents`` (grouping by document, which folds a document's chunks into one
    hit), while the chunks found hold fewer documents than that, each leg that gave all
    it was asked for is asked for twice as many, up to MAX_POOL. How deep depends only on
    the request, never on the page, so every page sees one ranking.
    """
    depth = {leg: pools[leg] for leg in legs}
    while True:
        found = {leg: fetch(leg, limit) for leg, limit in depth.items()}
        if documents is None:
            return found
        held = {c.document_id for candidates in found.values() for c in candidates}
        full = [leg for leg, got in found.items() if len(got) == depth[leg] < MAX_POOL]
        if len(held) >= documents or not full:
            return found
        for leg in full:
            depth[leg] = min(depth[leg] * 2, MAX_POOL)


def _validate(request: SearchRequest, window: int) -> None:
    if not request.query:
        raise InvalidRequest("q must not be empty")
    if len(request.query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"q is longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= request.k <= MAX_K:
        raise InvalidRequest(f"k must be between 1 and {MAX_K}")
    if request.candidates is not None and not 1 <= request.candidates <= MAX_CANDIDATES:
        raise InvalidRequest(f"candidates must be between 1 and {MAX_CANDIDATES}")
    if request.offset < 0:
        raise InvalidRequest("offset must not be negative")
    if request.offset >= window:
        raise InvalidRequest(
            f"offset {request.offset} starts past the {window} candidates this search "
            f"ranks; ask for more with candidates (at most {MAX_CANDIDATES})"
        )


def _scrub_filters(services: Services, tenant_id: str, filters: SearchFilter) -> SearchFilter:
    """Metadata values as stored: a personal-data value in them became its token at upload."""
    if not filters.metadata:
        return filters
    scrubbed = tuple(
        (
            key,
            tuple(
                privacy.scrub_query(services, tenant_id, value) if isinstance(value, str) else value
                for value in values
            ),
        )
        for key, values in filters.metadata
    )
    return replace(filters, metadata=scrubbed)


def _compute(
    services: Services,
    tenant_id: str,
    scrubbed: str,
    filters: SearchFilter,
    request: SearchRequest,
    fusion: Fusion,
    pools: dict[Leg, int],
    *,
    without_vector: bool,
) -> Answer:
    # Embed before opening the read transaction: the model is the slow part.
    vector: list[float] | None = None
    degraded: list[str] = []
    if without_vector:
        degraded.append("vector")
    elif request.mode is not SearchMode.KEYWORD:
        try:
            vector = services.search_cache.embeddings.embed(services.embedder, tenant_id, scrubbed)
        except TransientError as exc:
            # The embedder is down or its breaker open: answer from the keyword index and
            # say so, rather than fail the search.
            log.warning("search.degraded", leg="vector", reason=exc.type)
            degraded.append("vector")
    mode = SearchMode.KEYWORD if degraded else request.mode
    ranked_window = window(mode, pools)
    with services.db.read() as uow:
        fetchers: dict[Leg, Callable[[int], list[Candidate]]] = {
            Leg.KEYWORD: lambda limit: uow.index.keyword(
                tenant_id,
                scrubbed,
                limit,
                filters=filters,
                title_weight=services.settings.search_title_weight,
            )
        }
        if vector is not None:
            query_vector = vector
            fetchers[Leg.VECTOR] = lambda limit: uow.index.semantic(
                tenant_id, query_vector, limit, filters=filters
            )

        grouped = request.group_by is GroupBy.DOCUMENT
        found = gather(
            lambda leg, limit: fetchers[leg](limit),
            legs_of(mode),
            pools,
            documents=ranked_window if grouped else None,
        )
        ranked = _rank(mode, found, fusion)
        if grouped:
            ranked = best_per_document(ranked)
        ranked = ranked[:ranked_window]
        depth = request.offset + request.k
        page = ranked[request.offset : depth]
        infos = uow.index.describe(tenant_id, [r.chunk_key for r in page], scrubbed)
    hits = [
        SearchHit(
            document_id=info.document_id,
            chunk_id=info.chunk_id,
            title=info.title,
            score=item.score,
            snippet=info.snippet,
            legs=item.legs if request.explain else {},
        )
        for item in page
        if (info := infos.get(item.chunk_key)) is not None
    ]
    return Answer(hits, degraded, more=len(ranked) > depth)


def _rank(mode: SearchMode, legs: dict[Leg, list[Candidate]], fusion: Fusion) -> list[Ranked]:
    if mode is SearchMode.HYBRID:
        return fuse(legs, fusion)
    ((leg, candidates),) = legs.items()
    return rank_single(leg, candidates)


# -- Cursors ----------------------------------------------------------------------------


def _fingerprint(canonical: list[Any]) -> str:
    material = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def make_cursor(fingerprint: str, offset: int) -> str:
    """An opaque token for "this request, from ``offset`` on". It holds no query text."""
    raw = json.dumps([offset, fingerprint], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: str, fingerprints: Collection[str]) -> tuple[int, str]:
    """The offset a cursor resumes at and whose it is (one of ``fingerprints``: this
    request's rankings); InvalidRequest for any other."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset, owner = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidRequest("cursor is not one this service made") from exc
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidRequest("cursor is not one this service made")
    if owner not in fingerprints:
        raise InvalidRequest(
            "cursor belongs to another search: repeat the request that returned it, "
            "changing nothing but the cursor"
        )
    return offset, str(owner)

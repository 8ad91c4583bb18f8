"""The search use case: pages and cursors, grouping by document, explain, validation.

Documents are indexed as processing does (real vectors from the real model), so every
mode runs against the real indexes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.domain.documents import Chunk, new_id
from spine.domain.search import Candidate, Fusion, FusionMethod, GroupBy, Leg, SearchMode
from spine.errors import InvalidRequest, TransientError
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.service.search import MAX_CANDIDATES, gather, legs_of, search, window
from spine.settings import Settings
from support.rows import document_row

TENANT = "acme"


def add_document(
    services: Services, embedder: MiniLMOnnxEmbedder, title: str, texts: Sequence[str]
) -> str:
    document_id = new_id("doc")
    vectors = embedder.embed(list(texts))
    with services.db.write() as uow:
        uow.documents.add(
            TENANT, document_row(TENANT, document_id, title=title, chunk_count=len(texts))
        )
        uow.index.replace(
            TENANT,
            document_id,
            title,
            [
                Chunk(new_id("chk"), document_id, n, body, 0, len(body), vector)
                for n, (body, vector) in enumerate(zip(texts, vectors, strict=True))
            ],
        )
    return document_id


@pytest.fixture
def small_pools(settings: Settings, embedder: MiniLMOnnxEmbedder) -> Iterator[Services]:
    """Pools of 4 candidates per leg, so that a page or a grouping can outgrow them."""
    tuned = settings.model_copy(
        update={"search_keyword_candidates": 4, "search_vector_candidates": 4}
    )
    built = bootstrap(tuned, embedder=embedder)
    yield built
    built.close()


@pytest.fixture
def zeppelins(small_pools: Services, embedder: MiniLMOnnxEmbedder) -> list[str]:
    """Fifteen one-chunk documents about zeppelins, each a little less about them."""
    return [
        add_document(
            small_pools,
            embedder,
            f"Airship log {n}",
            [" ".join(["zeppelin"] * (16 - n) + ["harbour", "weather"] * (n + 1))],
        )
        for n in range(15)
    ]


def chunk_ids(services: Services, query: str, **kwargs: object) -> list[str]:
    return [hit.chunk_id for hit in search(services, TENANT, query, **kwargs).hits]  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", list(SearchMode))
def test_pages_walked_by_cursor_are_the_one_deep_ranking(
    small_pools: Services, zeppelins: list[str], mode: SearchMode
) -> None:
    deep = chunk_ids(small_pools, "zeppelin", mode=mode, k=15, candidates=15)
    assert len(deep) == 15
    walked: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        result = search(
            small_pools, TENANT, "zeppelin", mode=mode, k=4, cursor=cursor, candidates=15
        )
        walked += [hit.chunk_id for hit in result.hits]
        pages += 1
        cursor = result.next_cursor
        if cursor is None:
            break
    assert walked == deep
    assert pages == 4  # 4 + 4 + 4 + 3
    by_offset = chunk_ids(small_pools, "zeppelin", mode=mode, k=4, offset=8, candidates=15)
    assert by_offset == deep[8:12]


def test_grouping_by_document_reaches_past_one_documents_many_chunks(
    small_pools: Services, embedder: MiniLMOnnxEmbedder
) -> None:
    # Ten chunks of one document outrank everything else: the first pool of 4 holds
    # only them, and only deeper pools find the other documents.
    big = add_document(small_pools, embedder, "Zeppelin manual", ["zeppelin zeppelin"] * 10)
    others = [
        add_document(small_pools, embedder, f"Note {n}", [f"zeppelin seen over the bay {n}"])
        for n in range(3)
    ]
    result = search(
        small_pools, TENANT, "zeppelin", mode=SearchMode.KEYWORD, k=3, group_by=GroupBy.DOCUMENT
    )
    documents = [hit.document_id for hit in result.hits]
    assert documents[0] == big
    assert len(documents) == 3
    assert set(documents[1:]) <= set(others)
    # The window (4) counts documents: the page after this one holds the last.
    rest = search(
        small_pools,
        TENANT,
        "zeppelin",
        mode=SearchMode.KEYWORD,
        k=3,
        group_by=GroupBy.DOCUMENT,
        cursor=result.next_cursor,
    )
    assert {hit.document_id for hit in [*result.hits, *rest.hits]} == {big, *others}
    by_chunk = search(small_pools, TENANT, "zeppelin", mode=SearchMode.KEYWORD, k=3)
    assert {hit.document_id for hit in by_chunk.hits} == {big}


def test_explain_gives_each_legs_rank_and_score_and_the_fusion(
    small_pools: Services, zeppelins: list[str]
) -> None:
    fusion = Fusion(FusionMethod.RRF, rrf_k=30, keyword_weight=0.6)
    explained = search(small_pools, TENANT, "zeppelin", k=4, explain=True, fusion=fusion)
    plain = search(small_pools, TENANT, "zeppelin", k=4, fusion=fusion)
    assert [h.chunk_id for h in explained.hits] == [h.chunk_id for h in plain.hits]
    assert all(not hit.legs for hit in plain.hits)
    assert explained.fusion == fusion
    keyword = chunk_ids(small_pools, "zeppelin", mode=SearchMode.KEYWORD, k=4)
    vector = chunk_ids(small_pools, "zeppelin", mode=SearchMode.SEMANTIC, k=4)
    for hit in explained.hits:
        legs = hit.legs
        assert legs, "every fused hit was found by some leg"
        if Leg.KEYWORD in legs:
            assert keyword[legs[Leg.KEYWORD].rank - 1] == hit.chunk_id
            assert legs[Leg.KEYWORD].weight == pytest.approx(0.6)
        if Leg.VECTOR in legs:
            assert vector[legs[Leg.VECTOR].rank - 1] == hit.chunk_id
            assert legs[Leg.VECTOR].weight == pytest.approx(0.4)
        assert hit.score == pytest.approx(sum(leg.contribution for leg in legs.values()))


def test_the_configured_fusion_applies_unless_the_request_overrides_it(
    settings: Settings, embedder: MiniLMOnnxEmbedder
) -> None:
    weighted = settings.model_copy(
        update={"search_fusion": FusionMethod.WEIGHTED, "rrf_k": 7, "search_keyword_weight": 0.2}
    )
    built = bootstrap(weighted, embedder=embedder)
    try:
        add_document(built, embedder, "Airship", ["zeppelin over the harbour"])
        assert search(built, TENANT, "zeppelin").fusion == Fusion(FusionMethod.WEIGHTED, 7, 0.2)
        override = Fusion(FusionMethod.RRF, 10, 0.9)
        assert search(built, TENANT, "zeppelin", fusion=override).fusion == override
        assert search(built, TENANT, "zeppelin", mode=SearchMode.KEYWORD).fusion is None
    finally:
        built.close()


def test_a_cursor_only_resumes_the_search_that_made_it(
    small_pools: Services, zeppelins: list[str]
) -> None:
    cursor = search(small_pools, TENANT, "zeppelin", k=2).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidRequest, match="another search"):
        search(small_pools, TENANT, "harbour", k=2, cursor=cursor)
    with pytest.raises(InvalidRequest, match="another search"):
        search(small_pools, TENANT, "zeppelin", k=1, cursor=cursor)
    with pytest.raises(InvalidRequest, match="another search"):
        search(small_pools, TENANT, "zeppelin", k=2, cursor=cursor, group_by=GroupBy.DOCUMENT)
    with pytest.raises(InvalidRequest, match="another search"):
        search(small_pools, TENANT, "zeppelin", k=2, cursor=cursor, candidates=8)
    with pytest.raises(InvalidRequest, match="not both"):
        search(small_pools, TENANT, "zeppelin", k=2, cursor=cursor, offset=2)
    for forged in ("", "not-a-cursor", "WzEsMl0", "eyJhIjogMX0"):
        with pytest.raises(InvalidRequest, match="cursor"):
            search(small_pools, TENANT, "zeppelin", k=2, cursor=forged)
    # Explain changes what a hit carries, not the ranking: its cursor still fits.
    assert search(small_pools, TENANT, "zeppelin", k=2, cursor=cursor, explain=True).hits


def test_no_cursor_after_the_last_hit(small_pools: Services, zeppelins: list[str]) -> None:
    last = search(
        small_pools, TENANT, "zeppelin", mode=SearchMode.KEYWORD, k=5, offset=10, candidates=15
    )
    assert len(last.hits) == 5
    assert last.next_cursor is None
    assert search(small_pools, TENANT, "zeppelin", mode=SearchMode.KEYWORD).next_cursor is None


def test_a_page_must_lie_inside_the_window(small_pools: Services) -> None:
    with pytest.raises(InvalidRequest, match="starts past the 4 candidates"):
        search(small_pools, TENANT, "zeppelin", k=3, offset=4)
    with pytest.raises(InvalidRequest, match="candidates must be"):
        search(small_pools, TENANT, "zeppelin", candidates=MAX_CANDIDATES + 1)
    with pytest.raises(InvalidRequest, match="negative"):
        search(small_pools, TENANT, "zeppelin", k=1, offset=-1)


def test_a_full_leg_is_deepened_until_its_chunks_fill_the_window() -> None:
    """Grouping by document: three chunks a document here."""
    asked: list[tuple[Leg, int]] = []

    def fetch(leg: Leg, limit: int) -> list[Candidate]:
        asked.append((leg, limit))
        available = 60 if leg is Leg.KEYWORD else 1000
        return [Candidate(key, f"doc-{key // 3}", 1.0) for key in range(min(limit, available))]

    pools = {Leg.KEYWORD: 10, Leg.VECTOR: 10}
    keyword = gather(
        fetch, legs_of(SearchMode.KEYWORD), pools, documents=window(SearchMode.KEYWORD, pools)
    )
    assert asked == [(Leg.KEYWORD, 10), (Leg.KEYWORD, 20), (Leg.KEYWORD, 40)]
    assert len(keyword[Leg.KEYWORD]) == 40
    asked.clear()
    deeper = {Leg.KEYWORD: 100, Leg.VECTOR: 10}
    hybrid = gather(
        fetch, legs_of(SearchMode.HYBRID), deeper, documents=window(SearchMode.HYBRID, deeper)
    )
    # The keyword leg ran out at 60 chunks (20 documents): only the vector leg goes deeper.
    assert {limit for leg, limit in asked if leg is Leg.KEYWORD} == {100}
    assert [limit for leg, limit in asked if leg is Leg.VECTOR] == [10, 20, 40, 80, 160, 320]
    assert len({c.document_id for cands in hybrid.values() for c in cands}) == 107


class EmbedderOutageFault:
    """The real model, failing as a remote embedder whose breaker is open while ``down``."""

    def __init__(self, inner: MiniLMOnnxEmbedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.down = False

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.down:
            raise TransientError("the embedder is down")
        return self.inner.embed(texts)


def test_pages_begun_during_an_embedder_outage_stay_in_the_keyword_ranking(
    settings: Settings, embedder: MiniLMOnnxEmbedder
) -> None:
    outage = EmbedderOutageFault(embedder)
    # No cached answers or query vectors: each search asks the embedder.
    uncached = {"search_cache_ttl_seconds": 0, "query_embedding_cache_size": 0}
    built = bootstrap(settings.model_copy(update=uncached), embedder=outage)
    try:
        for n in range(6):
            add_document(built, embedder, f"Log {n}", [" ".join(["zeppelin"] * (7 - n))])
        keyword = chunk_ids(built, "zeppelin", mode=SearchMode.KEYWORD, k=6)
        hybrid = chunk_ids(built, "zeppelin", k=6)
        assert keyword != hybrid, "the two rankings must differ for this test to mean anything"

        outage.down = True
        first = search(built, TENANT, "zeppelin", k=3)
        assert first.degraded == ["vector"]
        assert first.fusion is None
        outage.down = False
        rest = search(built, TENANT, "zeppelin", k=3, cursor=first.next_cursor)
        assert [h.chunk_id for h in [*first.hits, *rest.hits]] == keyword
        assert rest.degraded == ["vector"]  # this page, too, left the vector leg out

        # A walk begun with the embedder up stays hybrid.
        up = search(built, TENANT, "zeppelin", k=3)
        after = search(built, TENANT, "zeppelin", k=3, cursor=up.next_cursor)
        assert [h.chunk_id for h in [*up.hits, *after.hits]] == hybrid
        assert after.degraded == []
    finally:
        built.close()

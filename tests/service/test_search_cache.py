"""The search result cache and the query-embedding LRU, through the search use case.

Computations are counted by the real model's calls (``EmbedderSpy``) and by the
``spine_cache_requests`` metric: a hybrid search that computes its answer embeds the
query once, unless the LRU has its vector; one that finds its answer embeds nothing.
The Redis cases use the Redis at ``SPINE_TEST_REDIS_URL`` (default: this machine's,
database 15), skipped where none answers except in CI, where that fails the run.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import redis

from spine.adapters.cache.redis import RedisCache
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.domain.documents import Chunk, new_id
from spine.domain.search import SearchMode
from spine.errors import TransientError
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.service.search import SearchResult, search
from spine.service.search_cache import SearchCache
from spine.settings import Settings
from support.rows import document_row

TENANT = "acme"
QUERY = "pollinators in alpine meadows"


class EmbedderSpy:
    """The real model, counting its calls. ``down`` makes it fail as a remote embedder
    whose breaker is open does; ``delay`` makes each call that much slower."""

    def __init__(self, inner: MiniLMOnnxEmbedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.calls = 0
        self.down = False
        self.delay = 0.0
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.down:
            raise TransientError("the embedder is down")
        return self.inner.embed(texts)


@pytest.fixture
def spy(embedder: MiniLMOnnxEmbedder) -> EmbedderSpy:
    return EmbedderSpy(embedder)


@pytest.fixture
def services(settings: Settings, spy: EmbedderSpy) -> Iterator[Services]:
    built = bootstrap(settings, embedder=spy)
    yield built
    built.close()


def add_document(
    services: Services, embedder: MiniLMOnnxEmbedder, body: str, tenant: str = TENANT
) -> str:
    """Index a one-chunk document as processing does (its vector from the unspied model)."""
    document_id = new_id("doc")
    vector = embedder.embed([body])[0]
    with services.db.write() as uow:
        uow.documents.add(tenant, document_row(tenant, document_id, title=body, chunk_count=1))
        uow.index.replace(
            tenant,
            document_id,
            body,
            [Chunk(new_id("chk"), document_id, 0, body, 0, len(body), vector)],
        )
    return document_id


@pytest.fixture
def corpus(services: Services, embedder: MiniLMOnnxEmbedder) -> list[str]:
    return [
        add_document(services, embedder, body)
        for body in (
            "Bumblebees and other pollinators visit alpine meadows in July.",
            "The quarterly budget review covers staffing and travel.",
        )
    ]


def lookups(services: Services, cache: str) -> tuple[int, int]:
    """(hits, misses) of one cache so far."""

    def sample(result: str) -> int:
        value = services.metrics.registry.get_sample_value(
            "spine_cache_requests_total", {"cache": cache, "result": result}
        )
        return int(value or 0)

    return sample("hit"), sample("miss")


def run(
    services: Services, query: str = QUERY, *, k: int = 5, tenant: str = TENANT
) -> SearchResult:
    return search(services, tenant, query, mode=SearchMode.HYBRID, k=k)


def ids(result: SearchResult) -> list[str]:
    return [hit.document_id for hit in result.hits]


def in_parallel(calls: list[Services], query: str = QUERY) -> list[SearchResult]:
    """One search per entry, all released at once."""
    start = threading.Barrier(len(calls))

    def one(services: Services) -> SearchResult:
        start.wait()
        return run(services, query)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def test_a_hundred_concurrent_identical_searches_compute_once(
    services: Services, spy: EmbedderSpy, corpus: list[str]
) -> None:
    spy.delay = 0.05  # the first is still computing when the others arrive
    results = in_parallel([services] * 100)

    assert spy.calls == 1
    assert lookups(services, "search") == (99, 1)
    assert [r.cached for r in results].count(False) == 1
    assert {tuple(ids(r)) for r in results} == {tuple(ids(results[0]))}
    assert ids(results[0])[0] == corpus[0]


def test_a_repeated_search_is_answered_from_the_cache(
    services: Services, spy: EmbedderSpy, corpus: list[str]
) -> None:
    first = run(services)
    again = run(services, f"  {QUERY.replace(' ', chr(10) + ' ')} ")  # other whitespace

    assert not first.cached
    assert again.cached
    assert again.hits == first.hits
    assert again.query == QUERY.replace(" ", "\n ")  # each caller's own query, stripped
    assert spy.calls == 1
    assert lookups(services, "search") == (1, 1)


def test_a_repeated_query_makes_no_model_call_when_its_answer_is_not_cached(
    services: Services, spy: EmbedderSpy, embedder: MiniLMOnnxEmbedder, corpus: list[str]
) -> None:
    run(services)
    run(services, k=3)  # another answer, the same query vector
    newest = add_document(services, embedder, "Alpine pollinators: a field guide.")
    after_upload = run(services)  # a new generation: the answer is computed again

    assert newest in ids(after_upload)
    assert not after_upload.cached
    assert spy.calls == 1
    assert lookups(services, "query_embedding") == (2, 1)
    assert lookups(services, "search") == (0, 3)


def test_a_degraded_answer_is_never_cached(services: Services, spy: EmbedderSpy) -> None:
    spy.down = True
    degraded = [run(services), run(services)]
    spy.down = False
    healthy = [run(services), run(services)]

    assert [r.degraded for r in degraded] == [["vector"], ["vector"]]
    assert [r.cached for r in degraded] == [False, False]
    assert [r.degraded for r in healthy] == [[], []]
    assert [r.cached for r in healthy] == [False, True]  # the embedder is asked again
    assert lookups(services, "search") == (1, 3)


def test_concurrent_searches_share_a_degraded_answer_which_is_then_dropped(
    services: Services, spy: EmbedderSpy, corpus: list[str]
) -> None:
    """Within a process the callers wait for the first one's answer, not for the store,
    so even an answer that is not stored is computed once for all of them."""
    spy.down = True
    spy.delay = 0.5  # a timeout: every caller arrives while the first one waits for it
    results = in_parallel([services] * 20)
    spy.down = False

    assert spy.calls == 1
    assert all(r.degraded == ["vector"] for r in results)
    assert ids(results[0])[0] == corpus[0]  # the keyword leg still answers
    assert not run(services).degraded


def test_tenants_never_share_an_answer(
    services: Services, embedder: MiniLMOnnxEmbedder, corpus: list[str]
) -> None:
    mine = run(services)
    theirs = run(services, tenant="rival")
    add_document(services, embedder, "Rival notes on alpine pollinators.", tenant="rival")
    theirs_after = run(services, tenant="rival")

    assert ids(mine)
    assert ids(theirs) == []
    assert not theirs.cached
    assert set(ids(theirs_after)).isdisjoint(corpus)
    assert run(services).cached  # the rival's upload moved only the rival's generation


def sharing(services: Services, client: redis.Redis, redis_prefix: str) -> Services:
    """``services`` as another API process sees it: its own in-process state (flights,
    query vectors), the same database and the same Redis."""
    store = RedisCache(client, prefix=redis_prefix)
    return replace(
        services,
        search_cache=SearchCache.from_settings(store, services.settings, services.metrics),
    )


def test_processes_sharing_redis_share_answers(
    services: Services,
    spy: EmbedderSpy,
    corpus: list[str],
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    first, second = (
        sharing(services, redis_client, redis_prefix),
        sharing(services, redis_client, redis_prefix),
    )
    computed = run(first)
    found = run(second)

    assert not computed.cached
    assert found.cached
    assert found.hits == computed.hits
    assert spy.calls == 1
    assert list(redis_client.scan_iter(f"{redis_prefix}search:*")) != []


def test_processes_sharing_redis_compute_concurrent_misses_once(
    services: Services,
    spy: EmbedderSpy,
    corpus: list[str],
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    first, second = (
        sharing(services, redis_client, redis_prefix),
        sharing(services, redis_client, redis_prefix),
    )
    spy.delay = 0.2  # long enough that the other process's first caller finds the lock held
    results = in_parallel([first, second] * 50)

    assert spy.calls == 1
    assert lookups(services, "search") == (99, 1)
    assert {tuple(ids(r)) for r in results} == {tuple(ids(results[0]))}


def test_a_search_answers_while_redis_is_down(
    services: Services, spy: EmbedderSpy, corpus: list[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisCache.from_url(f"redis://127.0.0.1:{port}/15")
    down = replace(
        services,
        search_cache=SearchCache.from_settings(store, services.settings, services.metrics),
    )
    results = [run(down), run(down)]

    assert [ids(r)[0] for r in results] == [corpus[0], corpus[0]]
    assert [r.cached for r in results] == [False, False]
    assert store.errors >= 1
    assert spy.calls == 1  # the query vector is still this process's own

"""What makes a repeated search cheap: cached answers, and cached query vectors.

**Answers** are kept in a :class:`~spine.ports.Cache` under a digest of everything that
decides them: the database, the tenant, the tenant's index generation, and the normalised
request (the scrubbed query with its whitespace collapsed, the mode, k, the model, the
candidate pool and the fusion constant). Every change to a tenant's index raises its
generation in the same transaction (see ``spine.adapters.sql.generations``), and the
search reads the generation before it computes, so an answer is only ever stored under a
generation at or before the state it was computed from: once an upload's job has
succeeded or a delete has answered, no search can find an answer from before it.
Nothing is purged; unreachable answers expire with their TTL, which is jittered so that
answers cached together (after a deploy, or a burst of traffic) do not all expire, and
all miss, together.

**Single flight**: N concurrent identical misses compute once. Within a process the first
caller of a key computes and the others wait for its result; across processes (a shared
Redis) the caller that takes the store's short fill lock computes, and the others poll
for the value, then compute for themselves if it has not come after
``fill_wait_seconds`` (the one computing may be slow, or gone).

A degraded answer (the vector leg down) is handed to the callers waiting on it but never
stored: the next search should try the embedder again, not keep the keyword-only answer
for a minute after it is back.

**Query vectors** are kept per process in an LRU under (tenant, model, scrubbed query),
so a repeated query makes no model call even when its answer is not cached (after an
upload, or with another k or mode). The tenant is in the key although the vector does not
depend on it: with one shared entry, how fast a query answered would tell a tenant that
another had just searched for the same words.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import structlog

from spine.domain.search import Leg, LegRank, SearchHit
from spine.observability.metrics import Metrics
from spine.ports import Cache, Embedder
from spine.settings import Settings

log = structlog.get_logger("spine.search")

#: Part of every key: answers stored in another format are never read.
FORMAT = 2
#: The fill lock outlives a normal search by far; it only bounds a caller that died.
FILL_LOCK_SECONDS = 10.0
#: How long other processes wait for one computing an answer before they compute too.
FILL_WAIT_SECONDS = 2.0
FIRST_POLL_SECONDS = 0.005
MAX_POLL_SECONDS = 0.05

Record = Callable[[bool], None]


def _ignore(_hit: bool) -> None:
    return None


@dataclass(frozen=True)
class Answer:
    hits: list[SearchHit]
    degraded: list[str] = field(default_factory=list)
    more: bool = False
    """The ranking goes on past these hits."""


def normalise(query: str) -> str:
    """Whitespace collapsed: neither the full-text index nor the model tells runs of
    spaces, tabs or new lines from one space."""
    return " ".join(query.split())


def answer_key(
    database: str, tenant_id: str, generation: int, *, request: Sequence[Any], model_id: str
) -> str:
    """The cache key of one answer: a SHA-256 digest, so no query text is in the store's
    keys. ``request`` is everything else that decides the answer: the scrubbed query
    (what the index is asked; it changes with the tenant's PII policy), the page, the
    filters, the fusion and the ranking settings. The settings are in it because
    processes of two releases, or two configurations, may share one Redis. So is the
    ``database``: generations are small counters of one database, and two deployments
    sharing a Redis (or a database made again from scratch) have the same tenant at the
    same generation with other documents."""
    material = json.dumps(
        [FORMAT, database, tenant_id, generation, model_id, list(request)],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return "search:" + hashlib.sha256(material.encode()).hexdigest()


def jittered(ttl_seconds: float, jitter: float, rng: random.Random) -> float:
    """A TTL between ``ttl_seconds * (1 - jitter)`` and ``ttl_seconds``, uniformly."""
    return ttl_seconds * (1.0 - jitter * rng.random())


def encode(answer: Answer) -> bytes:
    rows = [
        [
            h.document_id,
            h.chunk_id,
            h.title,
            h.score,
            h.snippet,
            {leg.value: [r.rank, r.score, r.weight, r.contribution] for leg, r in h.legs.items()},
        ]
        for h in answer.hits
    ]
    return json.dumps([rows, answer.more], ensure_ascii=False, separators=(",", ":")).encode()


def decode(raw: bytes) -> Answer | None:
    """The answer, or None if ``raw`` is not a stored one (then it is a miss)."""
    try:
        rows, more = json.loads(raw)
        hits = [
            SearchHit(
                str(doc),
                str(chunk),
                str(title),
                float(score),
                str(snippet),
                {Leg(leg): _leg_rank(r) for leg, r in legs.items()},
            )
            for doc, chunk, title, score, snippet, legs in rows
        ]
    except (ValueError, TypeError, AttributeError):
        log.warning("search_cache.undecodable", size=len(raw))
        return None
    return Answer(hits, more=bool(more))


def _leg_rank(raw: Sequence[Any]) -> LegRank:
    rank, score, weight, contribution = raw
    return LegRank(int(rank), float(score), float(weight), float(contribution))


class QueryEmbeddings:
    """An LRU of query vectors, thread-safe. Vectors are kept as arrays of doubles (3 KB
    at 384 dimensions, a quarter of a list of floats), and handed out as fresh lists."""

    def __init__(self, size: int, *, on_lookup: Record = _ignore) -> None:
        self.size = size
        self._record = on_lookup
        self._vectors: OrderedDict[tuple[str, str, str], array[float]] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, embedder: Embedder, tenant_id: str, text: str) -> list[float]:
        """``text``'s vector from the cache, or from ``embedder`` (whose errors pass)."""
        key = (tenant_id, embedder.model_id, text)
        with self._lock:
            found = self._vectors.get(key)
            if found is not None:
                self._vectors.move_to_end(key)
        self._record(found is not None)
        if found is not None:
            return found.tolist()
        vector = embedder.embed([text])[0]
        if self.size > 0:
            with self._lock:
                self._vectors[key] = array("d", vector)
                self._vectors.move_to_end(key)
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return vector

    def __len__(self) -> int:
        return len(self._vectors)


class SearchCache:
    """Cached answers with single flight, and the query vectors (``embeddings``)."""

    def __init__(
        self,
        store: Cache,
        *,
        database: str,
        ttl_seconds: float,
        ttl_jitter: float,
        embeddings: QueryEmbeddings,
        on_lookup: Record = _ignore,
        rng: random.Random | None = None,
        fill_wait_seconds: float = FILL_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        # Only a digest of the URL is kept: it may hold a password.
        self._database = hashlib.sha256(database.encode()).hexdigest()
        self.embeddings = embeddings
        self.ttl_seconds = ttl_seconds
        self.ttl_jitter = ttl_jitter
        self._record = on_lookup
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not a secret
        self._fill_wait_seconds = fill_wait_seconds
        self._sleep = sleep
        self._monotonic = monotonic
        self._flights: dict[str, Future[tuple[Answer, bool]]] = {}
        self._flights_lock = threading.Lock()

    @classmethod
    def from_settings(cls, store: Cache, settings: Settings, metrics: Metrics) -> SearchCache:
        return cls(
            store,
            database=settings.resolved_database_url(),
            ttl_seconds=settings.search_cache_ttl_seconds,
            ttl_jitter=settings.search_cache_ttl_jitter,
            embeddings=QueryEmbeddings(
                settings.query_embedding_cache_size, on_lookup=metrics.cache("query_embedding")
            ),
            on_lookup=metrics.cache("search"),
        )

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    def key(self, tenant_id: str, generation: int, *, request: Sequence[Any], model_id: str) -> str:
        """:func:`answer_key` in this cache's database."""
        return answer_key(self._database, tenant_id, generation, request=request, model_id=model_id)

    def answer(self, key: str, compute: Callable[[], Answer]) -> tuple[Answer, bool]:
        """The answer under ``key``, and whether it came from elsewhere than this call's
        own ``compute`` (the store, or a concurrent caller's computation)."""
        with self._flights_lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if not leading:
            # The leader's errors are this caller's too: it would have met them itself.
            answer, _ = flight.result()
            self._record(True)
            return answer, True
        try:
            outcome = self._fill(key, compute)
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(outcome)
        finally:
            with self._flights_lock:
                del self._flights[key]
        self._record(outcome[1])
        return outcome

    def _fill(self, key: str, compute: Callable[[], Answer]) -> tuple[Answer, bool]:
        """This process's one caller of ``key``: from the store, or computed once across
        the processes sharing it."""
        if not self.enabled:
            return compute(), False
        deadline = self._monotonic() + self._fill_wait_seconds
        delay = FIRST_POLL_SECONDS
        while True:
            cached = self._lookup(key)
            if cached is not None:
                return cached, True
            token = self.store.acquire_fill_lock(key, FILL_LOCK_SECONDS)
            if token is not None:
                try:
                    # Whoever held the lock may have stored the answer since our lookup.
                    cached = self._lookup(key)
                    if cached is not None:
                        return cached, True
                    return self._compute_and_store(key, compute), False
                finally:
                    self.store.release_fill_lock(key, token)
            if self._monotonic() >= deadline:
                log.info("search_cache.fill_wait_expired", waited_seconds=self._fill_wait_seconds)
                return self._compute_and_store(key, compute), False
            self._sleep(delay)
            delay = min(delay * 2, MAX_POLL_SECONDS)

    def _lookup(self, key: str) -> Answer | None:
        raw = self.store.get(key)
        if raw is None:
            return None
        return decode(raw)

    def _compute_and_store(self, key: str, compute: Callable[[], Answer]) -> Answer:
        answer = compute()
        if not answer.degraded:
            ttl = jittered(self.ttl_seconds, self.ttl_jitter, self._rng)
            self.store.set(key, encode(answer), ttl)
        return answer

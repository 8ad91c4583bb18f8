"""The peers ``spine bench search`` measures Spine against, in the same run, on the same
chunks and the same embeddings: Spine's numbers next to what the obvious alternatives do
on this machine, not next to figures from someone else's hardware.

The peers:

* **chroma-embedded**: Chroma's ``PersistentClient`` in this process, the in-process
  vector store people reach for first, as Spine's embedded mode is in-process SQLite.
* **chroma-http**: the same Chroma behind its own server (``chroma run``), queried over
  HTTP, as Spine is when served; its memory is the server process's.
* **pgvector**: the table anyone would write by hand on PostgreSQL 18 + pgvector (an
  HNSW index on the embedding, a stored tsvector with a GIN index), the peer of Spine's
  scale-out mode. PostgreSQL is the project's development cluster
  (spine.devservices.postgres: fsync off, default memory settings) unless a server is
  given.

Measured per peer: the time to insert every id, text and vector and build its indexes;
the latency of top-k vector queries sent one at a time, as a tenant's searches arrive,
after a warm-up on stored vectors; the same for a keyword query where the peer ranks
full-text matches; the recall of its vector top-k against the exact cosine top-k
(numpy, brute force); its bytes on disk after the load; and the memory of its server
process when it runs out of this process. Every query returns ids, texts and scores, as
a search result needs them.

What is and is not comparable:

* Chroma has no ranked full-text search: ``where_document={"$contains": ...}`` filters
  and does not rank, so Chroma has no keyword latency rather than a misleading one.
* PostgreSQL ranks full-text matches with ``ts_rank_cd`` (cover density), not BM25 as
  Spine does; the query is an OR of the query's lexemes, as Spine ORs the query's words
  (``websearch_to_tsquery`` and ``plainto_tsquery`` AND them, which would find fewer
  chunks and so rank fewer).
* Chroma and pgvector search an approximate HNSW graph with their default parameters
  (recorded in each result's notes), while sqlite-vec, under Spine's embedded mode,
  scans exactly: faster or slower, an approximate index may also miss neighbours, which
  recall@k reports.
* Loads differ in durability: the development PostgreSQL runs with fsync off, Chroma
  with its defaults.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from spine.bench.stats import percentile
from spine.devservices.postgres import SUPERUSER, LocalPostgres, free_port
from spine.devservices.readiness import wait_for_http

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from chromadb.config import Settings as ChromaSettings

PEERS = ("chroma-embedded", "chroma-http", "pgvector")

#: Stored vectors queried before the timed queries: caches and lazily loaded index
#: pages warm up without the timed queries themselves having been seen before.
WARMUP_QUERIES = 10
#: A server that answers no heartbeat within this long did not start.
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
#: pgvector's HNSW defaults, written out so that a result records what it measured.
PGVECTOR_HNSW_M = 16
PGVECTOR_HNSW_EF_CONSTRUCTION = 64
#: pgvector's README advises a maintenance_work_mem the graph fits in: a build that
#: overflows it goes on far slower. 384-dim graphs take about 2 KB a chunk.
PGVECTOR_MAINTENANCE_WORK_MEM = "1GB"
TEXT_CONFIG = "english"


@dataclass(frozen=True)
class PeerResult:
    """One peer's numbers. Latencies are ``{"p50", "p95", "p99", "mean"}`` in ms, seen
    by the client (HTTP and the database protocol included); ``keyword_ms`` is None for
    a peer without ranked full-text search. ``recall_at_k`` is the mean share of each
    query's exact top k (cosine, brute force) in the peer's top k. ``rss_bytes`` is the
    memory of the peer's server (see :func:`_server_memory`), None in process or when
    the server was not started by this run."""

    name: str
    version: str
    chunks: int
    load_seconds: float
    vector_ms: dict[str, float]
    keyword_ms: dict[str, float] | None
    recall_at_k: float | None
    disk_bytes: int | None
    bytes_per_chunk: float | None
    rss_bytes: int | None
    notes: str = ""


class PeerError(RuntimeError):
    """A peer could not start, load or answer; the message names it."""

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"peer {peer}: {reason}")
        self.peer = peer


def run_peers(
    names: Sequence[str],
    workdir: Path,
    ids: Sequence[str],
    texts: Sequence[str],
    vectors: npt.NDArray[np.float32],
    query_texts: Sequence[str],
    query_vectors: npt.NDArray[np.float32],
    *,
    k: int = 10,
    on_progress: Callable[[str], None] | None = None,
    postgres_url: str | None = None,
) -> list[PeerResult]:
    """Load the chunks into each named peer in turn and measure it.

    ``vectors`` and ``query_vectors`` are L2-normalised. Each peer keeps its data in a
    folder of ``workdir`` named after it, emptied first. ``postgres_url``, a superuser's
    URL of a PostgreSQL with pgvector, is used instead of starting a cluster: pgvector's
    table then goes into a database of its own there, dropped at the end.

    Every server a peer starts is stopped before the next peer starts, also when the peer
    fails; the failure is raised as a :class:`PeerError` naming the peer.
    """
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise ValueError(f"unknown peers {unknown}; known: {', '.join(PEERS)}")
    data = _Data.checked(ids, texts, vectors, query_texts, query_vectors, k)
    say = on_progress or (lambda _message: None)
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[PeerResult] = []
    for name in names:
        folder = _fresh_folder(workdir / name)
        opener: contextlib.AbstractContextManager[_Peer]
        if name == "chroma-embedded":
            opener = _chroma_embedded(folder)
        elif name == "chroma-http":
            opener = _chroma_http(folder, say)
        else:
            opener = _pgvector(folder, postgres_url, say)
        try:
            with opener as peer:
                results.append(_measure(name, peer, data, say))
        except PeerError:
            raise
        except Exception as exc:
            raise PeerError(name, f"{type(exc).__name__}: {exc}") from exc
    return results


def exact_top_k(
    vectors: npt.NDArray[np.float32], query_vectors: npt.NDArray[np.float32], k: int
) -> npt.NDArray[np.intp]:
    """Row numbers of each query's ``k`` nearest vectors by cosine, nearest first (the
    vectors being unit length, by dot product), by brute force in batches of queries."""
    k = min(k, len(vectors))
    rows: list[npt.NDArray[np.intp]] = []
    # 128 queries against 100,000 vectors is a 51 MB score matrix at a time.
    for start in range(0, len(query_vectors), 128):
        scores = query_vectors[start : start + 128] @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        rows.append(np.take_along_axis(top, order, axis=1))
    if not rows:
        return np.empty((0, k), dtype=np.intp)
    return np.concatenate(rows)


# -- measuring ---------------------------------------------------------------------------


class _Peer(Protocol):
    """One peer, started and empty: what :func:`_measure` needs of it."""

    version: str
    ranks_keywords: bool

    def load(
        self, ids: Sequence[str], texts: Sequence[str], vectors: npt.NDArray[np.float32]
    ) -> None: ...

    def vector_query(self, vector: npt.NDArray[np.float32], k: int) -> list[str]: ...

    def keyword_query(self, text: str, k: int) -> list[str]: ...

    def disk_bytes(self) -> int | None: ...

    def server_pids(self) -> list[int]:
        """The server's processes (its main one first), empty when it runs in this one."""
        ...

    def notes(self, data: _Data) -> str:
        """Parameters and circumstances of the measurement, for the result."""
        ...


@dataclass(frozen=True)
class _Data:
    ids: Sequence[str]
    texts: Sequence[str]
    vectors: npt.NDArray[np.float32]
    query_texts: Sequence[str]
    query_vectors: npt.NDArray[np.float32]
    k: int
    exact: list[set[str]]

    @classmethod
    def checked(
        cls,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: npt.NDArray[np.float32],
        query_texts: Sequence[str],
        query_vectors: npt.NDArray[np.float32],
        k: int,
    ) -> _Data:
        if vectors.ndim != 2 or len(vectors) != len(ids) or len(texts) != len(ids):
            raise ValueError("ids, texts and the rows of vectors must be as many")
        if not len(ids):
            raise ValueError("no chunks to load")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique")
        if query_vectors.ndim != 2 or query_vectors.shape[1] != vectors.shape[1]:
            raise ValueError("query vectors must have the dimension of the vectors")
        if len(query_texts) != len(query_vectors):
            raise ValueError("query_texts and the rows of query_vectors must be as many")
        if k < 1:
            raise ValueError("k must be at least 1")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        query_vectors = np.ascontiguousarray(query_vectors, dtype=np.float32)
        exact = [{ids[row] for row in rows} for rows in exact_top_k(vectors, query_vectors, k)]
        return cls(ids, texts, vectors, query_texts, query_vectors, k, exact)


def _measure(name: str, peer: _Peer, data: _Data, say: Callable[[str], None]) -> PeerResult:
    n = len(data.ids)
    say(f"{name}: loading {n} chunks")
    started = time.perf_counter()
    peer.load(data.ids, data.texts, data.vectors)
    load_seconds = time.perf_counter() - started
    say(f"{name}: loaded in {load_seconds:.1f} s; {len(data.query_vectors)} queries")

    for vector in data.vectors[:WARMUP_QUERIES]:
        peer.vector_query(vector, data.k)
    vector_seconds: list[float] = []
    hits: list[float] = []
    for vector, exact in zip(data.query_vectors, data.exact, strict=True):
        started = time.perf_counter()
        found = peer.vector_query(vector, data.k)
        vector_seconds.append(time.perf_counter() - started)
        hits.append(len(exact.intersection(found[: data.k])) / len(exact))

    keyword_ms: dict[str, float] | None = None
    if peer.ranks_keywords:
        for text in data.texts[:WARMUP_QUERIES]:
            # A few words of a stored chunk, about as long as a query.
            peer.keyword_query(" ".join(text.split()[:8]), data.k)
        keyword_seconds: list[float] = []
        for text in data.query_texts:
            started = time.perf_counter()
            peer.keyword_query(text, data.k)
            keyword_seconds.append(time.perf_counter() - started)
        keyword_ms = _milliseconds(keyword_seconds)

    disk = peer.disk_bytes()
    return PeerResult(
        name=name,
        version=peer.version,
        chunks=n,
        load_seconds=load_seconds,
        vector_ms=_milliseconds(vector_seconds),
        keyword_ms=keyword_ms,
        recall_at_k=sum(hits) / len(hits) if hits else None,
        disk_bytes=disk,
        bytes_per_chunk=disk / n if disk is not None else None,
        rss_bytes=_server_memory(peer.server_pids()),
        notes=peer.notes(data),
    )


def _milliseconds(seconds: Sequence[float]) -> dict[str, float]:
    values = [s * 1000 for s in seconds]
    mean = sum(values) / len(values) if values else float("nan")
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": mean,
    }


def _server_memory(pids: Sequence[int]) -> int | None:
    """Resident memory of a server: the RSS of its one process, or, for a server of
    several (PostgreSQL's postmaster and backends), the sum of their PSS, in which pages
    the processes share (shared buffers, libraries) count once rather than once each."""
    if not pids:
        return None
    psutil = _import_psutil()
    processes: dict[int, Any] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            main = psutil.Process(pid)
            for process in [main, *main.children(recursive=True)]:
                processes[process.pid] = process
    if not processes:
        return None
    if len(processes) == 1:
        return int(next(iter(processes.values())).memory_info().rss)
    total = 0
    for process in processes.values():
        with contextlib.suppress(psutil.Error):  # a backend may exit meanwhile
            info = process.memory_full_info()
            total += int(getattr(info, "pss", info.rss))
    return total


def _import_psutil() -> Any:
    # Here rather than at the top: the server installs without the bench extra.
    import psutil  # type: ignore[import-untyped]  # no stubs installed (types-psutil)

    return psutil


def _fresh_folder(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


# -- Chroma ------------------------------------------------------------------------------


COLLECTION = "spine-bench"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _ChromaPeer:
    """One collection of a Chroma client, in process or over HTTP."""

    ranks_keywords = False

    def __init__(
        self, client: ClientAPI, folder: Path, version: str, server_pid: int | None
    ) -> None:
        self._client = client
        self._folder = folder
        self._server_pid = server_pid
        self.version = version
        # No embedding function: every vector is given, and Chroma's default one would
        # download a model the first time it were asked to embed anything.
        self._collection: Collection = client.create_collection(
            COLLECTION, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )

    def load(
        self, ids: Sequence[str], texts: Sequence[str], vectors: npt.NDArray[np.float32]
    ) -> None:
        batch = self._client.get_max_batch_size()
        for start in range(0, len(ids), batch):
            end = start + batch
            self._collection.add(
                ids=list(ids[start:end]),
                documents=list(texts[start:end]),
                embeddings=vectors[start:end],
            )
        stored = self._collection.count()
        if stored != len(ids):
            raise RuntimeError(f"Chroma holds {stored} of the {len(ids)} chunks added")

    def vector_query(self, vector: npt.NDArray[np.float32], k: int) -> list[str]:
        result = self._collection.query(
            query_embeddings=vector, n_results=k, include=["documents", "distances"]
        )
        return list(result["ids"][0])

    def keyword_query(self, text: str, k: int) -> list[str]:
        raise NotImplementedError("Chroma has no ranked full-text search")

    def disk_bytes(self) -> int:
        return _folder_bytes(self._folder)

    def server_pids(self) -> list[int]:
        return [] if self._server_pid is None else [self._server_pid]

    def notes(self, data: _Data) -> str:
        with warnings.catch_warnings():
            # Chroma stores "no embedding function" as its legacy kind and warns on reading.
            warnings.simplefilter("ignore", DeprecationWarning)
            hnsw = self._collection.configuration.get("hnsw") or {}
        parameters = ", ".join(
            f"{key}={hnsw[key]}"
            for key in ("space", "max_neighbors", "ef_construction", "ef_search")
            if key in hnsw
        )
        return (
            f"HNSW {parameters} (Chroma's defaults, the space set); "
            "no ranked full-text search ($contains filters, unranked): no keyword latency"
        )


def _chroma_settings() -> ChromaSettings:
    from chromadb.config import Settings

    # Telemetry would try the network from a benchmark that should not.
    return Settings(anonymized_telemetry=False)


@contextlib.contextmanager
def _chroma_embedded(folder: Path) -> Iterator[_Peer]:
    # Imported here, as in the other peers: the server installs without the bench extra.
    import chromadb

    client = chromadb.PersistentClient(path=str(folder), settings=_chroma_settings())
    try:
        yield _ChromaPeer(client, folder, importlib.metadata.version("chromadb"), None)
    finally:
        _close_chroma(client)


def _close_chroma(client: ClientAPI) -> None:
    from chromadb.api.client import Client

    # ClientAPI does not declare close(); the client PersistentClient makes has it, and
    # it releases the Rust side's files and memory.
    if isinstance(client, Client):
        client.close()


@contextlib.contextmanager
def _chroma_http(folder: Path, say: Callable[[str], None]) -> Iterator[_Peer]:
    import chromadb

    data = folder / "data"
    log_path = folder / "server.log"
    port = free_port()
    command = [_chroma_executable(), "run", "--path", str(data)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    say(f"chroma-http: starting its server on port {port}")
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 -- chromadb's own CLI, fixed arguments
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        _wait_for_heartbeat(process, f"http://127.0.0.1:{port}/api/v2/heartbeat", log_path)
        client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=_chroma_settings())
        try:
            # The server reports its API's version (1.0.0), not the release: the release is
            # this environment's chromadb, whose CLI it is.
            version = importlib.metadata.version("chromadb")
            yield _ChromaPeer(client, data, version, process.pid)
        finally:
            _close_chroma(client)
    finally:
        _stop(process)


def _chroma_executable() -> str:
    """The ``chroma`` command of this environment's chromadb, the client's own version."""
    beside = Path(sys.executable).parent / "chroma"
    if beside.exists():
        return str(beside)
    found = shutil.which("chroma")
    if found is None:
        raise RuntimeError("no chroma command next to this Python or on PATH")
    return found


def _wait_for_heartbeat(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    outcome = wait_for_http(process, url, timeout=START_TIMEOUT_SECONDS)
    if outcome == "ready":
        return
    if outcome == "exited":
        raise RuntimeError(
            f"the Chroma server exited ({process.returncode}): {_tail(log)} (log: {log})"
        )
    raise RuntimeError(
        f"the Chroma server answered no heartbeat within {START_TIMEOUT_SECONDS:.0f} s; "
        f"{_tail(log)} (log: {log})"
    )


def _tail(log: Path) -> str:
    """The log's last line, without the terminal colours Chroma writes it in."""
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = [line.strip() for line in _ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
    return lines[-1] if lines else "nothing in its log"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server and whatever it started: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    psutil = _import_psutil()
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


# -- pgvector ----------------------------------------------------------------------------


class _PgvectorPeer:
    """The ``chunks`` table, on a connection to a database of its own."""

    ranks_keywords = True

    _VECTOR_QUERY = (
        "SELECT id, body, embedding <=> %(vector)s AS distance"
        " FROM chunks ORDER BY distance LIMIT %(k)s"
    )
    # plainto_tsquery ANDs the query's lexemes; its text form ('a' & 'b'), with each ' & '
    # turned into ' | ', is their OR, as Spine's query is. Lexemes hold no spaces, so
    # the replacement cannot reach into one.
    _KEYWORD_QUERY = (
        "SELECT id, body, ts_rank_cd(tsv, query) AS score"  # noqa: S608 -- constants only
        " FROM chunks, CAST(replace("
        f"CAST(plainto_tsquery('{TEXT_CONFIG}', %(text)s) AS text), ' & ', ' | '"
        ") AS tsquery) AS query"
        " WHERE tsv @@ query ORDER BY score DESC LIMIT %(k)s"
    )

    def __init__(self, conn: psycopg.Connection[Any], server_pids: list[int], note: str) -> None:
        from pgvector.psycopg import register_vector

        self._conn = conn
        self._server_pids = server_pids
        self._note = note
        self._steps: dict[str, float] = {}
        register_vector(conn)
        server = conn.execute("SHOW server_version").fetchone()
        extension = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        if server is None or extension is None:
            raise RuntimeError("the database has no vector extension")
        self.version = f"PostgreSQL {server[0]} + pgvector {extension[0]}"

    def load(
        self, ids: Sequence[str], texts: Sequence[str], vectors: npt.NDArray[np.float32]
    ) -> None:
        conn = self._conn
        conn.execute(
            sql.SQL(
                "CREATE TABLE chunks (id text PRIMARY KEY, body text NOT NULL,"
                " embedding vector({}) NOT NULL,"
                " tsv tsvector GENERATED ALWAYS AS (to_tsvector({}, body)) STORED)"
            ).format(sql.Literal(vectors.shape[1]), sql.Literal(TEXT_CONFIG))
        )
        with self._step("copy"), conn.cursor() as cursor:
            copy_rows = "COPY chunks (id, body, embedding) FROM STDIN WITH (FORMAT BINARY)"
            with cursor.copy(copy_rows) as copy:
                copy.set_types(["text", "text", "vector"])
                for row in zip(ids, texts, vectors, strict=True):
                    copy.write_row(row)
        conn.execute(
            sql.SQL("SET maintenance_work_mem = {}").format(
                sql.Literal(PGVECTOR_MAINTENANCE_WORK_MEM)
            )
        )
        with self._step("hnsw"):
            conn.execute(
                sql.SQL(
                    "CREATE INDEX chunks_embedding ON chunks"
                    " USING hnsw (embedding vector_cosine_ops)"
                    " WITH (m = {}, ef_construction = {})"
                ).format(sql.Literal(PGVECTOR_HNSW_M), sql.Literal(PGVECTOR_HNSW_EF_CONSTRUCTION))
            )
        with self._step("gin"):
            conn.execute("CREATE INDEX chunks_tsv ON chunks USING gin (tsv)")
        with self._step("analyze"):
            conn.execute("ANALYZE chunks")

    def vector_query(self, vector: npt.NDArray[np.float32], k: int) -> list[str]:
        rows = self._conn.execute(self._VECTOR_QUERY, {"vector": vector, "k": k}).fetchall()
        return [row[0] for row in rows]

    def keyword_query(self, text: str, k: int) -> list[str]:
        rows = self._conn.execute(self._KEYWORD_QUERY, {"text": text, "k": k}).fetchall()
        return [row[0] for row in rows]

    def disk_bytes(self) -> int:
        row = self._conn.execute("SELECT pg_total_relation_size('chunks')").fetchone()
        return int(row[0]) if row is not None else 0

    def server_pids(self) -> list[int]:
        return self._server_pids

    def notes(self, data: _Data) -> str:
        settings = {
            name: self._show(name) for name in ("hnsw.ef_search", "shared_buffers", "work_mem")
        }
        steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self._steps.items())
        plans = self._plans(data)
        return (
            f"HNSW m={PGVECTOR_HNSW_M}, ef_construction={PGVECTOR_HNSW_EF_CONSTRUCTION}"
            f" (pgvector's defaults), ef_search={settings['hnsw.ef_search']},"
            f" built after the COPY with maintenance_work_mem={PGVECTOR_MAINTENANCE_WORK_MEM};"
            f" load: {steps}; keyword: OR of the query's lexemes ('english'), ranked by"
            f" ts_rank_cd (not BM25); shared_buffers={settings['shared_buffers']},"
            f" work_mem={settings['work_mem']}; plans: {plans}; {self._note}"
        )

    @contextlib.contextmanager
    def _step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self._steps[name] = time.perf_counter() - started

    def _show(self, setting: str) -> str:
        row = self._conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()
        return str(row[0]) if row is not None else "?"

    def _plans(self, data: _Data) -> str:
        """Which access paths the planner picked for the queries: the vector search
        should walk the HNSW graph (on a small table it scans, and is then exact); a
        keyword query matching a large share of the chunks scans rather than use GIN."""
        if not len(data.query_vectors):
            return "none"
        vector = self._plan(self._VECTOR_QUERY, {"vector": data.query_vectors[0], "k": data.k})
        keyword = [
            self._plan(self._KEYWORD_QUERY, {"text": text, "k": data.k})
            for text in data.query_texts
        ]
        counts = ", ".join(f"{keyword.count(plan)} {plan}" for plan in sorted(set(keyword)))
        return f"vector queries {vector}; keyword queries: {counts}"

    def _plan(self, query: str, params: dict[str, Any]) -> str:
        rows = self._conn.execute(f"EXPLAIN (COSTS OFF) {query}", params).fetchall()
        plan = " ".join(str(row[0]) for row in rows)
        for index in ("chunks_embedding", "chunks_tsv"):
            if index in plan:
                return f"use {index}"
        return "scan the table" if "Seq Scan" in plan else "use no index"


@contextlib.contextmanager
def _pgvector(
    folder: Path, postgres_url: str | None, say: Callable[[str], None]
) -> Iterator[_Peer]:
    if postgres_url is not None:
        with (
            _database_on(postgres_url) as (url, note),
            psycopg.connect(url, autocommit=True) as conn,
        ):
            yield _PgvectorPeer(conn, [], note)
        return
    root, temporary = _cluster_root(folder)
    cluster = LocalPostgres(root)
    say(f"pgvector: starting PostgreSQL under {root}")
    try:
        cluster.start()
        note = "the development cluster of spine.devservices (fsync off)"
        if temporary:
            note += f", in {root.parent} (the postgres user cannot reach {folder})"
        with _database_on(cluster.url()) as (url, _), psycopg.connect(url, autocommit=True) as conn:
            yield _PgvectorPeer(conn, [_postmaster_pid(cluster)], note)
    finally:
        cluster.stop()
        if temporary:
            shutil.rmtree(root.parent, ignore_errors=True)


@contextlib.contextmanager
def _database_on(admin_url: str) -> Iterator[tuple[str, str]]:
    """A database of its own with pgvector, on the server of ``admin_url`` (a superuser:
    pgvector is not a trusted extension), dropped at the end."""
    name = f"spine_bench_peer_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_conninfo(admin_url, dbname=name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield url, "a server given to the bench; its memory is not measured"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _cluster_root(folder: Path) -> tuple[Path, bool]:
    """Where the cluster goes: in ``folder``, unless this runs as root and the postgres
    user, whom the server runs as, cannot reach it (a pytest temporary folder, a
    checkout under a private home); then in a temporary folder, removed afterwards."""
    if os.geteuid() != 0 or _reachable_by(SUPERUSER, folder):
        return folder / "cluster", False
    parent = Path(tempfile.mkdtemp(prefix="spine-bench-pgvector-"))
    parent.chmod(0o755)
    return parent / "cluster", True


def _reachable_by(user: str, folder: Path) -> bool:
    """Whether ``user`` may enter ``folder`` and every folder above it (ACLs aside)."""
    import grp  # Unix only, as running as root is
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return False
    groups = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for path in (folder.resolve(), *folder.resolve().parents):
        info = path.stat()
        if info.st_uid == entry.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def _postmaster_pid(cluster: LocalPostgres) -> int:
    return int((cluster.data / "postmaster.pid").read_text().splitlines()[0])

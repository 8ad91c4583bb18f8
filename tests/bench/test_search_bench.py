"""`spine bench search` fits together: the cached sentence vectors, the chunk vectors made
from them, the store loaded through the index port, the floor that runs Spine's own index
queries, and the numbers and files a run reports. No timing thresholds: speed belongs to
the bench's own results, not to tests."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import sqlean
import sqlite_vec
from typer.testing import CliRunner

from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.bench import corpus
from spine.bench import search as bench
from spine.bench.peers import PeerResult
from spine.cli import app
from spine.domain.search import SearchMode
from spine.service import search as search_service
from spine.service.bootstrap import bootstrap

SLICE = Path(__file__).parent / "data" / "scifact-slice"
#: Few sentences, so the pool embeds in about a second; the chunks still recombine them.
POOL_SENTENCES = 120
SIZES = (100, 300)
QUERIES = 8
REPEATS = 2
PEERS = ("fake-peer",)

Vectors = npt.NDArray[np.float32]


class CountingEmbedder:
    """Test double: the real model, counting the texts it is asked to embed."""

    def __init__(self, inner: MiniLMOnnxEmbedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self.inner.embed(texts)


class FakePeers:
    """Test double of spine.bench.peers: records what it is given."""

    PEERS = PEERS

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def run_peers(
        self,
        names: Sequence[str],
        workdir: Path,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Vectors,
        query_texts: Sequence[str],
        query_vectors: Vectors,
        *,
        k: int = 10,
        on_progress: Any = None,
    ) -> list[PeerResult]:
        self.calls.append(
            {
                "names": list(names),
                "ids": list(ids),
                "texts": list(texts),
                "vectors": vectors.copy(),
                "query_texts": list(query_texts),
                "query_vectors": query_vectors.copy(),
                "k": k,
            }
        )
        timing = {"p50": 2.0, "p95": 3.0, "p99": 4.0, "mean": 2.5}
        return [PeerResult(names[0], "0.0", len(ids), 0.1, timing, None, 1.0, 100, 1.0, None)]


@pytest.fixture(scope="module")
def pool() -> corpus.SentencePool:
    return corpus.load_pool(SLICE, size=POOL_SENTENCES)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("search-cache")


@pytest.fixture(scope="module")
def embedded(
    pool: corpus.SentencePool, embedder: MiniLMOnnxEmbedder, cache_dir: Path
) -> tuple[Vectors, CountingEmbedder]:
    """The pool's sentence vectors, embedded once for the module (and cached)."""
    counting = CountingEmbedder(embedder)
    matrix, reused = bench.sentence_vectors(pool, counting, cache_dir)
    assert not reused
    return matrix, counting


@contextmanager
def kept_sqlite(directory: Path, embedder: MiniLMOnnxEmbedder) -> Iterator[bench.SqliteBackend]:
    """bench.sqlite_backend without the removal: the test reads the store afterwards."""
    services = bootstrap(bench.store_settings(directory), embedder=embedder)
    backend = bench.SqliteBackend(services, directory / "spine.db")
    try:
        yield backend
    finally:
        backend.close()
        services.close()


@dataclass(frozen=True)
class Measured:
    result: bench.SearchBenchResult
    stores: dict[int, Path]
    peers: FakePeers
    written: list[Path]


@pytest.fixture(scope="module")
def measured(
    pool: corpus.SentencePool,
    embedder: MiniLMOnnxEmbedder,
    embedded: tuple[Vectors, CountingEmbedder],
    cache_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Measured:
    """One small run of the whole bench, with a fake peer, its stores kept."""
    root = tmp_path_factory.mktemp("search-run")
    stores: dict[int, Path] = {}

    def open_store(size: int) -> Any:
        stores[size] = root / f"store-{size}"
        return kept_sqlite(stores[size], embedder)

    peers = FakePeers()
    plan = bench.Plan(sizes=SIZES, queries=QUERIES, repeats=REPEATS, warmup=2, peers=PEERS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "_peers_module", lambda: (peers, None))
        result = bench.run(
            pool, embedder, open_store, plan, cache_dir=cache_dir, peers_workdir=root / "peers"
        )
    written = bench.write(result, root / "out")
    return Measured(result, stores, peers, written)


def _stored(path: Path) -> list[tuple[str, str, Vectors]]:
    """Every chunk of the store: id, text and vector as vec0 holds it."""
    conn = sqlean.connect(str(path / "spine.db"))
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    rows = conn.execute(
        "SELECT c.id, c.text, v.embedding FROM chunks AS c "
        "JOIN chunks_vec AS v ON v.rowid = c.seq ORDER BY c.seq"
    ).fetchall()
    conn.close()
    return [(row[0], row[1], np.frombuffer(row[2], dtype="<f4")) for row in rows]


def _cosine(a: Vectors, b: Vectors) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# -- vectors ------------------------------------------------------------------------------


def test_sentence_vectors_are_cached_and_reused(
    pool: corpus.SentencePool,
    embedder: MiniLMOnnxEmbedder,
    embedded: tuple[Vectors, CountingEmbedder],
    cache_dir: Path,
) -> None:
    first, counted = embedded
    assert counted.texts == len(pool.sentences)
    assert bench.cache_path(cache_dir, pool, embedder.model_id).is_file()
    again = CountingEmbedder(embedder)
    second, reused = bench.sentence_vectors(pool, again, cache_dir)
    assert reused
    assert again.texts == 0
    np.testing.assert_array_equal(first, second)
    # Row i is sentence i's, though the slices went to the model longest first.
    expected = np.asarray(embedder.embed([pool.sentences[0], pool.sentences[57]]))
    np.testing.assert_allclose(first[[0, 57]], expected, atol=1e-5)


def test_a_cache_of_the_wrong_shape_is_embedded_again(
    embedder: MiniLMOnnxEmbedder, tmp_path: Path
) -> None:
    pool = corpus.SentencePool(("Cells divide.", "Proteins fold.", "Genes express."), "test")
    np.save(bench.cache_path(tmp_path, pool, embedder.model_id), np.zeros((2, 3), np.float32))
    counting = CountingEmbedder(embedder)
    matrix, reused = bench.sentence_vectors(pool, counting, tmp_path)
    assert not reused
    assert counting.texts == 3
    assert matrix.shape == (3, embedder.dimension)


def test_a_chunk_vector_is_the_normalised_mean_of_its_sentences(
    pool: corpus.SentencePool, embedded: tuple[Vectors, CountingEmbedder]
) -> None:
    sentences, _ = embedded
    chunks = corpus.chunk_texts(pool, 40, seed=3)
    vectors = bench.chunk_vectors(chunks, sentences, block=16)  # blocks change nothing
    for chunk, vector in zip(chunks, vectors, strict=True):
        mean = sentences[list(chunk.sentences)].mean(axis=0)
        assert _cosine(vector, mean) == pytest.approx(1.0, abs=1e-5)
        assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


def test_exact_top_k_and_recall() -> None:
    vectors = np.eye(4, dtype=np.float32)
    query = np.asarray([[0.9, 0.1, 0.4, 0.0]], dtype=np.float32)
    assert bench.exact_top_k(vectors, query, 2) == [[0, 2]]
    assert bench.recall_at_k([[2, 3]], [[0, 2]]) == 0.5


# -- the store and its floor --------------------------------------------------------------


def test_the_floor_runs_the_index_queries_spine_runs(
    pool: corpus.SentencePool,
    embedder: MiniLMOnnxEmbedder,
    embedded: tuple[Vectors, CountingEmbedder],
    tmp_path: Path,
) -> None:
    chunks = corpus.chunk_texts(pool, 200, seed=5)
    vectors = bench.chunk_vectors(chunks, embedded[0])
    ids = [f"chk_{i:04d}" for i in range(len(chunks))]
    with bench.sqlite_backend(tmp_path / "store", embedder) as backend:
        documents = bench.load(backend.services, chunks, vectors, ids, per_document=3)
        backend.settle()
        keys = backend.chunk_ids()
        assert documents == 67  # 200 chunks, three to a document
        assert sorted(keys.values()) == ids
        position = {key: ids.index(chunk_id) for key, chunk_id in keys.items()}
        for text in corpus.queries(pool, 6, seed=9):
            keyword = search_service.run(
                backend.services,
                bench.TENANT,
                search_service.SearchRequest(text, SearchMode.KEYWORD),
            )
            floor = backend.keyword_floor(backend.keyword_terms(text), 100)
            assert keyword.hits
            assert [keys[key] for key in floor[:10]] == [hit.chunk_id for hit in keyword.hits]

            query_vector = np.asarray(embedder.embed([text])[0], dtype=np.float32)
            semantic = search_service.run(
                backend.services,
                bench.TENANT,
                search_service.SearchRequest(text, SearchMode.SEMANTIC),
            )
            nearest = backend.vector_floor(query_vector, 100)
            assert [keys[key] for key in nearest[:10]] == [hit.chunk_id for hit in semantic.hits]
            # vec0 searches exactly: its neighbours are numpy's.
            (exact,) = bench.exact_top_k(vectors, query_vector[None, :], 10)
            assert {position[key] for key in nearest[:10]} == set(exact)
        assert backend.database_bytes() > 0
    assert not (tmp_path / "store").exists()


def test_the_store_holds_each_size_with_mean_vectors(
    measured: Measured, pool: corpus.SentencePool, embedded: tuple[Vectors, CountingEmbedder]
) -> None:
    chunks = corpus.chunk_texts(pool, max(SIZES))
    by_text = dict(zip((c.text for c in chunks), chunks, strict=True))
    for size in SIZES:
        stored = _stored(measured.stores[size])
        assert len(stored) == size
        for _, text, vector in stored[:: size // 10]:
            mean = embedded[0][list(by_text[text].sentences)].mean(axis=0)
            assert _cosine(vector, mean) == pytest.approx(1.0, abs=1e-5)
    assert [(s.chunks, s.documents) for s in measured.result.sizes] == [(100, 25), (300, 75)]


# -- the numbers --------------------------------------------------------------------------


def test_percentiles_are_ordered_and_every_repeat_is_kept(measured: Measured) -> None:
    for size in measured.result.sizes:
        assert set(size.modes) == {"keyword", "semantic", "hybrid"}
        assert set(size.floor) == {"fts", "vector", "embed_query", *bench.COMBINED_FLOORS}
        for latency in [*size.modes.values(), *size.floor.values()]:
            assert 0 < latency.p50_ms <= latency.p95_ms <= latency.p99_ms
            assert len(latency.runs) == REPEATS
            low, high = latency.spread["p50_ms"]
            assert low <= latency.p50_ms <= high
            for run in latency.runs:
                assert run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]


def test_combined_floors_are_per_query_sums(measured: Measured) -> None:
    for size in measured.result.sizes:
        floor = size.floor
        # Per repeat, the mean of per-query sums is the sum of the means; over two repeats
        # the median is their average, so the same holds for the medians.
        assert floor["vector+embed"].mean_ms == pytest.approx(
            floor["vector"].mean_ms + floor["embed_query"].mean_ms, abs=0.01
        )


def test_ratios_are_the_quotients_of_the_numbers_shown(measured: Measured) -> None:
    for size in measured.result.sizes:
        for name, (mode, below) in bench.RATIOS.items():
            for statistic in ("p50", "p95"):
                shown = getattr(size.modes[mode], f"{statistic}_ms") / getattr(
                    size.floor[below], f"{statistic}_ms"
                )
                assert size.ratios[f"{name}_{statistic}"] == pytest.approx(shown, abs=1e-3)


def test_recall_store_size_and_memory(measured: Measured) -> None:
    for size in measured.result.sizes:
        assert size.recall_at_10_semantic == pytest.approx(1.0)  # vec0 searches exactly
        assert size.bytes_per_chunk == pytest.approx(size.database_bytes / size.chunks, abs=0.1)
        assert size.estimate_bytes_per_chunk == pytest.approx(
            size.mean_chunk_chars + bench.VECTOR_BYTES, abs=0.1
        )
        assert size.peak_rss_bytes is None or size.peak_rss_bytes > 0


def test_peers_get_exactly_what_spine_got(measured: Measured, embedder: MiniLMOnnxEmbedder) -> None:
    calls = measured.peers.calls
    assert [call["names"] for call in calls] == [list(PEERS)] * len(SIZES)
    for call, chunks in zip(calls, SIZES, strict=True):
        stored = _stored(measured.stores[chunks])
        assert call["ids"] == [chunk_id for chunk_id, _, _ in stored]
        assert call["texts"] == [text for _, text, _ in stored]
        np.testing.assert_allclose(call["vectors"], np.stack([v for _, _, v in stored]))
        expected = np.asarray(embedder.embed(call["query_texts"]), dtype=np.float32)
        np.testing.assert_allclose(call["query_vectors"], expected, atol=1e-5)
        assert len(call["query_texts"]) == QUERIES
        assert call["k"] == bench.K
    for size in measured.result.sizes:
        (peer,) = size.peers
        assert peer["name"] == "fake-peer"
        assert peer["spine_semantic_over_peer_p50"] == pytest.approx(
            size.modes["semantic"].p50_ms / 2.0, abs=1e-3
        )
        assert peer["spine_vector_floor_over_peer_p50"] == pytest.approx(
            size.floor["vector"].p50_ms / 2.0, abs=1e-3
        )
    assert measured.result.machine["peer fake-peer"] == "0.0"


def test_resolve_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bench.resolve_peers("none") == ((), None)
    monkeypatch.setattr(bench, "_peers_module", lambda: (SimpleNamespace(PEERS=("a", "b")), None))
    assert bench.resolve_peers("all") == (("a", "b"), None)
    assert bench.resolve_peers("b, a, b") == (("b", "a"), None)
    with pytest.raises(ValueError, match="not c"):
        bench.resolve_peers("a,c")
    monkeypatch.setattr(bench, "_peers_module", lambda: (None, "it is not there"))
    assert bench.resolve_peers("all") == ((), "peers skipped: it is not there")


def test_files_are_written(measured: Measured) -> None:
    names = sorted(path.name for path in measured.written)
    assert names == ["search.json", "search.md", "search.png"]
    folder = measured.written[0].parent
    data = json.loads((folder / "search.json").read_text())
    assert {"machine", "source", "vectors", "database", "sizes"} <= set(data)
    assert "latency, not quality" in data["vectors"]
    assert data["database"] == "sqlite"
    assert data["machine"]["sqlite-vec"]
    size = data["sizes"][0]
    for key in (
        "chunks",
        "documents",
        "load_seconds",
        "modes",
        "floor",
        "ratios",
        "recall_at_10_semantic",
        "bytes_per_chunk",
        "estimate_bytes_per_chunk",
        "peak_rss_bytes",
        "peers",
    ):
        assert key in size
    assert set(size["modes"]["keyword"]) >= {"p50_ms", "p95_ms", "p99_ms", "mean_ms", "runs"}
    assert {"fts", "vector", "embed_query"} <= set(size["floor"])
    assert "keyword_p50" in size["ratios"]
    text = (folder / "search.md").read_text()
    assert "latency, not quality" in text
    assert "| Spine keyword |" in text


# -- the command --------------------------------------------------------------------------


@pytest.mark.usefixtures("logging_restored")
def test_the_command_reuses_the_cache_and_writes_its_files(
    embedded: tuple[Vectors, CountingEmbedder], cache_dir: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "search",
            *("--source", str(SLICE), "--pool-size", str(POOL_SENTENCES)),
            *("--chunks", "120", "--queries", "3", "--repeats", "1", "--warmup", "1"),
            *("--peers", "none", "--cache-dir", str(cache_dir), "--out", str(tmp_path)),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "search.json").read_text())
    assert data["sentence_vectors"]["reused"] is True
    assert data["sizes"][0]["chunks"] == 120
    assert (tmp_path / "search.md").is_file()


def test_the_command_says_what_is_wrong_with_its_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "search", "--source", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "no such file" in result.output
    assert "Traceback" not in result.output

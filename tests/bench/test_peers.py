"""The peers of `spine bench search`, for real: Chroma in process and behind its own
server, and pgvector on PostgreSQL 18, on 200 random unit vectors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psutil
import pytest

import support.postgres
from spine.bench import peers
from spine.bench.peers import PEERS, PeerError, PeerResult, exact_top_k, run_peers

pytestmark = pytest.mark.slow

N = 200
#: Rows queried with their own vector (for the own-id-first test) or a nudged copy of it.
QUERY_ROWS = [3, 50, 99, 150, 199]
UNIQUE_ROW = 17
UNIQUE_WORD = "quetzalcoatl"
VOCABULARY = [
    "river", "stone", "lantern", "harbour", "meadow", "copper", "violin", "orchard",
    "glacier", "tunnel", "compass", "parcel", "saddle", "marble", "thunder", "willow",
    "pepper", "canyon", "ribbon", "falcon",
]  # fmt: skip


@dataclass(frozen=True)
class Corpus:
    ids: list[str]
    texts: list[str]
    vectors: npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    rng = np.random.default_rng(7)
    vectors = _unit(rng.standard_normal((N, 384)))
    texts = [" ".join(rng.choice(VOCABULARY, size=150)) for _ in range(N)]
    texts[UNIQUE_ROW] += f" and one {UNIQUE_WORD} among them"
    return Corpus([f"doc-{i}" for i in range(N)], texts, vectors)


@pytest.fixture
def pg_admin_url() -> str:
    """The test run's PostgreSQL (tests/support/postgres.py), as its superuser: the peer
    makes a database of its own there. Required in CI, skipped elsewhere without one."""
    support.postgres.require()
    return os.environ[support.postgres.ADMIN_URL_ENV]


def _unit(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def _processes_under(folder: Path) -> list[psutil.Process]:
    """Processes whose command line names ``folder``: the servers a run started in it."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(folder) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def test_run_peers_measures_every_peer(tmp_path: Path, corpus: Corpus, pg_admin_url: str) -> None:
    rng = np.random.default_rng(8)
    # Nudged copies of stored vectors: near neighbours exist, but none is the query.
    nudged = corpus.vectors[QUERY_ROWS] + rng.standard_normal((5, 384)).astype(np.float32) * 0.01
    messages: list[str] = []

    results = run_peers(
        PEERS,
        tmp_path,
        corpus.ids,
        corpus.texts,
        corpus.vectors,
        [f"{UNIQUE_WORD} river", "copper willow", "falcon", "the of and", "harbour stone"],
        _unit(nudged.astype(np.float64)),
        k=10,
        on_progress=messages.append,
        postgres_url=pg_admin_url,
    )

    assert [r.name for r in results] == list(PEERS)
    by_name = {r.name: r for r in results}
    for result in results:
        assert result.version
        assert result.chunks == N
        assert result.load_seconds > 0
        _assert_latencies(result.vector_ms)
        # HNSW on 200 vectors finds practically all of them (PostgreSQL may even scan).
        assert result.recall_at_k is not None
        assert result.recall_at_k >= 0.9
        assert result.disk_bytes is not None
        assert result.disk_bytes > 0
        assert result.bytes_per_chunk == pytest.approx(result.disk_bytes / N)
        assert "HNSW" in result.notes
        assert any(message.startswith(f"{result.name}: loading") for message in messages)
    assert by_name["chroma-embedded"].keyword_ms is None
    assert by_name["chroma-http"].keyword_ms is None
    assert "no ranked full-text search" in by_name["chroma-http"].notes
    keyword_ms = by_name["pgvector"].keyword_ms
    assert keyword_ms is not None
    _assert_latencies(keyword_ms)
    assert by_name["pgvector"].version.startswith("PostgreSQL 18")
    assert "pgvector" in by_name["pgvector"].version
    # In process, or a server this run did not start: no memory of its own to report.
    assert by_name["chroma-embedded"].rss_bytes is None
    assert by_name["pgvector"].rss_bytes is None
    rss = by_name["chroma-http"].rss_bytes
    assert rss is not None
    assert rss > 10_000_000
    assert _processes_under(tmp_path) == []
    assert (tmp_path / "chroma-http" / "server.log").stat().st_size > 0


def _assert_latencies(summary: dict[str, float]) -> None:
    assert set(summary) == {"p50", "p95", "p99", "mean"}
    assert 0 < summary["p50"] <= summary["p95"] <= summary["p99"]
    assert summary["mean"] > 0


class EmbeddingAttempted(AssertionError):
    """Chroma tried to embed a text itself, which needs a model download."""


def refuse_to_embed(*_args: object, **_kwargs: object) -> None:
    raise EmbeddingAttempted("Chroma's default embedding function was called")


def test_each_peer_finds_a_stored_vector_first(
    tmp_path: Path, corpus: Corpus, pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "__call__", refuse_to_embed)
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "_download_model_if_not_exists", refuse_to_embed)
    rows = QUERY_ROWS

    results = run_peers(
        PEERS,
        tmp_path,
        corpus.ids,
        corpus.texts,
        corpus.vectors,
        ["river"] * len(rows),
        corpus.vectors[rows],
        k=1,
        postgres_url=pg_admin_url,
    )

    # The exact top 1 of a stored vector is itself: recall@1 of 1.0 is its own id first.
    assert {r.name: r.recall_at_k for r in results} == dict.fromkeys(PEERS, 1.0)


def test_pgvector_ranks_the_chunk_with_a_unique_word(
    tmp_path: Path, corpus: Corpus, pg_admin_url: str
) -> None:
    with peers._pgvector(tmp_path, pg_admin_url, lambda _message: None) as peer:
        peer.load(corpus.ids, corpus.texts, corpus.vectors)

        assert peer.keyword_query(UNIQUE_WORD, 10) == [f"doc-{UNIQUE_ROW}"]
        # The query's words are OR-ed (and stemmed): the common word adds every other
        # chunk. ts_rank_cd weighs no word by its rarity, so the rare one need not rank first.
        either = peer.keyword_query(f"{UNIQUE_WORD.upper()}s falcon", N)
        assert f"doc-{UNIQUE_ROW}" in either
        assert len(either) > N // 2
        assert peer.keyword_query("the of and", 10) == []
        assert peer.vector_query(corpus.vectors[42], 3)[0] == "doc-42"


class InjectedPeerFailure(RuntimeError):
    """Raised by the test double below while the peer's server runs."""


@dataclass
class FailWhileTheServerRuns:
    """Stands in for the measurement: notes the server's processes, then fails."""

    seen: list[psutil.Process]

    def __call__(self, name: str, peer: peers._Peer, *_args: object) -> PeerResult:
        for pid in peer.server_pids():
            main = psutil.Process(pid)
            self.seen += [main, *main.children(recursive=True)]
        assert self.seen, f"{name} started no server"
        assert all(process.is_running() for process in self.seen)
        raise InjectedPeerFailure(f"{name} failed on purpose")


@pytest.fixture
def fail_while_the_server_runs(monkeypatch: pytest.MonkeyPatch) -> FailWhileTheServerRuns:
    double = FailWhileTheServerRuns([])
    monkeypatch.setattr(peers, "_measure", double)
    return double


@pytest.mark.parametrize("name", ["chroma-http", "pgvector"])
def test_a_failing_peer_is_named_and_its_server_stopped(
    name: str, tmp_path: Path, corpus: Corpus, fail_while_the_server_runs: FailWhileTheServerRuns
) -> None:
    with pytest.raises(PeerError, match=f"^peer {name}: InjectedPeerFailure") as raised:
        run_peers(
            [name], tmp_path, corpus.ids, corpus.texts, corpus.vectors, ["x"], corpus.vectors[:1]
        )

    assert isinstance(raised.value.__cause__, InjectedPeerFailure)
    assert raised.value.peer == name
    _gone, alive = psutil.wait_procs(fail_while_the_server_runs.seen, timeout=10)
    assert alive == []


def test_a_peer_that_cannot_start_is_named(
    tmp_path: Path, corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "chroma" command that exits at once, as one of a broken install would.
    monkeypatch.setattr(peers, "_chroma_executable", lambda: "false")

    with pytest.raises(
        PeerError, match=r"^peer chroma-http: RuntimeError: the Chroma server exited"
    ):
        run_peers(
            ["chroma-http"], tmp_path, corpus.ids, corpus.texts, corpus.vectors, ["x"],
            corpus.vectors[:1],
        )  # fmt: skip


def test_pgvector_on_a_cluster_of_its_own(
    tmp_path: Path, corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `spine bench search` does: start PostgreSQL, measure its memory, stop it."""
    roots: list[tuple[Path, bool]] = []
    choose_root = peers._cluster_root

    def record_root(folder: Path) -> tuple[Path, bool]:
        roots.append(choose_root(folder))
        return roots[-1]

    monkeypatch.setattr(peers, "_cluster_root", record_root)
    [result] = run_peers(
        ["pgvector"], tmp_path, corpus.ids, corpus.texts, corpus.vectors, ["river"],
        corpus.vectors[:1], k=5,
    )  # fmt: skip

    assert result.rss_bytes is not None
    assert result.rss_bytes > 1_000_000
    assert "development cluster" in result.notes
    [(root, temporary)] = roots
    assert _processes_under(root) == []
    # As root, with tmp_path out of the postgres user's reach, the cluster went elsewhere.
    assert not root.parent.exists() if temporary else root.is_relative_to(tmp_path)


def test_exact_top_k_is_nearest_first() -> None:
    vectors = _unit(np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], dtype=np.float64))
    queries = _unit(np.array([[1, 0.1], [-1, -0.1]], dtype=np.float64))

    assert exact_top_k(vectors, queries, 2).tolist() == [[0, 1], [3, 2]]
    assert exact_top_k(vectors, queries, 10).shape == (2, 4)


def test_unknown_peers_and_mismatched_inputs_are_refused(tmp_path: Path, corpus: Corpus) -> None:
    with pytest.raises(ValueError, match="unknown peers"):
        run_peers(
            ["faiss"], tmp_path, corpus.ids, corpus.texts, corpus.vectors, [], corpus.vectors[:0]
        )
    with pytest.raises(ValueError, match="as many"):
        run_peers(
            ["pgvector"],
            tmp_path,
            corpus.ids[:5],
            corpus.texts,
            corpus.vectors,
            [],
            corpus.vectors[:0],
        )

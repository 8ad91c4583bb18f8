"""`spine bench ingest`: pages of the committed SciFact slice through the real pipeline,
measured the way the full run measures them; relations that must hold, not speeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.conftest import SLICE
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.bench import corpus, ingest
from spine.bench.stats import Spread, significant
from spine.cli import app
from spine.service.container import Services
from spine.settings import Settings


def test_significant_digits_and_spreads() -> None:
    assert significant(1234.56) == 1235
    assert significant(0.000123456) == pytest.approx(0.0001235)
    assert significant(-98.765, 3) == -98.8
    assert significant(0.0) == 0.0
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(median=2.0, min=1.0, max=3.0)
    with pytest.raises(ValueError, match="at least one value"):
        Spread.of([])


def test_one_ingest_and_a_steady_phase_agree_with_what_spine_stored(
    fresh_services: Services,
) -> None:
    pool = corpus.load_pool(SLICE)
    pages = list(corpus.pages(pool, 6, seed=3))
    events: list[tuple[str, int, int]] = []
    ingested = ingest.ingest(
        fresh_services, pages, workers=2, on_progress=lambda *event: events.append(event)
    )
    run = ingested.run

    with fresh_services.db.read() as uow:
        stored = uow.documents.list(ingest.TENANT, limit=100, after=None)
        in_index = [
            chunk.text
            for document in stored
            for chunk in uow.index.chunks(ingest.TENANT, document.id)
        ]
    assert len(stored) == run.documents == 6
    assert run.chunks == len(in_index) == len(ingested.chunk_texts) > run.documents
    assert run.chunks == sum(document.chunk_count for document in stored)
    assert sorted(ingested.chunk_texts) == sorted(in_index)
    assert run.text_bytes == sum(len(page.text.encode()) for page in pages)
    assert 0 < run.upload_seconds <= run.seconds
    assert run.docs_per_second == pytest.approx(run.documents / run.seconds, rel=1e-2)
    assert run.chunks_per_second == pytest.approx(run.chunks / run.seconds, rel=1e-2)
    assert 0 < run.cpu_share <= 1
    assert run.database_bytes > run.empty_database_bytes > 0
    assert run.blob_bytes >= run.text_bytes
    assert run.peak_rss_bytes > 0
    if sys.platform.startswith("linux"):
        # The extraction children are alive until the services close.
        assert run.extraction_peak_rss_bytes is not None
        assert 0 < run.extraction_peak_rss_bytes < run.peak_rss_bytes
    assert ("uploading", 6, 6) in events
    assert ("processing", 6, 6) in events

    steady = ingest.steady(
        fresh_services, pool, rate=5, seconds=0.6, workers=2, on_progress=lambda *_: None
    )
    assert (steady.documents, steady.errors, steady.index_documents) == (3, 0, 6)
    assert len(steady.latencies_seconds) == 3
    assert all(latency > 0 for latency in steady.latencies_seconds)
    assert 0 < steady.p50_seconds <= steady.p95_seconds <= steady.p99_seconds
    assert steady.p99_seconds <= steady.max_seconds
    assert steady.max_seconds == pytest.approx(max(steady.latencies_seconds), rel=1e-3)
    assert 0 < steady.achieved_rate <= steady.rate
    with fresh_services.db.read() as uow:
        assert len(uow.documents.list(ingest.STEADY_TENANT, limit=100, after=None)) == 3


def test_cli_writes_every_size_and_the_steady_phase(
    tmp_path: Path,
    embedder: MiniLMOnnxEmbedder,
    monkeypatch: pytest.MonkeyPatch,
    logging_restored: None,
) -> None:
    # The session's model, not a second copy; idle workers look for jobs often.
    monkeypatch.setattr("spine.service.bootstrap.open_embedder", lambda _settings: embedder)
    monkeypatch.setenv("SPINE_JOB_POLL_SECONDS", "0.05")
    result = CliRunner().invoke(
        app,
        [
            "bench", "ingest", "--documents", "2,3", "--source", str(SLICE), "--repeats", "2",
            "--embed-sample", "4", "--embed-repeats", "2", "--steady-rate", "4",
            "--steady-seconds", "0.5", "--out", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wall time" in result.output
    assert {path.name for path in tmp_path.iterdir()} == {"ingest.json", "ingest.md", "ingest.png"}
    written = json.loads((tmp_path / "ingest.json").read_text())
    assert set(written) >= {"machine", "source", "workers", "sizes", "steady"}
    assert (written["source"], written["workers"]) == (str(SLICE), 2)
    assert written["machine"]["sqlite-vec"]
    assert [size["documents"] for size in written["sizes"]] == [2, 3]
    for size in written["sizes"]:
        assert len(size["runs"]) == 2
        # The same seeded pages each run: the same chunks.
        assert {run["chunks"] for run in size["runs"]} == {size["chunks"]}
        for key in (
            "docs_per_second",
            "docs_per_second_per_worker",
            "chunks_per_second",
            "chunks_per_second_per_worker",
            "bytes_per_second",
            "cpu_share",
            "embedder_chunks_per_second",
        ):
            spread = size[key]
            assert 0 < spread["min"] <= spread["median"] <= spread["max"], key
        rates = [run["chunks_per_second"] for run in size["runs"]]
        assert size["chunks_per_second"]["min"] == min(rates)
        assert size["chunks_per_second_per_worker"]["median"] == pytest.approx(
            size["chunks_per_second"]["median"] / 2, rel=1e-3
        )
        assert size["ratio_to_embedder"] == pytest.approx(
            size["chunks_per_second"]["median"] / size["embedder_chunks_per_second"]["median"],
            rel=1e-3,
        )
        assert size["embedder_sample_chunks"] == min(4, size["chunks"])
        assert size["bytes_per_chunk"] == pytest.approx(
            size["database_bytes"] / size["chunks"], rel=1e-3
        )
        assert size["estimate_bytes_per_chunk"] == pytest.approx(
            size["mean_chunk_chars"] + 384 * 4, rel=1e-3
        )
        assert size["chunks_per_document"] == pytest.approx(
            size["chunks"] / size["documents"], rel=1e-3
        )
        assert size["peak_rss_bytes"] > 0
    steady = written["steady"]
    assert (steady["rate"], steady["documents"], steady["errors"]) == (4, 2, 0)
    assert 0 < steady["p50_seconds"] <= steady["p95_seconds"] <= steady["p99_seconds"]
    assert steady["p99_seconds"] <= steady["max_seconds"]
    assert steady["index_documents"] == 3
    markdown = (tmp_path / "ingest.md").read_text()
    assert "| documents | chunks |" in markdown
    assert "## Upload to searchable at a steady rate" in markdown


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--source", "/nonexistent/beir"], "no such file"),
        (["--documents", "10,ten"], "--documents takes whole numbers"),
        (["--documents", "0"], "--documents must be positive"),
        (["--steady-rate", "-1"], "--steady-rate must be positive"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bench", "ingest", *arguments])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_only_the_embedded_stores_are_measured(embedder: MiniLMOnnxEmbedder) -> None:
    settings = Settings(blob_url="s3://bucket/prefix")
    pool = corpus.load_pool(SLICE)
    with pytest.raises(ingest.BenchError, match="unset SPINE_BLOB_URL"):
        ingest.run(pool, [1], settings=settings, embedder=embedder, workers=1)

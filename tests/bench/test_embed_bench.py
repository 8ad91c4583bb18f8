"""`spine bench embed` fits together: real chunks, the real model, a JSON result."""

from __future__ import annotations

import json
from pathlib import Path

from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.bench import embed as bench
from spine.pipeline.chunk import approximate_token_count


def test_chunks_from_stdlib_prose_reach_the_chunk_target() -> None:
    chunks = bench.make_chunks(bench.stdlib_texts(), 20, 256)
    assert len(chunks) == 20
    sizes = [approximate_token_count(chunk) for chunk in chunks]
    assert max(sizes) <= 256 + 64
    assert sorted(sizes)[len(sizes) // 2] > 128  # joined into documents, not docstring-sized


def test_chunks_from_a_beir_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    records = [
        {"_id": str(i), "title": f"Doc {i}", "text": "Cells divide. " * 400} for i in range(3)
    ]
    corpus.write_text("\n".join(json.dumps(r) for r in records))
    chunks = bench.make_chunks(bench.beir_texts(corpus), 5, 64)
    assert len(chunks) == 5
    assert all("Cells divide." in chunk for chunk in chunks)


def test_run_reports_every_repeat_and_writes_json(
    embedder: MiniLMOnnxEmbedder, tmp_path: Path
) -> None:
    chunks = bench.make_chunks(bench.stdlib_texts(), 8, 256)
    seen: list[int] = []
    result = bench.run(
        lambda: embedder, chunks, batch_size=4, repeats=2, on_run=lambda i, _r: seen.append(i)
    )
    assert seen == [0, 1]
    assert result.chunks == 8
    assert result.model_id == embedder.model_id
    assert 0 < result.chunks_per_second_min <= result.chunks_per_second_median
    assert result.chunks_per_second_median <= result.chunks_per_second_max
    written = json.loads(bench.write(result, tmp_path).read_text())
    assert written["chunks_per_second_median"] == result.chunks_per_second_median
    assert written["machine"]["cpus"]

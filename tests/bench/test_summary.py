"""`spine bench all`'s summary: every headline is a field, or a quotient of fields, of
the results files it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spine.bench import summary


def latency(p50: float) -> dict[str, float]:
    return {"p50_ms": p50, "p95_ms": 2 * p50, "p99_ms": 3 * p50}


def search_results() -> dict[str, Any]:
    ratios = {
        f"{mode}_{p}": 1.5 for mode in ("keyword", "semantic", "hybrid") for p in ("p50", "p95")
    }
    peer = {"name": "chroma-embedded", "vector_ms": {"p50": 2.0}, "recall_at_k": 0.8}
    size = {
        "chunks": 1000,
        "modes": {"keyword": latency(4), "semantic": latency(10), "hybrid": latency(12)},
        "floor": {"vector": latency(5)},
        "ratios": ratios | {"semantic_p50": 2.5},
        "peers": [peer],
    }
    return {"sizes": [size], "machine": {"python": "3.11", "chromadb": "1.5.9"}}


def write(folder: Path, name: str, data: dict[str, Any]) -> None:
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_headlines_are_the_fields_and_quotients_of_the_results(tmp_path: Path) -> None:
    write(tmp_path, "search", search_results())
    write(tmp_path, "http", {"scenarios": {"search-uncached": {"highest_rate_within_slo": 40}}})

    result = summary.summarize(tmp_path, {"search": 12.5})
    values = {headline.what: headline.value for headline in result.headlines}

    assert values["search semantic, 1000 chunks: p50 / p95 / p99 ms"] == "10 / 20 / 30"
    assert values["search semantic, 1000 chunks: Spine / raw index floor, p50 (p95)"] == (
        "2.50x (1.50x)"
    )
    peer = next(v for k, v in values.items() if k.startswith("vs chroma-embedded"))
    assert peer == "5.00x (2.50x; 0.80)"  # 10 / 2, 5 / 2, recall
    assert values["http search-uncached: highest rate within its objective"] == "40/s"
    assert result.machine == {"python": "3.11", "chromadb": "1.5.9"}
    written = summary.write(result, tmp_path)
    assert "| search semantic, 1000 chunks: p50 / p95 / p99 ms | 10 / 20 / 30 |" in (
        written[1].read_text()
    )
    assert json.loads(written[0].read_text())["seconds"] == {"search": 12.5}


def test_a_results_file_without_a_field_names_the_bench_to_rerun(tmp_path: Path) -> None:
    data = search_results()
    del data["sizes"][0]["ratios"]
    write(tmp_path, "search", data)

    with pytest.raises(summary.SummaryError, match="rerun `spine bench search`"):
        summary.summarize(tmp_path, {})


def test_parts_that_did_not_run_are_left_out(tmp_path: Path) -> None:
    assert summary.summarize(tmp_path, {}).headlines == []

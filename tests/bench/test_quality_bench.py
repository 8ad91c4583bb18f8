"""`spine bench quality`: a BEIR slice through the real pipeline, scored by ir_measures."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.conftest import SLICE, TENANT, Ingested, bench_settings
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.bench import quality
from spine.cli import app
from spine.domain.jobs import JobState
from spine.domain.search import SearchMode
from spine.service import documents
from spine.service.bootstrap import bootstrap
from spine.service.container import Services

# -- Loading ----------------------------------------------------------------------------


def test_slice_loads_with_every_judged_query() -> None:
    dataset = quality.load_dataset(SLICE, "test")
    assert dataset.name == "scifact-slice"
    assert len(dataset.corpus) == 99
    assert len(dataset.queries) == 20
    assert set(dataset.qrels) == set(dataset.queries)
    corpus_ids = {document.beir_id for document in dataset.corpus}
    assert all(doc_id in corpus_ids for docs in dataset.qrels.values() for doc_id in docs)


def write_beir(folder: Path, *, qrels: str = "query-id\tcorpus-id\tscore\nq2\td1\t1\n") -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "cells"}\n\n{"_id": 7, "text": "seven"}\n'
    )
    (folder / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "unjudged"}\n{"_id": "q2", "text": "cells?"}\n'
        '{"_id": "q3", "text": "also judged"}\n'
    )
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_only_judged_queries_are_kept_in_file_order(tmp_path: Path) -> None:
    folder = write_beir(
        tmp_path / "tiny", qrels="query-id\tcorpus-id\tscore\nq3\t7\t2\nq2\td1\t1\n"
    )
    dataset = quality.load_dataset(folder, "test")
    assert list(dataset.queries) == ["q2", "q3"]
    assert dataset.qrels == {"q2": {"d1": 1}, "q3": {"7": 2}}
    assert [document.beir_id for document in dataset.corpus] == ["d1", "7"]
    assert dataset.corpus[1].title == ""
    assert list(quality.load_dataset(folder, "test", limit_queries=1).qrels) == ["q2"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: shutil.rmtree(f), "no dataset folder at"),
        (lambda f: (f / "corpus.jsonl").unlink(), "corpus.jsonl is missing: a BEIR folder"),
        (lambda f: (f / "queries.jsonl").unlink(), "queries.jsonl is missing"),
        (lambda f: (f / "qrels" / "test.tsv").unlink(), "no qrels for split 'test'"),
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "d1"\n'), "corpus.jsonl:1: not JSON"),
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "d1"}\n'), "corpus.jsonl:1: no text"),
        (lambda f: (f / "corpus.jsonl").write_text(""), "holds no documents"),
        (
            lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"),
            "holds no judgements",
        ),
        (
            lambda f: (f / "qrels" / "test.tsv").write_text("q2\td1\tyes\n"),
            "test.tsv:1: score 'yes' is not a whole number",
        ),
        (
            lambda f: (f / "qrels" / "test.tsv").write_text("q9\td1\t1\n"),
            "judges none of the queries",
        ),
    ],
)
def test_an_unreadable_dataset_is_one_clear_error(
    tmp_path: Path, damage: Callable[[Path], object], message: str
) -> None:
    folder = write_beir(tmp_path / "tiny")
    damage(folder)
    with pytest.raises(quality.DatasetError, match=message):
        quality.load_dataset(folder, "test")


def test_a_missing_split_names_the_splits_there(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "tiny")
    with pytest.raises(quality.DatasetError, match=r"train.tsv is missing \(splits here: test\)"):
        quality.load_dataset(folder, "train")


# -- Mapping and scoring ----------------------------------------------------------------


def test_run_keeps_spines_order_and_names_documents_by_beir_id() -> None:
    beir_ids = {"doc_a": ("1",), "doc_b": ("2", "2-copy")}
    run = quality.to_run({"q": ["doc_b", "doc_x", "doc_a"], "empty": []}, beir_ids)
    assert list(run["q"]) == ["2", "2-copy", "doc_x", "1"]
    assert sorted(run["q"].values(), reverse=True) == list(run["q"].values())
    assert len(set(run["q"].values())) == 4  # no ties for trec_eval to reorder
    assert run["empty"] == {}


def test_every_judged_query_counts_even_without_hits() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    both = quality.evaluate(qrels, {"q1": {"d1": 2.0, "d9": 1.0}, "q2": {"d2": 1.0}})
    assert both == {"ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}
    one = quality.evaluate(qrels, {"q1": {"d9": 2.0, "d1": 1.0}})
    assert one == {
        "ndcg@10": pytest.approx(0.63093 / 2, abs=1e-5),
        "recall@100": 0.5,
        "mrr@10": 0.25,
    }


# -- Ingesting and searching the slice ---------------------------------------------------


def test_slice_ingest_maps_every_document(slice_ingested: Ingested) -> None:
    ingested = slice_ingested.ingested
    assert ingested.uploaded == ingested.documents == 99
    assert sorted(name for names in ingested.beir_ids.values() for name in names) == sorted(
        document.beir_id for document in slice_ingested.dataset.corpus
    )
    assert ingested.chunks >= ingested.documents


def test_a_mismatched_id_mapping_scores_far_lower(slice_ingested: Ingested) -> None:
    """The floor below can only hold when Spine's ids are mapped back to the right BEIR ids."""
    dataset, ingested = slice_ingested.dataset, slice_ingested.ingested
    searched = quality.search_queries(
        slice_ingested.services, TENANT, dataset.queries, SearchMode.KEYWORD
    )
    right = quality.evaluate(dataset.qrels, quality.to_run(searched.ranking, ingested.beir_ids))
    spine_ids = sorted(ingested.beir_ids)
    rotated = dict(zip(spine_ids, [*spine_ids[1:], spine_ids[0]], strict=True))
    wrong_ids = {spine_id: ingested.beir_ids[rotated[spine_id]] for spine_id in spine_ids}
    wrong = quality.evaluate(dataset.qrels, quality.to_run(searched.ranking, wrong_ids))
    assert right["ndcg@10"] > 0.6
    assert wrong["ndcg@10"] < right["ndcg@10"] / 3


def test_cli_reuses_the_data_dir_and_writes_every_mode(
    slice_ingested: Ingested, tmp_path: Path, logging_restored: None
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench", "quality", "--dataset", str(SLICE), "--data-dir",
            str(slice_ingested.data_dir), "--out", str(tmp_path), "--workers", "1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "0 uploaded, the rest found in" in result.output
    written = json.loads((tmp_path / "quality-scifact-slice-test.json").read_text())
    assert (written["dataset"], written["split"]) == ("scifact-slice", "test")
    assert (written["documents"], written["queries"], written["uploaded"]) == (99, 20, 0)
    assert written["chunks"] == slice_ingested.ingested.chunks
    assert written["ranking"]["search_cache_ttl_seconds"] == 0
    assert written["ranking"]["k"] == 100
    assert written["machine"]["ir-measures"]
    assert set(written["modes"]) == {"hybrid", "keyword", "semantic"}
    for mode in written["modes"].values():
        assert mode["queries"] == 20
        assert mode["refused"] == 0
        assert set(mode["metrics"]) == {"ndcg@10", "recall@100", "mrr@10"}
        assert all(0.0 <= value <= 1.0 for value in mode["metrics"].values())
        # Measured on this slice: 0.90 (keyword) to 0.98 (semantic); recall 0.95 to 1.
        assert mode["metrics"]["ndcg@10"] > 0.6
        assert mode["metrics"]["recall@100"] > 0.8
        assert 0 < mode["latency_ms_median"] <= mode["latency_ms_p95"]


def test_a_half_ingested_tenant_is_completed_not_trusted(fresh_services: Services) -> None:
    corpus = quality.load_dataset(SLICE, "test").corpus[:5]
    # An earlier run that stopped after two uploads, before any was processed.
    for document in corpus[:2]:
        documents.upload(fresh_services, TENANT, quality.as_upload(document))
    ingested = quality.ingest(fresh_services, TENANT, corpus, workers=2, poll_seconds=0.05)
    assert (ingested.uploaded, ingested.documents) == (3, 5)
    stored = list(quality.tenant_documents(fresh_services, TENANT))
    assert {document.status for document in stored} == {JobState.SUCCEEDED}
    assert ingested.chunks == sum(document.chunk_count for document in stored)
    with pytest.raises(quality.BenchError, match=r"1 document\(s\) that are not in this corpus"):
        quality.ingest(fresh_services, TENANT, corpus[:4], workers=1)


def test_a_failed_job_stops_the_bench_with_its_error(fresh_services: Services) -> None:
    broken = quality.CorpusDocument("pdf-1", "Not text", "%PDF-1.7\n" + "garbage " * 50)
    with pytest.raises(quality.BenchError, match=r"1 document\(s\) failed processing; e.g. pdf-1"):
        quality.ingest(fresh_services, TENANT, [broken], workers=1, poll_seconds=0.05)


def test_cli_refuses_an_unknown_mode_and_a_missing_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["bench", "quality", "--dataset", str(SLICE), "--modes", "bm25"])
    assert unknown.exit_code == 1
    assert "--modes takes hybrid, keyword, semantic" in unknown.output
    missing = runner.invoke(app, ["bench", "quality", "--dataset", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert "no dataset folder at" in missing.output
    assert "Traceback" not in missing.output


def test_a_data_dir_indexed_with_other_chunking_is_refused(
    tmp_path: Path, embedder: MiniLMOnnxEmbedder
) -> None:
    corpus = quality.load_dataset(SLICE, "test").corpus[:1]
    first = bootstrap(bench_settings(tmp_path / "data"), embedder=embedder)
    try:
        quality.ingest(first, TENANT, corpus, workers=1, poll_seconds=0.05)
    finally:
        first.close()
    other = bench_settings(tmp_path / "data").model_copy(update={"chunk_target_tokens": 128})
    second = bootstrap(other, embedder=embedder)
    try:
        with pytest.raises(quality.BenchError, match="chunk_target_tokens 256 -> 128"):
            quality.ingest(second, TENANT, corpus, workers=1)
        assert quality.ingest(second, "another", corpus, workers=1).uploaded == 1
    finally:
        second.close()

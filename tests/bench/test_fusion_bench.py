"""`spine bench fusion`: every ranking of a grid, scored as `spine bench quality` scores one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench.conftest import SLICE, Ingested
from spine.bench import fusion
from spine.cli import app
from spine.domain.search import Fusion, FusionMethod

DEFAULT_GRID = fusion.Grid.parse(
    rrf_k=fusion.DEFAULT_RRF_K,
    keyword_weights=fusion.DEFAULT_KEYWORD_WEIGHTS,
    title_weights=fusion.DEFAULT_TITLE_WEIGHTS,
)


def run_bench(command: str, data_dir: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    result = CliRunner().invoke(
        app,
        [
            "bench", command, "--dataset", str(SLICE), "--split", "test",
            "--data-dir", str(data_dir), "--out", str(out),
        ],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written: dict[str, Any] = json.loads((out / f"{command}-scifact-slice-test.json").read_text())
    return written


def metrics_by_label(swept: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {point["label"]: point["metrics"] for point in swept["points"]}


# -- The grid ---------------------------------------------------------------------------


def test_the_grid_holds_each_leg_alone_every_fusion_and_the_configured_one() -> None:
    default = fusion.Point.hybrid(Fusion(FusionMethod.WEIGHTED, 10, 0.5), 2.0)
    assert default == fusion.Point("weighted", 2.0, None, 0.5)  # k plays no part in it
    points = DEFAULT_GRID.points(default)
    assert len(points) == len(set(points)) == 2 + 1 + 4 * 5 * 2 + 5 * 2
    alone = [point.label for point in points[:3]]
    assert alone == ["keyword title=1", "keyword title=2", "semantic"]
    outside = fusion.Point.hybrid(Fusion(FusionMethod.RRF, 30, 0.6), 1.0)
    assert DEFAULT_GRID.points(outside)[-1] == outside
    assert outside.label == "rrf k=30 w=0.6 title=1"


# -- The sweep on the slice ---------------------------------------------------------------


def test_the_results_file_holds_every_grid_point(
    slice_ingested: Ingested, tmp_path: Path, logging_restored: None
) -> None:
    swept = run_bench("fusion", slice_ingested.data_dir, tmp_path, env={})
    assert (swept["dataset"], swept["split"], swept["queries"], swept["refused"]) == (
        "scifact-slice",
        "test",
        20,
        0,
    )
    assert (swept["documents"], swept["uploaded"]) == (99, 0)
    expected = {point.label for point in DEFAULT_GRID.points(fusion.Point("semantic"))}
    assert set(metrics_by_label(swept)) == expected
    for metrics in metrics_by_label(swept).values():
        assert set(metrics) == {"ndcg@10", "recall@100", "mrr@10"}
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
    assert swept["default"] == "weighted w=0.5 title=2"
    best = max(swept["points"], key=lambda point: point["metrics"]["ndcg@10"])
    assert swept["best"] == best["label"]
    assert swept["grid"] == {
        "rrf_k": [5, 10, 20, 60],
        "keyword_weights": [0.3, 0.4, 0.5, 0.6, 0.7],
        "title_weights": [1.0, 2.0],
    }
    ranking = swept["ranking"]
    assert (ranking["search_keyword_candidates"], ranking["search_vector_candidates"]) == (100, 100)
    assert ranking["model_id"]
    assert swept["machine"]["ir-measures"]


@pytest.mark.parametrize(
    "env",
    [
        {},
        # A fusion outside the grid, with the other title weight: it is scored all the same.
        {
            "SPINE_SEARCH_FUSION": "rrf",
            "SPINE_RRF_K": "30",
            "SPINE_SEARCH_KEYWORD_WEIGHT": "0.6",
            "SPINE_SEARCH_TITLE_WEIGHT": "1",
        },
    ],
    ids=["defaults", "rrf-outside-the-grid"],
)
def test_each_leg_alone_and_the_configured_fusion_score_what_bench_quality_reports(
    slice_ingested: Ingested, tmp_path: Path, logging_restored: None, env: dict[str, str]
) -> None:
    """The sweep ranks from legs fetched once; search fetches them per mode. The same
    numbers prove the sweep scores what a tenant would get."""
    swept = run_bench("fusion", slice_ingested.data_dir, tmp_path, env)
    measured = run_bench("quality", slice_ingested.data_dir, tmp_path, env)
    modes = {mode: result["metrics"] for mode, result in measured["modes"].items()}
    scored = metrics_by_label(swept)
    title = float(env.get("SPINE_SEARCH_TITLE_WEIGHT", "2"))
    assert scored[f"keyword title={title:g}"] == modes["keyword"]
    assert scored["semantic"] == modes["semantic"]
    assert scored[swept["default"]] == modes["hybrid"]
    assert len(swept["points"]) == 53 + (1 if env else 0)


# -- Refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--rrf-k", "0", "--rrf-k takes whole numbers of at least 1, comma-separated; '0'"),
        ("--rrf-k", "10,2.5", "--rrf-k takes whole numbers of at least 1, comma-separated; '2.5'"),
        ("--keyword-weights", "1.5", "--keyword-weights takes numbers from 0 to 1,"),
        ("--keyword-weights", "abc", "comma-separated; 'abc' is not one"),
        ("--keyword-weights", "0.5,", "comma-separated; '' is not one"),
        ("--title-weights", "0", "--title-weights takes numbers above 0 and at most 100"),
    ],
)
def test_a_bad_grid_value_is_one_readable_line(option: str, value: str, message: str) -> None:
    result = CliRunner().invoke(app, ["bench", "fusion", "--dataset", str(SLICE), option, value])
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_tuning_reads_the_train_split_unless_told_otherwise() -> None:
    result = CliRunner().invoke(app, ["bench", "fusion", "--dataset", str(SLICE)])
    assert result.exit_code == 1
    assert "no qrels for split 'train'" in result.output

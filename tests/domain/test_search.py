"""Reciprocal rank fusion."""

from __future__ import annotations

import pytest

from spine.domain.search import Candidate, reciprocal_rank_fusion


def keys(candidates: list[Candidate]) -> list[int]:
    return [c.chunk_key for c in candidates]


def test_rrf_scores_are_sums_of_reciprocal_ranks() -> None:
    keyword = [Candidate(1, 9.0), Candidate(2, 5.0)]
    vector = [Candidate(2, 0.9), Candidate(3, 0.8)]
    fused = reciprocal_rank_fusion([keyword, vector], k=60)
    scores = {c.chunk_key: c.score for c in fused}
    assert scores[2] == pytest.approx(1 / 62 + 1 / 61)
    assert scores[1] == pytest.approx(1 / 61)
    assert scores[3] == pytest.approx(1 / 62)
    assert keys(fused) == [2, 1, 3]


def test_rrf_ignores_raw_scores_and_respects_limit() -> None:
    a = [Candidate(10, 1000.0), Candidate(11, 0.001)]
    b = [Candidate(11, -5.0), Candidate(12, 1.0)]
    assert keys(reciprocal_rank_fusion([a, b], k=1, limit=1)) == [11]


def test_rrf_of_one_leg_keeps_its_order() -> None:
    leg = [Candidate(i, float(-i)) for i in range(5)]
    assert keys(reciprocal_rank_fusion([leg])) == [0, 1, 2, 3, 4]


def test_rrf_of_nothing_is_empty() -> None:
    assert reciprocal_rank_fusion([[], []]) == []

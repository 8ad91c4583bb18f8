"""Rank fusion, grouping and query terms: the ranking core, without any index."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spine.domain.search import (
    Candidate,
    Fusion,
    FusionMethod,
    Leg,
    LegRank,
    QueryTerms,
    Ranked,
    best_per_document,
    fuse,
    rank_single,
)

RRF = Fusion(FusionMethod.RRF, rrf_k=60, keyword_weight=0.5)
WEIGHTED = Fusion(FusionMethod.WEIGHTED, keyword_weight=0.5)


def cand(key: int, score: float, document: str | None = None) -> Candidate:
    return Candidate(key, document or f"doc-{key}", score)


def keys(ranked: list[Ranked]) -> list[int]:
    return [r.chunk_key for r in ranked]


def test_rrf_scores_are_weighted_sums_of_reciprocal_ranks() -> None:
    keyword = [cand(1, 9.0), cand(2, 5.0)]
    vector = [cand(2, 0.9), cand(3, 0.8)]
    fused = fuse({Leg.KEYWORD: keyword, Leg.VECTOR: vector}, RRF)
    scores = {r.chunk_key: r.score for r in fused}
    assert scores[2] == pytest.approx(0.5 / 62 + 0.5 / 61)
    assert scores[1] == pytest.approx(0.5 / 61)
    assert scores[3] == pytest.approx(0.5 / 62)
    assert keys(fused) == [2, 1, 3]


def test_rrf_ignores_raw_scores() -> None:
    a = [cand(10, 1000.0), cand(11, 0.001)]
    b = [cand(11, -5.0), cand(12, 1.0)]
    fused = fuse({Leg.KEYWORD: a, Leg.VECTOR: b}, Fusion(rrf_k=1))
    assert keys(fused)[0] == 11


def test_rrf_weight_moves_a_leg_ahead() -> None:
    keyword = [cand(1, 9.0)]
    vector = [cand(2, 0.9)]
    legs = {Leg.KEYWORD: keyword, Leg.VECTOR: vector}
    assert keys(fuse(legs, Fusion(keyword_weight=0.7))) == [1, 2]
    assert keys(fuse(legs, Fusion(keyword_weight=0.3))) == [2, 1]


def test_weighted_fusion_normalises_each_leg_to_its_own_range() -> None:
    # BM25 in the hundreds, cosine below 1: without min-max the keyword leg would win
    # every time; normalised, the best of each leg counts the same.
    keyword = [cand(1, 300.0), cand(2, 200.0), cand(3, 100.0)]
    vector = [cand(3, 0.9), cand(4, 0.5), cand(1, 0.1)]
    fused = {r.chunk_key: r for r in fuse({Leg.KEYWORD: keyword, Leg.VECTOR: vector}, WEIGHTED)}
    assert fused[1].score == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert fused[2].score == pytest.approx(0.5 * 0.5)
    assert fused[3].score == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert fused[4].score == pytest.approx(0.5 * 0.5)


def test_weighted_fusion_of_equal_scores_gives_each_the_full_weight() -> None:
    fused = fuse({Leg.KEYWORD: [cand(1, 2.0), cand(2, 2.0)]}, WEIGHTED)
    assert [r.score for r in fused] == [0.5, 0.5]


def test_fusion_explains_each_legs_rank_score_weight_and_contribution() -> None:
    keyword = [cand(7, 4.0), cand(8, 3.0)]
    vector = [cand(8, 0.8)]
    fusion = Fusion(rrf_k=10, keyword_weight=0.25)
    by_key = {r.chunk_key: r for r in fuse({Leg.KEYWORD: keyword, Leg.VECTOR: vector}, fusion)}
    assert by_key[8].legs == {
        Leg.KEYWORD: LegRank(2, 3.0, 0.25, 0.25 / 12),
        Leg.VECTOR: LegRank(1, 0.8, 0.75, 0.75 / 11),
    }
    assert by_key[7].legs == {Leg.KEYWORD: LegRank(1, 4.0, 0.25, 0.25 / 11)}
    for ranked in by_key.values():
        assert ranked.score == pytest.approx(sum(r.contribution for r in ranked.legs.values()))


@given(
    st.lists(st.floats(-1e6, 1e6), max_size=30),
    st.lists(st.floats(-1.0, 1.0), max_size=30),
    st.sampled_from(list(FusionMethod)),
    st.floats(0.0, 1.0),
)
def test_fusion_keeps_every_candidate_once_best_first(
    keyword_scores: list[float],
    vector_scores: list[float],
    method: FusionMethod,
    keyword_weight: float,
) -> None:
    keyword = [cand(i, s) for i, s in enumerate(sorted(keyword_scores, reverse=True))]
    vector = [cand(i * 2, s) for i, s in enumerate(sorted(vector_scores, reverse=True))]
    fused = fuse({Leg.KEYWORD: keyword, Leg.VECTOR: vector}, Fusion(method, 60, keyword_weight))
    assert sorted(keys(fused)) == sorted({c.chunk_key for c in [*keyword, *vector]})
    scores = [r.score for r in fused]
    assert scores == sorted(scores, reverse=True)


def test_one_leg_keeps_its_order_and_scores() -> None:
    leg = [cand(i, float(10 - i)) for i in range(5)]
    ranked = rank_single(Leg.VECTOR, leg)
    assert keys(ranked) == [0, 1, 2, 3, 4]
    assert [r.score for r in ranked] == [10.0, 9.0, 8.0, 7.0, 6.0]
    assert ranked[2].legs == {Leg.VECTOR: LegRank(3, 8.0, 1.0, 8.0)}


def test_fusion_of_nothing_is_empty() -> None:
    assert fuse({Leg.KEYWORD: [], Leg.VECTOR: []}, RRF) == []


def test_best_per_document_keeps_each_documents_first_chunk_in_order() -> None:
    ranked = rank_single(
        Leg.KEYWORD,
        [cand(1, 9.0, "a"), cand(2, 8.0, "b"), cand(3, 7.0, "a"), cand(4, 6.0, "c")],
    )
    assert keys(best_per_document(ranked)) == [1, 2, 4]


def test_fusion_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="rrf_k"):
        Fusion(rrf_k=0)
    with pytest.raises(ValueError, match="keyword_weight"):
        Fusion(keyword_weight=1.5)


def test_query_terms_drop_stop_words_unless_nothing_else_is_left() -> None:
    assert QueryTerms.parse("the effect of aspirin on the heart").words == (
        "effect",
        "aspirin",
        "heart",
    )
    assert QueryTerms.parse("To be or not to be").words == ("to", "be", "or", "not")


def test_query_terms_keep_tokens_as_phrases_and_drop_redactions() -> None:
    terms = QueryTerms.parse("mail <EMAIL:3f9a1c2b04d1> about [EMAIL] the invoice")
    assert terms.phrases == ("email 3f9a1c2b04d1",)
    assert terms.words == ("mail", "about", "invoice")
    only_token = QueryTerms.parse("the <EMAIL:3f9a1c2b04d1>")
    assert only_token.words == ()
    assert not only_token.empty

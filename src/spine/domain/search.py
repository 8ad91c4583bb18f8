"""Search modes, hits and rank fusion."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class SearchMode(enum.StrEnum):
    HYBRID = "hybrid"
    KEYWORD = "keyword"
    SEMANTIC = "semantic"


@dataclass(frozen=True)
class Candidate:
    """One leg's hit: the chunk's internal row key and that leg's raw score."""

    chunk_key: int
    score: float


@dataclass(frozen=True)
class SearchHit:
    document_id: str
    chunk_id: str
    title: str
    score: float
    snippet: str


def reciprocal_rank_fusion(
    legs: Sequence[Sequence[Candidate]], *, k: int = 60, limit: int | None = None
) -> list[Candidate]:
    """Fuse ranked lists by RRF (Cormack et al. 2009): score = sum of 1 / (k + rank).

    Written here rather than taken from a library because ranking is the product's own
    core, and the formula is three lines. Ties keep the order of first appearance.
    """
    fused: dict[int, float] = {}
    for leg in legs:
        for rank, cand in enumerate(leg, start=1):
            fused[cand.chunk_key] = fused.get(cand.chunk_key, 0.0) + 1.0 / (k + rank)
    ranked = sorted(fused.items(), key=lambda item: item[1], reverse=True)
    if limit is not None:
        ranked = ranked[:limit]
    return [Candidate(key, score) for key, score in ranked]

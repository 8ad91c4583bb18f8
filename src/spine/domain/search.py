"""Search requests, filters, candidates, rank fusion and hits.

Fusion is written here rather than taken from a library because ranking is the product's
own core, each formula is a few lines, and every hit must be able to say how it got its
place (``explain``): a library's fused score would not.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from spine.domain.privacy import TOKEN

_WORD = re.compile(r"\w+", re.UNICODE)
_REDACTION = re.compile(r"\[[A-Z][A-Z0-9_]{1,31}\]")

#: Lucene's English stop words (the ``english`` analyzer's set, which the BEIR BM25
#: baseline used): articles, conjunctions, prepositions and forms of "to be" that hold
#: no topic. Only the query drops them, and only when other words remain, so that a
#: query of nothing but stop words ("to be or not to be") still searches.
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
})  # fmt: skip


class SearchMode(enum.StrEnum):
    HYBRID = "hybrid"
    KEYWORD = "keyword"
    SEMANTIC = "semantic"


class FusionMethod(enum.StrEnum):
    RRF = "rrf"
    """Reciprocal rank fusion (Cormack et al. 2009): sum of weight / (k + rank)."""
    WEIGHTED = "weighted"
    """Each leg's scores min-max normalised over its candidates, then weighted and summed."""


class GroupBy(enum.StrEnum):
    CHUNK = "chunk"
    DOCUMENT = "document"
    """The best chunk of each document, documents ranked by it."""


class Leg(enum.StrEnum):
    KEYWORD = "keyword"
    VECTOR = "vector"


@dataclass(frozen=True)
class Fusion:
    """How hybrid search combines its legs. ``keyword_weight`` is the keyword leg's
    share (the vector leg gets the rest) in both methods."""

    method: FusionMethod = FusionMethod.RRF
    rrf_k: int = 60
    keyword_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.rrf_k < 1:
            raise ValueError("rrf_k must be at least 1")
        if not 0.0 <= self.keyword_weight <= 1.0:
            raise ValueError("keyword_weight must be between 0 and 1")

    def weight(self, leg: Leg) -> float:
        return self.keyword_weight if leg is Leg.KEYWORD else 1.0 - self.keyword_weight


MetadataValue = str | int | float | bool


@dataclass(frozen=True)
class SearchFilter:
    """Which documents a search may return; every field given must hold (AND).

    ``metadata`` maps a key to the values it may have (one value: equals; several: in).
    ``created_from`` is inclusive and ``created_before`` exclusive, so consecutive ranges
    neither overlap nor leave a gap.
    """

    document_ids: tuple[str, ...] | None = None
    metadata: tuple[tuple[str, tuple[MetadataValue, ...]], ...] = ()
    content_types: tuple[str, ...] | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None

    @property
    def empty(self) -> bool:
        return (
            self.document_ids is None
            and not self.metadata
            and self.content_types is None
            and self.created_from is None
            and self.created_before is None
        )


NO_FILTER = SearchFilter()


@dataclass(frozen=True)
class Candidate:
    """One leg's hit: the chunk's internal row key, its document and the leg's raw score."""

    chunk_key: int
    document_id: str
    score: float


@dataclass(frozen=True)
class LegRank:
    """Where one leg put a chunk: its 1-based rank and raw score (BM25 for the keyword
    leg, cosine similarity for the vector leg)."""

    rank: int
    score: float
    weight: float = 1.0
    """The leg's weight in the fusion used (1 when the mode ran this leg alone)."""
    contribution: float = 0.0
    """What this leg added to the chunk's final score."""


@dataclass(frozen=True)
class Ranked:
    """A fused candidate: its final score and, per leg that found it, that leg's rank."""

    chunk_key: int
    document_id: str
    score: float
    legs: dict[Leg, LegRank] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    document_id: str
    chunk_id: str
    title: str
    score: float
    snippet: str
    legs: dict[Leg, LegRank] = field(default_factory=dict)
    """Each leg's rank and raw score for this chunk; only filled when explain asked."""


def rank_single(leg: Leg, candidates: Sequence[Candidate]) -> list[Ranked]:
    """One leg's candidates, in its order, with its own scores."""
    return [
        Ranked(c.chunk_key, c.document_id, c.score, {leg: LegRank(rank, c.score, 1.0, c.score)})
        for rank, c in enumerate(candidates, start=1)
    ]


def fuse(legs: Mapping[Leg, Sequence[Candidate]], fusion: Fusion) -> list[Ranked]:
    """Fuse the legs' ranked lists into one, best first; ties keep first appearance.

    RRF reads only ranks, so no leg's score scale matters. The weighted method min-max
    normalises each leg over its own candidates (best 1, worst 0; a leg whose candidates
    all score the same gives each 1), so a leg's share is its weight whatever its scale.
    A chunk a leg did not find gets nothing from that leg.
    """
    fused: dict[int, Ranked] = {}
    for leg, candidates in legs.items():
        weight = fusion.weight(leg)
        scores = [c.score for c in candidates]
        low, high = (min(scores), max(scores)) if scores else (0.0, 0.0)
        for rank, cand in enumerate(candidates, start=1):
            if fusion.method is FusionMethod.RRF:
                share = weight / (fusion.rrf_k + rank)
            else:
                normalised = 1.0 if high == low else (cand.score - low) / (high - low)
                share = weight * normalised
            seen = fused.get(cand.chunk_key)
            ranks = {**(seen.legs if seen else {}), leg: LegRank(rank, cand.score, weight, share)}
            total = (seen.score if seen else 0.0) + share
            fused[cand.chunk_key] = Ranked(cand.chunk_key, cand.document_id, total, ranks)
    return sorted(fused.values(), key=lambda r: r.score, reverse=True)


def best_per_document(ranked: Sequence[Ranked]) -> list[Ranked]:
    """Each document's best chunk, in rank order: the documents ranked by their best."""
    seen: set[str] = set()
    best = []
    for item in ranked:
        if item.document_id not in seen:
            seen.add(item.document_id)
            best.append(item)
    return best


@dataclass(frozen=True)
class QueryTerms:
    """A search query as both keyword indexes read it.

    ``phrases`` are personal-data tokens (``<EMAIL:3f9a1c2b04d1>``, what search makes of
    an e-mail address in the query), each as its lower-cased words: a match must hold
    every one, as a phrase, since as loose words ``email`` would match every document
    with any e-mail address in it. ``words`` are the other words, lower-cased, once each,
    in order, stop words left out unless nothing else is left: any of them may match. A
    redaction (``[EMAIL]``) is dropped: a redacted value is not searchable, and its kind
    alone would match every redacted document.
    """

    phrases: tuple[str, ...]
    words: tuple[str, ...]

    @classmethod
    def parse(cls, query: str) -> QueryTerms:
        phrases = dict.fromkeys(
            " ".join(w.lower() for w in _WORD.findall(m.group(0))) for m in TOKEN.finditer(query)
        )
        rest = _REDACTION.sub(" ", TOKEN.sub(" ", query))
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(rest)))
        topical = [w for w in words if w not in STOP_WORDS]
        if topical or phrases:
            words = topical
        return cls(tuple(phrases), tuple(words))

    @property
    def empty(self) -> bool:
        return not self.phrases and not self.words

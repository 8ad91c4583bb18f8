"""Search modes, hits and rank fusion."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from spine.domain.privacy import TOKEN

_WORD = re.compile(r"\w+", re.UNICODE)
_REDACTION = re.compile(r"\[[A-Z][A-Z0-9_]{1,31}\]")


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


@dataclass(frozen=True)
class QueryTerms:
    """A search query as both keyword indexes read it.

    ``phrases`` are personal-data tokens (``<EMAIL:3f9a1c2b04d1>``, what search makes of
    an e-mail address in the query), each as its lower-cased words: a match must hold
    every one, as a phrase, since as loose words ``email`` would match every document
    with any e-mail address in it. ``words`` are the other words, lower-cased, once each,
    in order: any of them may match. A redaction (``[EMAIL]``) is dropped: a redacted
    value is not searchable, and its kind alone would match every redacted document.
    """

    phrases: tuple[str, ...]
    words: tuple[str, ...]

    @classmethod
    def parse(cls, query: str) -> QueryTerms:
        phrases = dict.fromkeys(
            " ".join(w.lower() for w in _WORD.findall(m.group(0))) for m in TOKEN.finditer(query)
        )
        rest = _REDACTION.sub(" ", TOKEN.sub(" ", query))
        words = dict.fromkeys(w.lower() for w in _WORD.findall(rest))
        return cls(tuple(phrases), tuple(words))

    @property
    def empty(self) -> bool:
        return not self.phrases and not self.words

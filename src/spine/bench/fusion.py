"""Hybrid ranking settings swept on a BEIR split: the numbers behind the ranking defaults.

``spine bench quality`` scores the configured ranking; this scores every ranking of a
grid (each leg alone, RRF for each k and keyword weight, weighted fusion for each keyword
weight, each at every title weight) on the same ingested corpus, so that the defaults are
chosen by a benchmark anyone can rerun. A search per ranking and query would take hours
on SciFact. Instead each query's legs are fetched once per title weight, as search fetches
them, and every ranking is made from them with search's own ``rank_single``, ``fuse`` and
``best_per_document``: the numbers of a grid point are those ``bench quality`` reports
under the same settings (a test holds the two to that).

Tuning reads the train split unless told otherwise: defaults chosen on the test split
would be scored on the very queries that chose them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from spine.bench import quality
from spine.domain.search import (
    Candidate,
    Fusion,
    FusionMethod,
    Leg,
    Ranked,
    SearchMode,
    best_per_document,
    fuse,
    rank_single,
)
from spine.errors import TransientError
from spine.ports import SearchIndex
from spine.service import privacy
from spine.service.container import Services
from spine.service.search import MAX_QUERY_CHARS, gather, legs_of, window
from spine.service.search_cache import normalise
from spine.settings import Settings

DEFAULT_RRF_K = "5,10,20,60"
DEFAULT_KEYWORD_WEIGHTS = "0.3,0.4,0.5,0.6,0.7"
DEFAULT_TITLE_WEIGHTS = "1,2"
#: What SPINE_SEARCH_TITLE_WEIGHT accepts: the grid holds only settings one can deploy.
MAX_TITLE_WEIGHT = 100.0
#: Queries scrubbed and embedded per model call.
EMBED_BATCH = 64

Ranker = Literal["keyword", "semantic", "rrf", "weighted"]
_T = TypeVar("_T", int, float)


class GridError(ValueError):
    """A grid value that does not parse: the message says what ``parameter`` takes and
    which value is not that."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


# -- The grid ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One ranking of the grid. ``title_weight`` is None where no keyword leg runs,
    ``rrf_k`` where no RRF does, ``keyword_weight`` where nothing is fused."""

    ranker: Ranker
    title_weight: float | None = None
    rrf_k: int | None = None
    keyword_weight: float | None = None

    @classmethod
    def hybrid(cls, fusion: Fusion, title_weight: float) -> Point:
        if fusion.method is FusionMethod.RRF:
            return cls("rrf", title_weight, fusion.rrf_k, fusion.keyword_weight)
        # RRF's k plays no part in weighted fusion: one point whatever it is set to.
        return cls("weighted", title_weight, None, fusion.keyword_weight)

    @property
    def mode(self) -> SearchMode:
        if self.ranker == "keyword":
            return SearchMode.KEYWORD
        if self.ranker == "semantic":
            return SearchMode.SEMANTIC
        return SearchMode.HYBRID

    def fusion(self) -> Fusion:
        if self.ranker == "rrf" and self.rrf_k is not None and self.keyword_weight is not None:
            return Fusion(FusionMethod.RRF, self.rrf_k, self.keyword_weight)
        if self.ranker == "weighted" and self.keyword_weight is not None:
            return Fusion(FusionMethod.WEIGHTED, keyword_weight=self.keyword_weight)
        raise ValueError(f"{self.label} fuses nothing")

    @property
    def label(self) -> str:
        parts: list[str] = [self.ranker]
        if self.rrf_k is not None:
            parts.append(f"k={self.rrf_k}")
        if self.keyword_weight is not None:
            parts.append(f"w={self.keyword_weight:g}")
        if self.title_weight is not None:
            parts.append(f"title={self.title_weight:g}")
        return " ".join(parts)


def configured(settings: Settings) -> Point:
    """The ranking hybrid search runs with these settings."""
    return Point.hybrid(settings.fusion(), settings.search_title_weight)


@dataclass(frozen=True)
class Grid:
    rrf_k: tuple[int, ...]
    keyword_weights: tuple[float, ...]
    title_weights: tuple[float, ...]

    @classmethod
    def parse(cls, *, rrf_k: str, keyword_weights: str, title_weights: str) -> Grid:
        """The grid from comma-separated values; GridError names the first bad one."""
        return cls(
            rrf_k=_parse("rrf_k", rrf_k, int, lambda k: k >= 1, "whole numbers of at least 1"),
            keyword_weights=_parse(
                "keyword_weights",
                keyword_weights,
                float,
                lambda weight: 0.0 <= weight <= 1.0,
                "numbers from 0 to 1",
            ),
            title_weights=_parse(
                "title_weights",
                title_weights,
                float,
                lambda weight: 0.0 < weight <= MAX_TITLE_WEIGHT,
                f"numbers above 0 and at most {MAX_TITLE_WEIGHT:g}",
            ),
        )

    def points(self, default: Point) -> list[Point]:
        """Each leg alone, then every fusion; ``default`` last unless the grid holds it,
        so that the configured ranking is always scored."""
        points: list[Point] = [Point("keyword", title) for title in self.title_weights]
        points.append(Point("semantic"))
        points += [
            Point("rrf", title, k, weight)
            for title in self.title_weights
            for k in self.rrf_k
            for weight in self.keyword_weights
        ]
        points += [
            Point("weighted", title, None, weight)
            for title in self.title_weights
            for weight in self.keyword_weights
        ]
        return points if default in points else [*points, default]


def _parse(
    parameter: str,
    text: str,
    convert: Callable[[str], _T],
    accept: Callable[[_T], bool],
    expected: str,
) -> tuple[_T, ...]:
    values: list[_T] = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value = convert(item)
        except ValueError:
            value = None
        # A NaN fails every comparison, so accept() refuses it too.
        if value is None or not accept(value):
            raise GridError(parameter, f"{expected}, comma-separated; {item!r} is not one")
        values.append(value)
    return tuple(dict.fromkeys(values))


# -- Fetching the legs ------------------------------------------------------------------


@dataclass(frozen=True)
class QueryLegs:
    """The candidates search ranks for one query, in each mode it is asked in; the
    keyword leg's per title weight."""

    keyword: dict[float, list[Candidate]]
    semantic: list[Candidate]
    hybrid: dict[float, dict[Leg, list[Candidate]]]


def fetch_legs(
    index: SearchIndex,
    tenant: str,
    scrubbed: str,
    vector: Sequence[float],
    *,
    title_weights: Sequence[float],
    pools: Mapping[Leg, int],
) -> QueryLegs:
    """Each mode's candidates, every leg fetched once per pool size (and title weight)."""
    fetched: dict[tuple[Leg, float | None, int], list[Candidate]] = {}

    def fetcher(title_weight: float) -> Callable[[Leg, int], list[Candidate]]:
        def fetch(leg: Leg, limit: int) -> list[Candidate]:
            key = (leg, title_weight if leg is Leg.KEYWORD else None, limit)
            if key not in fetched:
                fetched[key] = (
                    index.keyword(tenant, scrubbed, limit, title_weight=title_weight)
                    if leg is Leg.KEYWORD
                    else index.semantic(tenant, vector, limit)
                )
            return fetched[key]

        return fetch

    any_title = title_weights[0]
    return QueryLegs(
        keyword={
            title: _as_search_fetches(fetcher(title), SearchMode.KEYWORD, pools)[Leg.KEYWORD]
            for title in title_weights
        },
        semantic=_as_search_fetches(fetcher(any_title), SearchMode.SEMANTIC, pools)[Leg.VECTOR],
        hybrid={
            title: _as_search_fetches(fetcher(title), SearchMode.HYBRID, pools)
            for title in title_weights
        },
    )


def _as_search_fetches(
    fetch: Callable[[Leg, int], list[Candidate]], mode: SearchMode, pools: Mapping[Leg, int]
) -> dict[Leg, list[Candidate]]:
    """The candidates search ranks in ``mode`` when it groups by document (it may fetch
    deeper than the pools). How many documents they hold does not depend on the fusion,
    so one set of candidates serves every fusion of the same legs."""
    return gather(fetch, legs_of(mode), pools, documents=window(mode, pools))


def ranked_documents(point: Point, legs: QueryLegs, pools: Mapping[Leg, int]) -> list[str]:
    """The documents search would return for ``point``'s ranking, best first."""
    ranked: list[Ranked]
    if point.ranker == "semantic":
        ranked = rank_single(Leg.VECTOR, legs.semantic)
    elif point.title_weight is None:
        raise ValueError(f"{point.label} runs the keyword leg without a title weight")
    elif point.ranker == "keyword":
        ranked = rank_single(Leg.KEYWORD, legs.keyword[point.title_weight])
    else:
        ranked = fuse(legs.hybrid[point.title_weight], point.fusion())
    depth = min(window(point.mode, pools), quality.SEARCH_DEPTH)
    return [item.document_id for item in best_per_document(ranked)[:depth]]


def scrubbed_query(services: Services, tenant: str, text: str) -> str | None:
    """The query as search gives it to both legs; None for one search refuses (empty, or
    too long), which counts as finding nothing, as in ``bench quality``."""
    query = text.strip()
    if not query or len(query) > MAX_QUERY_CHARS:
        return None
    return privacy.scrub_query(services, tenant, normalise(query))


def embed(services: Services, texts: Sequence[str]) -> list[list[float]]:
    """Search embeds one query per call; a batch gives the same vectors (the model masks
    the padding) in a fraction of the time."""
    if not texts:
        return []
    try:
        return services.embedder.embed(list(texts))
    except TransientError as exc:
        raise quality.BenchError(
            f"the embedder failed ({exc.type}: {exc.message}): the vector leg is missing"
        ) from exc


# -- The whole sweep --------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredPoint:
    label: str
    point: Point
    metrics: dict[str, float]


@dataclass(frozen=True)
class FusionResult:
    dataset: str
    split: str
    tenant: str
    corpus_documents: int
    documents: int
    chunks: int
    queries: int
    refused: int
    """Queries search refuses (too long, say): they count as finding nothing."""
    ingest_seconds: float
    uploaded: int
    ranking: dict[str, str | int | float]
    """The configured settings, pools and model included: the default is scored with them."""
    grid: dict[str, list[int] | list[float]]
    default: str
    """The label of the configured ranking's point."""
    best: str
    """The label of the point with the highest nDCG@10 (the first, in grid order, of a tie)."""
    points: list[ScoredPoint]
    """Every point, in grid order."""
    machine: dict[str, str]

    def by_label(self, label: str) -> ScoredPoint:
        return next(scored for scored in self.points if scored.label == label)

    def leaderboard(self) -> list[ScoredPoint]:
        """The points by nDCG@10, best first; a tie keeps grid order."""
        return sorted(self.points, key=lambda scored: -scored.metrics["ndcg@10"])


def run(
    services: Services,
    dataset: quality.Dataset,
    grid: Grid,
    *,
    tenant: str,
    workers: int,
    on_ingest: Callable[[quality.IngestProgress], None] | None = None,
    on_query: Callable[[], None] | None = None,
) -> FusionResult:
    ingested = quality.ingest(
        services, tenant, dataset.corpus, workers=workers, on_progress=on_ingest
    )
    settings = services.settings
    default = configured(settings)
    points = grid.points(default)
    pools = {
        Leg.KEYWORD: settings.search_keyword_candidates,
        Leg.VECTOR: settings.search_vector_candidates,
    }
    title_weights = [*dict.fromkeys(p.title_weight for p in points if p.title_weight is not None)]
    rankings: dict[Point, dict[str, list[str]]] = {point: {} for point in points}
    refused = 0
    queries = list(dataset.queries.items())
    for start in range(0, len(queries), EMBED_BATCH):
        asked: dict[str, str] = {}
        for query_id, text in queries[start : start + EMBED_BATCH]:
            scrubbed = scrubbed_query(services, tenant, text)
            if scrubbed is None:
                refused += 1
                for ranking in rankings.values():
                    ranking[query_id] = []
                if on_query is not None:
                    on_query()
            else:
                asked[query_id] = scrubbed
        vectors = embed(services, list(asked.values()))
        for (query_id, scrubbed), vector in zip(asked.items(), vectors, strict=True):
            with services.db.read() as uow:
                legs = fetch_legs(
                    uow.index,
                    tenant,
                    scrubbed,
                    vector,
                    title_weights=title_weights,
                    pools=pools,
                )
            for point, ranking in rankings.items():
                ranking[query_id] = ranked_documents(point, legs, pools)
            if on_query is not None:
                on_query()
    scored = [
        ScoredPoint(
            point.label,
            point,
            quality.evaluate(dataset.qrels, quality.to_run(ranking, ingested.beir_ids)),
        )
        for point, ranking in rankings.items()
    ]
    best = max(scored, key=lambda item: item.metrics["ndcg@10"])
    return FusionResult(
        dataset=dataset.name,
        split=dataset.split,
        tenant=tenant,
        corpus_documents=len(dataset.corpus),
        documents=ingested.documents,
        chunks=ingested.chunks,
        queries=len(dataset.queries),
        refused=refused,
        ingest_seconds=ingested.seconds,
        uploaded=ingested.uploaded,
        ranking=quality.ranking_settings(settings, services.embedder.model_id),
        grid={
            "rrf_k": list(grid.rrf_k),
            "keyword_weights": list(grid.keyword_weights),
            "title_weights": list(grid.title_weights),
        },
        default=default.label,
        best=best.label,
        points=scored,
        machine=quality.machine_info(),
    )


def write(result: FusionResult, out_dir: Path) -> Path:
    return quality.write_json(result, out_dir / f"fusion-{result.dataset}-{result.split}.json")

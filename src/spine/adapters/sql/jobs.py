"""The durable job queue on a relational database.

Every state change goes through :func:`_transition`: it checks the domain's transition
table, applies the change with a compare-and-set UPDATE (the tenant, the current state,
and the lease token where a worker acts) and records a ``job_events`` row in the same
transaction. A worker whose lease has been taken away therefore cannot finish, fail or
extend the job: its UPDATE matches no row and it gets :class:`LeaseLost`.

:class:`SqlJobRepository` is one tenant's view: every statement filters on the tenant it
is given. :class:`SqlJobDispatcher` is the workers' view of every tenant's queue; it only
picks the job, and changes it under the job's own tenant like any other caller. It picks
fairly: round-robin over the tenants that have runnable work (``queue_tenants`` holds
each tenant's turn), first in, first out within a tenant.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select, text, update

from spine.adapters.sql.dialects import conflict_insert
from spine.adapters.sql.tables import job_events, jobs, queue_tenants
from spine.domain.jobs import (
    RUNNABLE,
    Job,
    JobError,
    JobEvent,
    JobState,
    RetryDecision,
    RetryPolicy,
    check_transition,
)
from spine.errors import Conflict, LeaseLost, NotFound
from spine.ports import QueueSnapshot


def _event_from_row(row: Row[Any]) -> JobEvent:
    m = row._mapping
    return JobEvent(
        job_id=m["job_id"],
        from_state=JobState(m["from_state"]) if m["from_state"] else None,
        to_state=JobState(m["to_state"]),
        at=m["at"],
        detail=m["detail"],
    )


def _job_from_row(row: Row[Any], events: tuple[JobEvent, ...] = ()) -> Job:
    m = row._mapping
    error = JobError(m["error_type"], m["error_message"] or "") if m["error_type"] else None
    return Job(
        id=m["id"],
        tenant_id=m["tenant_id"],
        document_id=m["document_id"],
        state=JobState(m["state"]),
        attempts=m["attempts"],
        max_attempts=m["max_attempts"],
        error=error,
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        next_run_at=m["next_run_at"],
        lease_token=m["lease_token"],
        lease_expires_at=m["lease_expires_at"],
        events=events,
        created_by=m["created_by"],
        request_id=m["request_id"],
        traceparent=m["traceparent"],
    )


def worker_alias(worker_id: str) -> str:
    """How a job's history, which its tenant reads, names the worker: distinct per worker
    (two claims by different workers stay distinguishable) without the host name and
    process id that the worker id itself holds."""
    return hashlib.sha256(worker_id.encode()).hexdigest()[:8]


class SqlJobRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # -- tenant-scoped reads and writes ------------------------------------------------

    def enqueue(self, tenant_id: str, job: Job) -> None:
        if job.tenant_id != tenant_id or job.state is not JobState.PENDING:
            raise ValueError("enqueue takes a PENDING job of the same tenant")
        # Values as parameters, not .values(): one cached statement for every job, which
        # matters to an upload of thousands of files.
        self._conn.execute(
            jobs.insert(),
            {
                "id": job.id,
                "tenant_id": tenant_id,
                "document_id": job.document_id,
                "state": JobState.PENDING.value,
                "attempts": 0,
                "max_attempts": job.max_attempts,
                "next_run_at": job.created_at,
                "created_at": job.created_at,
                "updated_at": job.created_at,
                "created_by": job.created_by,
                "request_id": job.request_id,
                "traceparent": job.traceparent,
            },
        )
        _record(self._conn, tenant_id, job.id, None, JobState.PENDING, job.created_at, "enqueued")
        _join_rotation(self._conn, tenant_id)
        _wake_workers(self._conn)

    def get(self, tenant_id: str, job_id: str, *, created_by: str | None = None) -> Job:
        query = select(jobs).where((jobs.c.tenant_id == tenant_id) & (jobs.c.id == job_id))
        if created_by is not None:
            query = query.where(jobs.c.created_by == created_by)
        row = self._conn.execute(query).first()
        if row is None:
            # The same answer for another subject's job as for one that never existed.
            raise NotFound(f"job {job_id} not found")
        events = tuple(
            _event_from_row(r)
            for r in self._conn.execute(
                select(job_events)
                .where((job_events.c.tenant_id == tenant_id) & (job_events.c.job_id == job_id))
                .order_by(job_events.c.id)
            )
        )
        return _job_from_row(row, events)

    def list(
        self,
        tenant_id: str,
        *,
        state: JobState | None,
        created_by: str | None = None,
        limit: int,
        after: str | None,
    ) -> list[Job]:
        query = (
            select(jobs)
            .where(jobs.c.tenant_id == tenant_id)
            .order_by(jobs.c.id.desc())
            .limit(limit)
        )
        if state is not None:
            query = query.where(jobs.c.state == state.value)
        if created_by is not None:
            query = query.where(jobs.c.created_by == created_by)
        if after is not None:
            query = query.where(jobs.c.id < after)
        return [_job_from_row(row) for row in self._conn.execute(query)]

    def delete_for_document(self, tenant_id: str, document_id: str) -> None:
        ids = select(jobs.c.id).where(
            (jobs.c.tenant_id == tenant_id) & (jobs.c.document_id == document_id)
        )
        self._conn.execute(
            delete(job_events).where(
                (job_events.c.tenant_id == tenant_id) & job_events.c.job_id.in_(ids)
            )
        )
        self._conn.execute(
            delete(jobs).where(
                (jobs.c.tenant_id == tenant_id) & (jobs.c.document_id == document_id)
            )
        )

    def count_by_state(
        self,
        tenant_id: str,
        *,
        created_by: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> dict[JobState, int]:
        query = (
            select(jobs.c.state, func.count())
            .where(jobs.c.tenant_id == tenant_id)
            .group_by(jobs.c.state)
        )
        if created_by is not None:
            query = query.where(jobs.c.created_by == created_by)
        if states is not None:
            query = query.where(jobs.c.state.in_([state.value for state in states]))
        rows = self._conn.execute(query)
        counts = dict.fromkeys(JobState, 0)
        counts.update({JobState(state): int(count) for state, count in rows})
        return counts

    def failed_ids(
        self,
        tenant_id: str,
        *,
        error_type: str | None,
        created_by: str | None = None,
        limit: int,
    ) -> builtins.list[str]:
        query = (
            select(jobs.c.id)
            .where((jobs.c.tenant_id == tenant_id) & (jobs.c.state == JobState.FAILED.value))
            .order_by(jobs.c.id)
            .limit(limit)
        )
        if error_type is not None:
            query = query.where(jobs.c.error_type == error_type)
        if created_by is not None:
            query = query.where(jobs.c.created_by == created_by)
        return [row[0] for row in self._conn.execute(query)]

    def requeue(
        self,
        tenant_id: str,
        job_id: str,
        *,
        now: datetime,
        detail: str,
        queued_by: str | None,
        request_id: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        """FAILED -> PENDING with attempts reset: a person (``queued_by``, who owns the job
        from now on) takes a job out of the DLQ; the retry's request and trace follow it."""
        job = self.get(tenant_id, job_id)
        if job.state is not JobState.FAILED:
            raise Conflict(f"job {job_id} is {job.state}, only FAILED jobs can be retried")
        _transition(
            self._conn,
            job,
            JobState.PENDING,
            now=now,
            detail=detail,
            attempts=0,
            next_run_at=now,
            finished_at=None,
            error_type=None,
            error_message=None,
            created_by=queued_by,
            request_id=request_id,
            traceparent=traceparent,
        )
        _join_rotation(self._conn, tenant_id)

    def restore(self, tenant_id: str, job: Job) -> None:
        """A finished job and its events as they were (``spine import``): no lease, no
        turn in the queue, and no transition check, since the events record the
        transitions it went through elsewhere."""
        if job.tenant_id != tenant_id or not job.state.terminal:
            raise ValueError("restore takes a SUCCEEDED or FAILED job of the same tenant")
        self._conn.execute(
            jobs.insert(),
            {
                "id": job.id,
                "tenant_id": tenant_id,
                "document_id": job.document_id,
                "state": job.state.value,
                "attempts": job.attempts,
                "max_attempts": job.max_attempts,
                "error_type": job.error.type if job.error else None,
                "error_message": job.error.message if job.error else None,
                "next_run_at": job.next_run_at,
                "created_at": job.created_at,
                "started_at": job.started_at,
                "finished_at": job.finished_at,
                "updated_at": job.finished_at or job.created_at,
                "created_by": job.created_by,
                "request_id": job.request_id,
                "traceparent": job.traceparent,
            },
        )
        for event in job.events:
            _record(
                self._conn,
                tenant_id,
                job.id,
                event.from_state,
                event.to_state,
                event.at,
                event.detail,
            )

    # -- a worker acting under its lease -----------------------------------------------

    def heartbeat(
        self, tenant_id: str, job_id: str, *, lease_token: str, now: datetime, lease_seconds: float
    ) -> None:
        result = self._conn.execute(
            update(jobs)
            .where(self._leased(tenant_id, job_id, lease_token))
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
        )
        if result.rowcount == 0:
            raise LeaseLost(f"job {job_id}: lease lost")

    def succeed(self, tenant_id: str, job_id: str, *, lease_token: str, now: datetime) -> None:
        job = self._leased_job(tenant_id, job_id, lease_token)
        _transition(
            self._conn,
            job,
            JobState.SUCCEEDED,
            now=now,
            detail="pipeline finished",
            lease_token=None,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            error_type=None,
            error_message=None,
            guard_token=lease_token,
        )

    def fail(
        self,
        tenant_id: str,
        job_id: str,
        *,
        lease_token: str,
        decision: RetryDecision,
        error: JobError,
        now: datetime,
        refund_attempt: bool = False,
    ) -> None:
        job = self._leased_job(tenant_id, job_id, lease_token)
        _finish_attempt(
            self._conn,
            job,
            decision,
            error,
            now=now,
            lease_token=lease_token,
            refund_attempt=refund_attempt,
        )

    # -- internals ---------------------------------------------------------------------

    def _leased(self, tenant_id: str, job_id: str, lease_token: str) -> Any:
        return (
            (jobs.c.tenant_id == tenant_id)
            & (jobs.c.id == job_id)
            & (jobs.c.state == JobState.RUNNING.value)
            & (jobs.c.lease_token == lease_token)
        )

    def _leased_job(self, tenant_id: str, job_id: str, lease_token: str) -> Job:
        row = self._conn.execute(
            select(jobs).where(self._leased(tenant_id, job_id, lease_token))
        ).first()
        if row is None:
            raise LeaseLost(f"job {job_id}: lease lost")
        return _job_from_row(row)


class SqlJobDispatcher:
    """Claims and lease reaping across every tenant: the worker loop's, never the API's.

    Only the choice of the next job is tenant-blind. Every change it then makes goes
    through the same compare-and-set as a tenant's own calls, guarded by the job's tenant.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def claim(self, *, worker_id: str, now: datetime, lease_seconds: float) -> Job | None:
        """Take the next job, with a fresh lease: round-robin over tenants, FIFO within one.

        Taking the job that waited longest across all tenants would let one tenant's
        10,000-file upload hold every worker until it drains while another tenant's single
        file waits behind it. Instead each tenant with a runnable job gets a turn: the
        claim serves the tenant whose last turn is the longest ago (never served first),
        and takes that tenant's job that has waited longest (``next_run_at``, then id).
        A tenant with work is thus served again after at most one claim per other tenant
        with work, however much it or they have queued.

        A turn is recorded in ``queue_tenants.last_claimed_at`` as a strictly increasing
        stamp, ``max(now, latest stamp + 1 microsecond)``, not as ``now`` alone: with many
        claims in the same clock tick (fast workers, a coarse clock, fixed clocks in tests)
        equal stamps would let the tie-break (tenant id) serve the same tenant over and
        over. The stamp stays within a microsecond per claim of the clock and orders the
        turns exactly as they were taken.

        FOR UPDATE SKIP LOCKED lets concurrent claimers pass each other on PostgreSQL: a
        claimer that finds every runnable job of its tenant locked by the others moves on
        to the next tenant in line. SQLite renders no lock clause and relies on the write
        transaction's lock instead.
        """
        row = self._next_job(now)
        if row is None:
            return None
        current = _job_from_row(row)
        token = secrets.token_hex(16)
        _transition(
            self._conn,
            current,
            JobState.RUNNING,
            now=now,
            detail=f"claimed by worker {worker_alias(worker_id)} (attempt {current.attempts + 1})",
            attempts=current.attempts + 1,
            lease_owner=worker_id,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=current.started_at or now,
            next_run_at=None,
        )
        self._take_turn(current.tenant_id, now)
        return SqlJobRepository(self._conn).get(current.tenant_id, current.id)

    def _next_job(self, now: datetime) -> Row[Any] | None:
        """The oldest runnable job of the first tenant in line that has one unlocked."""
        has_work = (
            select(jobs.c.id)
            .where((jobs.c.tenant_id == queue_tenants.c.tenant_id) & _runnable(now))
            .exists()
        )
        in_line = self._conn.execute(
            select(queue_tenants.c.tenant_id)
            .where(has_work)
            .order_by(
                queue_tenants.c.last_claimed_at.asc().nulls_first(), queue_tenants.c.tenant_id
            )
            .limit(_TENANTS_TRIED)
        ).scalars()
        for tenant_id in list(in_line):
            row = self._conn.execute(
                select(jobs)
                .where((jobs.c.tenant_id == tenant_id) & _runnable(now))
                .order_by(jobs.c.next_run_at, jobs.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is not None:
                return row
        # No tenant tried has an unlocked runnable job: either concurrent claimers hold
        # them all, or the work belongs to a tenant missing from the rotation (queued by
        # the previous release during a rolling upgrade), which joins it with this turn.
        # Either way, the job that has waited longest rather than none.
        return self._conn.execute(
            select(jobs)
            .where(_runnable(now))
            .order_by(jobs.c.next_run_at, jobs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()

    def _take_turn(self, tenant_id: str, now: datetime) -> None:
        """Send ``tenant_id`` to the back of the line (see :meth:`claim` for the stamp)."""
        _join_rotation(self._conn, tenant_id)
        latest = self._conn.execute(select(func.max(queue_tenants.c.last_claimed_at))).scalar()
        stamp = now if latest is None or now > latest else latest + _TICK
        self._conn.execute(
            update(queue_tenants)
            .where(queue_tenants.c.tenant_id == tenant_id)
            .values(last_claimed_at=stamp)
        )

    def snapshot(self, *, now: datetime) -> QueueSnapshot:
        counts = dict.fromkeys(JobState, 0)
        for state, count in self._conn.execute(
            select(jobs.c.state, func.count()).group_by(jobs.c.state)
        ):
            counts[JobState(state)] = int(count)
        oldest = self._conn.execute(
            select(func.min(jobs.c.next_run_at)).where(
                jobs.c.state.in_([s.value for s in RUNNABLE]) & (jobs.c.next_run_at <= now)
            )
        ).scalar()
        return QueueSnapshot(counts, oldest)

    def reap_expired(self, *, now: datetime, policy: RetryPolicy) -> int:
        """Turn RUNNING jobs whose lease ran out (a dead worker) into RETRYING or FAILED.

        Every claimer reaps first, so on PostgreSQL several may find the same expired job
        at once: SKIP LOCKED leaves each to the first, where the others' compare-and-set
        would find it changed and fail their whole claim.
        """
        rows = self._conn.execute(
            select(jobs)
            .where((jobs.c.state == JobState.RUNNING.value) & (jobs.c.lease_expires_at < now))
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            job = _job_from_row(row)
            decision = policy.decide(
                attempts=job.attempts, max_attempts=job.max_attempts, transient=True, now=now
            )
            _finish_attempt(
                self._conn,
                job,
                decision,
                JobError("lease-expired", "the worker stopped renewing its lease"),
                now=now,
                lease_token=job.lease_token,
                extra_guard=jobs.c.lease_expires_at < now,
            )
        return len(rows)


# -- the tenants' rotation ---------------------------------------------------------------

#: Tenants in line a claim tries before it takes any runnable job: more than one only
#: matters when concurrent claimers (PostgreSQL) hold every runnable job of the first ones.
_TENANTS_TRIED = 16
#: The smallest step both SQLite's text timestamps and PostgreSQL's timestamptz keep.
_TICK = timedelta(microseconds=1)


def _runnable(now: datetime) -> Any:
    return jobs.c.state.in_([s.value for s in RUNNABLE]) & (jobs.c.next_run_at <= now)


def _join_rotation(conn: Connection, tenant_id: str) -> None:
    """Put a tenant in the claim's rotation, unless it is already there (without an error
    that would abort the transaction, and safely when two transactions race)."""
    conn.execute(
        conflict_insert(conn, queue_tenants).on_conflict_do_nothing(), {"tenant_id": tenant_id}
    )


# -- state changes, shared by both views ------------------------------------------------


def _finish_attempt(
    conn: Connection,
    job: Job,
    decision: RetryDecision,
    error: JobError,
    *,
    now: datetime,
    lease_token: str | None,
    extra_guard: Any = None,
    refund_attempt: bool = False,
) -> None:
    refund = {"attempts": max(0, job.attempts - 1)} if refund_attempt else {}
    _transition(
        conn,
        job,
        decision.state,
        now=now,
        detail=f"{error.type}: {error.message} ({decision.reason})",
        lease_token=None,
        lease_owner=None,
        lease_expires_at=None,
        next_run_at=decision.next_run_at,
        finished_at=now if decision.state is JobState.FAILED else None,
        error_type=error.type,
        error_message=error.message,
        guard_token=lease_token,
        extra_guard=extra_guard,
        **refund,
    )


def _transition(
    conn: Connection,
    job: Job,
    target: JobState,
    *,
    now: datetime,
    detail: str,
    guard_token: str | None = None,
    extra_guard: Any = None,
    **values: Any,
) -> None:
    check_transition(job.state, target)
    guard = (
        (jobs.c.tenant_id == job.tenant_id)
        & (jobs.c.id == job.id)
        & (jobs.c.state == job.state.value)
    )
    if guard_token is not None:
        guard = guard & (jobs.c.lease_token == guard_token)
    if extra_guard is not None:
        guard = guard & extra_guard
    result = conn.execute(
        update(jobs).where(guard).values(state=target.value, updated_at=now, **values)
    )
    if result.rowcount != 1:
        raise LeaseLost(f"job {job.id} changed under us ({job.state} -> {target} refused)")
    _record(conn, job.tenant_id, job.id, job.state, target, now, detail)
    if target in RUNNABLE and (values.get("next_run_at") or now) <= now:
        _wake_workers(conn)


#: The channel idle workers LISTEN on (spine.adapters.postgres.notify).
JOBS_CHANNEL = "spine_jobs"


def _wake_workers(conn: Connection) -> None:
    """On PostgreSQL, NOTIFY the listening workers that a job is runnable now. The
    notification goes out at commit, so no worker wakes to a job it cannot see yet;
    several in one transaction arrive as one."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"NOTIFY {JOBS_CHANNEL}"))


def _record(
    conn: Connection,
    tenant_id: str,
    job_id: str,
    from_state: JobState | None,
    to_state: JobState,
    at: datetime,
    detail: str,
) -> None:
    conn.execute(
        job_events.insert(),
        {
            "tenant_id": tenant_id,
            "job_id": job_id,
            "from_state": from_state.value if from_state else None,
            "to_state": to_state.value,
            "at": at,
            "detail": detail,
        },
    )

"""The job queue under random interleavings of workers that claim, finish, fail, stall and
crash, against the real SqlJobRepository on a fresh SQLite file per example.

The machine keeps its own model of every job (state, attempts, next run, the one live
lease) and of the tenants' turns, and predicts what each call must do: which job a claim
takes (the oldest runnable job of the tenant served longest ago), which leases the reaper
takes back, whether a worker still holds its lease. After every step the database
must agree with the model, every job's event log must be a legal path through the state
machine, and at the end a patient worker must be able to drain the queue: nothing lost.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import Engine, select

from spine.adapters.sql import migrate
from spine.adapters.sql.tables import job_events, jobs
from spine.adapters.sqlite.database import SqliteDatabase
from spine.adapters.sqlite.engine import create_sqlite_engine
from spine.domain.jobs import (
    RUNNABLE,
    TRANSITIONS,
    Job,
    JobError,
    JobState,
    RetryDecision,
    RetryPolicy,
)
from spine.errors import LeaseLost

TENANTS = ("acme", "globex")
WORKERS = ("w1", "w2", "w3")
LEASE = 30.0
START = datetime(2030, 1, 1, tzinfo=UTC)
BASE_SECONDS = 2.0
MAX_SECONDS = 20.0
STATE_NAMES = {state.value for state in JobState}
# The machine tests the queue's logic, not durability: a RAM-backed folder, where there is
# one, makes the fsync of every commit free, so the run time does not follow a busy disk.
_SHM = Path("/dev/shm")  # noqa: S108 (mkdtemp makes a private folder inside it)
FAST_TMP = str(_SHM) if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None


@functools.cache
def migrated_template() -> Path:
    """One migrated database, copied for each example: running Alembic for every one of
    them would be a fifth of the run time. Removed when the test process exits."""
    folder = Path(tempfile.mkdtemp(prefix="spine-queue-template-", dir=FAST_TMP))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    migrate.upgrade(f"sqlite:///{folder / 'spine.db'}")
    return folder / "spine.db"


class SeededRetryPolicy(RetryPolicy):
    """The production policy with its jitter drawn from a seeded generator, so that the
    reaper's backoff (which passes no rng) replays identically when Hypothesis shrinks."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(base_seconds=BASE_SECONDS, max_seconds=MAX_SECONDS)
        object.__setattr__(self, "_rng", rng)

    def decide(
        self,
        *,
        attempts: int,
        max_attempts: int,
        transient: bool,
        now: datetime,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        return super().decide(
            attempts=attempts,
            max_attempts=max_attempts,
            transient=transient,
            now=now,
            rng=rng or self._rng,  # type: ignore[attr-defined]
        )


@dataclass(frozen=True)
class ModelJob:
    """What the database must say about a job."""

    tenant_id: str
    max_attempts: int
    state: JobState = JobState.PENDING
    attempts: int = 0
    next_run_at: datetime | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class Held:
    """What a worker believes: it holds this job under this token."""

    job_id: str
    tenant_id: str
    token: str
    attempts: int
    max_attempts: int


class JobQueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="spine-queue-", dir=FAST_TMP))
        for part in migrated_template().parent.iterdir():
            shutil.copyfile(part, self.folder / part.name)
        self.url = f"sqlite:///{self.folder / 'spine.db'}"
        assert migrate.current(self.url) is not None
        self.db = SqliteDatabase(self.url)
        self.raw: Engine = create_sqlite_engine(self.url, immediate=False)
        self.now = START
        self.policy = SeededRetryPolicy(random.Random(0))
        self.model: dict[str, ModelJob] = {}
        # Each tenant's last turn at the queue, as a claim counter: the clock alone cannot
        # order turns, since many claims happen at the same ``now``. None: never served.
        self.turns: dict[str, int | None] = {}
        self.claims = 0
        self.held: dict[str, Held | None] = dict.fromkeys(WORKERS)
        # False from the start of a rule until the invariants have passed after it: the
        # drain in teardown only runs on a run that has not already failed.
        self.healthy = True

    def teardown(self) -> None:
        try:
            if self.healthy:
                self.drain()
        finally:
            self.db.close()
            self.raw.dispose()
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------

    def begin(self) -> None:
        self.healthy = False

    def snapshot(self) -> tuple[list[Any], list[Any]]:
        with self.raw.connect() as conn:
            rows = [tuple(r) for r in conn.execute(select(jobs).order_by(jobs.c.id))]
            events = [tuple(r) for r in conn.execute(select(job_events).order_by(job_events.c.id))]
        return rows, events

    def idle_workers(self) -> list[str]:
        return [worker for worker, held in self.held.items() if held is None]

    def busy_workers(self) -> list[str]:
        return [worker for worker, held in self.held.items() if held is not None]

    def pick_busy(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(self.busy_workers()), label="worker")

    def lease_is_live(self, held: Held) -> bool:
        return self.model[held.job_id].lease_token == held.token

    def act_on_lease(self, label: str, held: Held, action: Any) -> bool:
        """Run ``action`` for a worker; a live lease must work, a lost one must raise
        LeaseLost and leave every row as it was. Returns whether the lease was live."""
        live = self.lease_is_live(held)
        event(f"{label} with a {'live' if live else 'lost'} lease")
        if live:
            with self.db.write() as uow:
                action(uow)
            return True
        before = self.snapshot()
        with pytest.raises(LeaseLost), self.db.write() as uow:
            action(uow)
        assert self.snapshot() == before, "a worker without its lease changed the database"
        return False

    def reap_and_claim(self, worker: str, now: datetime) -> Job | None:
        """What worker.claim_next does, with the model's predictions checked."""
        expired = [
            job_id
            for job_id, job in self.model.items()
            if job.state is JobState.RUNNING
            and job.lease_expires_at is not None
            and job.lease_expires_at < now
        ]
        with self.db.write() as uow:
            reaped = uow.dispatch.reap_expired(now=now, policy=self.policy)
            claimed = uow.dispatch.claim(worker_id=worker, now=now, lease_seconds=LEASE)
        assert reaped == len(expired)

        rows = self.rows()
        for job_id in expired:
            job = self.model[job_id]
            exhausted = job.attempts >= job.max_attempts
            event(f"reaped an expired lease into {'FAILED' if exhausted else 'RETRYING'}")
            next_run_at = None
            if not exhausted:
                # Unless it was claimed in the same breath, the row shows the backoff.
                row = rows[job_id]
                next_run_at = row["next_run_at"] if row["state"] == "RETRYING" else now
                assert next_run_at is not None
                assert now <= next_run_at <= now + timedelta(seconds=MAX_SECONDS)
            self.model[job_id] = replace(
                job,
                state=JobState.FAILED if exhausted else JobState.RETRYING,
                next_run_at=next_run_at,
                lease_token=None,
                lease_expires_at=None,
            )
            assert rows[job_id]["error_type"] == "lease-expired"

        runnable = sorted(
            (job.next_run_at, job_id, job.tenant_id)
            for job_id, job in self.model.items()
            if job.state in RUNNABLE and job.next_run_at is not None and job.next_run_at <= now
        )
        if not runnable:
            assert claimed is None, f"claimed {claimed} though nothing was runnable"
            return None
        assert claimed is not None, f"nothing claimed though {runnable} were runnable"
        # Round-robin: the tenant with work served longest ago (never served first, then
        # by tenant id), and that tenant's job waiting longest.
        tenant = min(
            {tenant for _, _, tenant in runnable},
            key=lambda t: (self.turns[t] is not None, self.turns[t] or 0, t),
        )
        expected = next(job_id for _, job_id, owner in runnable if owner == tenant)
        event(f"claim among {len({t for _, _, t in runnable})} tenant(s) with work")
        assert claimed.id == expected, (
            f"claim must take {tenant}'s job waiting longest, {expected}, took {claimed.id}"
        )
        self.claims += 1
        self.turns[tenant] = self.claims
        job = self.model[claimed.id]
        assert claimed.state is JobState.RUNNING
        assert claimed.attempts == job.attempts + 1
        assert claimed.lease_token
        assert claimed.lease_token not in {
            other.lease_token for other in self.model.values() if other.lease_token
        }
        assert claimed.lease_expires_at == now + timedelta(seconds=LEASE)
        self.model[claimed.id] = replace(
            job,
            state=JobState.RUNNING,
            attempts=job.attempts + 1,
            next_run_at=None,
            lease_token=claimed.lease_token,
            lease_expires_at=claimed.lease_expires_at,
        )
        return claimed

    def rows(self) -> dict[str, Any]:
        with self.raw.connect() as conn:
            return {r.id: r._mapping for r in conn.execute(select(jobs))}

    # -- rules -------------------------------------------------------------------------

    @initialize(
        jobs=st.lists(
            st.tuples(st.sampled_from(TENANTS), st.integers(1, 3)), min_size=1, max_size=4
        )
    )
    def seed_the_queue(self, jobs: list[tuple[str, int]]) -> None:
        """A few jobs up front, so that no example is spent on an empty queue."""
        self.begin()
        for tenant, max_attempts in jobs:
            self.add_job(tenant, max_attempts)

    @rule(tenant=st.sampled_from(TENANTS), max_attempts=st.integers(1, 3))
    def enqueue(self, tenant: str, max_attempts: int) -> None:
        self.begin()
        self.add_job(tenant, max_attempts)

    def add_job(self, tenant: str, max_attempts: int) -> None:
        number = len(self.model)
        job = Job(
            id=f"job_{number:04d}",
            tenant_id=tenant,
            document_id=f"doc_{number:04d}",
            state=JobState.PENDING,
            attempts=0,
            max_attempts=max_attempts,
            error=None,
            created_at=self.now,
            started_at=None,
            finished_at=None,
            next_run_at=None,
        )
        with self.db.write() as uow:
            uow.jobs.enqueue(tenant, job)
        self.model[job.id] = ModelJob(tenant, max_attempts, next_run_at=self.now)
        self.turns.setdefault(tenant, None)

    @precondition(lambda self: self.model and self.idle_workers())
    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        self.begin()
        worker = data.draw(st.sampled_from(self.idle_workers()), label="worker")
        claimed = self.reap_and_claim(worker, self.now)
        if claimed is not None:
            assert claimed.lease_token is not None
            self.held[worker] = Held(
                claimed.id,
                claimed.tenant_id,
                claimed.lease_token,
                claimed.attempts,
                claimed.max_attempts,
            )

    @precondition(lambda self: self.busy_workers())
    @rule(data=st.data())
    def succeed(self, data: st.DataObject) -> None:
        self.begin()
        worker = self.pick_busy(data)
        held = self.held[worker]
        assert held is not None
        now = self.now

        def action(uow: Any) -> None:
            uow.jobs.succeed(held.tenant_id, held.job_id, lease_token=held.token, now=now)

        if self.act_on_lease("succeed", held, action):
            self.model[held.job_id] = replace(
                self.model[held.job_id],
                state=JobState.SUCCEEDED,
                lease_token=None,
                lease_expires_at=None,
            )
        self.held[worker] = None

    def fail(self, worker: str, *, transient: bool) -> None:
        held = self.held[worker]
        assert held is not None
        now = self.now
        # As processing does: the decision comes from the attempts of the claimed job.
        decision = self.policy.decide(
            attempts=held.attempts,
            max_attempts=held.max_attempts,
            transient=transient,
            now=now,
        )
        error = JobError("transient" if transient else "extraction-failed", "boom")

        def action(uow: Any) -> None:
            uow.jobs.fail(
                held.tenant_id,
                held.job_id,
                lease_token=held.token,
                decision=decision,
                error=error,
                now=now,
            )

        if self.act_on_lease(f"fail -> {decision.state}", held, action):
            self.model[held.job_id] = replace(
                self.model[held.job_id],
                state=decision.state,
                next_run_at=decision.next_run_at,
                lease_token=None,
                lease_expires_at=None,
            )
        self.held[worker] = None

    @precondition(lambda self: self.busy_workers())
    @rule(data=st.data())
    def fail_transient(self, data: st.DataObject) -> None:
        self.begin()
        self.fail(self.pick_busy(data), transient=True)

    @precondition(lambda self: self.busy_workers())
    @rule(data=st.data())
    def fail_permanent(self, data: st.DataObject) -> None:
        self.begin()
        self.fail(self.pick_busy(data), transient=False)

    @precondition(lambda self: self.busy_workers())
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The worker dies: it forgets its job and never tells the database."""
        self.begin()
        self.held[self.pick_busy(data)] = None

    @precondition(lambda self: self.busy_workers())
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        self.begin()
        worker = self.pick_busy(data)
        held = self.held[worker]
        assert held is not None
        now = self.now

        def action(uow: Any) -> None:
            uow.jobs.heartbeat(
                held.tenant_id, held.job_id, lease_token=held.token, now=now, lease_seconds=LEASE
            )

        if self.act_on_lease("heartbeat", held, action):
            self.model[held.job_id] = replace(
                self.model[held.job_id], lease_expires_at=now + timedelta(seconds=LEASE)
            )
        # A worker that lost its lease keeps running its pipeline (and will be refused).

    @rule(seconds=st.integers(0, 120))
    def advance_clock(self, seconds: int) -> None:
        self.begin()
        self.now += timedelta(seconds=seconds)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def queue_is_consistent(self) -> None:
        rows = self.rows()
        self.check_jobs_agree_with_the_model(rows)
        self.check_event_logs_are_legal_paths_of_the_state_machine()
        self.check_at_most_one_worker_holds_a_live_lease_per_job(rows)
        self.healthy = True

    def check_jobs_agree_with_the_model(self, rows: dict[str, Any]) -> None:
        assert rows.keys() == self.model.keys(), "a job appeared or disappeared"
        with self.db.read() as uow:
            for tenant in TENANTS:
                listed = uow.jobs.list(tenant, state=None, limit=10_000, after=None)
                expected = {i for i, job in self.model.items() if job.tenant_id == tenant}
                assert {job.id for job in listed} == expected
        for job_id, row in rows.items():
            job = self.model[job_id]
            assert row["state"] in STATE_NAMES, job_id
            assert JobState(row["state"]) is job.state, job_id
            assert row["attempts"] == job.attempts, job_id
            assert row["attempts"] <= row["max_attempts"], job_id
            assert row["lease_token"] == job.lease_token, job_id
            assert row["lease_expires_at"] == job.lease_expires_at, job_id
            if job.state in RUNNABLE:
                assert row["next_run_at"] == job.next_run_at, job_id
            if job.state is JobState.RETRYING:
                assert job.attempts < row["max_attempts"], f"{job_id}: retrying, no attempts left"
            if job.state.terminal:
                assert row["finished_at"] is not None, job_id

    def check_event_logs_are_legal_paths_of_the_state_machine(self) -> None:
        logs: dict[str, list[Any]] = {job_id: [] for job_id in self.model}
        with self.raw.connect() as conn:
            for event in conn.execute(select(job_events).order_by(job_events.c.id)):
                logs[event.job_id].append(event)
        for job_id, events in logs.items():
            assert events, job_id
            assert (events[0].from_state, events[0].to_state) == (None, "PENDING"), job_id
            for previous, event in itertools.pairwise(events):
                assert event.from_state == previous.to_state, job_id
                pair = (JobState(event.from_state), JobState(event.to_state))
                assert pair in TRANSITIONS, f"{job_id}: illegal {pair}"
                assert event.at >= previous.at, job_id
            assert events[-1].to_state == self.model[job_id].state.value, job_id
            to_states = [event.to_state for event in events]
            assert to_states.count("SUCCEEDED") <= 1, f"{job_id} succeeded twice"
            assert to_states.count("RUNNING") == self.model[job_id].attempts, job_id

    def check_at_most_one_worker_holds_a_live_lease_per_job(self, rows: dict[str, Any]) -> None:
        for job_id, row in rows.items():
            holders = [
                worker
                for worker, held in self.held.items()
                if held is not None and held.job_id == job_id and held.token == row["lease_token"]
            ]
            assert len(holders) <= 1, f"{job_id} leased to {holders}"
            if row["state"] != "RUNNING":
                assert row["lease_token"] is None, job_id

    # -- the end: nothing is lost ------------------------------------------------------

    def drain(self) -> None:
        """Long after every worker stalled or died, one patient worker empties the queue.

        Each job it takes back from a stalled worker is then run by two workers at once:
        the stalled one must be refused whatever it tries, the drainer must succeed."""
        now = self.now
        budget = sum(job.max_attempts + 1 for job in self.model.values()) + 2
        for _ in range(budget):
            if all(job.state.terminal for job in self.model.values()):
                break
            now += timedelta(days=1)
            claimed = self.reap_and_claim("drainer", now)
            if claimed is None:
                continue
            self.refuse_stale_holders(claimed.id, now)
            assert claimed.lease_token is not None
            with self.db.write() as uow:
                uow.jobs.succeed(
                    claimed.tenant_id, claimed.id, lease_token=claimed.lease_token, now=now
                )
            self.model[claimed.id] = replace(
                self.model[claimed.id],
                state=JobState.SUCCEEDED,
                lease_token=None,
                lease_expires_at=None,
            )
        for worker in self.busy_workers():
            held = self.held[worker]
            # Two stalled workers may hold old leases on the same job: the first one's
            # refusal has already dealt with the second.
            if held is not None:
                self.refuse_stale_holders(held.job_id, now)
        rows = self.rows()
        self.check_jobs_agree_with_the_model(rows)
        self.check_event_logs_are_legal_paths_of_the_state_machine()
        stuck = {job_id: job.state for job_id, job in self.model.items() if not job.state.terminal}
        assert not stuck, f"jobs never finished: {stuck}"

    def refuse_stale_holders(self, job_id: str, now: datetime) -> None:
        """Every worker still holding an old lease on ``job_id`` renews, fails and
        finishes it: each attempt must raise LeaseLost and change nothing."""
        for worker in self.busy_workers():
            held = self.held[worker]
            assert held is not None
            if held.job_id == job_id:
                self.try_everything_on_a_lost_lease(held, now)
                self.held[worker] = None

    def try_everything_on_a_lost_lease(self, held: Held, now: datetime) -> None:
        assert not self.lease_is_live(held)
        retry = RetryDecision(JobState.RETRYING, now, "retry")
        error = JobError("transient", "boom")
        attempts: dict[str, Any] = {
            "heartbeat": lambda uow: uow.jobs.heartbeat(
                held.tenant_id, held.job_id, lease_token=held.token, now=now, lease_seconds=LEASE
            ),
            "fail": lambda uow: uow.jobs.fail(
                held.tenant_id,
                held.job_id,
                lease_token=held.token,
                decision=retry,
                error=error,
                now=now,
            ),
            "succeed": lambda uow: uow.jobs.succeed(
                held.tenant_id, held.job_id, lease_token=held.token, now=now
            ),
        }
        for label, action in attempts.items():
            self.act_on_lease(f"{label} after the drain took the job", held, action)


JobQueueMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=40, deadline=None)
TestQueueNeverLosesJobsNorLetsALostLeaseWrite = JobQueueMachine.TestCase

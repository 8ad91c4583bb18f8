"""SqlJobRepository on a real, migrated SQLite file: claims, leases, retries, reaping and
tenant scoping, one example at a time. The clock is explicit: every call gets its ``now``."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from spine.adapters.sql.jobs import worker_alias
from spine.adapters.sqlite.database import SqliteDatabase
from spine.domain.documents import new_id
from spine.domain.jobs import Job, JobError, JobState, RetryDecision, RetryPolicy
from spine.errors import LeaseLost, NotFound
from support.rows import job_row

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = 30.0
POLICY = RetryPolicy(base_seconds=2.0, max_seconds=60.0)
TRANSIENT = JobError("transient", "the embedder timed out")
PERMANENT = JobError("extraction-failed", "not a PDF")


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def make_job(
    tenant_id: str = "acme",
    *,
    created_at: datetime = T0,
    max_attempts: int = 3,
    created_by: str | None = None,
) -> Job:
    return job_row(
        tenant_id, created_at=created_at, max_attempts=max_attempts, created_by=created_by
    )


def enqueue(db: SqliteDatabase, job: Job) -> Job:
    with db.write() as uow:
        uow.jobs.enqueue(job.tenant_id, job)
    return job


def claim(db: SqliteDatabase, worker_id: str, now: datetime) -> Job | None:
    """What the worker does: reap expired leases, then claim, in one write transaction."""
    with db.write() as uow:
        uow.dispatch.reap_expired(now=now, policy=POLICY)
        return uow.dispatch.claim(worker_id=worker_id, now=now, lease_seconds=LEASE)


def claimed(db: SqliteDatabase, worker_id: str, now: datetime) -> Job:
    job = claim(db, worker_id, now)
    assert job is not None, f"{worker_id} found nothing to claim at {now}"
    assert job.lease_token is not None
    return job


def get(db: SqliteDatabase, job: Job, tenant_id: str | None = None) -> Job:
    with db.read() as uow:
        return uow.jobs.get(tenant_id or job.tenant_id, job.id)


def transitions(job: Job) -> list[tuple[JobState | None, JobState]]:
    return [(event.from_state, event.to_state) for event in job.events]


def succeed(db: SqliteDatabase, job: Job, token: str, now: datetime) -> None:
    with db.write() as uow:
        uow.jobs.succeed(job.tenant_id, job.id, lease_token=token, now=now)


def fail(
    db: SqliteDatabase,
    job: Job,
    token: str,
    decision: RetryDecision,
    now: datetime,
    error: JobError = TRANSIENT,
) -> None:
    with db.write() as uow:
        uow.jobs.fail(
            job.tenant_id, job.id, lease_token=token, decision=decision, error=error, now=now
        )


def heartbeat(db: SqliteDatabase, job: Job, token: str, now: datetime) -> None:
    with db.write() as uow:
        uow.jobs.heartbeat(job.tenant_id, job.id, lease_token=token, now=now, lease_seconds=LEASE)


def retry_at(when: datetime) -> RetryDecision:
    return RetryDecision(JobState.RETRYING, when, "retry later")


def act(db: SqliteDatabase, action: str, job: Job, token: str, now: datetime) -> None:
    """What a worker does under its lease: renew it, finish the job, or fail the attempt."""
    if action == "heartbeat":
        heartbeat(db, job, token, now)
    elif action == "succeed":
        succeed(db, job, token, now)
    else:
        fail(db, job, token, retry_at(now + seconds(5)), now)


# -- enqueue and read --------------------------------------------------------------------


def test_enqueued_job_is_pending_with_one_enqueued_event(db: SqliteDatabase) -> None:
    job = enqueue(db, make_job(max_attempts=4))

    stored = get(db, job)

    assert stored.state is JobState.PENDING
    assert stored.attempts == 0
    assert stored.max_attempts == 4
    assert stored.document_id == job.document_id
    assert stored.created_at == T0
    assert stored.created_at.tzinfo is not None
    assert stored.lease_token is None
    assert stored.error is None
    assert transitions(stored) == [(None, JobState.PENDING)]
    assert stored.events[0].at == T0


def test_enqueue_refuses_a_job_of_another_tenant_or_not_pending(db: SqliteDatabase) -> None:
    job = make_job("acme")
    with pytest.raises(ValueError, match="PENDING job of the same tenant"), db.write() as uow:
        uow.jobs.enqueue("globex", job)

    running = Job(**{**job.__dict__, "state": JobState.RUNNING})
    with pytest.raises(ValueError, match="PENDING job of the same tenant"), db.write() as uow:
        uow.jobs.enqueue("acme", running)


# -- claim -------------------------------------------------------------------------------


def test_claim_marks_job_running_with_first_attempt_and_a_lease(db: SqliteDatabase) -> None:
    job = enqueue(db, make_job())

    got = claimed(db, "w1", T0 + seconds(1))

    assert got.id == job.id
    assert got.state is JobState.RUNNING
    assert got.attempts == 1
    assert got.lease_token
    assert got.lease_expires_at == T0 + seconds(1 + LEASE)
    assert got.started_at == T0 + seconds(1)
    assert got.next_run_at is None
    assert transitions(got) == [(None, JobState.PENDING), (JobState.PENDING, JobState.RUNNING)]
    assert worker_alias("w1") in got.events[-1].detail


def test_second_claim_finds_nothing_while_the_job_is_leased(db: SqliteDatabase) -> None:
    enqueue(db, make_job())
    first = claimed(db, "w1", T0)

    assert claim(db, "w2", T0 + seconds(LEASE / 2)) is None
    assert get(db, first).lease_token == first.lease_token


def test_claim_on_an_empty_queue_returns_none(db: SqliteDatabase) -> None:
    assert claim(db, "w1", T0) is None


def test_claim_takes_a_tenants_jobs_oldest_first_and_the_tenants_in_turn(
    db: SqliteDatabase,
) -> None:
    """Fairness across tenants is specified in detail in test_fair_claiming."""
    newer = enqueue(db, make_job("acme", created_at=T0 + seconds(5)))
    older = enqueue(db, make_job("acme", created_at=T0))
    other = enqueue(db, make_job("globex", created_at=T0 + seconds(8)))

    taken = [claimed(db, f"w{n}", T0 + seconds(10)).id for n in range(3)]

    assert taken == [older.id, other.id, newer.id]


def test_claim_ignores_a_job_whose_run_time_has_not_come(db: SqliteDatabase) -> None:
    enqueue(db, make_job(created_at=T0 + seconds(60)))

    assert claim(db, "w1", T0) is None
    assert claim(db, "w1", T0 + seconds(60)) is not None


def test_each_claim_issues_a_new_lease_token(db: SqliteDatabase) -> None:
    enqueue(db, make_job())
    first = claimed(db, "w1", T0)
    assert first.lease_token is not None
    fail(db, first, first.lease_token, retry_at(T0 + seconds(1)), T0)

    second = claimed(db, "w1", T0 + seconds(1))

    assert second.lease_token != first.lease_token
    assert second.attempts == 2


# -- succeed and fail --------------------------------------------------------------------


def test_succeed_records_pending_running_succeeded_events_in_order(db: SqliteDatabase) -> None:
    job = enqueue(db, make_job())
    got = claimed(db, "w1", T0 + seconds(1))
    assert got.lease_token is not None

    succeed(db, got, got.lease_token, T0 + seconds(2))

    done = get(db, job)
    assert done.state is JobState.SUCCEEDED
    assert done.finished_at == T0 + seconds(2)
    assert done.lease_token is None
    assert done.lease_expires_at is None
    assert done.error is None
    assert [(e.from_state, e.to_state, e.at) for e in done.events] == [
        (None, JobState.PENDING, T0),
        (JobState.PENDING, JobState.RUNNING, T0 + seconds(1)),
        (JobState.RUNNING, JobState.SUCCEEDED, T0 + seconds(2)),
    ]
    assert [e.detail for e in done.events] == [
        "enqueued",
        f"claimed by worker {worker_alias('w1')} (attempt 1)",
        "pipeline finished",
    ]
    assert "w1" not in worker_alias("w1")  # the history never names the host or process


def test_succeeded_job_is_never_claimed_again(db: SqliteDatabase) -> None:
    enqueue(db, make_job())
    got = claimed(db, "w1", T0)
    assert got.lease_token is not None
    succeed(db, got, got.lease_token, T0)

    assert claim(db, "w2", T0 + timedelta(days=1)) is None


def test_succeeding_twice_with_the_same_token_raises_lease_lost(db: SqliteDatabase) -> None:
    job = enqueue(db, make_job())
    got = claimed(db, "w1", T0)
    assert got.lease_token is not None
    succeed(db, got, got.lease_token, T0 + seconds(1))

    with pytest.raises(LeaseLost):
        succeed(db, got, got.lease_token, T0 + seconds(2))

    assert [e.to_state for e in get(db, job).events].count(JobState.SUCCEEDED) == 1


def test_transient_failure_retries_not_before_next_run_at_and_then_is_claimable(
    db: SqliteDatabase,
) -> None:
    job = enqueue(db, make_job())
    got = claimed(db, "w1", T0)
    assert got.lease_token is not None

    fail(db, got, got.lease_token, retry_at(T0 + seconds(10)), T0 + seconds(1))

    waiting = get(db, job)
    assert waiting.state is JobState.RETRYING
    assert waiting.next_run_at == T0 + seconds(10)
    assert waiting.error == TRANSIENT
    assert waiting.lease_token is None
    assert waiting.finished_at is None
    assert transitions(waiting)[-1] == (JobState.RUNNING, JobState.RETRYING)
    assert "transient" in waiting.events[-1].detail

    assert claim(db, "w2", T0 + seconds(10) - timedelta(microseconds=1)) is None
    again = claimed(db, "w2", T0 + seconds(10))
    assert again.id == job.id
    assert again.state is JobState.RUNNING
    assert again.attempts == 2
    assert again.started_at == T0  # the first attempt's start is kept


def test_failure_decided_by_the_policy_retries_within_its_window(db: SqliteDatabase) -> None:
    job = enqueue(db, make_job())
    got = claimed(db, "w1", T0)
    assert got.lease_token is not None
    decision = POLICY.decide(
        attempts=got.attempts,
        max_attempts=got.max_attempts,
        transient=True,
        now=T0,
        rng=random.Random(7),
    )

    fail(db, got, got.lease_token, decision, T0)

    waiting = get(db, job)
    assert waiting.state is JobState.RETRYING
    assert waiting.next_run_at is not None
    assert T0 <= waiting.next_run_at <= T0 + seconds(POLICY.ceiling(1))


def test_permanent_failure_dead_letters_the_job(db: SqliteDatabase) -> None:
    job = enqueue(db, make_job())
    got = claimed(db, "w1", T0)
    assert got.lease_token is not None
    decision = POLICY.decide(attempts=1, max_attempts=3, transient=False, now=T0)

    fail(db, got, got.lease_token, decision, T0 + seconds(3), error=PERMANENT)

    dead = get(db, job)
    assert dead.state is JobState.FAILED
    assert dead.error == PERMANENT
    assert dead.finished_at == T0 + seconds(3)
    assert dead.next_run_at is None
    assert dead.lease_token is None
    assert transitions(dead)[-1] == (JobState.RUNNING, JobState.FAILED)
    assert claim(db, "w2", T0 + timedelta(days=1)) is None


# -- leases ------------------------------------------------------------------------------


def test_heartbeat_extends_the_lease_so_the_reaper_leaves_the_job_running(
    db: SqliteDatabase,
) -> None:
    job = enqueue(db, make_job())
    got = claimed(db, "w1", T0)
    assert got.lease_token is not None

    heartbeat(db, got, got.lease_token, T0 + seconds(20))

    extended = get(db, job)
    assert extended.lease_expires_at == T0 + seconds(20 + LEASE)
    assert extended.events == got.events  # renewals are not state changes
    with db.write() as uow:
        assert uow.dispatch.reap_expired(now=T0 + seconds(LEASE + 10), policy=POLICY) == 0
    assert get(db, job).state is JobState.RUNNING
    succeed(db, got, got.lease_token, T0 + seconds(LEASE + 10))
    assert get(db, job).state is JobState.SUCCEEDED


@pytest.mark.parametrize("action", ["heartbeat", "succeed", "fail"])
def test_acting_with_a_wrong_token_raises_lease_lost_and_changes_nothing(
    db: SqliteDatabase, action: str
) -> None:
    job = enqueue(db, make_job())
    got = claimed(db, "w1", T0)
    wrong = "0" * 32

    with pytest.raises(LeaseLost):
        act(db, action, got, wrong, T0 + seconds(1))

    assert get(db, job) == got


@pytest.mark.parametrize("action", ["heartbeat", "succeed", "fail"])
def test_acting_on_a_job_that_is_no_longer_running_raises_lease_lost(
    db: SqliteDatabase, action: str
) -> None:
    job = enqueue(db, make_job())
    got = claimed(db, "w1", T0)
    assert got.lease_token is not None
    fail(db, got, got.lease_token, retry_at(T0 + seconds(60)), T0 + seconds(1))
    before = get(db, job)

    with pytest.raises(LeaseLost):
        act(db, action, got, got.lease_token, T0 + seconds(2))

    assert get(db, job) == before


def test_reaper_leaves_a_job_whose_lease_has_not_run_out(db: SqliteDatabase) -> None:
    job = enqueue(db, make_job())
    claimed(db, "w1", T0)

    with db.write() as uow:
        assert uow.dispatch.reap_expired(now=T0 + seconds(LEASE - 1), policy=POLICY) == 0

    assert get(db, job).state is JobState.RUNNING


def test_reaper_turns_an_expired_running_job_into_retrying_with_lease_expired_error(
    db: SqliteDatabase,
) -> None:
    job = enqueue(db, make_job(max_attempts=3))
    claimed(db, "w1", T0)
    now = T0 + seconds(LEASE + 1)

    with db.write() as uow:
        assert uow.dispatch.reap_expired(now=now, policy=POLICY) == 1

    reaped = get(db, job)
    assert reaped.state is JobState.RETRYING
    assert reaped.error is not None
    assert reaped.error.type == "lease-expired"
    assert reaped.lease_token is None
    assert reaped.next_run_at is not None
    assert now <= reaped.next_run_at <= now + seconds(POLICY.ceiling(1))
    assert reaped.finished_at is None
    assert transitions(reaped)[-1] == (JobState.RUNNING, JobState.RETRYING)
    assert reaped.events[-1].detail.startswith("lease-expired")


def test_two_reapers_at_once_reap_an_expired_job_once_and_neither_fails(
    db: SqliteDatabase,
) -> None:
    """Every claim reaps first, so concurrent claimers meet at an expired job. The second
    must pass it by (PostgreSQL: SKIP LOCKED; SQLite: it waits for the first's commit and
    then finds nothing expired), not fail its whole claim on the changed row."""
    job = enqueue(db, make_job(max_attempts=3))
    claimed(db, "w1", T0)
    now = T0 + seconds(LEASE + 1)
    first_reaped = threading.Event()
    reaped: list[int] = []
    errors: list[BaseException] = []

    def first() -> None:
        with db.write() as uow:
            reaped.append(uow.dispatch.reap_expired(now=now, policy=POLICY))
            first_reaped.set()
            # Hold the transaction open while the second reaper runs (SQLite's second
            # writer waits for it instead: let it go after a moment).
            time.sleep(0.5)

    def second() -> None:
        first_reaped.wait(5)
        try:
            with db.write() as uow:
                reaped.append(uow.dispatch.reap_expired(now=now, policy=POLICY))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert errors == []
    assert sorted(reaped) == [0, 1]
    assert get(db, job).state is JobState.RETRYING


def test_reaper_dead_letters_an_expired_job_that_has_no_attempts_left(
    db: SqliteDatabase,
) -> None:
    job = enqueue(db, make_job(max_attempts=1))
    claimed(db, "w1", T0)
    now = T0 + seconds(LEASE + 1)

    with db.write() as uow:
        assert uow.dispatch.reap_expired(now=now, policy=POLICY) == 1

    dead = get(db, job)
    assert dead.state is JobState.FAILED
    assert dead.error is not None
    assert dead.error.type == "lease-expired"
    assert dead.finished_at == now
    assert dead.attempts == 1
    assert claim(db, "w2", now + timedelta(days=1)) is None


def test_reaper_ignores_pending_retrying_and_finished_jobs(db: SqliteDatabase) -> None:
    pending = enqueue(db, make_job(created_at=T0 + timedelta(days=2)))
    done = enqueue(db, make_job())
    got = claimed(db, "w1", T0)
    assert got.lease_token is not None
    succeed(db, got, got.lease_token, T0)

    with db.write() as uow:
        assert uow.dispatch.reap_expired(now=T0 + timedelta(days=1), policy=POLICY) == 0

    assert get(db, pending).state is JobState.PENDING
    assert get(db, done).state is JobState.SUCCEEDED


def test_worker_whose_lease_was_reaped_and_reclaimed_cannot_finish_but_the_new_owner_can(
    db: SqliteDatabase,
) -> None:
    job = enqueue(db, make_job(max_attempts=3))
    stale = claimed(db, "w1", T0)
    assert stale.lease_token is not None
    # w1 stalls past its lease: the reaper takes the job back, w2 claims it after backoff.
    with db.write() as uow:
        assert uow.dispatch.reap_expired(now=T0 + seconds(LEASE + 1), policy=POLICY) == 1
    fresh = claimed(db, "w2", T0 + seconds(LEASE + 1 + POLICY.ceiling(1)))
    assert fresh.id == job.id
    assert fresh.lease_token is not None
    assert fresh.lease_token != stale.lease_token
    assert fresh.attempts == 2
    before = get(db, job)

    later = T0 + seconds(LEASE + 5)
    with pytest.raises(LeaseLost):
        succeed(db, stale, stale.lease_token, later)
    with pytest.raises(LeaseLost):
        fail(db, stale, stale.lease_token, retry_at(later), later)
    with pytest.raises(LeaseLost):
        heartbeat(db, stale, stale.lease_token, later)
    assert get(db, job) == before

    succeed(db, fresh, fresh.lease_token, later)

    done = get(db, job)
    assert done.state is JobState.SUCCEEDED
    assert transitions(done) == [
        (None, JobState.PENDING),
        (JobState.PENDING, JobState.RUNNING),
        (JobState.RUNNING, JobState.RETRYING),
        (JobState.RETRYING, JobState.RUNNING),
        (JobState.RUNNING, JobState.SUCCEEDED),
    ]


# -- tenant scoping ----------------------------------------------------------------------


def test_get_with_another_tenant_raises_not_found(db: SqliteDatabase) -> None:
    job = enqueue(db, make_job("acme"))

    with pytest.raises(NotFound):
        get(db, job, tenant_id="globex")


def test_get_of_an_unknown_job_raises_not_found(db: SqliteDatabase) -> None:
    with pytest.raises(NotFound), db.read() as uow:
        uow.jobs.get("acme", new_id("job"))


def test_list_with_another_tenant_returns_nothing(db: SqliteDatabase) -> None:
    enqueue(db, make_job("acme"))

    with db.read() as uow:
        assert uow.jobs.list("globex", state=None, limit=100, after=None) == []


def test_list_returns_the_tenants_jobs_newest_id_first_in_pages(db: SqliteDatabase) -> None:
    mine = {enqueue(db, make_job("acme")).id for _ in range(5)}
    enqueue(db, make_job("globex"))

    with db.read() as uow:
        page1 = uow.jobs.list("acme", state=None, limit=3, after=None)
        page2 = uow.jobs.list("acme", state=None, limit=3, after=page1[-1].id)

    ids = [job.id for job in page1 + page2]
    assert len(page1) == 3
    assert len(page2) == 2
    assert ids == sorted(mine, reverse=True)
    assert all(job.tenant_id == "acme" for job in page1 + page2)


def test_list_filters_by_state(db: SqliteDatabase) -> None:
    waiting = enqueue(db, make_job("acme", created_at=T0 + seconds(1)))
    enqueue(db, make_job("acme"))
    claimed(db, "w1", T0)

    with db.read() as uow:
        pending = uow.jobs.list("acme", state=JobState.PENDING, limit=10, after=None)
        running = uow.jobs.list("acme", state=JobState.RUNNING, limit=10, after=None)
        failed = uow.jobs.list("acme", state=JobState.FAILED, limit=10, after=None)

    assert [job.id for job in pending] == [waiting.id]
    assert len(running) == 1
    assert running[0].id != waiting.id
    assert failed == []


def test_lease_of_another_tenants_job_cannot_be_used_under_the_wrong_tenant(
    db: SqliteDatabase,
) -> None:
    job = enqueue(db, make_job("acme"))
    got = claimed(db, "w1", T0)
    assert got.lease_token is not None

    with pytest.raises(LeaseLost), db.write() as uow:
        uow.jobs.succeed("globex", job.id, lease_token=got.lease_token, now=T0)
    with pytest.raises(LeaseLost), db.write() as uow:
        uow.jobs.heartbeat(
            "globex", job.id, lease_token=got.lease_token, now=T0, lease_seconds=LEASE
        )

    assert get(db, job) == got


def test_delete_for_document_removes_the_documents_jobs_and_events_of_that_tenant_only(
    db: SqliteDatabase,
) -> None:
    job = enqueue(db, make_job("acme"))
    other = enqueue(db, make_job("acme"))

    with db.write() as uow:
        uow.jobs.delete_for_document("globex", job.document_id)
    assert get(db, job).state is JobState.PENDING

    with db.write() as uow:
        uow.jobs.delete_for_document("acme", job.document_id)
    with pytest.raises(NotFound):
        get(db, job)
    assert get(db, other).events  # other documents' jobs keep their history


def dead_letter(db: SqliteDatabase, job: Job, now: datetime = T0) -> Job:
    """Enqueue ``job`` and fail it permanently: a FAILED job, ready to be retried."""
    enqueue(db, job)
    got = claimed(db, "w1", now)
    assert got.id == job.id
    assert got.lease_token is not None
    fail(
        db, got, got.lease_token, RetryDecision(JobState.FAILED, None, "permanent"), now, PERMANENT
    )
    return get(db, job)


def test_requeue_under_another_tenant_is_not_found_and_changes_nothing(
    db: SqliteDatabase,
) -> None:
    job = dead_letter(db, make_job("acme", created_by="alice"))

    with pytest.raises(NotFound), db.write() as uow:
        uow.jobs.requeue("globex", job.id, now=T0, detail="retried", queued_by="mallory")

    assert get(db, job) == job
    with db.read() as uow:
        assert uow.jobs.failed_ids("globex", error_type=None, limit=10) == []
        assert uow.jobs.failed_ids("acme", error_type=None, limit=10) == [job.id]


def test_count_by_state_counts_only_the_tenants_jobs(db: SqliteDatabase) -> None:
    enqueue(db, make_job("acme"))
    enqueue(db, make_job("acme"))
    enqueue(db, make_job("globex"))

    with db.read() as uow:
        acme = uow.jobs.count_by_state("acme")
        globex = uow.jobs.count_by_state("globex")
        initech = uow.jobs.count_by_state("initech")

    assert acme[JobState.PENDING] == 2
    assert globex[JobState.PENDING] == 1
    assert sum(initech.values()) == 0


def test_count_by_state_can_count_only_the_states_asked(db: SqliteDatabase) -> None:
    """What the upload's overload check asks: the unfinished jobs, not the whole history."""
    for _ in range(3):
        enqueue(db, make_job("acme"))
    done = claimed(db, "w1", T0)
    assert done.lease_token is not None
    succeed(db, done, done.lease_token, T0)
    claimed(db, "w1", T0)

    with db.read() as uow:
        every = uow.jobs.count_by_state("acme")
        asked = uow.jobs.count_by_state("acme", states=(JobState.PENDING, JobState.RUNNING))

    assert (every[JobState.PENDING], every[JobState.RUNNING], every[JobState.SUCCEEDED]) == (
        1,
        1,
        1,
    )
    assert asked[JobState.PENDING] == asked[JobState.RUNNING] == 1
    assert asked[JobState.SUCCEEDED] == 0


# -- who queued a job ----------------------------------------------------------------------


def test_a_job_keeps_who_queued_it_through_claim_and_finish(db: SqliteDatabase) -> None:
    job = enqueue(db, make_job(created_by="alice"))

    got = claimed(db, "w1", T0)
    assert got.created_by == "alice"
    assert got.lease_token is not None
    succeed(db, got, got.lease_token, T0)

    assert get(db, job).created_by == "alice"
    assert enqueue(db, make_job()).created_by is None


def test_reads_narrowed_to_one_subject_see_only_the_jobs_it_queued(db: SqliteDatabase) -> None:
    alices = {enqueue(db, make_job(created_by="alice")).id for _ in range(3)}
    bobs = enqueue(db, make_job(created_by="bob"))
    nobodys = enqueue(db, make_job())

    with db.read() as uow:
        listed = uow.jobs.list("acme", state=None, created_by="alice", limit=10, after=None)
        everyone = uow.jobs.list("acme", state=None, limit=10, after=None)
        counts = uow.jobs.count_by_state("acme", created_by="alice")
        uow.jobs.get("acme", bobs.id, created_by="bob")
        with pytest.raises(NotFound, match=f"job {bobs.id} not found"):
            uow.jobs.get("acme", bobs.id, created_by="alice")
        with pytest.raises(NotFound, match=f"job {nobodys.id} not found"):
            uow.jobs.get("acme", nobodys.id, created_by="alice")

    assert {job.id for job in listed} == alices
    assert {job.id for job in everyone} == alices | {bobs.id, nobodys.id}
    assert counts[JobState.PENDING] == 3


def test_failed_ids_narrowed_to_one_subject(db: SqliteDatabase) -> None:
    alices = dead_letter(db, make_job(created_by="alice"))
    bobs = dead_letter(db, make_job(created_by="bob"), T0 + seconds(1))

    with db.read() as uow:
        assert uow.jobs.failed_ids("acme", error_type=None, created_by="bob", limit=10) == [bobs.id]
        both = uow.jobs.failed_ids("acme", error_type=None, limit=10)
    assert set(both) == {alices.id, bobs.id}


def test_requeue_records_who_queued_the_job_again(db: SqliteDatabase) -> None:
    job = dead_letter(db, make_job(created_by="alice"))

    with db.write() as uow:
        uow.jobs.requeue("acme", job.id, now=T0 + seconds(5), detail="retried", queued_by="root")

    again = get(db, job)
    assert again.state is JobState.PENDING
    assert again.created_by == "root"
    assert again.attempts == 0

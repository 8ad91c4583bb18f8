"""Claims are fair across tenants: round-robin over the tenants with runnable work, first
in, first out within a tenant, so a tenant's huge upload cannot starve another's one file.

Most tests use one fixed ``now`` for every claim, as a fast worker on a coarse clock
would see it: the rotation must not depend on the clock moving."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql

from spine.adapters.sql import jobs as sql_jobs
from spine.adapters.sql.tables import queue_tenants
from spine.adapters.sqlite.database import SqliteDatabase
from spine.domain.jobs import Job, JobError, JobState, RetryDecision, RetryPolicy
from spine.queue.worker import claim_next
from spine.service import documents, processing
from spine.service.bootstrap import open_database
from spine.service.container import Services
from support.rows import job_row, unscoped

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = 30.0
POLICY = RetryPolicy(base_seconds=2.0, max_seconds=60.0)


def make_job(tenant_id: str, created_at: datetime = T0) -> Job:
    return job_row(tenant_id, created_at=created_at)


def enqueue(db: SqliteDatabase, tenant_id: str, count: int = 1, at: datetime = T0) -> list[str]:
    """``count`` jobs of one tenant, in one write transaction."""
    queued = [make_job(tenant_id, at) for _ in range(count)]
    with db.write() as uow:
        for job in queued:
            uow.jobs.enqueue(tenant_id, job)
    return [job.id for job in queued]


def claim(db: SqliteDatabase, now: datetime = T0) -> Job | None:
    with db.write() as uow:
        uow.dispatch.reap_expired(now=now, policy=POLICY)
        return uow.dispatch.claim(worker_id="w1", now=now, lease_seconds=LEASE)


def claim_tenants(db: SqliteDatabase, count: int, now: datetime = T0) -> list[str]:
    taken = [claim(db, now) for _ in range(count)]
    return [job.tenant_id if job is not None else "-" for job in taken]


def rotation(db: SqliteDatabase) -> dict[str, datetime | None]:
    with db.read() as uow:
        rows = unscoped(uow).execute(select(queue_tenants))
        return {row.tenant_id: row.last_claimed_at for row in rows}


# -- one tenant's flood does not starve another ----------------------------------------

BACKLOG = 10_000


@pytest.fixture(scope="module")
def backlog_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A database where tenant "big" has queued 10,000 jobs at T0, in one transaction (as
    a bulk upload's workers would, one job per file); built once, copied for each test."""
    folder = tmp_path_factory.mktemp("backlog")
    database = open_database(f"sqlite:///{folder / 'spine.db'}")
    assert isinstance(database, SqliteDatabase)
    try:
        ids = enqueue(database, "big", BACKLOG)
    finally:
        database.close()
    return folder, ids


@pytest.fixture
def backlog(
    backlog_template: tuple[Path, list[str]], tmp_path: Path
) -> Iterator[tuple[SqliteDatabase, list[str]]]:
    folder, ids = backlog_template
    copy = tmp_path / "backlog"
    shutil.copytree(folder, copy)
    database = open_database(f"sqlite:///{copy / 'spine.db'}")
    assert isinstance(database, SqliteDatabase)
    yield database, ids
    database.close()


def test_a_single_job_queued_after_ten_thousand_of_another_tenant_is_claimed_next(
    backlog: tuple[SqliteDatabase, list[str]],
) -> None:
    db, big = backlog
    first = claim(db)
    assert first is not None
    assert first.id == min(big)  # all queued at T0: the smallest id goes first

    [small] = enqueue(db, "small", at=T0 + timedelta(seconds=1))
    later = T0 + timedelta(seconds=2)
    taken = [claim(db, later) for _ in range(2)]

    assert [job.id for job in taken if job is not None][:1] == [small]
    assert [job.tenant_id for job in taken if job is not None] == ["small", "big"]
    # The backlog is still there and still the oldest runnable work: snapshot reports it.
    with db.read() as uow:
        snapshot = uow.dispatch.snapshot(now=later)
    assert snapshot.counts[JobState.PENDING] == BACKLOG - 2
    assert snapshot.counts[JobState.RUNNING] == 3
    assert snapshot.oldest_runnable_at == T0


def test_a_tenant_arriving_before_any_claim_is_served_within_two_claims(
    backlog: tuple[SqliteDatabase, list[str]],
) -> None:
    db, _ = backlog
    [small] = enqueue(db, "small", at=T0 + timedelta(seconds=1))

    taken = [claim(db, T0 + timedelta(seconds=2)) for _ in range(2)]

    assert small in [job.id for job in taken if job is not None]


def test_two_tenants_alternate_while_one_has_a_ten_thousand_job_backlog(
    backlog: tuple[SqliteDatabase, list[str]],
) -> None:
    """How fast a claim is belongs in a benchmark; here only the order is checked."""
    db, _ = backlog
    enqueue(db, "small", 100)

    assert claim_tenants(db, 50) == ["big", "small"] * 25


# -- the rotation ------------------------------------------------------------------------


def test_three_tenants_are_served_one_job_each_per_round(db: SqliteDatabase) -> None:
    enqueue(db, "a", 5)
    enqueue(db, "b", 3)
    enqueue(db, "c", 1)

    assert claim_tenants(db, 10) == ["a", "b", "c", "a", "b", "a", "b", "a", "a", "-"]


def test_each_tenants_jobs_are_claimed_oldest_first(db: SqliteDatabase) -> None:
    late = enqueue(db, "a", at=T0 + timedelta(seconds=5))
    early = enqueue(db, "a", at=T0)
    other = enqueue(db, "b", at=T0 + timedelta(seconds=1))

    taken = [claim(db, T0 + timedelta(seconds=10)) for _ in range(3)]

    assert [job.id for job in taken if job is not None] == [*early, *other, *late]


def test_turns_rotate_even_when_every_claim_sees_the_same_clock(db: SqliteDatabase) -> None:
    """Stamps of turns taken in one clock tick still increase: the second tenant's turn
    is later than the first's, though both were taken at ``T0``."""
    enqueue(db, "a", 2)
    enqueue(db, "b", 2)

    assert claim_tenants(db, 4) == ["a", "b", "a", "b"]
    stamps = rotation(db)
    assert stamps["a"] is not None
    assert stamps["b"] is not None
    assert T0 < stamps["a"] < stamps["b"] < T0 + timedelta(milliseconds=1)


def test_a_turn_is_stamped_with_the_clock_once_it_moves_past_the_last_stamp(
    db: SqliteDatabase,
) -> None:
    enqueue(db, "a", 2)
    claim(db, T0)
    claim(db, T0 + timedelta(minutes=1))

    assert rotation(db) == {"a": T0 + timedelta(minutes=1)}


def test_a_tenant_that_was_idle_rejoins_at_the_front_but_only_for_one_turn(
    db: SqliteDatabase,
) -> None:
    enqueue(db, "a", 1)
    assert claim_tenants(db, 1) == ["a"]
    enqueue(db, "b", 4)
    assert claim_tenants(db, 2) == ["b", "b"]

    enqueue(db, "a", 3)

    assert claim_tenants(db, 5) == ["a", "b", "a", "b", "a"]


def test_a_tenant_whose_only_job_waits_to_retry_is_skipped_until_it_is_due(
    db: SqliteDatabase,
) -> None:
    enqueue(db, "waiting", 1)
    job = claim(db)
    assert job is not None
    assert job.lease_token is not None
    with db.write() as uow:
        uow.jobs.fail(
            "waiting",
            job.id,
            lease_token=job.lease_token,
            decision=RetryDecision(JobState.RETRYING, T0 + timedelta(seconds=60), "later"),
            error=JobError("transient", "embedder down"),
            now=T0,
        )
    enqueue(db, "busy", 3)

    assert claim_tenants(db, 2, T0 + timedelta(seconds=30)) == ["busy", "busy"]
    # Due now, and served longest ago: first in line again.
    assert claim_tenants(db, 2, T0 + timedelta(seconds=60)) == ["waiting", "busy"]


# -- who is in the rotation --------------------------------------------------------------


def test_enqueue_puts_a_tenant_in_the_rotation_once(db: SqliteDatabase) -> None:
    enqueue(db, "a", 3)
    enqueue(db, "a", 2)
    enqueue(db, "b", 1)

    assert rotation(db) == {"a": None, "b": None}


def test_requeue_puts_the_tenant_back_in_the_rotation(db: SqliteDatabase) -> None:
    enqueue(db, "a", 1)
    job = claim(db)
    assert job is not None
    assert job.lease_token is not None
    with db.write() as uow:
        uow.jobs.fail(
            "a",
            job.id,
            lease_token=job.lease_token,
            decision=RetryDecision(JobState.FAILED, None, "permanent"),
            error=JobError("extraction-failed", "not a PDF"),
            now=T0,
        )
        unscoped(uow).execute(delete(queue_tenants))
        uow.jobs.requeue("a", job.id, now=T0, detail="retried", queued_by="alice")

    assert rotation(db) == {"a": None}


def test_work_of_a_tenant_missing_from_the_rotation_is_still_claimed_and_joins_it(
    db: SqliteDatabase,
) -> None:
    """As for a job an older release queued during a rolling upgrade."""
    [orphan] = enqueue(db, "old", 1)
    with db.write() as uow:
        unscoped(uow).execute(delete(queue_tenants))

    job = claim(db)

    assert job is not None
    assert job.id == orphan
    assert set(rotation(db)) == {"old"}


class _RecordingConnection:
    """Just enough of a Connection to see which statement a dialect gets."""

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect
        self.statements: list[str] = []

    def execute(self, statement: Any, parameters: Any = None) -> None:
        self.statements.append(str(statement.compile(dialect=self.dialect)))


def test_joining_the_rotation_on_postgresql_is_an_insert_on_conflict_do_nothing() -> None:
    conn = _RecordingConnection(postgresql.dialect())  # type: ignore[no-untyped-call]

    sql_jobs._join_rotation(conn, "acme")  # type: ignore[arg-type]

    [statement] = conn.statements
    assert statement.startswith("INSERT INTO queue_tenants")
    assert statement.endswith("ON CONFLICT DO NOTHING")


# -- the worker loop -----------------------------------------------------------------------


def test_the_worker_loop_serves_a_small_tenant_between_a_big_tenants_uploads(
    services: Services,
) -> None:
    def upload(tenant: str, text: str) -> str:
        accepted = documents.upload(
            services,
            tenant,
            documents.Upload(io.BytesIO(text.encode()), "a.txt", "text/plain", None, {}),
        )
        assert accepted.job is not None
        return accepted.job.id

    for n in range(20):
        upload("big", f"Document number {n} of the big tenant's bulk upload.")
    small = upload("small", "The small tenant's only document.")

    order: list[str] = []
    while small not in order:
        job = claim_next(services, "w1")
        assert job is not None
        processing.process(services, job)
        order.append(job.id)

    assert len(order) <= 2
    with services.db.read() as uow:
        assert uow.jobs.get("small", small).state is JobState.SUCCEEDED
        assert uow.jobs.count_by_state("big")[JobState.PENDING] >= 18

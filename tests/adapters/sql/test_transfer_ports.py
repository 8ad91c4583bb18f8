"""The port methods ``spine export`` and ``spine import`` add, on SQLite and PostgreSQL:
a document's chunks with their vectors, a finished job restored as it was, and every
tenant that has data."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest

from spine.domain.documents import Chunk, new_id
from spine.domain.jobs import Job, JobError, JobEvent, JobState
from spine.domain.privacy import PiiPolicy
from spine.ports import AuditEntry, Database, WrappedTenantKeys
from support.rows import T0, document_row, job_row

DIMENSION = 384


def chunks_of(document_id: str, count: int, seed: int) -> list[Chunk]:
    rng = np.random.default_rng(seed)
    return [
        Chunk(
            new_id("chk"),
            document_id,
            n,
            f"words of chunk {n}",
            n * 10,
            n * 10 + 9,
            # float32 values: what either index keeps, so they come back exactly.
            rng.standard_normal(DIMENSION).astype(np.float32).tolist(),
        )
        for n in range(count)
    ]


def test_chunks_come_back_with_their_exact_vectors_and_only_the_tenants(db: Database) -> None:
    mine, theirs = new_id("doc"), new_id("doc")
    stored = chunks_of(mine, 3, seed=1)
    with db.write() as uow:
        uow.documents.add("acme", document_row("acme", mine, chunk_count=3))
        uow.documents.add("globex", document_row("globex", theirs, chunk_count=2))
        uow.index.replace("acme", mine, "t", list(reversed(stored)))
        uow.index.replace("globex", theirs, "t", chunks_of(theirs, 2, seed=2))
    with db.read() as uow:
        assert uow.index.chunks_with_vectors("acme", mine) == sorted(
            stored, key=lambda c: c.ordinal
        )
        assert uow.index.chunks_with_vectors("globex", mine) == []
        assert uow.index.chunks_with_vectors("acme", theirs) == []


def finished_job(tenant: str, state: JobState) -> Job:
    job = job_row(tenant, created_by="alice")
    started, finished = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2, microseconds=7)
    failed = state is JobState.FAILED
    return dataclasses.replace(
        job,
        state=state,
        attempts=1,
        error=JobError("extraction-failed", "bad bytes") if failed else None,
        started_at=started,
        finished_at=finished,
        request_id="req-1",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        events=(
            JobEvent(job.id, None, JobState.PENDING, T0, "enqueued"),
            JobEvent(job.id, JobState.PENDING, JobState.RUNNING, started, "claimed"),
            JobEvent(job.id, JobState.RUNNING, state, finished, "done"),
        ),
    )


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED])
def test_a_finished_job_is_restored_as_it_was(db: Database, state: JobState) -> None:
    job = finished_job("acme", state)
    with db.write() as uow:
        uow.jobs.restore("acme", job)
    with db.write() as uow:
        assert uow.jobs.get("acme", job.id) == job
        # Not runnable: nothing claims it.
        assert (
            uow.dispatch.claim(worker_id="w", now=T0 + timedelta(days=1), lease_seconds=5) is None
        )
        with pytest.raises(Exception, match="not found"):
            uow.jobs.get("globex", job.id)


def test_restore_refuses_an_unfinished_job_or_another_tenants(db: Database) -> None:
    with db.write() as uow:
        with pytest.raises(ValueError, match="SUCCEEDED or FAILED"):
            uow.jobs.restore("acme", job_row("acme"))
        with pytest.raises(ValueError, match="same tenant"):
            uow.jobs.restore("acme", finished_job("globex", JobState.SUCCEEDED))


def test_tenants_with_data_names_every_tenant_with_any_of_its_rows(db: Database) -> None:
    with db.write() as uow:
        uow.documents.add("with-documents", document_row("with-documents"))
        uow.jobs.restore("with-jobs", finished_job("with-jobs", JobState.SUCCEEDED))
        entry = AuditEntry(1, "with-audit", T0, "a", "x.y", "-", "-", "success", "0" * 64, "1" * 64)
        uow.audit.append("with-audit", entry, expected=None)
        keys = WrappedTenantKeys("k", b"d", b"t", T0)
        uow.privacy.add_tenant_keys("with-keys", keys)
        uow.privacy.set_policy("with-policy", PiiPolicy(), now=T0, updated_by="admin")
    with db.read() as uow:
        assert uow.housekeeping.tenants_with_data() == {
            "with-documents",
            "with-jobs",
            "with-audit",
            "with-keys",
            "with-policy",
        }
